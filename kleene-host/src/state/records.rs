//! Rows <-> plugin API model types, and lookups by name, id or id prefix.

use anyhow::{anyhow, bail, Result};
use kleene_plugin_api::{Cidr, Container, Endpoint, Network, Stack};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::net::IpAddr;

/// A network with the facts only the host keeps.
#[derive(Debug, Clone)]
pub struct NetworkRow {
    pub network: Network,
    /// The kernel link kind actually used (e.g. `ifb` standing in for `dummy`).
    pub link_kind: Option<String>,
    /// Whether its traffic is forwarded by the host (its network type's declaration, kept so
    /// the firewall needs no plugin). `None` for rows older than API 1.1, until filled in.
    pub forwarded: Option<bool>,
    /// Whether the network serves its containers' names (docs/dns.md).
    pub dns: bool,
}

fn opt_parse<T: std::str::FromStr>(s: Option<String>) -> Option<T> {
    s.filter(|s| !s.is_empty()).and_then(|s| s.parse().ok())
}

/// A row that fails its check in [`super::checked`] is an error of the query reading it.
fn checked<T>(value: T, check: fn(&T) -> Result<()>) -> rusqlite::Result<T> {
    check(&value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    Ok(value)
}

fn network_from_row(r: &Row<'_>) -> rusqlite::Result<NetworkRow> {
    let row = NetworkRow {
        network: Network {
            id: r.get("id")?,
            name: r.get("name")?,
            kind: r.get("type")?,
            interface: r.get("interface")?,
            subnet: opt_parse::<Cidr>(r.get("subnet")?),
            subnet6: opt_parse::<Cidr>(r.get("subnet6")?),
            gateway: opt_parse::<IpAddr>(r.get("gateway")?),
            gateway_auto: r.get("gateway_auto")?,
            gateway6: opt_parse::<IpAddr>(r.get("gateway6")?),
            gateway6_auto: r.get("gateway6_auto")?,
            nat: r.get("nat")?,
            icc: r.get("icc")?,
            internal: r.get("internal")?,
            cluster: r.get::<_, Option<String>>("cluster")?.and_then(|c| serde_json::from_str(&c).ok()),
        },
        link_kind: r.get("link_kind")?,
        forwarded: r.get("forwarded")?,
        dns: r.get("dns")?,
    };
    checked(row, super::checked::network)
}

fn container_from_row(r: &Row<'_>) -> rusqlite::Result<Container> {
    let c = Container { id: r.get("id")?, name: r.get("name")?, driver: r.get("driver")?, running: r.get("running")? };
    checked(c, super::checked::container)
}

fn endpoint_from_row(r: &Row<'_>) -> rusqlite::Result<Endpoint> {
    let e = Endpoint {
        id: r.get("id")?,
        network_id: r.get("network_id")?,
        container_id: r.get("container_id")?,
        epair: r.get("epair")?,
        interface: r.get("interface")?,
        ip_address: opt_parse(r.get("ip_address")?),
        ip_address6: opt_parse(r.get("ip_address6")?),
        mac: r.get::<_, Option<String>>("mac")?.as_deref().and_then(parse_mac),
    };
    checked(e, super::checked::endpoint)
}

/// `aa:bb:cc:dd:ee:ff` as six bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text.split(':').map(|b| u8::from_str_radix(b, 16)).collect::<Result<_, _>>().ok()?;
    bytes.try_into().ok()
}

fn text<T: ToString>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

pub fn insert_network(db: &Connection, n: &NetworkRow) -> Result<()> {
    let net = &n.network;
    db.prepare_cached("INSERT INTO networks (id, name, type, interface, subnet, subnet6, gateway, gateway_auto, gateway6, gateway6_auto, nat, icc, internal, link_kind, forwarded, dns, cluster)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)")?.execute(params![
            net.id, net.name, net.kind, net.interface, text(&net.subnet), text(&net.subnet6), text(&net.gateway),
            net.gateway_auto, text(&net.gateway6), net.gateway6_auto, net.nat, net.icc, net.internal, n.link_kind,
            n.forwarded, n.dns, net.cluster.map(|c| serde_json::to_string(&c)).transpose()?
        ])?;
    Ok(())
}

pub fn networks(db: &Connection) -> Result<Vec<NetworkRow>> {
    let mut stmt = db.prepare_cached("SELECT * FROM networks ORDER BY created, rowid")?;
    let rows = stmt.query_map([], network_from_row)?.collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub fn network_by_id(db: &Connection, id: &str) -> Result<NetworkRow> {
    Ok(db.prepare_cached("SELECT * FROM networks WHERE id = ?1")?.query_row([id], network_from_row)?)
}

pub fn delete_network(db: &Connection, id: &str) -> Result<()> {
    db.prepare_cached("DELETE FROM ipam_free WHERE network_id = ?1")?.execute([id])?;
    db.prepare_cached("DELETE FROM cluster_peers WHERE network_id = ?1")?.execute([id])?;
    db.prepare_cached("DELETE FROM networks WHERE id = ?1")?.execute([id])?;
    Ok(())
}

/// A new container, with the stack its driver declares.
pub fn insert_container(db: &Connection, c: &Container, stack: Stack) -> Result<()> {
    db.prepare_cached("INSERT INTO containers (id, name, driver, running, stack) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![c.id, c.name, c.driver, c.running, stack_text(stack)])?;
    Ok(())
}

fn stack_text(stack: Stack) -> String {
    serde_json::to_value(stack).ok().and_then(|v| v.as_str().map(String::from)).expect("a unit variant")
}

/// The stack of each container whose driver's declaration is recorded (rows older than API
/// 1.1 have none until [`record_stack`] fills it in).
/// Drivers and network types whose rows predate API 1.1 and lack their declarations.
pub fn undeclared(db: &Connection) -> Result<(Vec<String>, Vec<String>)> {
    let list = |sql: &str| -> Result<Vec<String>> {
        let mut stmt = db.prepare_cached(sql)?;
        let rows = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    };
    Ok((
        list("SELECT DISTINCT driver FROM containers WHERE stack IS NULL")?,
        list("SELECT DISTINCT type FROM networks WHERE forwarded IS NULL")?,
    ))
}

/// Record a driver's stack on its containers that predate API 1.1.
pub fn record_stack(db: &Connection, driver: &str, stack: Stack) -> Result<()> {
    db.prepare_cached("UPDATE containers SET stack = ?2 WHERE driver = ?1 AND stack IS NULL")?
        .execute(params![driver, stack_text(stack)])?;
    Ok(())
}

/// Record a network type's forwarding on its networks that predate API 1.1.
pub fn record_forwarded(db: &Connection, kind: &str, forwarded: bool) -> Result<()> {
    db.prepare_cached("UPDATE networks SET forwarded = ?2 WHERE type = ?1 AND forwarded IS NULL")?
        .execute(params![kind, forwarded])?;
    Ok(())
}

pub fn containers(db: &Connection) -> Result<Vec<Container>> {
    let mut stmt = db.prepare_cached("SELECT * FROM containers ORDER BY created, rowid")?;
    let rows = stmt.query_map([], container_from_row)?.collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub fn set_running(db: &Connection, id: &str, running: bool) -> Result<()> {
    db.prepare_cached("UPDATE containers SET running = ?2 WHERE id = ?1")?.execute(params![id, running])?;
    Ok(())
}

pub fn delete_container(db: &Connection, id: &str) -> Result<()> {
    db.prepare_cached("DELETE FROM published WHERE container_id = ?1")?.execute([id])?;
    db.prepare_cached("DELETE FROM containers WHERE id = ?1")?.execute([id])?;
    Ok(())
}

pub fn insert_endpoint(db: &Connection, e: &Endpoint) -> Result<()> {
    db.prepare_cached(
        "INSERT INTO endpoints (id, seq, network_id, container_id, epair, interface, ip_address, ip_address6, mac)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM endpoints), ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        e.id,
        e.network_id,
        e.container_id,
        e.epair,
        e.interface,
        text(&e.ip_address),
        text(&e.ip_address6),
        e.mac.as_ref().map(kleene_plugin_api::mac_string)
    ])?;
    Ok(())
}

pub fn update_endpoint_links(db: &Connection, e: &Endpoint) -> Result<()> {
    db.prepare_cached("UPDATE endpoints SET epair = ?2, interface = ?3 WHERE id = ?1")?.execute(params![
        e.id,
        e.epair,
        e.interface
    ])?;
    Ok(())
}

pub fn delete_endpoint(db: &Connection, id: &str) -> Result<()> {
    db.prepare_cached("DELETE FROM endpoints WHERE id = ?1")?.execute([id])?;
    Ok(())
}

/// Endpoints of a container (in the order it joined) or of a network.
pub fn endpoints_where(db: &Connection, column: &str, id: &str) -> Result<Vec<Endpoint>> {
    let sql = match column {
        "container_id" => "SELECT * FROM endpoints WHERE container_id = ?1 ORDER BY seq",
        _ => "SELECT * FROM endpoints WHERE network_id = ?1 ORDER BY seq",
    };
    let mut stmt = db.prepare_cached(sql)?;
    let rows = stmt.query_map([id], endpoint_from_row)?.collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub fn endpoint(db: &Connection, network_id: &str, container_id: &str) -> Result<Option<Endpoint>> {
    Ok(db
        .prepare_cached("SELECT * FROM endpoints WHERE network_id = ?1 AND container_id = ?2")?
        .query_row([network_id, container_id], endpoint_from_row)
        .optional()?)
}

/// Resolve an identifier (exact name, exact id, or unique id prefix) in `table`.
/// `what` names the object in messages ("network", "container"), as Kleene does.
pub fn resolve(db: &Connection, table: &str, what: &str, ident: &str) -> Result<String> {
    let exact = format!("SELECT id FROM {table} WHERE name = ?1 OR id = ?1 ORDER BY (name = ?1) DESC LIMIT 1");
    if let Some(id) = db.prepare_cached(&exact)?.query_row([ident], |r| r.get::<_, String>(0)).optional()? {
        return Ok(id);
    }
    if ident.is_empty() || !ident.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(crate::error::NotFound(format!("{what} not found")).into());
    }
    let mut stmt =
        db.prepare_cached(&format!("SELECT id, name FROM {table} WHERE substr(id, 1, ?2) = ?1 ORDER BY id"))?;
    let found: Vec<(String, String)> = stmt
        .query_map(params![ident, ident.len()], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    match found.as_slice() {
        [] => Err(crate::error::NotFound(format!("{what} not found")).into()),
        [(id, _)] => Ok(id.clone()),
        many => {
            let list: Vec<String> = many.iter().map(|(id, name)| format!("{id} ({name})")).collect();
            bail!("{what} id prefix '{ident}' is ambiguous: it matches {}; give more digits", list.join(", "))
        }
    }
}

pub fn container_by_id(db: &Connection, id: &str) -> Result<Container> {
    Ok(db.prepare_cached("SELECT * FROM containers WHERE id = ?1")?.query_row([id], container_from_row)?)
}

/// Record a container's published-port specs (`--publish`), in the order given.
pub fn insert_published(db: &Connection, container_id: &str, specs: &[String]) -> Result<()> {
    for (seq, spec) in specs.iter().enumerate() {
        db.prepare_cached("INSERT INTO published (container_id, seq, spec) VALUES (?1, ?2, ?3)")?.execute(params![
            container_id,
            seq as i64,
            spec
        ])?;
    }
    Ok(())
}

/// Every container's published-port specs, by container id, in the order given.
pub fn published(db: &Connection) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let mut stmt = db.prepare_cached("SELECT container_id, spec FROM published ORDER BY container_id, seq")?;
    let mut out: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (id, spec) = row?;
        out.entry(id).or_default().push(spec);
    }
    Ok(out)
}

/// Every endpoint with its container and the container's declared stack (None before API
/// 1.1), in the order containers joined their networks: what the firewall reads at every
/// commit, in one query (the rows are checked as [`all_endpoints`] and [`containers`] check
/// theirs).
pub fn endpoints_with_containers(db: &Connection) -> Result<Vec<(Endpoint, Container, Option<Stack>)>> {
    let mut stmt = db.prepare_cached(
        "SELECT e.id, e.network_id, e.container_id, e.epair, e.interface, e.ip_address, e.ip_address6, \
         c.name, c.driver, c.running, c.stack, e.mac \
         FROM endpoints e JOIN containers c ON c.id = e.container_id ORDER BY e.seq",
    )?;
    let mut stacks: std::collections::HashMap<String, Stack> = std::collections::HashMap::new();
    let mut out = Vec::new();
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let e = Endpoint {
            id: r.get(0)?,
            network_id: r.get(1)?,
            container_id: r.get(2)?,
            epair: r.get(3)?,
            interface: r.get(4)?,
            ip_address: opt_parse(r.get(5)?),
            ip_address6: opt_parse(r.get(6)?),
            mac: r.get::<_, Option<String>>(11)?.as_deref().and_then(parse_mac),
        };
        let c = Container { id: e.container_id.clone(), name: r.get(7)?, driver: r.get(8)?, running: r.get(9)? };
        let stack = match r.get::<_, Option<String>>(10)? {
            None => None,
            Some(text) => Some(match stacks.get(&text) {
                Some(&s) => s,
                None => {
                    let s: Stack = serde_json::from_value(serde_json::Value::String(text.clone()))
                        .map_err(|_| anyhow!("container {}: unknown stack '{text}' in state", c.id))?;
                    stacks.insert(text, s);
                    s
                }
            }),
        };
        out.push((checked(e, super::checked::endpoint)?, checked(c, super::checked::container)?, stack));
    }
    Ok(out)
}

/// Every endpoint, in the order containers joined their networks.
pub fn all_endpoints(db: &Connection) -> Result<Vec<Endpoint>> {
    let mut stmt = db.prepare_cached("SELECT * FROM endpoints ORDER BY seq")?;
    let rows = stmt.query_map([], endpoint_from_row)?.collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// What the host keeps of a container besides the plugin-visible fields.
#[derive(Debug, Clone, Default)]
pub struct ContainerExtra {
    /// Unix time of creation.
    pub created: i64,
    /// The configuration a runtime gave at create (Kleene's `ContainerConfig`), as given; an
    /// empty object from the CLI.
    pub config: serde_json::Map<String, serde_json::Value>,
}

pub fn container_extras(db: &Connection) -> Result<std::collections::HashMap<String, ContainerExtra>> {
    let mut stmt = db.prepare_cached("SELECT id, created, config FROM containers")?;
    let rows =
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<String>>(2)?)))?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (id, created, config) = row?;
        // Recorded by kleene itself as a JSON object; anything else reads as empty.
        let config = config.and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default();
        out.insert(id, ContainerExtra { created, config });
    }
    Ok(out)
}

/// Record the configuration a runtime gave for a new container.
pub fn set_container_config(db: &Connection, id: &str, config: &serde_json::Value) -> Result<()> {
    db.prepare_cached("UPDATE containers SET config = ?2 WHERE id = ?1")?.execute(params![id, config.to_string()])?;
    Ok(())
}

/// Record the aliases an endpoint answers to in DNS (checked by the caller).
pub fn set_endpoint_aliases(db: &Connection, endpoint_id: &str, aliases: &[String]) -> Result<()> {
    db.prepare_cached("UPDATE endpoints SET aliases = ?2 WHERE id = ?1")?
        .execute(params![endpoint_id, aliases.join(",")])?;
    Ok(())
}

/// Every endpoint's aliases, by endpoint id (endpoints without any are left out). Each is
/// checked again: they are written into the resolver's files, one name per comma.
pub fn endpoint_aliases(db: &Connection) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let mut stmt = db.prepare_cached("SELECT id, aliases FROM endpoints WHERE aliases != ''")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (id, text) = row?;
        let aliases: Vec<String> = text.split(',').map(String::from).collect();
        for alias in &aliases {
            crate::dns::validate_alias(alias)
                .map_err(|e| anyhow!("refusing the state database: endpoint {id}: {e}; {}", super::checked::FIX))?;
        }
        out.insert(id, aliases);
    }
    Ok(out)
}

/// Record a network's DNS domain (checked by the caller).
pub fn set_network_dns_domain(db: &Connection, network_id: &str, domain: &str) -> Result<()> {
    db.prepare_cached("UPDATE networks SET dns_domain = ?2 WHERE id = ?1")?.execute(params![network_id, domain])?;
    Ok(())
}

/// Every network's DNS domain, by network id (networks without one are left out). Each is
/// checked again: it is written into resolv.conf files and the resolver's files.
pub fn network_dns_domains(db: &Connection) -> Result<std::collections::HashMap<String, String>> {
    let mut stmt = db.prepare_cached("SELECT id, dns_domain FROM networks WHERE dns_domain IS NOT NULL")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (id, domain) = row?;
        out.insert(id.clone(), checked_dns_domain(&id, domain)?);
    }
    Ok(out)
}

/// One network's DNS domain (`None` without one), checked as [`network_dns_domains`] does.
pub fn network_dns_domain(db: &Connection, id: &str) -> Result<Option<String>> {
    let domain: Option<String> = db
        .prepare_cached("SELECT dns_domain FROM networks WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .flatten();
    domain.map(|d| checked_dns_domain(id, d)).transpose()
}

fn checked_dns_domain(id: &str, domain: String) -> Result<String> {
    if !crate::dns::is_dns_name(&domain) {
        bail!(
            "refusing the state database: network {id}: DNS domain '{}' is not a DNS name; {}",
            domain.escape_debug(),
            super::checked::FIX
        );
    }
    Ok(domain)
}
