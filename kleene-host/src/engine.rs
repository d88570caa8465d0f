//! Runs plans: check everything, journal the undo, apply in order, roll back on failure,
//! and commit state only when every step succeeded.
//!
//! Mutating commands hold the [`HostLock`], so what they read before planning stays true
//! until they commit. The journal row is committed before the first host change and deleted
//! in the same transaction that commits the new state; a row left behind by a crash or
//! `kill -9` is rolled back by the next `kleene` that takes the lock.
//!
//! The firewall is derived from state, not planned: once the commit closure has written the
//! new state into the transaction, the ruleset is computed from the transaction's view and
//! applied through the executor, and only then is the transaction committed. If applying it
//! fails, the transaction is rolled back, the plan's host steps are undone and the ruleset of
//! the state before the change is applied again.

use crate::executor::{Executor, Fact, Renderer};
use crate::firewall::{self, Ruleset};
use crate::state::{self, HostLock, State};
use anyhow::{Context, Result};
use kleene_plugin_api::{Op, Plan};
use rusqlite::{params, Transaction};
use std::path::Path;

/// Take the host lock and finish any rollback a crashed run left behind (and, if there was
/// one, put the firewall back to what state says: the crash may have come after it changed).
pub fn lock_and_recover(state: &State, state_dir: &Path, exec: &mut dyn Executor) -> Result<HostLock> {
    let lock = HostLock::acquire(state_dir)?;
    let rows: Vec<(i64, String, String)> = {
        let mut stmt = state.db.prepare("SELECT id, what, undo FROM journal ORDER BY id DESC")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let interrupted = !rows.is_empty();
    // Every row is checked before any runs: a refused row leaves the host as it was.
    let mut rollbacks = Vec::with_capacity(rows.len());
    for (id, what, undo) in rows {
        let ops: Vec<Op> = serde_json::from_str(&undo).context("corrupt journal entry")?;
        state::checked::journal(&state.db, &what, &ops, exec)?;
        rollbacks.push((id, what, ops));
    }
    for (id, what, ops) in rollbacks {
        tracing::warn!("rolling back interrupted operation: {what}");
        undo_all(exec, &ops);
        state.db.execute("DELETE FROM journal WHERE id = ?1", [id])?;
    }
    if interrupted {
        exec.forget_firewall();
        restore_firewall(state, exec);
    }
    Ok(lock)
}

/// Apply the ruleset of the committed state (after a failure: errors are only logged).
fn restore_firewall(state: &State, exec: &mut dyn Executor) {
    let restored = firewall::load(&state.db).and_then(|r| exec.apply_firewall(&r));
    if let Err(e) = restored {
        tracing::warn!("restoring the previous firewall rules failed: {e:#}");
    }
}

/// Re-apply the firewall from state (`kleene system reconcile`).
pub fn reapply_firewall(state: &State, exec: &mut dyn Executor) -> Result<()> {
    exec.forget_firewall();
    let rules = firewall::load(&state.db)?;
    exec.apply_firewall(&rules).context("cannot apply the firewall rules")
}

fn undo_all(exec: &mut dyn Executor, ops: &[Op]) {
    for op in ops {
        if let Err(e) = exec.undo(op) {
            tracing::warn!("undo of {} failed: {e:#}", op.name());
        }
    }
    if let Err(e) = exec.finish() {
        tracing::warn!("finishing rollback failed: {e:#}");
    }
}

/// The undo operations of `plan`'s first `done` steps, in the order they must run.
fn undo_of(plan: &Plan, done: usize) -> Vec<Op> {
    plan.steps[..done].iter().rev().flat_map(|s| s.undo.iter().cloned()).collect()
}

/// Execute `plan`, then run `commit`, apply the firewall of the new state and delete the
/// journal row, committing the transaction only when all of that succeeded.
pub fn run(
    state: &mut State,
    exec: &mut dyn Executor,
    what: &str,
    plan: &Plan,
    commit: impl FnOnce(&Transaction<'_>, &[Fact]) -> Result<()>,
) -> Result<()> {
    for check in &plan.checks {
        exec.check(check)?;
    }
    // A plan without steps changes nothing on the host: nothing to journal or roll back.
    let journal_id = if plan.steps.is_empty() {
        None
    } else {
        let undo = serde_json::to_string(&undo_of(plan, plan.steps.len()))?;
        state.db.execute("INSERT INTO journal (what, undo) VALUES (?1, ?2)", params![what, undo])?;
        tracing::trace!("journaled");
        Some(state.db.last_insert_rowid())
    };
    let mut facts = Vec::new();
    let fault = Fault::from_env();
    for (i, step) in plan.steps.iter().enumerate() {
        tracing::debug!(op = ?step.op, "apply");
        match fault.before_step(i).and_then(|()| exec.apply(&step.op)) {
            Ok(f) => facts.extend(f),
            Err(e) => {
                undo_all(exec, &undo_of(plan, i));
                forget_journal(&state.db, journal_id)?;
                return Err(e);
            }
        }
    }
    let finished = exec.finish();
    let mut firewall_touched = false;
    let committed = finished.and_then(|()| {
        let tx = state.db.transaction()?;
        commit(&tx, &facts)?;
        let rules = firewall::load(&tx)?;
        tracing::trace!("firewall rules derived from the new state");
        firewall_touched = true;
        fault.before_firewall()?;
        exec.apply_firewall(&rules).context("cannot update the firewall")?;
        forget_journal(&tx, journal_id)?;
        tx.commit()?;
        tracing::trace!("committed");
        Ok(())
    });
    if let Err(e) = committed {
        undo_all(exec, &undo_of(plan, plan.steps.len()));
        if firewall_touched {
            restore_firewall(state, exec);
        }
        forget_journal(&state.db, journal_id)?;
        return Err(e);
    }
    Ok(())
}

fn forget_journal(db: &rusqlite::Connection, journal_id: Option<i64>) -> Result<()> {
    if let Some(id) = journal_id {
        db.execute("DELETE FROM journal WHERE id = ?1", [id])?;
    }
    Ok(())
}

/// Print what `plan` would do, as `exec` renders it, then the firewall the change would
/// produce (`rules`), and change nothing. The plan's checks run first, as in a real run (a
/// renderer for another host writes them into its output instead).
pub fn render(exec: &mut dyn Renderer, plan: &Plan, rules: &Ruleset) -> Result<()> {
    for check in &plan.checks {
        exec.check(check)?;
    }
    for step in &plan.steps {
        exec.apply_step(&step.op, &step.undo)?;
    }
    exec.finish()?;
    exec.apply_firewall(rules)?;
    for line in exec.script() {
        println!("{line}");
    }
    Ok(())
}

/// Fault injection for crash and rollback tests: `KLEENE_FAULT_INJECT=fail-at:N` makes step N
/// (0-based) fail; `abort-at:N` kills the process there, as a crash or `kill -9` would.
/// `fail-at:firewall` makes applying the firewall fail (after every step succeeded).
struct Fault {
    action: Option<(bool, usize)>,
}

impl Fault {
    fn from_env() -> Fault {
        let spec = std::env::var("KLEENE_FAULT_INJECT").unwrap_or_default();
        let parse = |prefix: &str| spec.strip_prefix(prefix).and_then(|n| n.parse().ok());
        let action = parse("fail-at:").map(|n| (false, n)).or_else(|| parse("abort-at:").map(|n| (true, n)));
        Fault { action }
    }

    fn before_firewall(&self) -> Result<()> {
        if std::env::var("KLEENE_FAULT_INJECT").is_ok_and(|s| s == "fail-at:firewall") {
            anyhow::bail!("injected fault at the firewall");
        }
        Ok(())
    }

    fn before_step(&self, i: usize) -> Result<()> {
        match self.action {
            Some((true, n)) if n == i => std::process::abort(),
            Some((false, n)) if n == i => anyhow::bail!("injected fault at step {i}"),
            _ => Ok(()),
        }
    }
}
