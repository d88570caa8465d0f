//! Everything read back from the database is checked before it can touch the host. The state
//! dir is root's (see `crate::trust`), but a database copied in, restored or edited by hand
//! must not make kleene, as root, delete files outside its run dir, kill an unrelated cgroup
//! or remove a host interface: ids are exactly what kleene makes, names exactly what its
//! commands accept, and an interrupted operation's undo list names only containers and
//! interfaces that are kleene's.

use super::NetworkRow;
use crate::commands::network::{parse_subnet, validate_interface};
use crate::commands::validate_name;
use crate::executor::Executor;
use anyhow::{bail, Result};
use kleene_plugin_api::{Cidr, Container, Endpoint, Network, Op};
use rusqlite::Connection;
use std::collections::HashSet;
use std::net::IpAddr;

/// The fix named by every refusal: kleene cannot tell which row is the lie.
pub(crate) const FIX: &str = "the state database was altered outside kleene: restore it from a backup";

/// An id as [`super::new_id`] makes them: 12 lowercase hex digits (safe in any path).
pub fn is_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn id(what: &str, id: &str) -> Result<()> {
    if !is_id(id) {
        bail!("refusing the state database: {what} id '{}' is not 12 lowercase hex digits; {FIX}", id.escape_debug());
    }
    Ok(())
}

fn name(what: &str, name: &str) -> Result<()> {
    validate_name(what, name).map_err(|e| anyhow::anyhow!("refusing the state database: {e}; {FIX}"))
}

fn interface(name: &str) -> Result<()> {
    validate_interface(name).map_err(|e| anyhow::anyhow!("refusing the state database: {e}; {FIX}"))
}

pub fn network(row: &NetworkRow) -> Result<()> {
    let n = &row.network;
    id("network", &n.id)?;
    name("network", &n.name)?;
    interface(&n.interface)?;
    if !n.nat.is_empty() {
        interface(&n.nat)?;
    }
    for (field, subnet, gateway, v4) in
        [("subnet", n.subnet, n.gateway, true), ("subnet6", n.subnet6, n.gateway6, false)]
    {
        if let Some(s) = subnet {
            parse_subnet(field, Some(&s.to_string()), v4)
                .map_err(|e| anyhow::anyhow!("refusing the state database: network {}: {e}; {FIX}", n.name))?;
        }
        if let Some(gw) = gateway {
            address_in(&format!("network {}: gateway", n.name), gw, subnet)?;
        }
    }
    Ok(())
}

/// `ip` (named by `what`) lies in `subnet`.
pub fn address_in(what: &str, ip: IpAddr, subnet: Option<Cidr>) -> Result<()> {
    if !subnet.is_some_and(|s| s.contains(ip)) {
        let subnet = subnet.map_or("no subnet of its family".to_string(), |s| s.to_string());
        bail!("refusing the state database: {what} {ip} is outside {subnet}; {FIX}");
    }
    Ok(())
}

/// An endpoint's addresses lie in its network's subnets (they become addresses on the host
/// for some drivers).
pub fn endpoint_on(e: &Endpoint, n: &Network) -> Result<()> {
    let what = format!("the address of a container on network {}:", n.name);
    e.ip_address.iter().try_for_each(|&ip| address_in(&what, ip, n.subnet))?;
    e.ip_address6.iter().try_for_each(|&ip| address_in(&what, ip, n.subnet6))
}

pub fn container(c: &Container) -> Result<()> {
    id("container", &c.id)?;
    name("container", &c.name)
}

pub fn endpoint(e: &Endpoint) -> Result<()> {
    id("endpoint", &e.id)?;
    id("network", &e.network_id)?;
    id("container", &e.container_id)?;
    e.epair.iter().chain(&e.interface).try_for_each(|i| interface(i))
}

/// Check the undo list of an interrupted operation (`what`) before it runs: every sandbox is
/// a container in state, every interface name one the kernel takes, and every host interface
/// one that state records (a network's, a pair's host end) or that kleene created (its
/// kernel mark, asked of `exec`).
pub fn journal(db: &Connection, what: &str, ops: &[Op], exec: &mut dyn Executor) -> Result<()> {
    let refuse = |why: String| anyhow::anyhow!("refusing to roll back '{}': {why}; {FIX}", what.escape_debug());
    let containers: HashSet<String> = strings(db, "SELECT id FROM containers")?;
    let recorded: HashSet<String> =
        strings(db, "SELECT interface FROM networks UNION SELECT epair FROM endpoints WHERE epair IS NOT NULL")?;
    for op in ops {
        let (sandbox, host_links, sandbox_links) = touches(op);
        if let Some(s) = sandbox {
            if !is_id(s) || !containers.contains(s) {
                return Err(refuse(format!("it names container '{}', which state does not hold", s.escape_debug())));
            }
        }
        for link in host_links.iter().chain(&sandbox_links) {
            validate_interface(link).map_err(|e| refuse(e.to_string()))?;
        }
        for link in host_links {
            if !recorded.contains(link) && !exec.host_link_is_kleenes(link)? {
                // Also what a crash in the instant between creating an interface and marking
                // it leaves: then the interface is kleene's and deleting it lets this pass.
                bail!(
                    "refusing to roll back '{}': it names host interface {link}, which kleene neither records nor created; if it is a leftover of kleene's, delete it (ip link del {link}), otherwise {FIX}",
                    what.escape_debug()
                );
            }
        }
    }
    Ok(())
}

/// What one operation touches: (container sandbox, host interfaces, interfaces inside the
/// sandbox).
fn touches(op: &Op) -> (Option<&str>, Vec<&str>, Vec<&str>) {
    match op {
        Op::CreateLink { name, .. }
        | Op::DeleteLink { name, .. }
        | Op::CreateVxlan { name, .. }
        | Op::DeleteVxlan { name, .. } => (None, vec![name], vec![]),
        Op::SetLinkMac { name, sandbox, .. }
        | Op::SetLinkMtu { name, sandbox, .. }
        | Op::NoIpv6LinkLocal { name, sandbox } => on(name, sandbox),
        Op::AddForwarding { link, .. }
        | Op::RemoveForwarding { link, .. }
        | Op::AddNeighbour { link, .. }
        | Op::RemoveNeighbour { link, .. } => (None, vec![link], vec![]),
        Op::SetLinkUp { name, sandbox } | Op::SetLinkDown { name, sandbox } => on(name, sandbox),
        Op::AddAddress { link, sandbox, .. } | Op::RemoveAddress { link, sandbox, .. } => on(link, sandbox),
        Op::CreatePair { host, peer, sandbox } | Op::DeletePair { host, peer, sandbox } => {
            (Some(sandbox), vec![host], vec![peer])
        }
        // Both ends start on the host; the peer is judged by its name only (the runtime
        // may have moved it).
        Op::CreateHandoffPair { host, peer, sandbox } => (Some(sandbox), vec![host], vec![peer]),
        Op::AttachToBridge { bridge, member } | Op::DetachFromBridge { bridge, member } => {
            (None, vec![bridge, member], vec![])
        }
        Op::AddDefaultRoute { sandbox, .. }
        | Op::RemoveDefaultRoute { sandbox, .. }
        | Op::CreateSandbox { sandbox, .. }
        | Op::DestroySandbox { sandbox, .. }
        | Op::RestrictAddresses { sandbox, .. } => (Some(sandbox), vec![], vec![]),
    }
}

/// A link of the host (`sandbox` None) or inside a container's sandbox.
fn on<'a>(link: &'a str, sandbox: &'a Option<String>) -> (Option<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    match sandbox {
        Some(s) => (Some(s), vec![], vec![link]),
        None => (None, vec![link], vec![]),
    }
}

fn strings(db: &Connection, sql: &str) -> Result<HashSet<String>> {
    let mut stmt = db.prepare(sql)?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_exactly_what_new_id_makes() {
        assert!(is_id(&crate::state::new_id()));
        for bad in ["", "0123456789a", "0123456789abc", "0123456789AB", "../../victim", "0123456789a/", "ｆ23456789ab"]
        {
            assert!(!is_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn host_and_sandbox_links_are_told_apart() {
        let op = Op::SetLinkDown { name: "eth0".into(), sandbox: Some("0123456789ab".into()) };
        assert_eq!(touches(&op), (Some("0123456789ab"), vec![], vec!["eth0"]));
        let op = Op::DeletePair { host: "kv1".into(), peer: "eth0".into(), sandbox: "0123456789ab".into() };
        assert_eq!(touches(&op), (Some("0123456789ab"), vec!["kv1"], vec!["eth0"]));
        let op = Op::AttachToBridge { bridge: "kleene0".into(), member: "kv1".into() };
        assert_eq!(touches(&op), (None, vec!["kleene0", "kv1"], vec![]));
    }
}
