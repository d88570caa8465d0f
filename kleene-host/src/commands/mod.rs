//! One module per command group. Every mutating command validates fully, asks the plugin for
//! a plan, and hands it to the engine (or, with --dry-run, to a renderer).

pub mod adopted;
pub mod attach;
pub mod container;
pub mod docker;
pub mod network;
pub mod output;
pub mod plugin;
pub mod system;

use crate::cli::Global;
use crate::engine;
use crate::executor::{Executor, Fact, Os};
use crate::firewall;
use crate::loader::{Plugin, Registry};
use crate::state::{HostLock, State};
use anyhow::{bail, Result};
use kleene_plugin_api::{DefaultFor, Plan, PluginKind};
use rusqlite::Transaction;
use std::path::PathBuf;

pub struct Ctx {
    pub global: Global,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    registry: Option<Registry>,
    /// Plugins loaded so far: a command asking twice (checks, then planning) loads once.
    loaded: Vec<Plugin>,
    /// The default-route interface, looked up once per command.
    gw_if: std::cell::OnceCell<String>,
    /// A long-lived server's database connection, kept between requests.
    keeper: Option<crate::state::Keeper>,
    /// A long-lived server: slow deletions finish in the background, after the answer.
    reap_in_background: bool,
}

impl Ctx {
    pub fn new(global: Global) -> Ctx {
        let (state_default, run_default) = if cfg!(target_os = "freebsd") {
            ("/var/db/kleene", "/var/run/kleene")
        } else {
            ("/var/lib/kleene", "/run/kleene")
        };
        let state_dir = global.state_dir.clone().unwrap_or_else(|| state_default.into());
        let run_dir = global.run_dir.clone().unwrap_or_else(|| run_default.into());
        let (cluster, address) = (global.cluster.as_deref(), global.cluster_address.as_deref());
        crate::cluster::configure(cluster, address, &run_dir, global.dry_run);
        Ctx {
            global,
            state_dir,
            run_dir,
            registry: None,
            loaded: Vec::new(),
            gw_if: Default::default(),
            keeper: None,
            reap_in_background: false,
        }
    }

    /// A context for a long-lived server, made from this one: same directories and flags,
    /// nothing cached yet; the database connection is kept between requests.
    pub fn detached(&self) -> Ctx {
        Ctx { keeper: Some(Default::default()), reap_in_background: true, ..Ctx::new(self.global.clone()) }
    }

    /// Forget what may change between a server's requests (the default route); loaded plugins
    /// stay loaded.
    pub fn begin_request(&mut self) {
        self.gw_if = Default::default();
    }

    pub fn registry(&mut self) -> &Registry {
        let path = self.global.plugin_path.clone();
        self.registry.get_or_insert_with(|| Registry::discover(path.as_deref()))
    }

    pub fn plugin(&mut self, name: &str, kind: PluginKind) -> Result<Plugin> {
        if let Some(p) = self.loaded.iter().find(|p| p.info.name == name && p.info.kind == kind) {
            return Ok(p.clone());
        }
        let plugin = self.registry().load(name, kind)?;
        self.loaded.push(plugin.clone());
        Ok(plugin)
    }

    /// The plugin of `kind` that declares itself the default for `role`: the host's choice
    /// when the operator names none. Loads every winning candidate until one declares it.
    pub fn default_plugin(&mut self, kind: PluginKind, role: DefaultFor) -> Result<String> {
        let names: Vec<String> =
            self.registry().candidates.iter().filter(|c| c.shadowed_by.is_none()).map(|c| c.name.clone()).collect();
        for name in names {
            let Ok(p) = self.plugin(&name, kind) else { continue };
            if p.info.defaults.contains(&role) {
                return Ok(name);
            }
        }
        let flag = if kind == PluginKind::Driver { "-l/--driver" } else { "-t/--type" };
        bail!("no installed {} plugin is the default here; name one with {flag}", kind.as_str())
    }

    /// The state database, for commands that only read it.
    pub fn read_state(&self) -> Result<State> {
        match &self.keeper {
            Some(keeper) => State::open_kept(&self.state_dir, keeper),
            None => State::open(&self.state_dir),
        }
    }

    /// The state database. Rows from before plugin API 1.1 get their plugins' declarations
    /// recorded on first use (so the firewall can read them without loading plugins).
    pub fn state(&mut self) -> Result<State> {
        let state = self.read_state()?;
        let (drivers, types) = crate::state::undeclared(&state.db)?;
        for driver in drivers {
            match self.plugin(&driver, PluginKind::Driver) {
                Ok(p) => crate::state::record_stack(&state.db, &driver, p.stack())?,
                Err(e) => tracing::warn!("cannot record the stack of driver {driver}: {e:#}"),
            }
        }
        for kind in types {
            match self.plugin(&kind, PluginKind::NetworkType) {
                Ok(p) => crate::state::record_forwarded(&state.db, &kind, p.network_traits().forwarded)?,
                Err(e) => tracing::warn!("cannot record the traits of network type {kind}: {e:#}"),
            }
        }
        Ok(state)
    }

    /// The executor that changes this host (the platform's, from the one factory).
    pub fn executor(&self) -> Result<Box<dyn Executor>> {
        let mut exec = crate::executor::host_executor(self.trusted_run_dir()?)?;
        // Deleting a pair's host end waits for the kernel (15-30 ms, more while an earlier
        // deletion holds its lock): neither a request nor a command waits for it.
        if self.reap_in_background {
            exec.make_namespaces_ahead();
        }
        exec.defer_link_deletion(if self.reap_in_background {
            crate::executor::LinkReaping::BackgroundThread
        } else {
            crate::executor::LinkReaping::RetiredForDetachedProcess
        });
        Ok(exec)
    }

    /// The renderer of `--dry-run` (`--os` picks the platform whose commands it writes).
    pub fn renderer(&self) -> Box<dyn crate::executor::Renderer> {
        self.global.os.unwrap_or_else(Os::current).renderer(&self.run_dir)
    }

    /// The run dir, once it is known that only root (or we) could have put anything in it:
    /// it holds the namespace pins kleene enters and the firewall it believes applied.
    pub fn trusted_run_dir(&self) -> Result<&std::path::Path> {
        crate::trust::ensure_private_dir("run dir", &self.run_dir)?;
        Ok(&self.run_dir)
    }

    /// Begin a mutating command: under --dry-run a session that changes nothing and takes no
    /// lock; otherwise the host lock (after finishing any interrupted rollback) and the
    /// executor.
    pub fn begin(&self, state: &State) -> Result<Session> {
        if self.global.dry_run {
            return Ok(Session::DryRun);
        }
        let mut exec = self.executor()?;
        let lock = engine::lock_and_recover(state, &self.state_dir, exec.as_mut())?;
        Ok(Session::Live { _lock: lock, exec })
    }

    /// The host's default-route interface ("" when there is none or it cannot be known
    /// here): the default NAT interface of new networks. Looked up only when asked.
    pub fn host_gw_if(&self) -> String {
        self.gw_if.get_or_init(|| crate::executor::host_default_route_interface(&self.run_dir)).clone()
    }

    /// The MTU of the interface holding this host's underlay `address`; Ethernet's 1500 when
    /// it cannot be known here (said in the log).
    pub fn underlay_mtu(&self, address: std::net::IpAddr) -> u32 {
        crate::executor::host_address_mtu(&self.run_dir, address).unwrap_or_else(|| {
            let assumed = crate::cluster::mtu::ASSUMED_UNDERLAY_MTU;
            tracing::warn!(
                "no interface here holds the cluster address {address}: assuming it carries {assumed} bytes"
            );
            assumed
        })
    }
}

/// One mutating command's hold on the host: the lock and the executor that changes it, or a
/// dry run that renders instead.
pub enum Session {
    DryRun,
    Live { _lock: HostLock, exec: Box<dyn Executor> },
}

impl Session {
    /// The executor, unless this is a dry run.
    pub fn executor(&mut self) -> Option<&mut dyn Executor> {
        match self {
            Session::DryRun => None,
            Session::Live { exec, .. } => Some(exec.as_mut()),
        }
    }
}

/// Execute `plan` (or render it under --dry-run) and commit through `commit`.
pub fn apply(
    ctx: &Ctx,
    state: &mut State,
    session: Session,
    what: &str,
    plan: &Plan,
    commit: impl FnOnce(&Transaction<'_>, &[Fact]) -> Result<()>,
) -> Result<()> {
    match session {
        Session::DryRun => {
            // The firewall and DNS the change would produce: the new state in a transaction
            // that is rolled back.
            let before = crate::dns::load(&state.db)?;
            let (rules, after) = {
                let tx = state.db.transaction()?;
                commit(&tx, &[])?;
                (firewall::load(&tx)?, crate::dns::load(&tx)?)
            };
            let mut renderer = ctx.renderer();
            // What a jail needs of container DNS: the resolv.conf of a container that starts
            // or whose DNS network changes (docs/dns.md).
            for (id, text) in after.resolv.iter().filter(|(id, text)| before.resolv.get(*id) != Some(*text)) {
                renderer.write_file(&crate::dns::resolv_conf_path(&ctx.run_dir, id), text);
            }
            engine::render(renderer.as_mut(), plan, &rules)
        }
        Session::Live { mut exec, .. } => {
            engine::run(state, exec.as_mut(), what, plan, commit)?;
            // The change is committed: DNS follows it (a failure here is reported, and the
            // next change or `system reconcile` tries again).
            if let Err(e) = sync_dns(state, exec.as_mut(), false) {
                tracing::warn!("container DNS not updated: {e:#}");
            }
            Ok(())
        }
    }
}

/// Bring container DNS (resolver files and process, resolv.conf files) to committed state;
/// returns once the resolver answers by it (`verify_all`: about every network, changed or not).
pub fn sync_dns(state: &State, exec: &mut dyn Executor, verify_all: bool) -> Result<()> {
    let started = std::time::Instant::now();
    exec.apply_dns(&crate::dns::DnsConfig { verify_all, ..crate::dns::load(&state.db)? })?;
    tracing::debug!("container DNS in step with state in {:?}", started.elapsed());
    Ok(())
}

/// Names: what Docker and Kleene accept, so they are safe in every message and file name.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok_first = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok_first || !ok_rest || name.len() > 64 {
        bail!(
            "invalid {what} name '{name}': use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        );
    }
    Ok(())
}
