//! A consistency checker for end-to-end tests: compares kleene's state (read from its
//! SQLite file) with what the kernel of a [`Sandbox`] has, and names every difference.
//!
//! Checked: no interrupted operation is left in the journal; every link on the host is
//! explained by state (network interfaces of the right kind, up, holding exactly their
//! gateways and ipnet aliases; vnet host ends, up, on their bridge) and nothing else is
//! there; every running vnet container's namespace holds lo plus exactly its pair ends with
//! exactly its addresses and a sane default route, a disabled one only a downed lo; namespace
//! pins exist exactly for running vnet/disabled containers and are live mounts; cgroups exist
//! exactly for running containers; the ipnet BPF programs sit on running ipnet containers
//! (one per hook, none elsewhere) and enforce their current addresses; every address pool's
//! used addresses are exactly its gateways and endpoints; the `inet kleene` table is exactly
//! what a full reload of the state gives.
//!
//! It only reads. The expectations per driver are the checker's own (it does not ask the
//! plugins), so a plugin that plans the wrong thing is caught too.

pub mod firewall;
mod ipam;
pub mod kernel;
mod links;
mod sandboxes;
pub mod state;

use crate::Sandbox;
use kernel::Link;
use state::{Container, Endpoint, StateView};
use std::net::IpAddr;
use std::path::PathBuf;

/// What a driver gives a container, as far as the host can see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// The host's stack, unrestricted (`host`): a cgroup only.
    Shared,
    /// The host's stack restricted by BPF to aliases on the networks' interfaces (`ipnet`).
    Restricted,
    /// A namespace of its own joined to bridges by pairs (`vnet`).
    Private,
    /// A namespace with only a downed lo (`disabled`).
    Disabled,
}

/// The drivers this workspace ships, by what they build.
pub fn driver_stack(driver: &str) -> Option<Stack> {
    match driver {
        "host" => Some(Stack::Shared),
        "ipnet" => Some(Stack::Restricted),
        "vnet" => Some(Stack::Private),
        "disabled" => Some(Stack::Disabled),
        _ => None,
    }
}

/// Everything one check looks at, read once.
pub struct Scene<'a> {
    pub sandbox: &'a Sandbox,
    pub view: StateView,
    pub run_dir: PathBuf,
    pub host_links: Vec<Link>,
    pub foreign_links: &'a [String],
    pub removed: &'a [String],
}

impl Scene<'_> {
    pub fn stack(&self, c: &Container) -> Option<Stack> {
        driver_stack(&c.driver)
    }

    /// The namespace pin of a container.
    pub fn pin(&self, id: &str) -> PathBuf {
        self.run_dir.join("netns").join(id)
    }

    pub fn name_of(&self, id: &str) -> String {
        self.view.containers.iter().find(|c| c.id == id).map_or_else(|| id.to_string(), |c| c.name.clone())
    }

    /// Endpoints of running containers with the given stack.
    pub fn running_endpoints(&self, stack: Stack) -> Vec<(&Container, &Endpoint)> {
        self.view
            .containers
            .iter()
            .filter(|c| c.running && self.stack(c) == Some(stack))
            .flat_map(|c| self.view.endpoints_of(&c.id).into_iter().map(move |e| (c, e)))
            .collect()
    }
}

/// Checks one sandbox. Build it, tell it what else it should know, and ask for findings.
pub struct Checker<'a> {
    sandbox: &'a Sandbox,
    removed: Vec<String>,
    foreign_links: Vec<String>,
}

impl<'a> Checker<'a> {
    pub fn new(sandbox: &'a Sandbox) -> Checker<'a> {
        Checker { sandbox, removed: Vec::new(), foreign_links: Vec::new() }
    }

    /// Ids of containers that existed and were removed: nothing of theirs (their cgroup, a
    /// machine-wide object) may be left.
    pub fn removed_containers(mut self, ids: impl IntoIterator<Item = String>) -> Self {
        self.removed.extend(ids);
        self
    }

    /// A link the test made itself that no network uses (it would count as a leftover).
    pub fn foreign_link(mut self, name: &str) -> Self {
        self.foreign_links.push(name.to_string());
        self
    }

    /// Every inconsistency found, one line each (empty when state and kernel agree).
    pub fn findings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let view = match StateView::read(&self.sandbox.dir.path().join("state")) {
            Ok(v) => v,
            Err(e) => return vec![e],
        };
        for what in &view.journal {
            out.push(format!("journal: interrupted operation '{what}' was never rolled back"));
        }
        let host_links = match kernel::links(&self.sandbox.netns_path()) {
            Ok(l) => l,
            Err(e) => return vec![format!("cannot read the sandbox's links: {e}")],
        };
        let scene = Scene {
            sandbox: self.sandbox,
            view,
            run_dir: self.sandbox.dir.path().join("run"),
            host_links,
            foreign_links: &self.foreign_links,
            removed: &self.removed,
        };
        for c in &scene.view.containers {
            match scene.stack(c) {
                None => out.push(format!("container {}: driver {} is unknown to the checker", c.name, c.driver)),
                Some(stack @ (Stack::Private | Stack::Disabled)) if c.running && kernel::is_nsfs(&scene.pin(&c.id)) => {
                    links::check_inside(&scene, c, stack, &mut out)
                }
                Some(_) => {}
            }
        }
        links::check_host(&scene, &mut out);
        sandboxes::check_pins(&scene, &mut out);
        sandboxes::check_cgroups(&scene, &mut out);
        sandboxes::check_endpoint_records(&scene, &mut out);
        let addresses_of = |net: &state::Network| -> Vec<IpAddr> {
            let link = scene.host_links.iter().find(|l| l.name == net.interface);
            link.map(|l| l.global.iter().map(|(ip, _)| *ip).collect()).unwrap_or_default()
        };
        ipam::check(&scene.view, &addresses_of, &mut out);
        firewall::check(&scene, &mut out);
        out
    }

    /// Panic naming every inconsistency, if there is any.
    #[track_caller]
    pub fn assert_consistent(&self) {
        let found = self.findings();
        assert!(found.is_empty(), "state and kernel disagree:\n  {}", found.join("\n  "));
    }
}
