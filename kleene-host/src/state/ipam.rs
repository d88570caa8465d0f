//! Address management: per network and family, the free addresses as disjoint ranges.
//!
//! Allocation takes the start of the lowest range and release merges neighbours, each a
//! couple of indexed lookups, so the 60 000th address costs what the first did. Addresses
//! are stored as 16-byte big-endian blobs so SQLite orders them numerically.

use anyhow::{bail, Result};
use kleene_plugin_api::model::{from_bits, to_bits};
use kleene_plugin_api::Cidr;
use rusqlite::{params, Connection, OptionalExtension};
use std::net::IpAddr;

fn key(ip: IpAddr) -> Vec<u8> {
    to_bits(ip).to_be_bytes().to_vec()
}

fn unkey(like: IpAddr, blob: &[u8]) -> IpAddr {
    let mut b = [0u8; 16];
    b.copy_from_slice(blob);
    from_bits(like, u128::from_be_bytes(b))
}

fn family(ip: IpAddr) -> i64 {
    if ip.is_ipv4() {
        4
    } else {
        6
    }
}

pub fn family_word(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "inet"
    } else {
        "inet6"
    }
}

/// The usable host range of a subnet: no network address, no IPv4 broadcast.
pub fn usable_range(subnet: &Cidr) -> (u128, u128) {
    let width = Cidr::max_prefix(subnet.addr) as u32;
    let host_bits = width - subnet.prefix as u32;
    let first = to_bits(subnet.network());
    let last = if host_bits == 128 { u128::MAX } else { first + ((1u128 << host_bits) - 1) };
    match (subnet.addr.is_ipv4(), host_bits) {
        (_, 0) | (_, 1) => (first, last),
        (true, _) => (first + 1, last - 1),
        (false, _) => (first + 1, last),
    }
}

/// Set up the free ranges of a new network's subnet, minus `reserved` (gateways).
pub fn init(db: &Connection, network_id: &str, subnet: &Cidr, reserved: &[IpAddr]) -> Result<()> {
    let (first, last) = usable_range(subnet);
    insert(db, network_id, subnet.addr, first, last)?;
    for ip in reserved.iter().filter(|ip| subnet.contains(**ip)) {
        take(db, network_id, *ip)?;
    }
    Ok(())
}

fn insert(db: &Connection, network_id: &str, like: IpAddr, start: u128, end: u128) -> Result<()> {
    let (s, e) = (key(from_bits(like, start)), key(from_bits(like, end)));
    db.execute(
        "INSERT INTO ipam_free(network_id, family, start, end) VALUES (?1, ?2, ?3, ?4)",
        params![network_id, family(like), s, e],
    )?;
    Ok(())
}

fn delete(db: &Connection, network_id: &str, like: IpAddr, start: u128) -> Result<()> {
    db.execute(
        "DELETE FROM ipam_free WHERE network_id = ?1 AND family = ?2 AND start = ?3",
        params![network_id, family(like), key(from_bits(like, start))],
    )?;
    Ok(())
}

/// The free range holding `ip`, if any.
fn range_of(db: &Connection, network_id: &str, ip: IpAddr) -> Result<Option<(u128, u128)>> {
    let row: Option<(Vec<u8>, Vec<u8>)> = db
        .query_row(
            "SELECT start, end FROM ipam_free WHERE network_id = ?1 AND family = ?2 AND start <= ?3 ORDER BY start DESC LIMIT 1",
            params![network_id, family(ip), key(ip)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.map(|(s, e)| (to_bits(unkey(ip, &s)), to_bits(unkey(ip, &e)))).filter(|(_, e)| *e >= to_bits(ip)))
}

/// Whether `ip` is free to hand out.
pub fn is_free(db: &Connection, network_id: &str, ip: IpAddr) -> Result<bool> {
    Ok(range_of(db, network_id, ip)?.is_some())
}

/// Mark `ip` used. Errors if it was not free.
pub fn take(db: &Connection, network_id: &str, ip: IpAddr) -> Result<()> {
    let Some((start, end)) = range_of(db, network_id, ip)? else {
        bail!("address {ip} is already in use");
    };
    let n = to_bits(ip);
    delete(db, network_id, ip, start)?;
    if start < n {
        insert(db, network_id, ip, start, n - 1)?;
    }
    if n < end {
        insert(db, network_id, ip, n + 1, end)?;
    }
    Ok(())
}

/// Take the lowest free address of the subnet's family.
pub fn allocate(db: &Connection, network_id: &str, subnet: &Cidr) -> Result<IpAddr> {
    let like = subnet.addr;
    let row: Option<Vec<u8>> = db
        .query_row(
            "SELECT start FROM ipam_free WHERE network_id = ?1 AND family = ?2 ORDER BY start LIMIT 1",
            params![network_id, family(like)],
            |r| r.get(0),
        )
        .optional()?;
    let Some(start) = row else {
        bail!("no more {} IP's left in the network", family_word(like));
    };
    let ip = unkey(like, &start);
    take(db, network_id, ip)?;
    Ok(ip)
}

/// Give `ip` back, merging it with adjacent free ranges.
pub fn release(db: &Connection, network_id: &str, ip: IpAddr) -> Result<()> {
    if is_free(db, network_id, ip)? {
        return Ok(());
    }
    let n = to_bits(ip);
    let (mut start, mut end) = (n, n);
    if n > 0 {
        if let Some((s, e)) = range_of(db, network_id, from_bits(ip, n - 1))? {
            debug_assert_eq!(e, n - 1);
            delete(db, network_id, ip, s)?;
            start = s;
        }
    }
    if let Some(next) = n.checked_add(1) {
        if let Some((s, e)) = range_of(db, network_id, from_bits(ip, next))? {
            delete(db, network_id, ip, s)?;
            end = e;
        }
    }
    insert(db, network_id, ip, start, end)
}

/// (used, free) host addresses of a subnet.
pub fn usage(db: &Connection, network_id: &str, subnet: &Cidr) -> Result<(u128, u128)> {
    let mut stmt = db.prepare_cached("SELECT start, end FROM ipam_free WHERE network_id = ?1 AND family = ?2")?;
    let rows = stmt.query_map(params![network_id, family(subnet.addr)], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut free: u128 = 0;
    for row in rows {
        let (s, e) = row?;
        free = free.saturating_add(to_bits(unkey(subnet.addr, &e)) - to_bits(unkey(subnet.addr, &s)) + 1);
    }
    let (first, last) = usable_range(subnet);
    let total = (last - first).saturating_add(1);
    Ok((total.saturating_sub(free), free))
}
