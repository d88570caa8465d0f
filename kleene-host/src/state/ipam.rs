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

/// Set up the free ranges of a new network's subnet, minus `reserved` (gateways, addresses
/// already on the interface; repeats and addresses outside the usable range are ignored).
pub fn init(db: &Connection, network_id: &str, subnet: &Cidr, reserved: &[IpAddr]) -> Result<()> {
    let (first, last) = usable_range(subnet);
    insert(db, network_id, subnet.addr, first, last)?;
    for ip in reserved.iter().filter(|ip| subnet.contains(**ip)) {
        if is_free(db, network_id, *ip)? {
            take(db, network_id, *ip)?;
        }
    }
    Ok(())
}

fn insert(db: &Connection, network_id: &str, like: IpAddr, start: u128, end: u128) -> Result<()> {
    let (s, e) = (key(from_bits(like, start)), key(from_bits(like, end)));
    db.prepare_cached("INSERT INTO ipam_free(network_id, family, start, end) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![network_id, family(like), s, e])?;
    Ok(())
}

fn delete(db: &Connection, network_id: &str, like: IpAddr, start: u128) -> Result<()> {
    db.prepare_cached("DELETE FROM ipam_free WHERE network_id = ?1 AND family = ?2 AND start = ?3")?
        .execute(params![network_id, family(like), key(from_bits(like, start))])?;
    Ok(())
}

/// The free range holding `ip`, if any.
fn range_of(db: &Connection, network_id: &str, ip: IpAddr) -> Result<Option<(u128, u128)>> {
    let row: Option<(Vec<u8>, Vec<u8>)> = db
        .prepare_cached("SELECT start, end FROM ipam_free WHERE network_id = ?1 AND family = ?2 AND start <= ?3 ORDER BY start DESC LIMIT 1")?.query_row(params![network_id, family(ip), key(ip)],
            |r| Ok((r.get(0)?, r.get(1)?)))
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
        .prepare_cached("SELECT start FROM ipam_free WHERE network_id = ?1 AND family = ?2 ORDER BY start LIMIT 1")?
        .query_row(params![network_id, family(like)], |r| r.get(0))
        .optional()?;
    let Some(start) = row else {
        bail!("no more {} IP's left in the network", family_word(like));
    };
    let ip = unkey(like, &start);
    super::checked::address_in("a free address of the network", ip, Some(*subnet))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn db() -> Connection {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE ipam_free (network_id TEXT NOT NULL, family INTEGER NOT NULL, start BLOB NOT NULL, end BLOB NOT NULL,
             PRIMARY KEY (network_id, family, start)) WITHOUT ROWID;",
        )
        .unwrap();
        db
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn lowest_first_skipping_network_gateway_and_broadcast() {
        let db = db();
        let s = cidr("10.0.0.0/29");
        init(&db, "n", &s, &["10.0.0.1".parse().unwrap()]).unwrap();
        let got: Vec<String> = (0..5).map(|_| allocate(&db, "n", &s).unwrap().to_string()).collect();
        assert_eq!(got, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        let err = allocate(&db, "n", &s).unwrap_err().to_string();
        assert_eq!(err, "no more inet IP's left in the network");
        release(&db, "n", "10.0.0.4".parse().unwrap()).unwrap();
        assert_eq!(allocate(&db, "n", &s).unwrap().to_string(), "10.0.0.4");
        assert_eq!(usage(&db, "n", &s).unwrap(), (6, 0));
    }

    #[test]
    fn ipv6_exhaustion_names_inet6_and_keeps_the_last_address() {
        let db = db();
        let s = cidr("fd00::/126");
        init(&db, "n", &s, &[]).unwrap();
        let got: Vec<String> = (0..3).map(|_| allocate(&db, "n", &s).unwrap().to_string()).collect();
        assert_eq!(got, ["fd00::1", "fd00::2", "fd00::3"]);
        assert_eq!(allocate(&db, "n", &s).unwrap_err().to_string(), "no more inet6 IP's left in the network");
    }

    #[test]
    fn explicit_take_splits_ranges_and_refuses_duplicates() {
        let db = db();
        let s = cidr("192.168.5.0/24");
        init(&db, "n", &s, &[]).unwrap();
        take(&db, "n", "192.168.5.7".parse().unwrap()).unwrap();
        assert!(take(&db, "n", "192.168.5.7".parse().unwrap()).is_err());
        assert!(!is_free(&db, "n", "192.168.5.255".parse().unwrap()).unwrap(), "broadcast never free");
        assert!(!is_free(&db, "n", "192.168.5.0".parse().unwrap()).unwrap(), "network address never free");
        assert!(is_free(&db, "n", "192.168.5.8".parse().unwrap()).unwrap());
    }

    /// xorshift: a deterministic stream of pseudo-random numbers without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Property: random allocate/release sequences never hand out an address twice, nor
    /// the network address, broadcast or gateway, and always hand out the lowest free one.
    #[test]
    fn random_sequences_match_a_model() {
        for (seed, subnet, gw) in
            [(1u64, "10.9.0.0/27", "10.9.0.1"), (7, "fd00:9::/123", "fd00:9::5"), (42, "10.9.8.0/30", "10.9.8.2")]
        {
            let db = db();
            let s = cidr(subnet);
            let gw: IpAddr = gw.parse().unwrap();
            init(&db, "n", &s, &[gw]).unwrap();
            let (first, last) = usable_range(&s);
            let mut model: BTreeSet<u128> = (first..=last).filter(|n| *n != to_bits(gw)).collect();
            let mut held: Vec<u128> = Vec::new();
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            for _ in 0..2000 {
                if rng.next() % 3 != 0 || held.is_empty() {
                    match allocate(&db, "n", &s) {
                        Ok(ip) => {
                            let n = to_bits(ip);
                            assert_eq!(Some(n), model.iter().next().copied(), "lowest free first");
                            assert!(n != to_bits(gw) && n >= first && n <= last);
                            model.remove(&n);
                            held.push(n);
                        }
                        Err(_) => assert!(model.is_empty(), "exhausted only when nothing is free"),
                    }
                } else {
                    let n = held.swap_remove((rng.next() as usize) % held.len());
                    release(&db, "n", from_bits(s.addr, n)).unwrap();
                    model.insert(n);
                }
                let (used, free) = usage(&db, "n", &s).unwrap();
                assert_eq!(free, model.len() as u128);
                assert_eq!(used + free, last - first + 1);
            }
        }
    }
}
