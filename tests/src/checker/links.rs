//! Links and addresses: the host side (network interfaces, ipnet aliases, vnet host ends)
//! and the inside of every vnet and disabled container's namespace.

use super::kernel::{self, Link};
use super::state::{Cidr, Container, Endpoint, Network};
use super::{Scene, Stack};
use crate::DYING_GROUP;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The full-length prefix of `ip`'s family (how ipnet aliases are added).
fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// The addresses kleene puts on a network's own interface: the gateways the bridge type
/// holds (auto ones), and the aliases of running ipnet containers.
fn expected_on_network(scene: &Scene, net: &Network) -> BTreeSet<(IpAddr, u8)> {
    let mut want = BTreeSet::new();
    if net.kind == "bridge" {
        let held = [(net.gateway, net.gateway_auto, net.subnet), (net.gateway6, net.gateway6_auto, net.subnet6)];
        for (gw, auto, subnet) in held {
            if let (Some(gw), true, Some((_, prefix))) = (gw, auto, subnet) {
                want.insert((gw, prefix));
            }
        }
    }
    for (_, ep) in scene.running_endpoints(Stack::Restricted) {
        if ep.network_id == net.id {
            want.extend(ep.addresses().map(|ip| (ip, host_prefix(ip))));
        }
    }
    want
}

/// Host side: every link explained by state, every network interface as its type builds
/// it, every vnet host end on its bridge.
pub fn check_host(scene: &Scene, out: &mut Vec<String>) {
    let by_name: BTreeMap<&str, &Link> = scene.host_links.iter().map(|l| (l.name.as_str(), l)).collect();
    let mut explained: BTreeSet<&str> = BTreeSet::from(["lo"]);
    explained.extend(scene.foreign_links.iter().map(String::as_str));
    for net in &scene.view.networks {
        explained.insert(&net.interface);
        let Some(link) = by_name.get(net.interface.as_str()) else {
            out.push(format!("network {}: interface {} is missing", net.name, net.interface));
            continue;
        };
        let want = expected_on_network(scene, net);
        let have: BTreeSet<(IpAddr, u8)> = link.global.iter().copied().collect();
        if net.kind == "custom" {
            for missing in want.difference(&have) {
                out.push(format!("network {}: {} lacks {}/{}", net.name, net.interface, missing.0, missing.1));
            }
            continue;
        }
        if !link.up {
            out.push(format!("network {}: interface {} is down", net.name, net.interface));
        }
        let kind_wanted = match net.kind.as_str() {
            "bridge" => Some("bridge"),
            _ => net.link_kind.as_deref(),
        };
        if kind_wanted.is_some() && link.kind.as_deref() != kind_wanted {
            out.push(format!(
                "network {}: {} is a {:?} link, state says {kind_wanted:?}",
                net.name, net.interface, link.kind
            ));
        }
        compare_addresses(&format!("network {}: {}", net.name, net.interface), &want, &have, out);
    }
    for (c, ep) in scene.running_endpoints(Stack::Private) {
        let Some(net) = scene.view.network(&ep.network_id) else { continue };
        let Some(host) = ep.epair.as_deref() else {
            out.push(format!("container {}: running, but its endpoint in {} names no host end", c.name, net.name));
            continue;
        };
        explained.insert(host);
        let Some(link) = by_name.get(host) else {
            out.push(format!("container {}: host end {host} (network {}) is missing", c.name, net.name));
            continue;
        };
        if link.kind.as_deref() != Some("veth") || link.master.as_deref() != Some(net.interface.as_str()) || !link.up {
            out.push(format!(
                "container {}: host end {host} should be an up veth on {}, is {:?} on {:?} (up: {})",
                c.name, net.interface, link.kind, link.master, link.up
            ));
        }
        if !link.global.is_empty() {
            out.push(format!("container {}: host end {host} holds addresses {:?}", c.name, link.global));
        }
    }
    let (retired, leftovers): (Vec<&Link>, Vec<&Link>) =
        scene.host_links.iter().filter(|l| !explained.contains(l.name.as_str())).partition(|l| is_retired(l));
    // A retired host end (down, in kleene's group of dying links) is deleted right after
    // the command, by a process it leaves behind: it must go, and soon.
    for (link, fate) in retired.iter().zip(settle(scene, &retired)) {
        if fate.starts_with("still") {
            out.push(format!("retired link {} was not deleted ({fate})", link.name));
        }
    }
    if leftovers.is_empty() {
        return;
    }
    // Say whether each goes away by itself (a pair end that dies with its namespace, which
    // the kernel destroys asynchronously) or stays: two different bugs.
    let fate = settle(scene, &leftovers);
    for (link, fate) in leftovers.iter().zip(fate) {
        out.push(format!(
            "link {} ({:?}) exists but nothing in state explains it (leftover; {fate})",
            link.name, link.kind
        ));
    }
}

fn is_retired(link: &Link) -> bool {
    link.group.as_deref() == Some(DYING_GROUP) && !link.up
}

/// For each leftover link, how long it lasted after the check first saw it (up to 1 s).
fn settle(scene: &Scene, leftovers: &[&Link]) -> Vec<String> {
    let started = std::time::Instant::now();
    let mut gone: Vec<Option<std::time::Duration>> = vec![None; leftovers.len()];
    while started.elapsed() < std::time::Duration::from_secs(1) && gone.iter().any(Option::is_none) {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let Ok(now) = kernel::links(&scene.sandbox.netns_path()) else { break };
        for (i, l) in leftovers.iter().enumerate() {
            if gone[i].is_none() && !now.iter().any(|n| n.name == l.name && n.ifindex == l.ifindex) {
                gone[i] = Some(started.elapsed());
            }
        }
    }
    gone.into_iter()
        .map(|g| match g {
            Some(d) => format!("gone by itself within {} ms", d.as_millis()),
            None => "still there 1 s later".into(),
        })
        .collect()
}

fn compare_addresses(what: &str, want: &BTreeSet<(IpAddr, u8)>, have: &BTreeSet<(IpAddr, u8)>, out: &mut Vec<String>) {
    for (ip, p) in want.difference(have) {
        out.push(format!("{what} lacks {ip}/{p}"));
    }
    for (ip, p) in have.difference(want) {
        out.push(format!("{what} holds {ip}/{p}, which nothing in state explains (leftover)"));
    }
}

/// Inside a running container's namespace: vnet has lo plus one pair end per endpoint
/// with exactly its addresses; disabled has only a downed lo.
pub fn check_inside(scene: &Scene, c: &Container, stack: Stack, out: &mut Vec<String>) {
    let pin = scene.pin(&c.id);
    let links = match kernel::links(&pin) {
        Ok(l) => l,
        Err(e) => return out.push(format!("container {}: cannot read its namespace: {e}", c.name)),
    };
    let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    let lo_up = links.iter().any(|l| l.name == "lo" && l.up);
    if stack == Stack::Disabled {
        if names != ["lo"] || lo_up {
            out.push(format!(
                "container {} (disabled): namespace should hold only a downed lo, has {names:?} (lo up: {lo_up})",
                c.name
            ));
        }
        return;
    }
    if !lo_up {
        out.push(format!("container {}: lo is down in its namespace", c.name));
    }
    let endpoints = scene.view.endpoints_of(&c.id);
    let mut explained: BTreeSet<&str> = BTreeSet::from(["lo"]);
    for ep in &endpoints {
        let Some(net) = scene.view.network(&ep.network_id) else { continue };
        let Some(peer_name) = ep.interface.as_deref() else {
            out.push(format!("container {}: running, but its endpoint in {} names no interface", c.name, net.name));
            continue;
        };
        explained.insert(peer_name);
        let Some(peer) = links.iter().find(|l| l.name == peer_name) else {
            out.push(format!("container {}: {peer_name} (network {}) is missing in its namespace", c.name, net.name));
            continue;
        };
        check_peer(scene, c, net, ep, peer, out);
    }
    for l in &links {
        if !explained.contains(l.name.as_str()) {
            out.push(format!("container {}: link {} in its namespace is a leftover", c.name, l.name));
        }
    }
    for v6 in [false, true] {
        check_default_route(scene, c, &endpoints, v6, out);
    }
}

fn check_peer(scene: &Scene, c: &Container, net: &Network, ep: &Endpoint, peer: &Link, out: &mut Vec<String>) {
    let what = format!("container {}: {} (network {})", c.name, peer.name, net.name);
    if peer.kind.as_deref() != Some("veth") || !peer.up {
        out.push(format!("{what} should be an up veth, is {:?} (up: {})", peer.kind, peer.up));
    }
    let want: BTreeSet<(IpAddr, u8)> =
        ep.addresses().filter_map(|ip| net.subnet_for(ip).map(|(_, p): Cidr| (ip, p))).collect();
    let have: BTreeSet<(IpAddr, u8)> = peer.global.iter().copied().collect();
    compare_addresses(&what, &want, &have, out);
    // The pair must join this very peer to this very host end.
    let host = ep.epair.as_deref().and_then(|h| scene.host_links.iter().find(|l| l.name == h));
    if let Some(host) = host {
        if host.peer_index != Some(peer.ifindex) || peer.peer_index != Some(host.ifindex) {
            out.push(format!("{what} is not the peer of host end {}", host.name));
        }
    }
}

/// At most one default route per family, through the gateway of a network the container
/// is on, out of that network's interface. (A disconnect may leave none: not checked.)
fn check_default_route(scene: &Scene, c: &Container, endpoints: &[&Endpoint], v6: bool, out: &mut Vec<String>) {
    let routes = match kernel::default_routes(&scene.pin(&c.id), v6) {
        Ok(r) => r,
        Err(e) => return out.push(format!("container {}: cannot read routes: {e}", c.name)),
    };
    if routes.len() > 1 {
        out.push(format!(
            "container {}: {} default routes (IPv{}): {routes:?}",
            c.name,
            routes.len(),
            if v6 { 6 } else { 4 }
        ));
    }
    for (gw, dev) in routes {
        let fits = endpoints.iter().any(|ep| {
            let net = scene.view.network(&ep.network_id);
            let net_gw = net.and_then(|n| if v6 { n.gateway6 } else { n.gateway });
            ep.interface.as_deref() == Some(dev.as_str()) && gw.is_some() && net_gw == gw
        });
        if !fits {
            out.push(format!("container {}: default route via {gw:?} dev {dev} matches none of its networks", c.name));
        }
    }
}
