//! The operation vocabulary: what a plan may ask the host to do.
//!
//! Every variant is serialised with an `op` tag. New variants may be appended in minor API
//! versions; a host that does not know one refuses the plan with the tag's name.

use crate::model::Cidr;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// What kind of interface a network owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// An address-holding interface with no wire: FreeBSD `lo`, Linux `dummy` (or `ifb`).
    Loopback,
    /// A learning bridge: FreeBSD `if_bridge`, Linux `bridge`.
    Bridge,
}

/// How a container's sandbox relates to the host's network stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stack {
    /// Shares the host stack and every address (jail `ip4=inherit`).
    Host,
    /// Shares the host stack, restricted to its own addresses (jail `ip4.addr`).
    Restricted,
    /// A network stack of its own (vnet jail, Linux network namespace).
    Private,
    /// No networking at all (jail `ip4=disable`, empty namespace).
    Disabled,
}

/// A precondition checked for every step before any step runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Check {
    /// The interface must exist (custom networks).
    LinkExists { name: String },
    /// The interface must not exist yet (kleene never takes over a foreign interface).
    LinkAbsent { name: String },
}

/// One host operation. `netns`/`sandbox` fields name a container by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    CreateLink {
        name: String,
        kind: LinkKind,
    },
    DeleteLink {
        name: String,
        kind: LinkKind,
    },
    /// Give a host link a fixed hardware address. A Linux bridge has none of its
    /// own and borrows its lowest port's, which changes when that port leaves; a fixed one
    /// keeps the containers' ARP entries for their gateway valid. Undone by deleting the link.
    SetLinkMac {
        name: String,
        mac: [u8; 6],
        /// The container whose stack holds the link (API 1.2; absent: the host's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sandbox: Option<String>,
    },
    /// Set a link's MTU (API 1.2): the links of a network whose frames travel through a
    /// tunnel must not be larger than the tunnel carries. Undone by deleting the link.
    SetLinkMtu {
        name: String,
        mtu: u32,
        /// The container whose stack holds the link (absent: the host's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sandbox: Option<String>,
    },
    /// Give a link no IPv6 link-local address when it comes up (API 1.3). A bridge port has
    /// no use for one, nor has a container's interface without an IPv6 address; each would
    /// send duplicate-address detection, router solicitations and multicast-listener
    /// reports that its bridge floods to every other port, whose containers process them:
    /// a cost per start that grows with the bridge. Before `SetLinkUp`; undone by deleting
    /// the link.
    NoIpv6LinkLocal {
        name: String,
        /// The container whose stack holds the link (absent: the host's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sandbox: Option<String>,
    },
    SetLinkUp {
        name: String,
        sandbox: Option<String>,
    },
    SetLinkDown {
        name: String,
        sandbox: Option<String>,
    },
    AddAddress {
        link: String,
        address: IpAddr,
        prefix: u8,
        sandbox: Option<String>,
    },
    RemoveAddress {
        link: String,
        address: IpAddr,
        prefix: u8,
        sandbox: Option<String>,
    },
    /// A point-to-point pair: `host` stays on the host, `peer` is created inside `sandbox`.
    CreatePair {
        host: String,
        peer: String,
        sandbox: String,
    },
    DeletePair {
        host: String,
        peer: String,
        sandbox: String,
    },
    /// A pair with both ends on the host, for a runtime that moves `peer` into a sandbox of
    /// its own and configures it there (Docker's Join): `sandbox` names the container record
    /// the pair belongs to, whose sandbox kleene neither makes nor enters. Removed by
    /// `DeletePair`, which deletes the host end wherever the peer is by then. (API 1.2)
    CreateHandoffPair {
        host: String,
        peer: String,
        sandbox: String,
    },
    AttachToBridge {
        bridge: String,
        member: String,
    },
    DetachFromBridge {
        bridge: String,
        member: String,
    },
    AddDefaultRoute {
        gateway: IpAddr,
        sandbox: String,
    },
    RemoveDefaultRoute {
        gateway: IpAddr,
        sandbox: String,
    },
    CreateSandbox {
        sandbox: String,
        stack: Stack,
    },
    DestroySandbox {
        sandbox: String,
        stack: Stack,
    },
    /// Limit a `Restricted` sandbox to exactly these addresses (replaces the previous set).
    /// Each carries its network's prefix length, so connections to a network the container
    /// is on leave from its address there (the first of a family is the default source).
    RestrictAddresses {
        sandbox: String,
        addresses: Vec<Cidr>,
    },
    /// A VXLAN tunnel endpoint (API 1.2): segment `vni`, sending from the underlay address
    /// `local` to UDP `port`. It never learns where addresses are and answers ARP and
    /// neighbour solicitations from its own neighbour entries (Linux `nolearning proxy`):
    /// the cluster store, not flooding, tells it where every remote container is.
    CreateVxlan {
        name: String,
        vni: u32,
        local: IpAddr,
        port: u16,
    },
    DeleteVxlan {
        name: String,
        vni: u32,
        local: IpAddr,
        port: u16,
    },
    /// A static forwarding entry of a VXLAN device: frames for `mac` go to the tunnel
    /// endpoint at `remote` (API 1.2).
    AddForwarding {
        link: String,
        mac: [u8; 6],
        remote: IpAddr,
    },
    RemoveForwarding {
        link: String,
        mac: [u8; 6],
        remote: IpAddr,
    },
    /// A permanent neighbour entry on `link`: `address` is at `mac` (API 1.2).
    AddNeighbour {
        link: String,
        address: IpAddr,
        mac: [u8; 6],
    },
    RemoveNeighbour {
        link: String,
        address: IpAddr,
        mac: [u8; 6],
    },
}

impl Op {
    /// The operation that reverses this one, where one exists.
    pub fn inverse(&self) -> Option<Op> {
        use Op::*;
        Some(match self.clone() {
            CreateLink { name, kind } => DeleteLink { name, kind },
            DeleteLink { name, kind } => CreateLink { name, kind },
            SetLinkUp { name, sandbox } => SetLinkDown { name, sandbox },
            SetLinkDown { name, sandbox } => SetLinkUp { name, sandbox },
            AddAddress { link, address, prefix, sandbox } => RemoveAddress { link, address, prefix, sandbox },
            RemoveAddress { link, address, prefix, sandbox } => AddAddress { link, address, prefix, sandbox },
            CreatePair { host, peer, sandbox } | CreateHandoffPair { host, peer, sandbox } => {
                DeletePair { host, peer, sandbox }
            }
            DeletePair { host, peer, sandbox } => CreatePair { host, peer, sandbox },
            AttachToBridge { bridge, member } => DetachFromBridge { bridge, member },
            DetachFromBridge { bridge, member } => AttachToBridge { bridge, member },
            AddDefaultRoute { gateway, sandbox } => RemoveDefaultRoute { gateway, sandbox },
            RemoveDefaultRoute { gateway, sandbox } => AddDefaultRoute { gateway, sandbox },
            CreateSandbox { sandbox, stack } => DestroySandbox { sandbox, stack },
            DestroySandbox { sandbox, stack } => CreateSandbox { sandbox, stack },
            CreateVxlan { name, vni, local, port } => DeleteVxlan { name, vni, local, port },
            DeleteVxlan { name, vni, local, port } => CreateVxlan { name, vni, local, port },
            AddForwarding { link, mac, remote } => RemoveForwarding { link, mac, remote },
            RemoveForwarding { link, mac, remote } => AddForwarding { link, mac, remote },
            AddNeighbour { link, address, mac } => RemoveNeighbour { link, address, mac },
            RemoveNeighbour { link, address, mac } => AddNeighbour { link, address, mac },
            // The previous address set is only known to the planner: it supplies the undo.
            RestrictAddresses { .. } => return None,
            // The link's previous address is not known; the link's own deletion undoes it.
            SetLinkMac { .. } => return None,
            // Likewise the previous MTU.
            SetLinkMtu { .. } => return None,
            // An address mode matters only as the link comes up; the link's deletion undoes it.
            NoIpv6LinkLocal { .. } => return None,
        })
    }

    /// Whether the operation takes something away. Taking away what is already gone counts as
    /// done (a lost namespace pin, a pair the kernel already reaped), so teardown can always
    /// finish.
    pub fn is_teardown(&self) -> bool {
        use Op::*;
        matches!(
            self,
            DeleteLink { .. }
                | SetLinkDown { .. }
                | RemoveAddress { .. }
                | DeletePair { .. }
                | DetachFromBridge { .. }
                | RemoveDefaultRoute { .. }
                | DestroySandbox { .. }
                | DeleteVxlan { .. }
                | RemoveForwarding { .. }
                | RemoveNeighbour { .. }
        )
    }

    /// The `op` tag, for messages.
    pub fn name(&self) -> &'static str {
        use Op::*;
        match self {
            CreateLink { .. } => "create_link",
            DeleteLink { .. } => "delete_link",
            SetLinkMac { .. } => "set_link_mac",
            SetLinkMtu { .. } => "set_link_mtu",
            NoIpv6LinkLocal { .. } => "no_ipv6_link_local",
            SetLinkUp { .. } => "set_link_up",
            SetLinkDown { .. } => "set_link_down",
            AddAddress { .. } => "add_address",
            RemoveAddress { .. } => "remove_address",
            CreatePair { .. } => "create_pair",
            DeletePair { .. } => "delete_pair",
            CreateHandoffPair { .. } => "create_handoff_pair",
            AttachToBridge { .. } => "attach_to_bridge",
            DetachFromBridge { .. } => "detach_from_bridge",
            AddDefaultRoute { .. } => "add_default_route",
            RemoveDefaultRoute { .. } => "remove_default_route",
            CreateSandbox { .. } => "create_sandbox",
            DestroySandbox { .. } => "destroy_sandbox",
            RestrictAddresses { .. } => "restrict_addresses",
            CreateVxlan { .. } => "create_vxlan",
            DeleteVxlan { .. } => "delete_vxlan",
            AddForwarding { .. } => "add_forwarding",
            RemoveForwarding { .. } => "remove_forwarding",
            AddNeighbour { .. } => "add_neighbour",
            RemoveNeighbour { .. } => "remove_neighbour",
        }
    }
}

/// An operation and what undoes it (run in reverse order on failure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub op: Op,
    #[serde(default)]
    pub undo: Vec<Op>,
}

/// What a plugin asks the host to do for one call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    #[serde(default)]
    pub checks: Vec<Check>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn new() -> Plan {
        Plan::default()
    }

    pub fn check(&mut self, check: Check) -> &mut Self {
        self.checks.push(check);
        self
    }

    /// Append `op` with its natural inverse as undo.
    pub fn push(&mut self, op: Op) -> &mut Self {
        let undo = op.inverse().into_iter().collect();
        self.steps.push(Step { op, undo });
        self
    }

    /// Append `op` with an explicit undo (for operations without a natural inverse).
    pub fn push_with_undo(&mut self, op: Op, undo: Vec<Op>) -> &mut Self {
        self.steps.push(Step { op, undo });
        self
    }

    pub fn extend(&mut self, other: Plan) -> &mut Self {
        self.checks.extend(other.checks);
        self.steps.extend(other.steps);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty() && self.steps.is_empty()
    }
}

impl Plan {
    /// The create plan of a network type that owns its interface: refuse a name already in
    /// use, create the link, give it `addresses`, bring it up.
    pub fn own_link(name: &str, kind: LinkKind, addresses: &[(IpAddr, u8)]) -> Plan {
        let mut plan = Plan::new();
        plan.check(Check::LinkAbsent { name: name.into() });
        plan.push(Op::CreateLink { name: name.into(), kind });
        for &(address, prefix) in addresses {
            plan.push(Op::AddAddress { link: name.into(), address, prefix, sandbox: None });
        }
        plan.push(Op::SetLinkUp { name: name.into(), sandbox: None });
        plan
    }

    /// The remove plan of a network type that owns its interface: delete the link. Its undo
    /// builds the link again as `create` (the type's create plan for the network) does, so a
    /// rolled-back removal gives the network back whole (its addresses, up), not bare.
    pub fn delete_own_link(name: &str, kind: LinkKind, create: &Plan) -> Plan {
        let mut plan = Plan::new();
        let rebuild = create.steps.iter().map(|s| s.op.clone()).collect();
        plan.push_with_undo(Op::DeleteLink { name: name.into(), kind }, rebuild);
        plan
    }

    /// The whole policy of a driver that cannot join networks: build the sandbox on start,
    /// tear it down on stop, refuse everything else.
    pub fn sandbox_only(call: &crate::Call, stack: Stack, plugin: &str) -> Result<Plan, crate::PluginError> {
        let mut plan = Plan::new();
        match call {
            crate::Call::ContainerStart { container, .. } => {
                plan.push(Op::CreateSandbox { sandbox: container.id.clone(), stack });
            }
            crate::Call::ContainerStop { container, .. } => {
                plan.push(Op::DestroySandbox { sandbox: container.id.clone(), stack });
            }
            other => return Err(other.unsupported(plugin)),
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_is_an_involution() {
        let ops = [
            Op::CreateLink { name: "kleene0".into(), kind: LinkKind::Bridge },
            Op::AddAddress { link: "kleene0".into(), address: "10.0.0.1".parse().unwrap(), prefix: 24, sandbox: None },
            Op::CreatePair { host: "kv1".into(), peer: "eth0".into(), sandbox: "abc".into() },
            Op::CreateSandbox { sandbox: "abc".into(), stack: Stack::Private },
            Op::AddDefaultRoute { gateway: "fd00::1".parse().unwrap(), sandbox: "abc".into() },
        ];
        for op in ops {
            let inv = op.inverse().unwrap();
            assert_ne!(inv, op);
            assert_eq!(inv.inverse().unwrap(), op);
        }
    }

    #[test]
    fn ops_serialise_with_their_tag() {
        let op = Op::SetLinkUp { name: "kleene0".into(), sandbox: None };
        let json = serde_json::to_string(&op).unwrap();
        assert!(json.contains(r#""op":"set_link_up""#), "{json}");
        assert_eq!(op.name(), "set_link_up");
        let back: Op = serde_json::from_str(&json).unwrap();
        assert_eq!(back, op);
    }

    #[test]
    fn deleting_an_own_link_is_undone_by_building_it_again() {
        let gw = "10.0.0.1".parse().unwrap();
        let create = Plan::own_link("kleene0", LinkKind::Bridge, &[(gw, 24)]);
        let remove = Plan::delete_own_link("kleene0", LinkKind::Bridge, &create);
        assert_eq!(remove.steps.len(), 1);
        assert_eq!(remove.steps[0].op, Op::DeleteLink { name: "kleene0".into(), kind: LinkKind::Bridge });
        let rebuilt: Vec<Op> = create.steps.into_iter().map(|s| s.op).collect();
        assert_eq!(remove.steps[0].undo, rebuilt);
        assert!(matches!(rebuilt.last(), Some(Op::SetLinkUp { .. })), "{rebuilt:?}");
    }

    #[test]
    fn push_records_the_inverse() {
        let mut plan = Plan::new();
        plan.push(Op::CreateLink { name: "x".into(), kind: LinkKind::Loopback });
        assert_eq!(plan.steps[0].undo, vec![Op::DeleteLink { name: "x".into(), kind: LinkKind::Loopback }]);
    }
}
