//! `kleene system ...`: host-wide maintenance.

use super::container::{record_start, start_plan, stop_plan};
use super::{Ctx, Session};
use crate::engine;
use crate::executor::Executor;
use crate::firewall;
use crate::state::{self, State};
use anyhow::{Context, Result};
use kleene_plugin_api::{Call, PluginKind};

/// Finish any interrupted operation, then bring the host back to what state says: networks
/// whose interface is gone and running containers whose sandbox is gone (a reboot empties
/// both) are built again, and the firewall is re-applied (after, say, `nft flush ruleset`).
/// Under --dry-run, print the ruleset instead.
pub fn reconcile(ctx: &mut Ctx) -> Result<()> {
    let mut state = ctx.state()?;
    match ctx.begin(&state)? {
        Session::DryRun => {
            let rules = firewall::load(&state.db)?;
            return engine::render(ctx.renderer().as_mut(), &kleene_plugin_api::Plan::new(), &rules);
        }
        Session::Live { mut exec, .. } => {
            exec.delete_retired_links()?;
            restore_networks(ctx, &mut state, exec.as_mut())?;
            restore_containers(ctx, &mut state, exec.as_mut())?;
            engine::reapply_firewall(&state, exec.as_mut())?;
            // Restarts a resolver that died, and rewrites what someone changed.
            super::sync_dns(&state, exec.as_mut(), true)?;
        }
    }
    // With the host lock released: a rebuilt tunnel device of a cluster network gets its
    // entries for the containers on other hosts back.
    crate::cluster::sync::sync_or_warn(ctx);
    Ok(())
}

/// Re-create the interfaces of networks that lost them. A plan whose checks fail (the link
/// is there; a custom interface is missing) is left alone: nothing to rebuild, or not ours.
fn restore_networks(ctx: &mut Ctx, state: &mut State, exec: &mut dyn Executor) -> Result<()> {
    for row in state::networks(&state.db)? {
        let network = row.network;
        let plugin = ctx.plugin(&network.kind, PluginKind::NetworkType)?;
        let plan = plugin.plan(&Call::NetworkCreate { network: network.clone() })?;
        if plan.steps.is_empty() || plan.checks.iter().any(|c| exec.check(c).is_err()) {
            continue;
        }
        tracing::info!("re-creating the interface of network {}", network.name);
        let what = format!("reconcile network {}", network.name);
        // A cluster network's rebuilt tunnel holds no entries yet: forget them, the next sync
        // installs them again.
        engine::run(state, exec, &what, &plan, |tx, _| crate::cluster::sync::forget_entries(tx, &network.id))
            .with_context(|| format!("cannot restore network {}", network.name))?;
    }
    Ok(())
}

/// Start again the running containers whose sandbox is gone or partly gone. What is left of
/// a partial one is torn down first (teardown of what is missing counts as done).
fn restore_containers(ctx: &mut Ctx, state: &mut State, exec: &mut dyn Executor) -> Result<()> {
    for c in state::containers(&state.db)?.into_iter().filter(|c| c.running) {
        // A runtime's sandbox (Docker's) is the runtime's to rebuild, not kleene's.
        if state::docker::runtime_of(&state.db, &c.id)?.is_some() {
            continue;
        }
        let (plan, attachments) = start_plan(ctx, state, &c)?;
        let stack = ctx.plugin(&c.driver, PluginKind::Driver)?.stack();
        if exec.sandbox_intact(&c.id, stack)? {
            continue;
        }
        if super::adopted::is_adopted(state, &c.id)? {
            tracing::warn!("container {} lost its runtime's namespace: the runtime's DEL (or GC) releases it", c.name);
            continue;
        }
        tracing::info!("rebuilding the sandbox of container {}", c.name);
        let leftovers = stop_plan(ctx, state, &c)?;
        engine::run(state, exec, &format!("reconcile: clear container {}", c.name), &leftovers, |_, _| Ok(()))
            .with_context(|| format!("cannot clear what is left of container {}", c.name))?;
        let what = format!("reconcile container {}", c.name);
        engine::run(state, exec, &what, &plan, |tx, _| record_start(tx, &c, &attachments))
            .with_context(|| format!("cannot restore container {}", c.name))?;
    }
    Ok(())
}
