//! Cluster-scoped networks: definitions, addresses and host membership in etcd.
//!
//! Local network types keep living in SQLite alone. A network whose type declares itself
//! cluster-scoped is defined in etcd ([`store`]); each member host keeps a local row of it
//! (its own bridge and tunnel device, its own containers' endpoints, and the entries it
//! installed for containers elsewhere: `cluster_peers`), which [`sync`] brings in line with
//! etcd through ordinary plans, journal and all.
//!
//! The cluster a process belongs to is process-wide, like its log settings: it is named
//! once on the command line (`--cluster`, `--cluster-address`) and every code path that
//! touches a cluster-scoped network reaches it through [`current`].

pub mod etcd;
pub mod ipam;
pub mod mtu;
pub mod networks;
pub mod store;
pub mod sync;
pub mod watch;

use anyhow::{anyhow, bail, Context, Result};
use etcd::Etcd;
use kleene_plugin_api::Network;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The UDP port of the tunnels (IANA's VXLAN port).
pub const VXLAN_PORT: u16 = 4789;

/// How long a host stays a member without renewing its lease, unless configured.
const DEFAULT_TTL: u64 = 10;

/// What `--cluster` and `--cluster-address` say.
#[derive(Debug, Clone)]
pub struct Config {
    pub endpoints: Vec<String>,
    /// This host's underlay address: its identity in the cluster and its tunnels' source.
    pub address: IpAddr,
    /// Lease TTL in seconds (`KLEENE_CLUSTER_TTL`).
    pub ttl: u64,
}

impl Config {
    /// The configuration from the flags; `None` when this host is in no cluster.
    pub fn parse(endpoints: Option<&str>, address: Option<&str>) -> Result<Option<Config>> {
        let Some(endpoints) = endpoints.filter(|e| !e.is_empty()) else { return Ok(None) };
        let endpoints: Vec<String> = endpoints.split(',').map(|e| e.trim().to_string()).collect();
        for e in &endpoints {
            let rest = e.strip_prefix("http://").ok_or_else(|| {
                anyhow!("invalid --cluster endpoint '{e}': use http://HOST:PORT (etcd's client URL), comma-separated")
            })?;
            if !rest.trim_end_matches('/').contains(':') {
                bail!("invalid --cluster endpoint '{e}': name the port, e.g. http://{rest}:2379");
            }
        }
        let address = address.filter(|a| !a.is_empty()).ok_or_else(|| {
            anyhow!("--cluster needs --cluster-address (or KLEENE_CLUSTER_ADDRESS): this host's underlay address")
        })?;
        let address: IpAddr =
            address.parse().map_err(|_| anyhow!("invalid --cluster-address '{address}': use an IP address"))?;
        let ttl =
            match std::env::var("KLEENE_CLUSTER_TTL") {
                Ok(t) => t.parse().ok().filter(|t| *t >= 2).ok_or_else(|| {
                    anyhow!("invalid KLEENE_CLUSTER_TTL '{t}': use a whole number of seconds, 2 or more")
                })?,
                Err(_) => DEFAULT_TTL,
            };
        Ok(Some(Config { endpoints, address, ttl }))
    }
}

/// This process's membership: the configuration and the etcd connection.
pub struct Cluster {
    pub config: Config,
    etcd: Mutex<Etcd>,
    run_dir: PathBuf,
    /// A `--dry-run` process: it shows what it would claim or give back, and changes nothing
    /// in etcd either.
    pub dry_run: bool,
    /// The addresses held per network at the last sync: where auto addresses start looking.
    last_used: Mutex<std::collections::BTreeMap<String, std::collections::BTreeSet<IpAddr>>>,
}

static CLUSTER: OnceLock<std::result::Result<Option<Cluster>, String>> = OnceLock::new();

/// Name the cluster of this process (the first call wins; later ones change nothing).
pub fn configure(endpoints: Option<&str>, address: Option<&str>, run_dir: &Path, dry_run: bool) {
    CLUSTER.get_or_init(|| {
        let config = Config::parse(endpoints, address).map_err(|e| format!("{e:#}"))?;
        config
            .map(|config| {
                let etcd = Etcd::new(config.endpoints.clone()).map_err(|e| format!("{e:#}"))?;
                Ok(Cluster {
                    config,
                    etcd: Mutex::new(etcd),
                    run_dir: run_dir.to_path_buf(),
                    dry_run,
                    last_used: Mutex::default(),
                })
            })
            .transpose()
    });
}

/// The cluster of this process, if it is in one.
pub fn current() -> Result<Option<&'static Cluster>> {
    match CLUSTER.get() {
        None | Some(Ok(None)) => Ok(None),
        Some(Ok(Some(c))) => Ok(Some(c)),
        Some(Err(e)) => Err(anyhow!("{e}")),
    }
}

/// The cluster, for an operation on a cluster-scoped network (which needs one).
pub fn required(what: &str) -> Result<&'static Cluster> {
    current()?.ok_or_else(|| {
        anyhow!(
            "{what} needs a cluster: name etcd with --cluster http://HOST:2379 and this host with --cluster-address"
        )
    })
}

/// The lease this host holds, as kept in the run dir between commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    id: i64,
    renewed: u64,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Cluster {
    pub fn etcd(&self) -> MutexGuard<'_, Etcd> {
        self.etcd.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lease_file(&self) -> PathBuf {
        self.run_dir.join("cluster-lease")
    }

    fn stored_lease(&self) -> Option<Lease> {
        let text = std::fs::read_to_string(self.lease_file()).ok()?;
        let (id, renewed) = text.trim().split_once(' ')?;
        Some(Lease { id: id.parse().ok()?, renewed: renewed.parse().ok()? })
    }

    fn store_lease(&self, lease: Lease) -> Result<()> {
        crate::trust::ensure_private_dir("run dir", &self.run_dir)?;
        let tmp = self.lease_file().with_extension("tmp");
        std::fs::write(&tmp, format!("{} {}\n", lease.id, lease.renewed))?;
        std::fs::rename(&tmp, self.lease_file()).context("cannot record the cluster lease")
    }

    /// Make sure this host is a member with a live lease; the lease, and whether it is new
    /// (the host was not a member: its addresses must be claimed again). A lease renewed
    /// within a third of its TTL is taken as live without asking etcd: what the snapshot
    /// says of the host key is the check that costs nothing.
    pub fn membership(&self, snapshot: &store::Snapshot) -> Result<(i64, bool)> {
        let me = self.config.address;
        let stored = self.stored_lease();
        let listed = snapshot.hosts.get(&me).copied();
        if let Some(lease) = stored.filter(|l| listed == Some(l.id)) {
            if now().saturating_sub(lease.renewed) < self.config.ttl / 3 {
                return Ok((lease.id, false));
            }
            if self.etcd().keepalive(lease.id)? {
                self.store_lease(Lease { id: lease.id, renewed: now() })?;
                return Ok((lease.id, false));
            }
        }
        let id = self.join()?;
        Ok((id, true))
    }

    /// Join (again): a new lease, and the host key under it.
    fn join(&self) -> Result<i64> {
        let mut etcd = self.etcd();
        let id = etcd.grant(self.config.ttl)?;
        let value = serde_json::json!({"address": self.config.address});
        etcd.put(&store::host_key(self.config.address), value.to_string().as_bytes(), id)?;
        drop(etcd);
        self.store_lease(Lease { id, renewed: now() })?;
        tracing::info!("joined the cluster as {} (lease {id:x})", self.config.address);
        Ok(id)
    }

    /// Renew the lease now (the server's heartbeat); false when it had expired.
    pub fn renew(&self) -> Result<bool> {
        let Some(lease) = self.stored_lease() else { return Ok(false) };
        let alive = self.etcd().keepalive(lease.id)?;
        if alive {
            self.store_lease(Lease { id: lease.id, renewed: now() })?;
        }
        Ok(alive)
    }

    /// The file a running watcher (`kleene serve`) touches on every round, and its age limit.
    fn watcher_mark(&self) -> PathBuf {
        self.run_dir.join("cluster-watch")
    }

    /// Say that a watcher keeps this host in line (called by it on every round).
    pub fn mark_watched(&self) {
        if let Err(e) = std::fs::write(self.watcher_mark(), b"") {
            tracing::warn!("cannot mark the cluster as watched: {e}");
        }
    }

    /// Whether a watcher kept this host in line within the last lease TTL: then a command
    /// need not sync first (the watcher applies every change as it comes).
    pub fn watched(&self) -> bool {
        let age = std::fs::metadata(self.watcher_mark()).and_then(|m| m.modified()).map(|t| t.elapsed());
        matches!(age, Ok(Ok(age)) if age.as_secs() < self.config.ttl)
    }

    /// Keep what a snapshot says is in use.
    pub fn remember(&self, snapshot: store::Snapshot) {
        let used = snapshot.addresses.into_iter().map(|(n, a)| (n, a.into_keys().collect())).collect();
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = used;
    }

    /// The addresses of `network` in use at the last sync.
    pub fn last_used(&self, network: &str) -> std::collections::BTreeSet<IpAddr> {
        self.last_used.lock().unwrap_or_else(|e| e.into_inner()).get(network).cloned().unwrap_or_default()
    }

    /// The lease id to bind new claims to (the one the last sync made sure of).
    pub fn lease(&self) -> Result<i64> {
        self.stored_lease()
            .map(|l| l.id)
            .ok_or_else(|| anyhow!("this host has not joined the cluster yet (etcd at {})", self.etcd().endpoints()))
    }
}

/// With `KLEENE_CLUSTER_STATS` set, say on stderr how many etcd round trips this process
/// made (the benchmark's count per command).
pub fn report_round_trips() {
    if std::env::var_os("KLEENE_CLUSTER_STATS").is_some() {
        eprintln!("etcd round trips: {}", etcd::ROUND_TRIPS.load(std::sync::atomic::Ordering::Relaxed));
    }
}

/// Whether `network` is cluster-scoped (its row carries a cluster scope).
pub fn is_cluster(network: &Network) -> bool {
    network.cluster.is_some()
}
