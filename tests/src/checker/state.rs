//! kleene's state as the checker sees it: read straight from the SQLite file (not through
//! kleene), so a bug in kleene's own readers cannot hide a bug in what it wrote.

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::net::IpAddr;
use std::path::Path;

/// An address with its prefix length (`10.1.0.0/24`).
pub type Cidr = (IpAddr, u8);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub interface: String,
    pub subnet: Option<Cidr>,
    pub subnet6: Option<Cidr>,
    pub gateway: Option<IpAddr>,
    pub gateway_auto: bool,
    pub gateway6: Option<IpAddr>,
    pub gateway6_auto: bool,
    pub link_kind: Option<String>,
}

impl Network {
    /// The subnet of `ip`'s family.
    pub fn subnet_for(&self, ip: IpAddr) -> Option<Cidr> {
        if ip.is_ipv4() {
            self.subnet
        } else {
            self.subnet6
        }
    }

    /// (subnet, gateway) per family the network has.
    pub fn families(&self) -> Vec<(Cidr, Option<IpAddr>)> {
        [(self.subnet, self.gateway), (self.subnet6, self.gateway6)]
            .into_iter()
            .filter_map(|(s, g)| s.map(|s| (s, g)))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub running: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub seq: i64,
    pub network_id: String,
    pub container_id: String,
    pub epair: Option<String>,
    pub interface: Option<String>,
    pub ip: Option<IpAddr>,
    pub ip6: Option<IpAddr>,
}

impl Endpoint {
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> {
        self.ip.into_iter().chain(self.ip6)
    }
}

/// One free range of a network's address pool (`ipam_free`), as integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeRange {
    pub network_id: String,
    pub v4: bool,
    pub start: u128,
    pub end: u128,
}

/// Everything kleene keeps, in a stable order. Two views compare equal when kleene's state
/// is the same (the journal included: compare [`StateView::committed`] to ignore it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateView {
    pub networks: Vec<Network>,
    pub containers: Vec<Container>,
    pub endpoints: Vec<Endpoint>,
    pub free: Vec<FreeRange>,
    pub published: Vec<(String, i64, String)>,
    /// `what` of every journal row: operations interrupted and not yet rolled back.
    pub journal: Vec<String>,
}

impl StateView {
    /// Read the database in `state_dir` (an empty view when kleene never ran there).
    pub fn read(state_dir: &Path) -> Result<StateView, String> {
        let path = state_dir.join("kleene.db");
        if !path.exists() {
            return Ok(StateView::default());
        }
        // Read-write, not read-only: after a kill -9 the first connection may have to
        // recover the WAL index, which needs write access. Nothing is written.
        let db = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        read_all(&db).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }

    /// The view without the journal: what committed transactions left.
    pub fn committed(&self) -> StateView {
        StateView { journal: Vec::new(), ..self.clone() }
    }

    pub fn network(&self, id: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.id == id)
    }

    pub fn network_named(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    pub fn container_named(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// A container's endpoints, in the order it joined its networks.
    pub fn endpoints_of(&self, container_id: &str) -> Vec<&Endpoint> {
        self.endpoints.iter().filter(|e| e.container_id == container_id).collect()
    }

    /// The endpoint joining `container_id` to `network_id`.
    pub fn endpoint(&self, network_id: &str, container_id: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.network_id == network_id && e.container_id == container_id)
    }
}

fn read_all(db: &Connection) -> rusqlite::Result<StateView> {
    let has_tables: Option<String> = db
        .query_row("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'networks'", [], |r| r.get(0))
        .optional()?;
    if has_tables.is_none() {
        return Ok(StateView::default());
    }
    let networks = rows(db, "SELECT * FROM networks ORDER BY id", |r| {
        Ok(Network {
            id: r.get("id")?,
            name: r.get("name")?,
            kind: r.get("type")?,
            interface: r.get("interface")?,
            subnet: cidr(r.get("subnet")?),
            subnet6: cidr(r.get("subnet6")?),
            gateway: ip(r.get("gateway")?),
            gateway_auto: r.get("gateway_auto")?,
            gateway6: ip(r.get("gateway6")?),
            gateway6_auto: r.get("gateway6_auto")?,
            link_kind: r.get("link_kind")?,
        })
    })?;
    let containers = rows(db, "SELECT * FROM containers ORDER BY id", |r| {
        Ok(Container { id: r.get("id")?, name: r.get("name")?, driver: r.get("driver")?, running: r.get("running")? })
    })?;
    let endpoints = rows(db, "SELECT * FROM endpoints ORDER BY seq", |r| {
        Ok(Endpoint {
            id: r.get("id")?,
            seq: r.get("seq")?,
            network_id: r.get("network_id")?,
            container_id: r.get("container_id")?,
            epair: r.get("epair")?,
            interface: r.get("interface")?,
            ip: ip(r.get("ip_address")?),
            ip6: ip(r.get("ip_address6")?),
        })
    })?;
    let free =
        rows(db, "SELECT network_id, family, start, end FROM ipam_free ORDER BY network_id, family, start", |r| {
            Ok(FreeRange {
                network_id: r.get(0)?,
                v4: r.get::<_, i64>(1)? == 4,
                start: blob_bits(&r.get::<_, Vec<u8>>(2)?),
                end: blob_bits(&r.get::<_, Vec<u8>>(3)?),
            })
        })?;
    let published = rows(db, "SELECT container_id, seq, spec FROM published ORDER BY container_id, seq", |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    let journal = rows(db, "SELECT what FROM journal ORDER BY id", |r| r.get(0))?;
    Ok(StateView { networks, containers, endpoints, free, published, journal })
}

fn rows<T>(
    db: &Connection,
    sql: &str,
    f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = db.prepare(sql)?;
    let out = stmt.query_map([], f)?.collect();
    out
}

fn ip(text: Option<String>) -> Option<IpAddr> {
    text.filter(|t| !t.is_empty()).and_then(|t| t.parse().ok())
}

pub fn parse_cidr(text: &str) -> Option<Cidr> {
    let (addr, prefix) = text.split_once('/')?;
    Some((addr.parse().ok()?, prefix.parse().ok()?))
}

fn cidr(text: Option<String>) -> Option<Cidr> {
    text.as_deref().filter(|t| !t.is_empty()).and_then(parse_cidr)
}

/// kleene stores pool addresses as 16-byte big-endian integers (IPv4 in the low 32 bits).
fn blob_bits(blob: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = blob.len().min(16);
    b[16 - n..].copy_from_slice(&blob[blob.len() - n..]);
    u128::from_be_bytes(b)
}

/// An address as an integer (IPv4 in the low 32 bits, as kleene stores it).
pub fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The integer `n` as an address of `like`'s family.
pub fn from_bits(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((n as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(n.into()),
    }
}
