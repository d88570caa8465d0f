//! What the cluster keeps in etcd, and the transactions that change it.
//!
//! ```text
//! /kleene/v1/hosts/<underlay>         a member host                         (its lease)
//! /kleene/v1/networks/<id>            an overlay network's definition
//! /kleene/v1/names/<name>             -> id: names are unique cluster-wide
//! /kleene/v1/vnis/<vni>               -> id: so are VNIs
//! /kleene/v1/ips/<network id>/<ip>    the endpoint holding the address      (its host's lease)
//! ```
//!
//! An address key is at once the IPAM record (created only if absent, in one transaction)
//! and what other hosts program their forwarding and neighbour entries from. It is bound to
//! its host's lease: when a host dies, its addresses leave the pool's used set and the other
//! hosts' entries with the lease.

use super::etcd::{Compare, Etcd, Kv, TxnOp};
use anyhow::{bail, Context, Result};
use kleene_plugin_api::{Cidr, Network, Peer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

pub const ROOT: &str = "/kleene/v1/";

pub fn host_key(host: IpAddr) -> String {
    format!("{ROOT}hosts/{host}")
}
fn network_key(id: &str) -> String {
    format!("{ROOT}networks/{id}")
}
fn name_key(name: &str) -> String {
    format!("{ROOT}names/{name}")
}
fn vni_key(vni: u32) -> String {
    format!("{ROOT}vnis/{vni}")
}
fn ips_prefix(network: &str) -> String {
    format!("{ROOT}ips/{network}/")
}
pub fn ip_key(network: &str, ip: IpAddr) -> String {
    format!("{}{ip}", ips_prefix(network))
}

/// An overlay network as the cluster defines it (what is the same on every host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNetwork {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub vni: u32,
    pub subnet: Option<Cidr>,
    pub subnet6: Option<Cidr>,
    pub gateway: Option<IpAddr>,
    pub gateway_auto: bool,
    pub gateway6: Option<IpAddr>,
    pub gateway6_auto: bool,
    /// NAT out of each host: "auto" (each host's default-route interface), "" (none), or an
    /// interface name every host has.
    pub nat: String,
    pub icc: bool,
    pub internal: bool,
    /// The MTU of the network's links on every host (`--mtu`); absent, each host computes
    /// its own from its underlay ([`super::mtu`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl ClusterNetwork {
    /// The bridge every host names the network's side after.
    pub fn interface(vni: u32) -> String {
        format!("kov{vni}")
    }
}

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub endpoint: String,
    pub container: String,
    pub host: IpAddr,
    pub mac: [u8; 6],
}

/// Everything under [`ROOT`] at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub revision: i64,
    /// Member hosts, with the lease that keeps each a member.
    pub hosts: BTreeMap<IpAddr, i64>,
    pub networks: BTreeMap<String, ClusterNetwork>,
    /// Per network id: address → holder.
    pub addresses: BTreeMap<String, BTreeMap<IpAddr, Holder>>,
}

impl Snapshot {
    pub fn read(etcd: &mut Etcd) -> Result<Snapshot> {
        let (kvs, revision) = etcd.range_prefix(ROOT)?;
        let mut snap = Snapshot { revision, ..Snapshot::default() };
        for kv in kvs {
            snap.add(&kv);
        }
        Ok(snap)
    }

    /// Take in one key; keys kleene cannot read are skipped (with a warning), so one bad
    /// record does not stop a host from syncing the rest.
    fn add(&mut self, kv: &Kv) {
        let Some(rest) = kv.key.strip_prefix(ROOT) else { return };
        let parsed: Result<()> = (|| {
            if let Some(host) = rest.strip_prefix("hosts/") {
                self.hosts.insert(host.parse()?, kv.lease);
            } else if rest.starts_with("networks/") {
                let n: ClusterNetwork = serde_json::from_slice(&kv.value)?;
                self.networks.insert(n.id.clone(), n);
            } else if let Some(ip) = rest.strip_prefix("ips/") {
                let (network, ip) = ip.split_once('/').context("no address")?;
                let holder: Holder = serde_json::from_slice(&kv.value)?;
                self.addresses.entry(network.to_string()).or_default().insert(ip.parse()?, holder);
            }
            Ok(())
        })();
        if let Err(e) = parsed {
            tracing::warn!("skipping unreadable cluster key {}: {e:#}", kv.key);
        }
    }

    /// The containers of `network` on hosts other than `me`.
    pub fn peers(&self, network: &str, me: IpAddr) -> BTreeSet<Peer> {
        let held = self.addresses.get(network).into_iter().flatten();
        held.filter(|(_, h)| h.host != me).map(|(ip, h)| Peer { address: *ip, mac: h.mac, host: h.host }).collect()
    }

    pub fn used(&self, network: &str) -> BTreeSet<IpAddr> {
        self.addresses.get(network).map(|a| a.keys().copied().collect()).unwrap_or_default()
    }

    pub fn by_name(&self, name: &str) -> Option<&ClusterNetwork> {
        self.networks.values().find(|n| n.name == name)
    }
}

/// Define a network for the whole cluster: the name and VNI are claimed in the same
/// transaction, so two hosts creating at once cannot both win.
pub fn create_network(etcd: &mut Etcd, n: &ClusterNetwork) -> Result<bool> {
    let compare = [Compare::Absent(name_key(&n.name)), Compare::Absent(vni_key(n.vni))];
    let puts = [
        TxnOp::Put { key: network_key(&n.id), value: serde_json::to_vec(n)?, lease: 0 },
        TxnOp::Put { key: name_key(&n.name), value: n.id.as_bytes().to_vec(), lease: 0 },
        TxnOp::Put { key: vni_key(n.vni), value: n.id.as_bytes().to_vec(), lease: 0 },
    ];
    Ok(etcd.txn(&compare, &puts, &[])?.succeeded)
}

/// Remove a network from the cluster, only if no host holds an address in it.
pub fn remove_network(etcd: &mut Etcd, n: &ClusterNetwork) -> Result<bool> {
    let compare = [Compare::NoneWithPrefix(ips_prefix(&n.id)), Compare::Present(network_key(&n.id))];
    let deletes = [TxnOp::Delete(network_key(&n.id)), TxnOp::Delete(name_key(&n.name)), TxnOp::Delete(vni_key(n.vni))];
    Ok(etcd.txn(&compare, &deletes, &[])?.succeeded)
}

/// Claim `ip` in `network` for `holder`, under `lease`, if nobody holds it and the network
/// still exists. On failure, the addresses held now (read in the same round trip).
pub fn claim(
    etcd: &mut Etcd,
    network: &str,
    ip: IpAddr,
    holder: &Holder,
    lease: i64,
) -> Result<std::result::Result<(), BTreeSet<IpAddr>>> {
    let key = ip_key(network, ip);
    let compare = [Compare::Absent(key.clone()), Compare::Present(network_key(network))];
    let put = [TxnOp::Put { key, value: serde_json::to_vec(holder)?, lease }];
    let read = [TxnOp::RangePrefix(ips_prefix(network)), TxnOp::RangePrefix(network_key(network))];
    let result = etcd.txn(&compare, &put, &read)?;
    if result.succeeded {
        return Ok(Ok(()));
    }
    if result.ranges.get(1).is_some_and(|r| r.is_empty()) {
        bail!("network {network} was removed from the cluster meanwhile");
    }
    let prefix = ips_prefix(network);
    let held = result.ranges.first().into_iter().flatten();
    Ok(Err(held.filter_map(|kv| kv.key.strip_prefix(&prefix)?.parse().ok()).collect()))
}

/// Give back `ip`, if `endpoint` still holds it (a later holder's claim is left alone).
pub fn release(etcd: &mut Etcd, network: &str, ip: IpAddr, holder: &Holder) -> Result<()> {
    let key = ip_key(network, ip);
    etcd.txn(&[Compare::ValueIs(key.clone(), serde_json::to_vec(holder)?)], &[TxnOp::Delete(key)], &[])?;
    Ok(())
}

/// The local network row of a cluster network, as host `local` builds it.
pub fn local_network(n: &ClusterNetwork, local: IpAddr, port: u16, host_gw_if: &str) -> Network {
    Network {
        id: n.id.clone(),
        name: n.name.clone(),
        kind: n.kind.clone(),
        interface: ClusterNetwork::interface(n.vni),
        subnet: n.subnet,
        subnet6: n.subnet6,
        gateway: n.gateway,
        gateway_auto: n.gateway_auto,
        gateway6: n.gateway6,
        gateway6_auto: n.gateway6_auto,
        nat: if n.nat == "auto" { host_gw_if.to_string() } else { n.nat.clone() },
        icc: n.icc,
        internal: n.internal,
        // The definition's MTU, if it names one; the sync fills in this host's otherwise.
        cluster: Some(kleene_plugin_api::ClusterScope { vni: n.vni, local, port, mtu: n.mtu }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_sorts_keys_into_hosts_networks_and_holders() {
        let holder =
            Holder { endpoint: "e".into(), container: "c".into(), host: "192.0.2.2".parse().unwrap(), mac: [2; 6] };
        let mut snap = Snapshot::default();
        let kv = |key: String, value: Vec<u8>| Kv { key, value, mod_revision: 1, lease: 0 };
        snap.add(&kv(host_key("192.0.2.2".parse().unwrap()), b"{}".to_vec()));
        snap.add(&kv(ip_key("n1", "10.9.0.2".parse().unwrap()), serde_json::to_vec(&holder).unwrap()));
        snap.add(&kv(format!("{ROOT}ips/garbage"), b"x".to_vec()));
        assert_eq!(snap.hosts.len(), 1);
        assert_eq!(snap.used("n1").into_iter().collect::<Vec<_>>(), vec!["10.9.0.2".parse::<IpAddr>().unwrap()]);
        assert!(snap.peers("n1", "192.0.2.2".parse().unwrap()).is_empty(), "a host is not its own peer");
        assert_eq!(snap.peers("n1", "192.0.2.1".parse().unwrap()).len(), 1);
    }
}
