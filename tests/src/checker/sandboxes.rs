//! Sandboxes: namespace pins, cgroups, the ipnet BPF programs (present, and enforcing the
//! container's current addresses), and what endpoints record about links.

use super::kernel::{self, IPNET_HOOKS};
use super::state::Container;
use super::{Scene, Stack};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

/// Pins: exactly one live namespace file per running vnet or disabled container.
pub fn check_pins(scene: &Scene, out: &mut Vec<String>) {
    let wanted: BTreeSet<&str> = scene
        .view
        .containers
        .iter()
        .filter(|c| c.running && matches!(scene.stack(c), Some(Stack::Private | Stack::Disabled)))
        .map(|c| c.id.as_str())
        .collect();
    let dir = scene.run_dir.join("netns");
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    for id in &wanted {
        let pin = scene.pin(id);
        if !present.contains(*id) {
            out.push(format!(
                "container {}: running, but its namespace pin {} is missing",
                scene.name_of(id),
                pin.display()
            ));
        } else if !kernel::is_nsfs(&pin) {
            out.push(format!(
                "container {}: pin {} is a plain file, not a mounted namespace",
                scene.name_of(id),
                pin.display()
            ));
        }
    }
    for name in present.iter().filter(|p| !wanted.contains(p.as_str())) {
        out.push(format!("pin {} belongs to no running vnet/disabled container (leftover)", dir.join(name).display()));
    }
}

/// Cgroups: present exactly for running containers (of this sandbox: the hierarchy is the
/// whole machine's, so only ids kleene's state has or had are looked at); BPF programs at
/// the ipnet hooks exactly on running ipnet containers, one per hook.
pub fn check_cgroups(scene: &Scene, out: &mut Vec<String>) {
    let Some(root) = kernel::cgroup2_mount().map(|m| m.join("kleene")) else {
        return out.push("no cgroup2 hierarchy is mounted: cannot check cgroups".into());
    };
    for c in &scene.view.containers {
        let dir = root.join(&c.id);
        match (c.running, dir.is_dir()) {
            (true, false) => {
                out.push(format!("container {}: running, but its cgroup {} is missing", c.name, dir.display()))
            }
            (false, true) => {
                out.push(format!("container {}: stopped, but its cgroup {} is left", c.name, dir.display()))
            }
            (true, true) => check_programs(scene, c, &dir, out),
            (false, false) => {}
        }
    }
    for id in scene.removed {
        let dir = root.join(id);
        if dir.exists() && scene.view.containers.iter().all(|c| &c.id != id) {
            out.push(format!("removed container {id}: its cgroup {} is left", dir.display()));
        }
    }
}

fn check_programs(scene: &Scene, c: &Container, dir: &Path, out: &mut Vec<String>) {
    let restricted = scene.stack(c) == Some(Stack::Restricted);
    for (attach, name) in IPNET_HOOKS {
        let progs = match kernel::attached_programs(dir, attach) {
            Ok(p) => p,
            Err(e) => return out.push(format!("container {}: {e}", c.name)),
        };
        let want: Vec<&str> = if restricted { vec![name] } else { vec![] };
        if progs != want {
            out.push(format!("container {}: programs at the {name} hook are {progs:?}, expected {want:?}", c.name));
        }
    }
    if restricted {
        probe_restriction(scene, c, dir, out);
    }
}

/// The programs being there is not enough: they must enforce the container's *current*
/// addresses. From its cgroup, bind each of its addresses (must work) and every other
/// address the host holds (must fail).
fn probe_restriction(scene: &Scene, c: &Container, cgroup: &Path, out: &mut Vec<String>) {
    let own: BTreeSet<IpAddr> = scene.view.endpoints_of(&c.id).iter().flat_map(|e| e.addresses()).collect();
    let others: BTreeSet<IpAddr> = scene
        .host_links
        .iter()
        .flat_map(|l| l.global.iter().map(|(ip, _)| *ip))
        .filter(|ip| !own.contains(ip))
        .collect();
    let addrs: Vec<IpAddr> = own.iter().chain(&others).copied().collect();
    let bound = match kernel::bind_probe(&scene.sandbox.netns_path(), cgroup, &addrs) {
        Ok(b) => b,
        Err(e) => return out.push(format!("container {}: cannot probe its restriction: {e}", c.name)),
    };
    for (ip, ok) in addrs.iter().zip(bound) {
        match (own.contains(ip), ok) {
            (true, false) => {
                out.push(format!("container {} (ipnet): cannot bind its own address {ip} (stale restriction)", c.name))
            }
            (false, true) => {
                out.push(format!("container {} (ipnet): can bind {ip}, not its own (stale restriction)", c.name))
            }
            _ => {}
        }
    }
}

/// Endpoints name their pair (host end, inside name) exactly while a vnet container runs.
pub fn check_endpoint_records(scene: &Scene, out: &mut Vec<String>) {
    for ep in &scene.view.endpoints {
        let Some(c) = scene.view.containers.iter().find(|c| c.id == ep.container_id) else {
            out.push(format!("endpoint {} belongs to no container", ep.id));
            continue;
        };
        if scene.view.network(&ep.network_id).is_none() {
            out.push(format!("endpoint {} of container {} belongs to no network", ep.id, c.name));
        }
        let paired = c.running && scene.stack(c) == Some(Stack::Private);
        let named = (ep.epair.is_some(), ep.interface.is_some());
        if named != (paired, paired) {
            out.push(format!(
                "container {} ({}): endpoint records links {:?}/{:?}, expected {}",
                c.name,
                if c.running { "running" } else { "stopped" },
                ep.epair,
                ep.interface,
                if paired { "both" } else { "none" }
            ));
        }
    }
}
