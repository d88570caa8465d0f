//! The `inet kleene` table as data: named sets and maps with typed elements, and chains. One
//! model is both rendered into the script nftables loads and diffed against the table last
//! applied ([`super::delta`]), so what an element's key is (what `delete element` names) is
//! decided here once, by the type.
//!
//! The model is stored in the run dir after each load. Read back, it is input like any other
//! file: [`Table::from_stored`] accepts only this format, and only elements whose values fit
//! their set's declared type.

use super::TABLE;
use crate::firewall::{quote, Proto};
use kleene_plugin_api::Cidr;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt::{self, Write};
use std::net::IpAddr;

/// The kinds of value kleene's sets hold (nft's datatype names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Datatype {
    Ipv4Addr,
    Ipv6Addr,
    Ifname,
    InetProto,
    InetService,
}

impl Datatype {
    fn as_str(self) -> &'static str {
        match self {
            Datatype::Ipv4Addr => "ipv4_addr",
            Datatype::Ipv6Addr => "ipv6_addr",
            Datatype::Ifname => "ifname",
            Datatype::InetProto => "inet_proto",
            Datatype::InetService => "inet_service",
        }
    }
}

/// One field of an element's key or of a map's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    Addr(IpAddr),
    /// A prefix, in sets with `flags interval`.
    Net(Cidr),
    Ifname(String),
    Proto(Proto),
    Port(u16),
}

impl Value {
    /// Whether the value can stand in a field of type `ty` (`interval`: the set takes prefixes).
    fn fits(&self, ty: Datatype, interval: bool) -> bool {
        let v4 = |a: &IpAddr| a.is_ipv4() == (ty == Datatype::Ipv4Addr);
        match (self, ty) {
            (Value::Addr(a), Datatype::Ipv4Addr | Datatype::Ipv6Addr) => v4(a),
            (Value::Net(c), Datatype::Ipv4Addr | Datatype::Ipv6Addr) => interval && v4(&c.addr),
            (Value::Ifname(name), Datatype::Ifname) => is_ifname(name),
            (Value::Proto(_), Datatype::InetProto) | (Value::Port(_), Datatype::InetService) => true,
            _ => false,
        }
    }
}

/// What the kernel takes as an interface name; nothing [`quote`] would have to alter.
fn is_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Addr(a) => a.fmt(f),
            Value::Net(c) => c.fmt(f),
            Value::Ifname(name) => f.write_str(&quote(name)),
            Value::Proto(p) => f.write_str(p.as_str()),
            Value::Port(p) => p.fmt(f),
        }
    }
}

/// Fields joined as nft concatenates them (`a . b`).
struct Concat<'a, T>(&'a [T]);

impl<T: fmt::Display> fmt::Display for Concat<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" . ")?;
            }
            v.fmt(f)?;
        }
        Ok(())
    }
}

impl fmt::Display for Datatype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a map's elements map to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MapTo {
    Verdict,
    Values(Vec<Datatype>),
}

/// A map element's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Data {
    /// `jump <chain>`.
    Jump(String),
    Values(Vec<Value>),
}

impl Data {
    fn fits(&self, to: &MapTo) -> bool {
        match (self, to) {
            (Data::Jump(chain), MapTo::Verdict) => is_chain_name(chain),
            (Data::Values(v), MapTo::Values(ty)) => {
                v.len() == ty.len() && v.iter().zip(ty).all(|(v, t)| v.fits(*t, false))
            }
            _ => false,
        }
    }
}

fn is_chain_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One element of a set or map. Its identity in the kernel is [`Element::key`] alone: the
/// comment and the map value are attributes of that key. Stored as `[key, comment, data]`:
/// a table holds thousands of elements, and field names would double the file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "(Vec<Value>, Option<String>, Option<Data>)")]
pub struct Element {
    pub key: Vec<Value>,
    pub comment: Option<String>,
    pub data: Option<Data>,
}

impl From<(Vec<Value>, Option<String>, Option<Data>)> for Element {
    fn from((key, comment, data): (Vec<Value>, Option<String>, Option<Data>)) -> Element {
        Element { key, comment, data }
    }
}

impl Serialize for Element {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.key, &self.comment, &self.data).serialize(s)
    }
}

impl Element {
    pub fn new(key: Vec<Value>) -> Element {
        Element { key, comment: None, data: None }
    }

    pub fn comment(self, comment: String) -> Element {
        Element { comment: Some(comment), ..self }
    }

    pub fn data(self, data: Data) -> Element {
        Element { data: Some(data), ..self }
    }

    /// The key as `delete element` names it.
    pub fn key(&self) -> impl fmt::Display + '_ {
        Concat(&self.key)
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Concat(&self.key).fmt(f)?;
        if let Some(c) = &self.comment {
            write!(f, " comment {}", quote(c))?;
        }
        match &self.data {
            Some(Data::Jump(chain)) => write!(f, " : jump {chain}"),
            Some(Data::Values(v)) => write!(f, " : {}", Concat(v)),
            None => Ok(()),
        }
    }
}

/// A named set (`map` is None) or map, with its elements in the order they were added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Set {
    pub name: String,
    pub key: Vec<Datatype>,
    pub map: Option<MapTo>,
    /// `flags interval`: elements may be prefixes.
    pub interval: bool,
    pub elements: Vec<Element>,
}

impl Set {
    pub fn new(name: impl Into<String>, key: Vec<Datatype>) -> Set {
        Set { name: name.into(), key, map: None, interval: false, elements: Vec::new() }
    }

    pub fn interval(self) -> Set {
        Set { interval: true, ..self }
    }

    pub fn map_to(self, to: MapTo) -> Set {
        Set { map: Some(to), ..self }
    }

    /// Adds `elements`; a key already present (the same address twice) keeps its first entry.
    pub fn with(mut self, elements: impl IntoIterator<Item = Element>) -> Set {
        self.elements.extend(elements);
        let keep: Vec<bool> = {
            let mut seen = HashSet::with_capacity(self.elements.len());
            self.elements.iter().map(|e| seen.insert(&e.key)).collect()
        };
        let mut keep = keep.into_iter();
        self.elements.retain(|_| keep.next().unwrap_or(true));
        self
    }

    /// Everything but the elements is equal: the kernel's set can be updated element-wise.
    pub fn same_declaration(&self, other: &Set) -> bool {
        (&self.name, &self.key, &self.map, self.interval) == (&other.name, &other.key, &other.map, other.interval)
    }

    fn admits(&self, e: &Element) -> bool {
        let key_fits =
            e.key.len() == self.key.len() && e.key.iter().zip(&self.key).all(|(v, t)| v.fits(*t, self.interval));
        let data_fits = match (&e.data, &self.map) {
            (None, None) => true,
            (Some(d), Some(to)) => d.fits(to),
            _ => false,
        };
        key_fits && data_fits
    }

    fn render(&self, out: &mut String) {
        let kind = if self.map.is_some() { "map" } else { "set" };
        let _ = write!(out, "\t{kind} {} {{ type {}", self.name, Concat(&self.key));
        match &self.map {
            Some(MapTo::Verdict) => out.push_str(" : verdict"),
            Some(MapTo::Values(v)) => {
                let _ = write!(out, " : {}", Concat(v));
            }
            None => {}
        }
        out.push(';');
        if self.interval {
            out.push_str(" flags interval;");
        }
        if self.elements.is_empty() {
            out.push_str(" }\n");
            return;
        }
        out.push_str("\n\t\telements = {\n");
        for (i, e) in self.elements.iter().enumerate() {
            let sep = if i + 1 < self.elements.len() { "," } else { "" };
            let _ = writeln!(out, "\t\t\t{e}{sep}");
        }
        out.push_str("\t\t}\n\t}\n");
    }
}

/// A base chain's hook (its policy is always accept: kleene only drops what it names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// `filter` or `nat`.
    pub kind: String,
    pub hook: String,
    pub priority: String,
}

impl Hook {
    pub fn new(kind: &str, hook: &str, priority: &str) -> Hook {
        Hook { kind: kind.into(), hook: hook.into(), priority: priority.into() }
    }
}

/// A chain: a base chain when it has a hook, else one jumped to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub name: String,
    pub hook: Option<Hook>,
    pub rules: Vec<String>,
}

impl Chain {
    pub fn new(
        name: impl Into<String>,
        hook: Option<Hook>,
        rules: impl IntoIterator<Item = impl Into<String>>,
    ) -> Chain {
        Chain { name: name.into(), hook, rules: rules.into_iter().map(Into::into).collect() }
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "\tchain {} {{", self.name);
        if let Some(Hook { kind, hook, priority }) = &self.hook {
            let _ = writeln!(out, "\t\ttype {kind} hook {hook} priority {priority}; policy accept;");
        }
        for rule in &self.rules {
            let _ = writeln!(out, "\t\t{rule}");
        }
        out.push_str("\t}\n");
    }
}

/// The whole table: sets and maps first (rules refer to them), then chains.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Table {
    pub sets: Vec<Set>,
    pub chains: Vec<Chain>,
}

/// What the run dir holds: the table last loaded, tagged so that another file (or a later
/// kleene's model) is never mistaken for it.
#[derive(Serialize, Deserialize)]
struct Stored<T> {
    kleene_nft_table: u32,
    table: T,
}

/// Bumped whenever the stored model changes meaning.
const STORED_FORMAT: u32 = 1;

impl Table {
    /// The script that atomically replaces the table: creating it first makes the delete
    /// succeed when it did not exist (nft ≥ 1.1's `destroy` on nft 1.0.6).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(256 + 64 * self.sets.iter().map(|s| s.elements.len()).sum::<usize>());
        let _ = write!(out, "table {TABLE} {{}}\ndelete table {TABLE}\ntable {TABLE} {{\n");
        for s in &self.sets {
            s.render(&mut out);
        }
        for c in &self.chains {
            c.render(&mut out);
        }
        out.push_str("}\n");
        out
    }

    /// The model as stored in the run dir.
    pub fn to_stored(&self) -> Vec<u8> {
        serde_json::to_vec(&Stored { kleene_nft_table: STORED_FORMAT, table: self }).expect("plain data serializes")
    }

    /// A stored model, if it is one this kleene wrote: the format matches and every element
    /// fits its set's type (so a delete built from it names only well-formed keys).
    pub fn from_stored(bytes: &[u8]) -> Result<Table, String> {
        let stored: Stored<Table> =
            serde_json::from_slice(bytes).map_err(|e| format!("not a stored kleene table ({e})"))?;
        if stored.kleene_nft_table != STORED_FORMAT {
            return Err(format!("stored table has format {}, not {STORED_FORMAT}", stored.kleene_nft_table));
        }
        let table = stored.table;
        for s in &table.sets {
            if let Some(e) = s.elements.iter().find(|e| !s.admits(e)) {
                return Err(format!("stored set {} holds an element of the wrong type: {e:?}", s.name));
            }
        }
        Ok(table)
    }
}
