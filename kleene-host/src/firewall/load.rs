//! The ruleset as state says it should be: networks, their endpoints and the published ports
//! of their containers, read through whatever connection (or open transaction) the caller has.

use super::{parse_publish, FwEndpoint, FwNetwork, Ruleset};
use crate::state;
use anyhow::{anyhow, Result};
use rusqlite::Connection;
use std::collections::HashMap;
use std::net::IpAddr;

/// The ruleset of everything in `db`. Its `host_gw_if` is left empty: only pf needs the
/// default-route interface, and the FreeBSD renderer fills it in.
pub fn load(db: &Connection) -> Result<Ruleset> {
    let mut published = HashMap::new();
    for (id, specs) in state::published(db)? {
        let ports = specs
            .iter()
            .map(|s| parse_publish(s).map_err(|e| anyhow!("container {id}: stored {e}")))
            .collect::<Result<Vec<_>>>()?;
        published.insert(id, ports);
    }
    let mut networks: Vec<FwNetwork> = state::networks(db)?
        .into_iter()
        .map(|row| FwNetwork {
            network: row.network,
            forwarded: row.forwarded.unwrap_or(true),
            endpoints: vec![],
            epairs: vec![],
            dns: row.dns,
        })
        .collect();
    let index: HashMap<String, usize> = networks.iter().enumerate().map(|(i, n)| (n.network.id.clone(), i)).collect();
    for (ep, c, stack) in state::endpoints_with_containers(db)? {
        let Some(&i) = index.get(&ep.network_id) else { continue };
        let net = &mut networks[i];
        if c.running {
            net.epairs.extend(ep.epair.clone());
        }
        net.endpoints.push(FwEndpoint {
            published: published.get(&c.id).cloned().unwrap_or_default(),
            container: c.id,
            name: c.name,
            stack: stack.unwrap_or(crate::legacy::UNKNOWN_DRIVER_STACK),
            running: c.running,
            v4: ep.ip_address.and_then(|a| match a {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            }),
            v6: ep.ip_address6.and_then(|a| match a {
                IpAddr::V6(v6) => Some(v6),
                IpAddr::V4(_) => None,
            }),
        });
    }
    Ok(Ruleset { networks, host_gw_if: String::new() })
}

/// Which address families need the host to forward packets: a family is needed when a
/// network that lets traffic leave it (not internal) has a subnet of that family and its type
/// forwards (a loopback network's containers send from the host's own stack).
pub fn forwarding_needed(r: &Ruleset) -> (bool, bool) {
    let nets = || r.networks.iter().filter(|n| n.forwarded).map(|n| &n.network).filter(|n| !n.internal);
    (nets().any(|n| n.subnet.is_some()), nets().any(|n| n.subnet6.is_some()))
}
