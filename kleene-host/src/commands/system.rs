//! `kleene system ...`: host-wide maintenance.

use super::Ctx;
use crate::engine;
use crate::executor::Os;
use crate::firewall;
use anyhow::Result;

/// Finish any interrupted operation, then re-apply what state says the host should have: the
/// firewall (after, say, `nft flush ruleset`). Under --dry-run, print the ruleset instead.
pub fn reconcile(ctx: &Ctx) -> Result<()> {
    let state = ctx.state()?;
    let gw = ctx.host_gw_if();
    match ctx.begin(&state)? {
        None => {
            let rules = firewall::load(&state.db, &gw)?;
            let mut renderer = ctx.global.os.unwrap_or_else(Os::current).renderer();
            engine::render(renderer.as_mut(), &kleene_plugin_api::Plan::new(), &rules)
        }
        Some((_lock, mut exec)) => engine::reapply_firewall(&state, exec.as_mut(), &gw),
    }
}
