//! One module per command group. Every mutating command validates fully, asks the plugin for
//! a plan, and hands it to the engine (or, with --dry-run, to a renderer).

pub mod attach;
pub mod container;
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
use kleene_plugin_api::{Plan, PluginKind};
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
        Ctx { global, state_dir, run_dir, registry: None, loaded: Vec::new(), gw_if: Default::default() }
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

    pub fn state(&self) -> Result<State> {
        State::open(&self.state_dir)
    }

    /// The executor that changes this host.
    pub fn executor(&self) -> Result<Box<dyn Executor>> {
        #[cfg(target_os = "linux")]
        {
            Ok(Box::new(crate::executor::linux::LinuxExecutor::new(&self.run_dir)))
        }
        #[cfg(not(target_os = "linux"))]
        {
            bail!("this build of kleene only renders plans here: use --dry-run")
        }
    }

    /// Begin a mutating command: the host lock, after finishing any interrupted rollback.
    /// Returns None under --dry-run, which changes nothing and takes no lock.
    pub fn begin(&self, state: &State) -> Result<Option<(HostLock, Box<dyn Executor>)>> {
        if self.global.dry_run {
            return Ok(None);
        }
        let mut exec = self.executor()?;
        let lock = engine::lock_and_recover(state, &self.state_dir, exec.as_mut(), &self.host_gw_if())?;
        Ok(Some((lock, exec)))
    }

    /// The host's default-route interface ("" when there is none or it cannot be known here):
    /// the default NAT interface of new networks, and pf's `kleenet_host_gw_if`.
    pub fn host_gw_if(&self) -> String {
        self.gw_if.get_or_init(|| crate::executor::host_default_route_interface(&self.run_dir)).clone()
    }
}

/// Execute `plan` (or render it under --dry-run) and commit through `commit`.
pub fn apply(
    ctx: &Ctx,
    state: &mut State,
    session: Option<(HostLock, Box<dyn Executor>)>,
    what: &str,
    plan: &Plan,
    commit: impl FnOnce(&Transaction<'_>, &[Fact]) -> Result<()>,
) -> Result<()> {
    let gw = ctx.host_gw_if();
    match session {
        None => {
            // The firewall the change would produce: the new state in a transaction that is
            // rolled back.
            let rules = {
                let tx = state.db.transaction()?;
                commit(&tx, &[])?;
                firewall::load(&tx, &gw)?
            };
            let mut renderer = ctx.global.os.unwrap_or_else(Os::current).renderer(&ctx.run_dir);
            engine::render(renderer.as_mut(), plan, &rules)
        }
        Some((_lock, mut exec)) => engine::run(state, exec.as_mut(), what, plan, &gw, commit),
    }
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
