//! Bring this host in line with the cluster: build its side of overlay networks defined
//! elsewhere, remove those the cluster removed, install and remove the entries for
//! containers on other hosts, and put its own claims in etcd right (claims of endpoints it
//! no longer has are given back; after its lease expired, its endpoints are claimed again).
//!
//! The host's changes are one plan through the engine (journal, rollback, firewall), so a
//! sync killed half-way is rolled back like any command. Nothing happens, and no lock is
//! taken, when the host already matches.

use super::store::{self, Holder, Snapshot};
use super::Cluster;
use crate::commands::{apply, Ctx};
use crate::state::{self, ipam, NetworkRow};
use anyhow::Result;
use kleene_plugin_api::{mac_string, Call, Endpoint, Network, Peer, Plan, PluginKind};
use rusqlite::{params, Connection};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// What separates this host from the cluster.
#[derive(Default)]
struct Work {
    create: Vec<Network>,
    remove: Vec<NetworkRow>,
    /// Per network: entries to add and to remove.
    peers: Vec<(Network, Vec<Peer>, Vec<Peer>)>,
    /// Claims of this host that no endpoint here holds (a command that died after claiming).
    leaked: Vec<(String, IpAddr, Holder)>,
    /// Endpoints here whose claims are missing (this host's lease expired meanwhile).
    unclaimed: Vec<Endpoint>,
}

impl Work {
    fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.remove.is_empty()
            && self.peers.is_empty()
            && self.leaked.is_empty()
            && self.unclaimed.is_empty()
    }
}

/// The entries this host holds for the containers of `network` elsewhere.
fn installed(db: &Connection, network: &str) -> Result<BTreeSet<Peer>> {
    let mut stmt = db.prepare_cached("SELECT address, mac, host FROM cluster_peers WHERE network_id = ?1")?;
    let rows =
        stmt.query_map([network], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    let mut peers = BTreeSet::new();
    for row in rows {
        let (address, mac, host) = row?;
        if let (Ok(address), Some(mac), Ok(host)) = (address.parse(), state::parse_mac(&mac), host.parse()) {
            peers.insert(Peer { address, mac, host });
        }
    }
    Ok(peers)
}

/// Forget the entries recorded for `network` (its tunnel device was built again, empty).
pub fn forget_entries(tx: &Connection, network: &str) -> Result<()> {
    tx.execute("DELETE FROM cluster_peers WHERE network_id = ?1", [network])?;
    Ok(())
}

fn record_peers(tx: &Connection, network: &str, add: &[Peer], remove: &[Peer]) -> Result<()> {
    for p in remove {
        tx.execute(
            "DELETE FROM cluster_peers WHERE network_id = ?1 AND address = ?2",
            params![network, p.address.to_string()],
        )?;
    }
    for p in add {
        tx.execute(
            "INSERT OR REPLACE INTO cluster_peers (network_id, address, mac, host) VALUES (?1, ?2, ?3, ?4)",
            params![network, p.address.to_string(), mac_string(&p.mac), p.host.to_string()],
        )?;
    }
    Ok(())
}

fn work(db: &Connection, snap: &Snapshot, cluster: &Cluster, host_gw_if: &str) -> Result<Work> {
    let me = cluster.config.address;
    let mut work = Work::default();
    let rows = state::networks(db)?;
    let local: BTreeMap<&str, &NetworkRow> = rows.iter().map(|r| (r.network.id.as_str(), r)).collect();
    let mut present: Vec<Network> = Vec::new();
    for n in snap.networks.values() {
        match local.get(n.id.as_str()) {
            Some(row) => present.push(row.network.clone()),
            None => {
                let network = store::local_network(n, me, super::VXLAN_PORT, host_gw_if);
                let clash =
                    rows.iter().find(|r| r.network.name == network.name || r.network.interface == network.interface);
                if let Some(clash) = clash {
                    tracing::warn!(
                        "cluster network '{}' is not built here: local network '{}' has its name or interface {}",
                        n.name,
                        clash.network.name,
                        network.interface
                    );
                    continue;
                }
                work.create.push(network.clone());
                present.push(network);
            }
        }
    }
    let endpoints: Vec<Endpoint> = state::all_endpoints(db)?;
    for row in rows.iter().filter(|r| super::is_cluster(&r.network) && !snap.networks.contains_key(&r.network.id)) {
        if endpoints.iter().any(|e| e.network_id == row.network.id) {
            tracing::warn!("cluster network '{}' is gone from the cluster but has containers here", row.network.name);
            continue;
        }
        work.remove.push(row.clone());
    }
    for network in present {
        let want = snap.peers(&network.id, me);
        let have = installed(db, &network.id)?;
        let add: Vec<Peer> = want.difference(&have).copied().collect();
        let remove: Vec<Peer> = have.difference(&want).copied().collect();
        if !add.is_empty() || !remove.is_empty() {
            work.peers.push((network, add, remove));
        }
    }
    let mine: BTreeSet<&str> = endpoints.iter().map(|e| e.id.as_str()).collect();
    for (network, held) in &snap.addresses {
        for (ip, holder) in held.iter().filter(|(_, h)| h.host == me && !mine.contains(h.endpoint.as_str())) {
            work.leaked.push((network.clone(), *ip, holder.clone()));
        }
    }
    for ep in endpoints.into_iter().filter(|e| e.mac.is_some() && snap.networks.contains_key(&e.network_id)) {
        let held = snap.addresses.get(&ep.network_id);
        if ep.addresses().any(|ip| !held.and_then(|h| h.get(&ip)).is_some_and(|h| h.endpoint == ep.id)) {
            work.unclaimed.push(ep);
        }
    }
    Ok(work)
}

/// Sync with the cluster, if this host is in one: one range read, and nothing else when
/// the host already matches. The revision the host now matches.
pub fn sync(ctx: &mut Ctx) -> Result<i64> {
    let Some(cluster) = super::current()? else { return Ok(0) };
    let snap = Snapshot::read(&mut cluster.etcd())?;
    let revision = snap.revision;
    let (lease, _) = cluster.membership(&snap)?;
    let result = apply_snapshot(ctx, cluster, &snap, lease);
    cluster.remember(snap);
    result.map(|()| revision)
}

fn apply_snapshot(ctx: &mut Ctx, cluster: &Cluster, snap: &Snapshot, lease: i64) -> Result<()> {
    let gw_if = ctx.host_gw_if();
    if work(&ctx.read_state()?.db, snap, cluster, &gw_if)?.is_empty() {
        return Ok(());
    }
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    // Again under the host lock, from a fresh snapshot: a command of this host that claimed
    // an address holds the lock until it commits, so its claim is neither leaked (no endpoint
    // yet) nor missing (endpoint committed after the first read) now.
    let snap = &Snapshot::read(&mut cluster.etcd())?;
    let mut work = work(&state.db, snap, cluster, &gw_if)?;
    reclaim(cluster, &work, lease)?;
    set_link_mtus(ctx, cluster, &mut work.create)?;
    let mut plan = Plan::new();
    for network in &work.create {
        tracing::info!("building this host's side of cluster network {}", network.name);
        let plugin = ctx.plugin(&network.kind, PluginKind::NetworkType)?;
        plan.extend(plugin.plan(&Call::NetworkCreate { network: network.clone() })?);
    }
    for (network, add, remove) in &work.peers {
        let plugin = ctx.plugin(&network.kind, PluginKind::NetworkType)?;
        let call = Call::NetworkPeers { network: network.clone(), add: add.clone(), remove: remove.clone() };
        plan.extend(plugin.plan(&call)?);
    }
    for row in &work.remove {
        tracing::info!("removing this host's side of cluster network {}", row.network.name);
        let plugin = ctx.plugin(&row.network.kind, PluginKind::NetworkType)?;
        plan.extend(plugin.plan(&Call::NetworkRemove { network: row.network.clone() })?);
    }
    let forwarded =
        |ctx: &mut Ctx, kind: &str| ctx.plugin(kind, PluginKind::NetworkType).map(|p| p.network_traits().forwarded);
    let forwarded: Vec<bool> = work.create.iter().map(|n| forwarded(ctx, &n.kind)).collect::<Result<_>>()?;
    apply(ctx, &mut state, session, "cluster sync", &plan, |tx, _| {
        for (network, forwarded) in work.create.iter().zip(&forwarded) {
            // No container DNS on a cluster network yet: each host's resolver would know only
            // its own containers (docs/overlay.md, limits).
            let row = NetworkRow { network: network.clone(), link_kind: None, forwarded: Some(*forwarded), dns: false };
            state::insert_network(tx, &row)?;
            for (subnet, gateway) in [(network.subnet, network.gateway), (network.subnet6, network.gateway6)] {
                if let Some(subnet) = subnet {
                    ipam::init(tx, &network.id, &subnet, &gateway.into_iter().collect::<Vec<_>>())?;
                }
            }
        }
        for (network, add, remove) in &work.peers {
            record_peers(tx, &network.id, add, remove)?;
        }
        for row in &work.remove {
            state::delete_network(tx, &row.network.id)?;
        }
        Ok(())
    })
}

/// Give each network this host is about to build its links' MTU on this host: the one its
/// definition names, else the underlay interface's less what its type's tunnel takes.
fn set_link_mtus(ctx: &mut Ctx, cluster: &Cluster, networks: &mut [Network]) -> Result<()> {
    if networks.is_empty() {
        return Ok(());
    }
    let underlay = cluster.config.address;
    let underlay_mtu = ctx.underlay_mtu(underlay);
    for network in networks {
        let encapsulation = ctx.plugin(&network.kind, PluginKind::NetworkType)?.network_traits().encapsulation;
        let Some(scope) = network.cluster.as_mut() else { continue };
        let largest = underlay_mtu.saturating_sub(super::mtu::overhead(encapsulation, underlay));
        if scope.mtu.is_some_and(|m| encapsulation > 0 && m > largest) {
            tracing::warn!(
                "cluster network '{}' has MTU {} but this host's underlay carries {largest} through its tunnel: large packets will not cross",
                network.name,
                scope.mtu.unwrap_or_default()
            );
        }
        scope.mtu = super::mtu::link_mtu(scope.mtu, encapsulation, underlay, underlay_mtu);
    }
    Ok(())
}

/// The etcd side of a sync: leaked claims given back, missing ones made again.
fn reclaim(cluster: &Cluster, work: &Work, lease: i64) -> Result<()> {
    let mut etcd = cluster.etcd();
    for (network, ip, holder) in &work.leaked {
        tracing::info!("giving back {ip} in cluster network {network}: no endpoint here holds it");
        store::release(&mut etcd, network, *ip, holder)?;
    }
    for ep in &work.unclaimed {
        let holder = Holder {
            endpoint: ep.id.clone(),
            container: ep.container_id.clone(),
            host: cluster.config.address,
            mac: ep.mac.expect("only endpoints with a MAC are cluster endpoints"),
        };
        for ip in ep.addresses() {
            if store::claim(&mut etcd, &ep.network_id, ip, &holder, lease)?.is_err() {
                tracing::error!(
                    "address {ip} of endpoint {} was taken by another host while this one was out of the cluster; disconnect and connect the container again",
                    ep.id
                );
            }
        }
    }
    Ok(())
}

/// Sync, and when etcd cannot be reached say so once and carry on: local networks (and
/// running overlay containers) keep working; commands that change the cluster fail on
/// their own with the same reason.
pub fn sync_or_warn(ctx: &mut Ctx) {
    if let Err(e) = sync(ctx) {
        tracing::warn!("cluster sync skipped: {e:#}");
    }
}

/// What a command does before it runs: sync, unless `kleene serve` watches the cluster for
/// this host already (then the command costs etcd nothing beyond its own changes). Why the
/// sync was skipped, if it was: the caller says so only if the command then succeeds (a
/// command that fails for the same reason says it once, in its own error).
pub fn before_command(ctx: &mut Ctx) -> Option<String> {
    if matches!(super::current(), Ok(Some(c)) if c.watched()) {
        return None;
    }
    sync(ctx).err().map(|e| format!("cluster sync skipped: {e:#}"))
}
