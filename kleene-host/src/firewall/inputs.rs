//! Which rows the Linux ruleset is derived from, as a counter SQLite keeps itself.
//!
//! Every commit used to derive the firewall from every network and endpoint and compare it with
//! the table loaded: one join over all endpoints per change, so each change cost more than the
//! last. Most changes cannot alter the ruleset: a vnet container's endpoint (a private stack,
//! no published port) is read by no part of the nft table ([`super::nft`]: container address
//! sets hold only addresses the host itself holds, redirects only published ports), so
//! creating, connecting, starting and stopping such containers leaves it as it was.
//!
//! So the database keeps `firewall_inputs.generation`, bumped by triggers in the transaction of
//! any change to a row the nft ruleset reads ([`SCHEMA`]). The executor records the generation
//! whose rules it loaded (Linux: a file in the run dir, which a reboot empties with the
//! kernel's table); a commit whose generation is the one recorded has nothing to derive. The
//! record is dropped before any load and written only after the commit, so a crash in
//! between leaves no record, and the next change derives and loads again.
//!
//! What the triggers follow, against what `load` reads and the nft renderer uses:
//! - `networks`, `published`: every row, every column (all of it is rendered).
//! - `endpoints`: rows *read by the ruleset*: of a container whose stack is not `private`
//!   (its addresses are the host's own: `containers4/6`, `self4/6`), or that publishes ports
//!   (redirects), or whose stack is not yet recorded (rows before API 1.1). Of those, new and
//!   deleted rows and changes to `network_id`, `container_id`, `ip_address`, `ip_address6`;
//!   the host end's name (`epair`) is only in pf's anchor, aliases only in DNS.
//! - `containers`: `stack`, `name` (redirect comments) and `running` (redirects) of a
//!   container with such an endpoint. A new container has no endpoint yet; a removed one has
//!   lost its endpoints and ports first (both followed).
//!
//! pf's anchor also lists the host end of every running pair, which the counter does not
//! follow: the FreeBSD executor keeps no record (the trait's default `firewall_generation`)
//! and renders every change. The counter is schema ([`SCHEMA`] is a migration): if the nft
//! renderer comes to read another row, a new migration must replace the triggers; the test
//! below, which fails whenever the table changes while the counter stands still, is where
//! to show such a change is followed.

use anyhow::Result;
use rusqlite::Connection;

/// Whether the endpoints of container `$ID` are read by the nft ruleset (see the module doc).
macro_rules! read_by_ruleset {
    ($id:literal) => {
        concat!(
            "((SELECT stack FROM containers WHERE id = ",
            $id,
            ") IS NOT 'private' OR EXISTS (SELECT 1 FROM published WHERE container_id = ",
            $id,
            "))"
        )
    };
}

/// Bumps the counter.
macro_rules! bump {
    () => {
        " BEGIN UPDATE firewall_inputs SET generation = generation + 1; END;\n"
    };
}

/// The counter and its triggers (migration 9 of `state`; never edited once released).
pub const SCHEMA: &str = concat!(
    "CREATE TABLE firewall_inputs (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL);\n",
    "INSERT INTO firewall_inputs (id, generation) VALUES (1, 0);\n",
    "CREATE TRIGGER firewall_networks_insert AFTER INSERT ON networks",
    bump!(),
    "CREATE TRIGGER firewall_networks_update AFTER UPDATE ON networks",
    bump!(),
    "CREATE TRIGGER firewall_networks_delete AFTER DELETE ON networks",
    bump!(),
    "CREATE TRIGGER firewall_published_insert AFTER INSERT ON published",
    bump!(),
    "CREATE TRIGGER firewall_published_update AFTER UPDATE ON published",
    bump!(),
    "CREATE TRIGGER firewall_published_delete AFTER DELETE ON published",
    bump!(),
    "CREATE TRIGGER firewall_endpoints_insert AFTER INSERT ON endpoints WHEN ",
    read_by_ruleset!("NEW.container_id"),
    bump!(),
    "CREATE TRIGGER firewall_endpoints_delete AFTER DELETE ON endpoints WHEN ",
    read_by_ruleset!("OLD.container_id"),
    bump!(),
    "CREATE TRIGGER firewall_endpoints_update AFTER UPDATE OF network_id, container_id, ip_address, ip_address6 ",
    "ON endpoints WHEN ",
    read_by_ruleset!("OLD.container_id"),
    " OR ",
    read_by_ruleset!("NEW.container_id"),
    bump!(),
    "CREATE TRIGGER firewall_containers_update AFTER UPDATE OF stack, name, running ON containers ",
    "WHEN (OLD.stack IS NOT 'private' OR NEW.stack IS NOT 'private' ",
    "OR EXISTS (SELECT 1 FROM published WHERE container_id = NEW.id)) ",
    "AND EXISTS (SELECT 1 FROM endpoints WHERE container_id = NEW.id)",
    bump!(),
);

/// The generation of the firewall inputs `db` (a connection or an open transaction) holds.
pub fn generation(db: &Connection) -> Result<i64> {
    Ok(db.prepare_cached("SELECT generation FROM firewall_inputs WHERE id = 1")?.query_row([], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{load, nft};
    use crate::state;
    use kleene_plugin_api::{Container, Endpoint, Network, Stack};

    /// The counter and the nft table after each change: whenever the counter stands still,
    /// the table must be the one derived before (else a commit would skip a needed load).
    struct Watch<'a> {
        db: &'a Connection,
        generation: i64,
        table: nft::table::Table,
    }

    impl Watch<'_> {
        fn now(db: &Connection) -> (i64, nft::table::Table) {
            (generation(db).unwrap(), nft::table(&load(db).unwrap()))
        }

        /// After `what`: the counter moved iff `moves`, and a counter that did not move means
        /// an unchanged table.
        fn after(&mut self, what: &str, moves: bool) {
            let (generation, table) = Self::now(self.db);
            if generation == self.generation {
                assert_eq!(table, self.table, "{what}: the table changed but the counter did not");
            }
            assert_eq!(generation != self.generation, moves, "{what}: the counter moved: {}", !moves);
            (self.generation, self.table) = (generation, table);
        }
    }

    fn container(db: &Connection, id: &str, stack: Stack, publish: &[&str]) {
        let c = Container { id: id.into(), name: format!("n{id}"), driver: "d".into(), running: false };
        state::insert_container(db, &c, stack).unwrap();
        state::insert_published(db, id, &publish.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    }

    fn endpoint(db: &Connection, id: &str, container: &str, ip: &str) -> Endpoint {
        let e = Endpoint {
            id: id.into(),
            network_id: "aaaaaaaaaaaa".into(),
            container_id: container.into(),
            epair: None,
            interface: None,
            ip_address: Some(ip.parse().unwrap()),
            ip_address6: None,
            mac: None,
        };
        state::insert_endpoint(db, &e).unwrap();
        e
    }

    #[test]
    fn the_counter_moves_with_every_change_the_nft_table_reads_and_only_then() {
        let db = state::in_memory();
        let (generation, table) = Watch::now(&db);
        let mut w = Watch { db: &db, generation, table };
        let mut net = Network::new("aaaaaaaaaaaa", "a", "bridge", "kleene0");
        net.subnet = Some("10.0.0.0/24".parse().unwrap());
        net.gateway = Some("10.0.0.1".parse().unwrap());
        net.gateway_auto = true;
        let row = state::NetworkRow { network: net, link_kind: None, forwarded: Some(true), dns: false };
        state::insert_network(&db, &row).unwrap();
        w.after("a network", true);

        // A vnet container's life: read by no part of the table.
        container(&db, "c00000000001", Stack::Private, &[]);
        w.after("a private container", false);
        let mut e1 = endpoint(&db, "e00000000001", "c00000000001", "10.0.0.2");
        w.after("its endpoint", false);
        state::set_running(&db, "c00000000001", true).unwrap();
        (e1.epair, e1.interface) = (Some("kv1".into()), Some("eth0".into()));
        state::update_endpoint_links(&db, &e1).unwrap();
        state::set_endpoint_aliases(&db, "e00000000001", &["web".into()]).unwrap();
        w.after("its start", false);

        // A restricted stack's address is the host's own: in `containers4`.
        container(&db, "c00000000002", Stack::Restricted, &[]);
        w.after("a restricted container", false);
        endpoint(&db, "e00000000002", "c00000000002", "10.0.0.3");
        w.after("its endpoint", true);
        state::set_running(&db, "c00000000002", true).unwrap();
        w.after("its start", true);

        // A private container that publishes: its redirect follows `running`.
        container(&db, "c00000000003", Stack::Private, &["8080:80"]);
        w.after("a publishing private container", true);
        let mut e3 = endpoint(&db, "e00000000003", "c00000000003", "10.0.0.4");
        w.after("its endpoint", true);
        state::set_running(&db, "c00000000003", true).unwrap();
        w.after("its start", true);
        e3.epair = Some("kv3".into());
        state::update_endpoint_links(&db, &e3).unwrap();
        w.after("its host end's name", false);
        db.execute("UPDATE containers SET name = 'renamed' WHERE id = 'c00000000003'", []).unwrap();
        w.after("its name (in the redirect's comment)", true);
        state::set_running(&db, "c00000000003", false).unwrap();
        w.after("its stop", true);
        state::delete_endpoint(&db, "e00000000003").unwrap();
        w.after("its endpoint removed", true);
        state::delete_container(&db, "c00000000003").unwrap();
        w.after("its removal (ports)", true);

        // A row from before API 1.1 (no stack recorded) counts as read, and so does filling it.
        db.execute("UPDATE containers SET stack = NULL WHERE id = 'c00000000001'", []).unwrap();
        w.after("a stack forgotten", true);
        state::record_stack(&db, "d", Stack::Private).unwrap();
        w.after("a stack recorded", true);

        state::set_running(&db, "c00000000001", false).unwrap();
        state::delete_endpoint(&db, "e00000000001").unwrap();
        state::delete_container(&db, "c00000000001").unwrap();
        w.after("the vnet container stopped and removed", false);
        db.execute("UPDATE networks SET icc = 0", []).unwrap();
        w.after("a network's icc", true);
        state::delete_endpoint(&db, "e00000000002").unwrap();
        w.after("the restricted endpoint removed", true);
        state::delete_container(&db, "c00000000002").unwrap();
        state::delete_network(&db, "aaaaaaaaaaaa").unwrap();
        w.after("the network removed", true);
    }
}
