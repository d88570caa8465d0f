//! Cluster-wide addresses: an address of a cluster-scoped network is claimed in etcd (a key
//! created only if absent, bound to this host's lease) before the plan that uses it runs,
//! and given back when its endpoint is forgotten.
//!
//! An auto address costs one round trip when the last snapshot was right about what is
//! free; a lost race returns the addresses held now in the same round trip, and the next
//! attempt picks from those.

use super::store::{self, Holder};
use crate::commands::attach::{family, requested_address};
use crate::state::{self, ipam::usable_range};
use anyhow::{anyhow, bail, Context, Result};
use kleene_plugin_api::model::from_bits;
use kleene_plugin_api::{local_mac, Cidr, Endpoint, Network};
use rusqlite::Connection;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// How many lost races an auto address may take before giving up.
const ATTEMPTS: usize = 64;

/// A new endpoint of `container_id` on the cluster network `net`, its addresses claimed.
pub fn new_endpoint(net: &Network, container_id: &str, ip: Option<&str>, ip6: Option<&str>) -> Result<Endpoint> {
    let cluster = super::required(&format!("network '{}'", net.name))?;
    let id = state::new_id();
    let holder = Holder {
        endpoint: id.clone(),
        container: container_id.to_string(),
        host: cluster.config.address,
        mac: local_mac(&id),
    };
    let what = || format!("cannot claim an address in network '{}'", net.name);
    let v4 = claim_family(cluster, net, &holder, ip, true).with_context(what)?;
    let v6 = match claim_family(cluster, net, &holder, ip6, false).with_context(what) {
        Ok(v6) => v6,
        Err(e) => {
            if let Some(v4) = v4 {
                let _ = store::release(&mut cluster.etcd(), &net.id, v4, &holder);
            }
            return Err(e);
        }
    };
    Ok(Endpoint {
        id,
        network_id: net.id.clone(),
        container_id: container_id.to_string(),
        epair: None,
        interface: None,
        ip_address: v4,
        ip_address6: v6,
        mac: Some(holder.mac),
    })
}

fn claim_family(
    cluster: &super::Cluster,
    net: &Network,
    holder: &Holder,
    requested: Option<&str>,
    v4: bool,
) -> Result<Option<IpAddr>> {
    let (subnet, gateway) = family(net, v4);
    if cluster.dry_run {
        return match requested {
            Some("") => Ok(None),
            None | Some("auto") | Some("<auto>") => {
                Ok(subnet.and_then(|s| lowest_free(&s, gateway, &cluster.last_used(&net.id))))
            }
            Some(text) => requested_address(net, text, v4).map(Some),
        };
    }
    let lease = cluster.lease()?;
    let mut etcd = cluster.etcd();
    match requested {
        Some("") => Ok(None),
        None | Some("auto") | Some("<auto>") => {
            let Some(subnet) = subnet else { return Ok(None) };
            let mut used = cluster.last_used(&net.id);
            for _ in 0..ATTEMPTS {
                let ip = lowest_free(&subnet, gateway, &used)
                    .ok_or_else(|| anyhow!("no free address left in network '{}' ({subnet})", net.name))?;
                match store::claim(&mut etcd, &net.id, ip, holder, lease)? {
                    Ok(()) => return Ok(Some(ip)),
                    Err(held) => used = held,
                }
            }
            bail!("could not claim an address in network '{}' after {ATTEMPTS} attempts; try again", net.name)
        }
        Some(text) => {
            let ip = requested_address(net, text, v4)?;
            match store::claim(&mut etcd, &net.id, ip, holder, lease)? {
                Ok(()) => Ok(Some(ip)),
                Err(_) => {
                    bail!("address {ip} is already in use in network '{}' (on some host of the cluster)", net.name)
                }
            }
        }
    }
}

/// The lowest usable address of `subnet` that is neither the gateway nor `used`.
pub fn lowest_free(subnet: &Cidr, gateway: Option<IpAddr>, used: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    let (first, last) = usable_range(subnet);
    let taken = |bits: u128| {
        let ip = from_bits(subnet.addr, bits);
        used.contains(&ip) || Some(ip) == gateway
    };
    let mut bits = first;
    while bits <= last {
        if !taken(bits) {
            return Some(from_bits(subnet.addr, bits));
        }
        bits = bits.checked_add(1)?;
    }
    None
}

/// Give back the addresses of an endpoint of a cluster network (nothing for other
/// networks). Called inside the transaction that forgets the endpoint: if etcd refuses,
/// the whole change is rolled back.
pub fn release_endpoint(db: &Connection, ep: &Endpoint) -> Result<()> {
    let network = state::network_by_id(db, &ep.network_id)?.network;
    if !super::is_cluster(&network) {
        return Ok(());
    }
    let cluster = super::required(&format!("network '{}'", network.name))?;
    let Some(mac) = ep.mac.filter(|_| !cluster.dry_run) else { return Ok(()) };
    let holder =
        Holder { endpoint: ep.id.clone(), container: ep.container_id.clone(), host: cluster.config.address, mac };
    let mut etcd = cluster.etcd();
    for ip in ep.addresses() {
        store::release(&mut etcd, &network.id, ip, &holder)
            .with_context(|| format!("cannot give back {ip} in network '{}'", network.name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_free_address_skips_the_gateway_and_used_ones() {
        let subnet: Cidr = "10.9.0.0/29".parse().unwrap();
        let gw = Some("10.9.0.1".parse().unwrap());
        let mut used = BTreeSet::new();
        assert_eq!(lowest_free(&subnet, gw, &used), Some("10.9.0.2".parse().unwrap()));
        for last in 2..=6 {
            used.insert(format!("10.9.0.{last}").parse().unwrap());
        }
        assert_eq!(lowest_free(&subnet, gw, &used), None, "broadcast .7 is never handed out");
    }
}
