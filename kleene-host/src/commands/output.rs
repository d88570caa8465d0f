//! Output in Kleene's API field names (`--json`) and plain tables.

use kleene_plugin_api::{Endpoint, Network};
use serde_json::{json, Value};
use std::collections::HashMap;

fn text<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

pub fn network_json(n: &Network) -> Value {
    json!({
        "id": n.id, "name": n.name, "type": n.kind, "interface": n.interface,
        "subnet": text(n.subnet), "subnet6": text(n.subnet6),
        "gateway": text(n.gateway), "gateway6": text(n.gateway6),
        "nat": n.nat, "icc": n.icc, "internal": n.internal,
    })
}

/// An endpoint, with its DNS aliases (from `aliases`, by endpoint id).
pub fn endpoint_json(e: &Endpoint, aliases: &HashMap<String, Vec<String>>) -> Value {
    json!({
        "id": e.id, "network_id": e.network_id, "container_id": e.container_id,
        "epair": e.epair, "interface": e.interface,
        "ip_address": text(e.ip_address), "ip_address6": text(e.ip_address6),
        "aliases": aliases.get(&e.id).cloned().unwrap_or_default(),
    })
}

/// Columns padded to the widest cell.
pub fn print_table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect()).chain(rows).collect();
    let widths: Vec<usize> =
        (0..header.len()).map(|i| rows.iter().map(|r| r.get(i).map_or(0, |c| c.len())).max().unwrap_or(0)).collect();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}
