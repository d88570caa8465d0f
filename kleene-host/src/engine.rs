//! Runs plans: check everything, journal the undo, apply in order, roll back on failure,
//! and commit state only when every step succeeded.
//!
//! Mutating commands hold the [`HostLock`], so what they read before planning stays true
//! until they commit. The journal row (one undo list per step) is committed before the first
//! host change and deleted in the same transaction that commits the new state; before each
//! step it records that the step has started. A row left behind by a crash or `kill -9` is
//! rolled back by the next `kleene` that takes the lock: the undo of every step that started,
//! last first, and of no other (an undo restores what was there before its step, so undoing
//! a step that never ran would break what the steps before it left alone).
//!
//! The firewall is derived from state, not planned: once the commit closure has written the
//! new state into the transaction, the ruleset is computed from the transaction's view and
//! applied through the executor, and only then is the transaction committed. If applying it
//! fails, the transaction is rolled back, the plan's host steps are undone and the ruleset of
//! the state before the change is applied again. A change that touched no row the ruleset
//! reads (the counter of `firewall::inputs` is the one the executor recorded with the rules in
//! place) skips the derivation.

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
    let rows: Vec<(i64, String, String, Option<i64>)> = {
        let mut stmt = state.db.prepare("SELECT id, what, undo, progress FROM journal ORDER BY id DESC")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let interrupted = !rows.is_empty();
    // Every row is checked before any runs: a refused row leaves the host as it was.
    let mut rollbacks = Vec::with_capacity(rows.len());
    for (id, what, undo, progress) in rows {
        let ops = rollback_of(&undo, progress)?;
        state::checked::journal(&state.db, &what, &ops, exec)?;
        rollbacks.push((id, what, ops));
    }
    for (id, what, ops) in rollbacks {
        tracing::warn!("rolling back interrupted operation: {what}");
        undo_all(exec, &ops);
        state.db.prepare_cached("DELETE FROM journal WHERE id = ?1")?.execute([id])?;
    }
    if interrupted {
        exec.forget_firewall();
        restore_firewall(state, exec);
    }
    Ok(lock)
}

/// Apply the ruleset of the committed state (after a failure: errors are only logged).
fn restore_firewall(state: &State, exec: &mut dyn Executor) {
    if let Err(e) = apply_committed_firewall(state, exec) {
        tracing::warn!("restoring the previous firewall rules failed: {e:#}");
    }
}

/// Re-apply the firewall from state (`kleene system reconcile`).
pub fn reapply_firewall(state: &State, exec: &mut dyn Executor) -> Result<()> {
    exec.forget_firewall();
    apply_committed_firewall(state, exec).context("cannot apply the firewall rules")
}

/// Apply the ruleset of committed state (no transaction open) and record its generation.
fn apply_committed_firewall(state: &State, exec: &mut dyn Executor) -> Result<()> {
    let generation = firewall::inputs::generation(&state.db)?;
    exec.apply_firewall(&firewall::load(&state.db)?)?;
    exec.record_firewall_generation(generation);
    Ok(())
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
    in_undo_order(plan.steps[..done].iter().map(|s| &s.undo))
}

/// Per-step undo lists (in step order) as one list in the order it runs: the last step's
/// first, each list as written (a plugin's multi-op undo rebuilds in its own order).
fn in_undo_order<'a>(per_step: impl DoubleEndedIterator<Item = &'a Vec<Op>>) -> Vec<Op> {
    per_step.rev().flatten().cloned().collect()
}

/// The undo of an interrupted operation, as its journal row holds it.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JournalUndo {
    /// One undo list per step, in step order; the row's `progress` counts the steps started.
    PerStep(Vec<Vec<Op>>),
    /// Rows of a kleene before per-step journaling: the whole undo, in the order it runs.
    Flat(Vec<Op>),
}

/// The undo a journal row holds for `plan`: each step's, in step order.
fn journal_undo(plan: &Plan) -> Result<String> {
    let per_step: Vec<&Vec<Op>> = plan.steps.iter().map(|s| &s.undo).collect();
    Ok(serde_json::to_string(&per_step)?)
}

/// What rolls back a journal row: the undo of each step that started, last first.
/// `progress` None (an older row) means every step.
fn rollback_of(undo: &str, progress: Option<i64>) -> Result<Vec<Op>> {
    Ok(match serde_json::from_str(undo).context("corrupt journal entry")? {
        JournalUndo::Flat(ops) => ops,
        JournalUndo::PerStep(steps) => {
            let started = progress.map_or(steps.len(), |p| usize::try_from(p).unwrap_or(0).min(steps.len()));
            in_undo_order(steps[..started].iter())
        }
    })
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
        let undo = journal_undo(plan)?;
        state
            .db
            .prepare_cached("INSERT INTO journal (what, undo, progress) VALUES (?1, ?2, 0)")?
            .execute(params![what, undo])?;
        tracing::trace!("journaled");
        Some(state.db.last_insert_rowid())
    };
    let mut facts = Vec::new();
    let fault = Fault::from_env();
    for (i, step) in plan.steps.iter().enumerate() {
        tracing::debug!(op = ?step.op, "apply");
        let applied = fault.before_step(i).and_then(|()| {
            // Recorded before the step touches the host: a crash inside it undoes it too.
            mark_started(&state.db, journal_id, i + 1)?;
            exec.apply(&step.op)
        });
        match applied {
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
        fault.before_firewall()?;
        // The rules in place were derived at the generation recorded; if the change left the
        // rows they read alone (`firewall::inputs`), they are the new state's too.
        let generation = firewall::inputs::generation(&tx)?;
        let applied = if exec.firewall_generation() == Some(generation) {
            tracing::trace!("firewall inputs unchanged: the rules in place stand");
            None
        } else {
            let rules = firewall::load(&tx)?;
            tracing::trace!("firewall rules derived from the new state");
            firewall_touched = true;
            exec.apply_firewall(&rules).context("cannot update the firewall")?;
            Some(generation)
        };
        forget_journal(&tx, journal_id)?;
        tx.commit()?;
        tracing::trace!("committed");
        Ok(applied)
    });
    match committed {
        // Recorded only once committed: a crash before leaves no record, and the next change
        // derives the rules again.
        Ok(applied) => {
            applied.into_iter().for_each(|g| exec.record_firewall_generation(g));
            Ok(())
        }
        Err(e) => {
            undo_all(exec, &undo_of(plan, plan.steps.len()));
            if firewall_touched {
                restore_firewall(state, exec);
            }
            forget_journal(&state.db, journal_id)?;
            Err(e)
        }
    }
}

/// Record in the journal row that the first `started` steps have started (one small write in
/// WAL mode, no fsync).
fn mark_started(db: &rusqlite::Connection, journal_id: Option<i64>, started: usize) -> Result<()> {
    if let Some(id) = journal_id {
        db.prepare_cached("UPDATE journal SET progress = ?1 WHERE id = ?2")?.execute(params![started as i64, id])?;
    }
    Ok(())
}

fn forget_journal(db: &rusqlite::Connection, journal_id: Option<i64>) -> Result<()> {
    if let Some(id) = journal_id {
        db.prepare_cached("DELETE FROM journal WHERE id = ?1")?.execute([id])?;
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
/// `fail-at:firewall` makes applying the firewall fail and `abort-at:firewall` kills the
/// process there (after every step and `finish` succeeded, before the commit).
struct Fault {
    spec: String,
}

impl Fault {
    fn from_env() -> Fault {
        Fault { spec: std::env::var("KLEENE_FAULT_INJECT").unwrap_or_default() }
    }

    fn before_firewall(&self) -> Result<()> {
        self.at("firewall", "the firewall")
    }

    fn before_step(&self, i: usize) -> Result<()> {
        self.at(&i.to_string(), &format!("step {i}"))
    }

    fn at(&self, point: &str, name: &str) -> Result<()> {
        if self.spec.strip_prefix("abort-at:") == Some(point) {
            std::process::abort();
        }
        if self.spec.strip_prefix("fail-at:") == Some(point) {
            anyhow::bail!("injected fault at {name}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kleene_plugin_api::LinkKind;

    fn link(name: &str) -> Op {
        Op::DeleteLink { name: name.into(), kind: LinkKind::Bridge }
    }

    fn up(name: &str) -> Op {
        Op::SetLinkUp { name: name.into(), sandbox: None }
    }

    #[test]
    fn a_rollback_undoes_only_the_steps_that_started_last_first() {
        let per_step = serde_json::to_string(&[vec![link("a")], vec![link("b"), up("b")], vec![link("c")]]).unwrap();
        assert_eq!(rollback_of(&per_step, Some(0)).unwrap(), vec![]);
        assert_eq!(rollback_of(&per_step, Some(2)).unwrap(), vec![link("b"), up("b"), link("a")]);
        let all = vec![link("c"), link("b"), up("b"), link("a")];
        assert_eq!(rollback_of(&per_step, Some(3)).unwrap(), all);
        assert_eq!(rollback_of(&per_step, Some(9)).unwrap(), all);
        assert_eq!(rollback_of(&per_step, Some(-1)).unwrap(), vec![]);
        // A row without a count (written by hand, or half-migrated): every step.
        assert_eq!(rollback_of(&per_step, None).unwrap(), all);
    }

    #[test]
    fn a_row_of_the_old_flat_format_rolls_back_as_written() {
        let flat = serde_json::to_string(&[link("b"), link("a")]).unwrap();
        assert_eq!(rollback_of(&flat, None).unwrap(), vec![link("b"), link("a")]);
        assert_eq!(rollback_of("[]", None).unwrap(), vec![]);
        assert!(rollback_of("{\"op\": 1}", None).is_err());
    }

    #[test]
    fn the_journal_holds_each_steps_undo_in_step_order() {
        let mut plan = Plan::new();
        plan.push(Op::CreateLink { name: "a".into(), kind: LinkKind::Bridge });
        plan.push_with_undo(up("b"), vec![link("b"), up("c")]);
        let row = journal_undo(&plan).unwrap();
        assert_eq!(rollback_of(&row, Some(2)).unwrap(), undo_of(&plan, 2));
        assert_eq!(rollback_of(&row, Some(1)).unwrap(), undo_of(&plan, 1));
    }
}
