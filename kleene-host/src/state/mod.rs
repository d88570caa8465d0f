//! State: one SQLite database in the state directory (WAL, so readers never wait), plus a
//! lock file that serialises host changes between concurrent `kleene` processes.

pub mod checked;
pub mod docker;
pub mod ipam;
mod records;

pub use records::*;

use anyhow::{Context, Result};
use rusqlite::Connection;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Schema migrations, applied in order; `PRAGMA user_version` counts how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE networks (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, type TEXT NOT NULL, interface TEXT NOT NULL,
    subnet TEXT, subnet6 TEXT, gateway TEXT, gateway_auto INTEGER NOT NULL DEFAULT 0,
    gateway6 TEXT, gateway6_auto INTEGER NOT NULL DEFAULT 0, nat TEXT NOT NULL DEFAULT '',
    icc INTEGER NOT NULL DEFAULT 1, internal INTEGER NOT NULL DEFAULT 0, link_kind TEXT,
    created INTEGER NOT NULL DEFAULT (unixepoch()));
CREATE TABLE containers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, driver TEXT NOT NULL,
    running INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL DEFAULT (unixepoch()));
CREATE TABLE endpoints (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL,
    network_id TEXT NOT NULL REFERENCES networks(id),
    container_id TEXT NOT NULL REFERENCES containers(id),
    epair TEXT, interface TEXT, ip_address TEXT, ip_address6 TEXT,
    UNIQUE (network_id, container_id));
CREATE INDEX endpoints_by_container ON endpoints(container_id, seq);
CREATE TABLE ipam_free (
    network_id TEXT NOT NULL, family INTEGER NOT NULL, start BLOB NOT NULL, end BLOB NOT NULL,
    PRIMARY KEY (network_id, family, start)) WITHOUT ROWID;
CREATE TABLE journal (
    id INTEGER PRIMARY KEY, what TEXT NOT NULL, undo TEXT NOT NULL,
    created INTEGER NOT NULL DEFAULT (unixepoch()));
"#,
    r#"
CREATE TABLE published (
    container_id TEXT NOT NULL REFERENCES containers(id), seq INTEGER NOT NULL, spec TEXT NOT NULL,
    PRIMARY KEY (container_id, seq));
"#,
    // Plugin API 1.1: what the host needs to know of a driver or network type is recorded
    // with the rows, from the plugin's declaration (older rows are filled in on first use).
    r#"
ALTER TABLE containers ADD COLUMN stack TEXT;
ALTER TABLE networks ADD COLUMN forwarded INTEGER;
"#,
    // The configuration a runtime gave at create (the API's `ContainerConfig`), kept as given.
    r#"
ALTER TABLE containers ADD COLUMN config TEXT;
"#,
    // The journal keeps one undo list per step and how many steps have started, so a
    // rollback undoes only what started (rows without `progress` hold one flat undo list).
    r#"
ALTER TABLE journal ADD COLUMN progress INTEGER;
"#,
    // Container DNS: whether a network serves names, and the aliases an endpoint answers to
    // besides its container's name (comma-separated, each a checked DNS name).
    r#"
ALTER TABLE networks ADD COLUMN dns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN aliases TEXT NOT NULL DEFAULT '';
"#,
    // Containers whose sandbox a runtime owns (`runtime` names it; NULL: kleene's own), and
    // how Docker's networks and endpoints map onto kleene's (see `docker.rs`).
    r#"
ALTER TABLE containers ADD COLUMN runtime TEXT;
CREATE TABLE docker_networks (
    docker_id TEXT PRIMARY KEY, network_id TEXT NOT NULL UNIQUE REFERENCES networks(id),
    owned INTEGER NOT NULL);
CREATE TABLE docker_endpoints (
    docker_id TEXT PRIMARY KEY, docker_network TEXT NOT NULL REFERENCES docker_networks(docker_id),
    container_id TEXT NOT NULL REFERENCES containers(id), took_addresses INTEGER NOT NULL);
"#,
    // Cluster-scoped networks (plugin API 1.2): the network's cluster scope, the fixed MAC of
    // an endpoint on one, and the entries this host holds for containers on other hosts.
    r#"
ALTER TABLE networks ADD COLUMN cluster TEXT;
ALTER TABLE endpoints ADD COLUMN mac TEXT;
CREATE TABLE cluster_peers (
    network_id TEXT NOT NULL, address TEXT NOT NULL, mac TEXT NOT NULL, host TEXT NOT NULL,
    PRIMARY KEY (network_id, address)) WITHOUT ROWID;
"#,
    // Container DNS: a network's DNS domain (`--dns-domain`), searched by its containers and
    // qualifying their names in the resolver's files; NULL: none.
    r#"
ALTER TABLE networks ADD COLUMN dns_domain TEXT;
"#,
    // A counter of the rows the firewall is derived from, bumped by triggers: a commit that
    // leaves it as the rules in place were derived at skips the derivation.
    crate::firewall::inputs::SCHEMA,
];

pub struct State {
    pub db: Db,
}

/// Where a long-lived process (`kleene serve`) keeps its database connection between
/// requests: a [`State`] opened through it hands the connection back when dropped, so a
/// request pays no open, trust check or migration check.
///
/// Its connection leaves WAL checkpoints to a thread of the keeper's own: a checkpoint copies
/// the WAL into the database and fsyncs both (one commit in ~10 paid 2-13 ms for it on a busy
/// disk); off the request path, no request waits for it.
#[derive(Clone, Default)]
pub struct Keeper {
    conn: std::sync::Arc<std::sync::Mutex<Option<Connection>>>,
    checkpoints: std::sync::Arc<std::sync::OnceLock<bool>>,
}

impl Keeper {
    fn take(&self) -> Option<Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Checkpoint `dir`'s database from a thread of its own, every 100 ms (started once);
    /// whether that thread runs.
    fn checkpoint_in_background(&self, dir: &Path) -> bool {
        *self.checkpoints.get_or_init(|| {
            let state = match State::open(dir) {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!("no background checkpoints: {e:#}");
                    return false;
                }
            };
            let spawned = std::thread::Builder::new().name("kleene-checkpoint".into()).spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    // PASSIVE: copies what no reader still needs, never waits for anyone.
                    if let Err(e) = state.db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::debug!("background checkpoint: {e}");
                    }
                }
            });
            if let Err(e) = &spawned {
                tracing::warn!("no background checkpoints: {e}");
            }
            spawned.is_ok()
        })
    }
}

/// The database connection of a [`State`] (a `Connection` for every use).
pub struct Db {
    conn: Option<Connection>,
    keeper: Option<Keeper>,
}

impl std::ops::Deref for Db {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Db {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let (Some(keeper), Some(conn)) = (&self.keeper, self.conn.take()) {
            *keeper.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        }
    }
}

impl State {
    /// The state in `dir` through `keeper`'s connection if it holds one (opened, checked and
    /// migrated by an earlier call), else opened now and kept when dropped.
    pub fn open_kept(dir: &Path, keeper: &Keeper) -> Result<State> {
        let mut state = match keeper.take() {
            Some(conn) => State { db: Db { conn: Some(conn), keeper: None } },
            None => {
                let state = State::open(dir)?;
                if keeper.checkpoint_in_background(dir) {
                    state.db.pragma_update(None, "wal_autocheckpoint", 0)?;
                }
                state
            }
        };
        state.db.keeper = Some(keeper.clone());
        Ok(state)
    }

    pub fn open(dir: &Path) -> Result<State> {
        // Whoever can write the database decides what kleene, as root, does next.
        crate::trust::ensure_private_dir("state dir", dir)?;
        let path = dir.join("kleene.db");
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            crate::trust::check_owner_and_mode(&path, &meta)
                .map_err(|why| anyhow::anyhow!("state dir {}: refusing to use it: {why}", dir.display()))?;
        }
        let db = Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        db.busy_timeout(std::time::Duration::from_secs(30))?;
        // Every statement kleene runs stays prepared (rusqlite keeps 16 by default, fewer than
        // one command uses): a server's kept connection then parses no SQL after warming up.
        db.set_prepared_statement_cache_capacity(256);
        enable_wal(&db)?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        // Each kleene is a short process. A checkpoint at every close costs two fsyncs; without
        // it the next process must re-read the WAL to rebuild its index, so keep the WAL short
        // instead: checkpoint as it passes 64 pages, never at close.
        db.pragma_update(None, "wal_autocheckpoint", 64)?;
        db.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        migrate(&db)?;
        Ok(State { db: Db { conn: Some(db), keeper: None } })
    }
}

/// Switch a database to WAL once. The switch needs an exclusive lock and SQLite does not wait
/// for it (no busy handler), so kleenes racing on a fresh database retry for a while.
fn enable_wal(db: &Connection) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mode: String = db.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if mode.eq_ignore_ascii_case("wal") {
            return Ok(());
        }
        match db.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return Ok(other?),
        }
    }
}

fn migrate(db: &Connection) -> Result<()> {
    let done: usize = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if done >= MIGRATIONS.len() {
        return Ok(());
    }
    // IMMEDIATE: two processes racing on a fresh database must not both migrate.
    db.execute_batch("BEGIN IMMEDIATE")?;
    let done: usize = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for sql in &MIGRATIONS[done.min(MIGRATIONS.len())..] {
        db.execute_batch(sql)?;
    }
    db.pragma_update(None, "user_version", MIGRATIONS.len())?;
    db.execute_batch("COMMIT")?;
    Ok(())
}

/// A database of the current schema in memory, for tests of what reads and writes it.
#[cfg(test)]
pub fn in_memory() -> Connection {
    let db = Connection::open_in_memory().expect("an in-memory database");
    db.pragma_update(None, "foreign_keys", "ON").expect("foreign keys on");
    migrate(&db).expect("migrations apply");
    db
}

/// An exclusive lock on host changes, held until dropped.
pub struct HostLock {
    _file: File,
}

impl HostLock {
    pub fn acquire(dir: &Path) -> Result<HostLock> {
        std::fs::create_dir_all(dir)?;
        let file = File::options().create(true).truncate(false).write(true).open(dir.join("lock"))?;
        // SAFETY: flock on a valid fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot lock the state dir");
        }
        Ok(HostLock { _file: file })
    }
}

/// A fresh 12-hex-digit id, never all digits.
pub fn new_id() -> String {
    new_id_from(&mut |bytes| {
        // SAFETY: getrandom writes at most `len` bytes into the buffer.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        assert_eq!(n, 6, "getrandom failed");
    })
}

/// A 12-hex-digit id from `random` (which fills its buffer with random bytes), drawn again
/// while it is all digits: jail(8), jexec and `jail -r` read such a name as a jail number
/// (jid), so the kernel would refuse it as a name. kleened re-rolls those ids too; about
/// 0.36 % of ids are affected. Every id (networks, containers, endpoints) comes from here.
pub fn new_id_from(random: &mut dyn FnMut(&mut [u8; 6])) -> String {
    loop {
        let mut bytes = [0u8; 6];
        random(&mut bytes);
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if !id.bytes().all(|b| b.is_ascii_digit()) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_digit_ids_are_drawn_again() {
        let mut draws =
            [[0x12, 0x34, 0x56, 0x78, 0x90, 0x12], [0x00; 6], [0x0a, 0x00, 0x00, 0x00, 0x00, 0x01]].into_iter();
        let id = new_id_from(&mut |b| *b = draws.next().expect("drawn at most three times"));
        assert_eq!(id, "0a0000000001");
        assert_eq!(draws.next(), None, "both all-digit ids were refused");
    }

    #[test]
    fn random_ids_are_twelve_hex_digits_and_never_all_digits() {
        for _ in 0..2000 {
            let id = new_id();
            assert!(id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            assert!(!id.bytes().all(|b| b.is_ascii_digit()), "{id}");
        }
    }
}
