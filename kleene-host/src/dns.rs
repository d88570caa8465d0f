//! Container DNS ([docs/dns.md](../../docs/dns.md)): what the resolver (aardvark-dns) must
//! serve and what each container's resolv.conf says, derived from state. Nothing here
//! touches the system: the executor writes the files, runs the resolver, signals it and
//! checks that it answers before the command returns.
//!
//! aardvark-dns 1.4 reads one file per network from its config directory: line 1 the
//! addresses it listens on (comma-separated), then one line per container,
//! `<id> <ipv4,...> <ipv6,...> <name,alias,...>`. It forwards names it does not know to the
//! host's resolvers for every network it serves, or (with `AARDVARK_NO_PROXY` set) for none,
//! so internal networks get a resolver process of their own ([`Scope`]).

use crate::state::{self, NetworkRow};
use anyhow::{bail, Result};
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The Debian package that ships the resolver, named in every message about a missing one.
pub const PACKAGE: &str = "aardvark-dns";

/// The one line of a missing resolver.
pub fn missing_resolver() -> String {
    format!("aardvark-dns is not installed (kleene looks in /usr/lib/podman and /usr/libexec/podman): install the package {PACKAGE}")
}

/// Which resolver process serves a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Names it does not know are forwarded to the host's resolvers.
    Forwarding,
    /// Internal networks: only their own names are answered.
    Internal,
}

impl Scope {
    pub const BOTH: [Scope; 2] = [Scope::Forwarding, Scope::Internal];

    /// Its directory (and pid file stem) under `<run dir>/dns`.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Forwarding => "forwarding",
            Scope::Internal => "internal",
        }
    }
}

/// One container's line in a network's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The container id.
    pub id: String,
    pub addresses: Vec<IpAddr>,
    /// Its name (when that is a DNS name), then its aliases on this network.
    pub names: Vec<String>,
}

impl Entry {
    fn line(&self) -> String {
        let family = |v4: bool| {
            let of: Vec<String> = self.addresses.iter().filter(|a| a.is_ipv4() == v4).map(|a| a.to_string()).collect();
            of.join(",")
        };
        format!("{} {} {} {}", self.id, family(true), family(false), self.names.join(","))
    }
}

/// What the resolver serves for one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFile {
    /// The network's name (for messages; the file is named by its id).
    pub network: String,
    /// The gateway addresses the host holds: where the resolver listens.
    pub binds: Vec<IpAddr>,
    pub entries: Vec<Entry>,
}

impl NetworkFile {
    pub fn render(&self) -> String {
        let binds: Vec<String> = self.binds.iter().map(|a| a.to_string()).collect();
        let mut out = binds.join(",");
        out.push('\n');
        for e in &self.entries {
            out.push_str(&e.line());
            out.push('\n');
        }
        out
    }

    /// The question that tells the resolver serving this file from one serving `old` (the
    /// file's previous text, if any): a name whose answer changed, with the new answer. When
    /// no name changed (a new network without containers), any answer from the new listen
    /// address will do: a name nobody has, which must come back empty.
    pub fn probe(&self, old: Option<&str>) -> Probe {
        let old_lines: BTreeSet<&str> = old.into_iter().flat_map(|t| t.lines().skip(1)).collect();
        let new_lines: Vec<String> = self.entries.iter().map(Entry::line).collect();
        let added = new_lines.iter().find(|l| !old_lines.contains(l.as_str())).map(String::as_str);
        let removed = || old_lines.iter().copied().find(|l| !new_lines.iter().any(|n| n == l));
        let name = added
            .or_else(removed)
            .and_then(|line| line.split(' ').nth(3))
            .and_then(|names| names.split(',').next())
            .unwrap_or(PROBE_NOBODY);
        let answer: BTreeSet<IpAddr> = self
            .entries
            .iter()
            .filter(|e| e.names.iter().any(|n| n == name))
            .flat_map(|e| e.addresses.iter().copied())
            .collect();
        // Ask for the family the answer has (A when it has both, or none).
        let v6 = !answer.is_empty() && answer.iter().all(IpAddr::is_ipv6);
        let answer = answer.into_iter().filter(|a| a.is_ipv6() == v6).collect();
        Probe { server: self.binds[0], name: name.to_string(), v6, answer }
    }
}

/// A name no container can have (aliases and container names are checked DNS names, and
/// this one is reserved below).
const PROBE_NOBODY: &str = "kleene-probe-nobody";

/// A DNS question and the answer that proves the resolver serves the current files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub server: IpAddr,
    pub name: String,
    /// AAAA rather than A.
    pub v6: bool,
    pub answer: BTreeSet<IpAddr>,
}

/// Everything container DNS needs on the host, derived from state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsConfig {
    /// Per resolver, its networks' files by network id.
    pub files: BTreeMap<Scope, BTreeMap<String, NetworkFile>>,
    /// Per container id, its resolv.conf.
    pub resolv: BTreeMap<String, String>,
    /// Ask a running resolver about every network even where no file changed (`system
    /// reconcile`: a resolver that lost an address while running is signalled to bind again).
    pub verify_all: bool,
}

/// Where a container's resolv.conf is written (what `container exec` mounts on
/// /etc/resolv.conf, and `container inspect` shows).
pub fn resolv_conf_path(run_dir: &Path, container_id: &str) -> PathBuf {
    run_dir.join("dns").join("resolv").join(format!("{container_id}.conf"))
}

/// The addresses a network's resolver listens on: the gateways its interface holds.
pub fn listen_addresses(row: &NetworkRow) -> Vec<IpAddr> {
    let n = &row.network;
    [(n.gateway, n.gateway_auto), (n.gateway6, n.gateway6_auto)]
        .into_iter()
        .filter_map(|(gw, held)| gw.filter(|_| held))
        .collect()
}

/// The DNS configuration `db` (a connection or an open transaction) describes. Only running
/// containers are named, and only running containers have a resolv.conf: it names the
/// resolver of the first DNS network the container joined.
pub fn load(db: &Connection) -> Result<DnsConfig> {
    let mut config = DnsConfig::default();
    let networks: HashMap<String, NetworkRow> = state::networks(db)?
        .into_iter()
        .filter(|r| r.dns && !listen_addresses(r).is_empty())
        .map(|r| (r.network.id.clone(), r))
        .collect();
    if networks.is_empty() {
        return Ok(config);
    }
    for row in networks.values() {
        let file = NetworkFile { network: row.network.name.clone(), binds: listen_addresses(row), entries: vec![] };
        config.files.entry(scope_of(row)).or_default().insert(row.network.id.clone(), file);
    }
    let domains = state::network_dns_domains(db)?;
    let containers: HashMap<String, kleene_plugin_api::Container> =
        state::containers(db)?.into_iter().map(|c| (c.id.clone(), c)).collect();
    let aliases = state::endpoint_aliases(db)?;
    for ep in state::all_endpoints(db)? {
        let (Some(row), Some(c)) = (networks.get(&ep.network_id), containers.get(&ep.container_id)) else {
            continue;
        };
        if !c.running {
            continue;
        }
        if !config.resolv.contains_key(&c.id) {
            config.resolv.insert(c.id.clone(), resolv_conf(&c.name, row, domains.get(&row.network.id)));
        }
        let addresses: Vec<IpAddr> = ep.addresses().collect();
        if addresses.is_empty() {
            continue;
        }
        let mut names: Vec<String> = Vec::new();
        let name = c.name.to_ascii_lowercase();
        if validate_alias(&name).is_ok() {
            names.push(name);
        }
        for alias in aliases.get(&ep.id).into_iter().flatten() {
            if !names.contains(alias) {
                names.push(alias.clone());
            }
        }
        if names.is_empty() {
            tracing::debug!("container {} has no name that is a DNS name; not in DNS", c.name);
            continue;
        }
        let names = qualify(names, domains.get(&row.network.id).map(String::as_str));
        let file = config.files.get_mut(&scope_of(row)).and_then(|f| f.get_mut(&row.network.id));
        file.expect("every DNS network has a file").entries.push(Entry { id: c.id.clone(), addresses, names });
    }
    Ok(config)
}

fn scope_of(row: &NetworkRow) -> Scope {
    if row.network.internal {
        Scope::Internal
    } else {
        Scope::Forwarding
    }
}

/// A container's resolv.conf: the resolver of its (first) DNS network, and that network's
/// domain to search, if it has one.
fn resolv_conf(container: &str, row: &NetworkRow, domain: Option<&String>) -> String {
    let mut out = format!("# kleene: container {container}, DNS of network {}\n", row.network.name);
    for ip in listen_addresses(row) {
        out.push_str(&format!("nameserver {ip}\n"));
    }
    if let Some(domain) = domain {
        out.push_str(&format!("search {domain}\n"));
    }
    out
}

/// Host names as RFC 1123 has them, lowercase: labels of letters, digits and '-', not
/// starting or ending with '-', 1-63 characters each, 253 in all.
pub fn is_dns_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    name.len() <= MAX_NAME && name.split('.').all(label_ok)
}

/// The longest DNS name, in characters (RFC 1035's 255 octets on the wire).
const MAX_NAME: usize = 253;

/// Aliases (and the container names that go into DNS) are DNS names ([`is_dns_name`]).
pub fn validate_alias(name: &str) -> Result<()> {
    if !is_dns_name(name) || name == PROBE_NOBODY {
        bail!(
            "invalid alias '{}': use lowercase DNS labels (letters, digits and '-', not at either end, 1-63 characters) separated by '.'",
            name.escape_debug()
        );
    }
    Ok(())
}

/// Check a `--dns-domain`: a DNS name, taken in any case and kept lowercase (aardvark-dns
/// compares the lowercased question with the names in its files).
pub fn parse_dns_domain(given: &str) -> Result<String> {
    let domain = given.to_ascii_lowercase();
    if !is_dns_name(&domain) {
        bail!(
            "--dns-domain: '{}' is not a DNS name; give labels of letters, digits and '-' (not at either end, 1-63 characters) separated by '.', such as example.internal",
            given.escape_debug()
        );
    }
    Ok(domain)
}

/// A container's names on a network with a DNS domain: each as given, then each qualified
/// with the domain. aardvark-dns 1.4 answers a name only as written in its file (its own
/// search-domain filter is one per process, not per network: docs/dns.md), so the
/// qualified forms are written out. One that would be too long for DNS is left out.
fn qualify(names: Vec<String>, domain: Option<&str>) -> Vec<String> {
    let Some(domain) = domain else { return names };
    let qualified: Vec<String> =
        names.iter().map(|n| format!("{n}.{domain}")).filter(|q| q.len() <= MAX_NAME && !names.contains(q)).collect();
    names.into_iter().chain(qualified).collect()
}

/// Check `--alias` values: DNS names, no duplicates (kept in the order given).
pub fn parse_aliases(given: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for alias in given {
        validate_alias(alias)?;
        if !out.contains(alias) {
            out.push(alias.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, addrs: &[&str], names: &[&str]) -> Entry {
        Entry {
            id: id.into(),
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn file(entries: Vec<Entry>) -> NetworkFile {
        NetworkFile {
            network: "web".into(),
            binds: vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            entries,
        }
    }

    #[test]
    fn files_are_in_aardvarks_format() {
        let f = file(vec![
            entry("aaaaaaaaaaaa", &["10.0.0.2", "fd00::2"], &["web", "www"]),
            entry("bbbbbbbbbbbb", &["fd00::3"], &["db"]),
        ]);
        assert_eq!(f.render(), "10.0.0.1,fd00::1\naaaaaaaaaaaa 10.0.0.2 fd00::2 web,www\nbbbbbbbbbbbb  fd00::3 db\n");
    }

    #[test]
    fn the_probe_asks_for_a_name_that_changed() {
        let before = file(vec![entry("aaaaaaaaaaaa", &["10.0.0.2"], &["web"])]);
        let after = file(vec![
            entry("aaaaaaaaaaaa", &["10.0.0.2"], &["web"]),
            entry("bbbbbbbbbbbb", &["10.0.0.3", "fd00::3"], &["db", "sql"]),
        ]);
        let p = after.probe(Some(&before.render()));
        assert_eq!((p.name.as_str(), p.v6), ("db", false));
        assert_eq!(p.answer, ["10.0.0.3".parse().unwrap()].into());
        // The other way round: the name is gone, so the answer must be empty.
        let p = before.probe(Some(&after.render()));
        assert_eq!(p.name, "db");
        assert!(p.answer.is_empty());
        // An IPv6-only name is asked as AAAA.
        let v6 = file(vec![entry("cccccccccccc", &["fd00::4"], &["six"])]);
        let p = v6.probe(None);
        assert_eq!((p.name.as_str(), p.v6), ("six", true));
        // Nothing changed by name: any answer from the listen address.
        let p = file(vec![]).probe(None);
        assert_eq!((p.name.as_str(), p.answer.len()), (PROBE_NOBODY, 0));
        assert_eq!(p.server, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn aliases_are_dns_names() {
        for ok in ["web", "a", "web-1", "db.internal", "x2", &"a".repeat(63)] {
            validate_alias(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "-web", "web-", "we_b", "Web", "a..b", "a b", "a,b", "a\nb", &"a".repeat(64), PROBE_NOBODY] {
            assert!(validate_alias(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_aliases(&["a".into(), "b".into(), "a".into()]).unwrap(), ["a", "b"]);
    }

    #[test]
    fn a_dns_domain_is_a_dns_name_kept_lowercase() {
        assert_eq!(parse_dns_domain("Example.Internal").unwrap(), "example.internal");
        assert_eq!(parse_dns_domain("lan").unwrap(), "lan");
        for bad in ["", ".", "example.internal.", "a..b", "ex ample", "ex_ample", "-x.y", "a,b", &"a".repeat(64)] {
            let err = parse_dns_domain(bad).unwrap_err().to_string();
            assert!(err.starts_with("--dns-domain: ") && !err.contains('\n'), "{bad:?}: {err}");
        }
    }

    #[test]
    fn names_are_also_written_qualified_with_the_domain() {
        let names = || vec!["web".to_string(), "www".to_string()];
        assert_eq!(qualify(names(), None), ["web", "www"]);
        assert_eq!(
            qualify(names(), Some("example.internal")),
            ["web", "www", "web.example.internal", "www.example.internal"]
        );
        // Too long for DNS qualified: left out, the plain name stays.
        let long = ["a", "b", "c", "d"].map(|l| l.repeat(62)).join(".");
        assert_eq!(qualify(names(), Some(&long)), ["web", "www"]);
        let f = NetworkFile {
            network: "n".into(),
            binds: vec!["10.0.0.1".parse().unwrap()],
            entries: vec![Entry {
                id: "aaaaaaaaaaaa".into(),
                addresses: vec!["10.0.0.2".parse().unwrap()],
                names: qualify(vec!["web".into()], Some("lan")),
            }],
        };
        assert_eq!(f.render(), "10.0.0.1\naaaaaaaaaaaa 10.0.0.2  web,web.lan\n");
    }
}
