//! What the host asks of a plugin, and what a plugin says about itself.

use crate::model::{Container, Endpoint, Network, Peer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// Creates and removes the host side of a network (`loopback`, `bridge`, `custom`).
    NetworkType,
    /// Builds a container's sandbox and joins it to networks (`host`, `ipnet`, `vnet`, ...).
    Driver,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::NetworkType => "network-type",
            PluginKind::Driver => "driver",
        }
    }
}

/// A plugin's self-description. `network_types` is meaningful for drivers: the network
/// types it can join (empty = it cannot join networks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub kind: PluginKind,
    pub version: String,
    /// The plugin API version the plugin was built against.
    pub api_version: String,
    pub description: String,
    #[serde(default)]
    pub network_types: Vec<String>,
    /// What the host must know about a driver's containers (API 1.1; absent from 1.0 plugins,
    /// for which the host keeps a table of the built-ins and a default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_traits: Option<DriverTraits>,
    /// What the host must know about a network type's networks (API 1.1, as above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_traits: Option<NetworkTraits>,
    /// The choices the host makes with this plugin when the operator names none (API 1.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defaults: Vec<DefaultFor>,
}

/// A driver's declaration: the stack its containers get, which decides what the host's
/// firewall does with their addresses (held by the host or inside a stack of their own), what
/// `container exec` enters, and whether ports can be published to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverTraits {
    pub stack: crate::Stack,
}

/// A network type's declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkTraits {
    /// The network uses an interface that exists already and is not kleene's (`-i` is
    /// required; addresses it holds count as used; other networks may share it).
    pub existing_interface: bool,
    /// Gateways default to the subnet's first address, held by the network's interface.
    pub auto_gateway: bool,
    /// Containers reach beyond the network through the host's IP forwarding (false when they
    /// send from the host's own stack, as on loopback networks).
    pub forwarded: bool,
    /// The network spans the hosts of a cluster (API 1.2): its definition and addresses
    /// live in the cluster store, every member host builds its side, and the plugin is
    /// told of containers on other hosts ([`Call::NetworkPeers`]).
    #[serde(default)]
    pub cluster_scoped: bool,
    /// Bytes the network's encapsulation adds to each frame besides the outer IP header
    /// (API 1.2; VXLAN: outer Ethernet 14 + UDP 8 + VXLAN 8 = 30). For a cluster-scoped
    /// network the host lowers the links' MTU by this plus 20 (IPv4 underlay) or 40 (IPv6)
    /// below the underlay interface's MTU ([`crate::ClusterScope::mtu`]). 0: no tunnel.
    #[serde(default)]
    pub encapsulation: u16,
}

impl Default for NetworkTraits {
    fn default() -> NetworkTraits {
        NetworkTraits {
            existing_interface: false,
            auto_gateway: false,
            forwarded: true,
            cluster_scoped: false,
            encapsulation: 0,
        }
    }
}

/// A default the host takes from a plugin when the operator does not choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultFor {
    /// The network type of `network create` without `-t`.
    NetworkType,
    /// The driver of `container create` without `-l` and without `-n`.
    DriverWithoutNetwork,
    /// The driver of `container create -n NET` without `-l`.
    DriverWithNetwork,
}

/// A container's membership in one network, with the network itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: Network,
    pub endpoint: Endpoint,
}

/// One request from the host. Network-type plugins get `Network*` calls, drivers the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    NetworkCreate {
        network: Network,
    },
    NetworkRemove {
        network: Network,
    },
    /// Build the sandbox and join every attachment, in order.
    ContainerStart {
        container: Container,
        attachments: Vec<Attachment>,
    },
    /// Tear down everything `ContainerStart` built.
    ContainerStop {
        container: Container,
        attachments: Vec<Attachment>,
    },
    /// Join one more network. `others` are the attachments it already has.
    ContainerConnect {
        container: Container,
        attachment: Attachment,
        others: Vec<Attachment>,
    },
    /// Leave one network. `others` are the attachments it keeps.
    ContainerDisconnect {
        container: Container,
        attachment: Attachment,
        others: Vec<Attachment>,
    },
    /// Join one network for a runtime that owns the container's sandbox and moves the
    /// interface into it itself (Docker's network-driver protocol): the pair is made with
    /// both ends on the host (`Op::CreateHandoffPair`), the host end joined to the network;
    /// the runtime gives the peer its addresses and routes. (API 1.2)
    RuntimeJoin {
        container: Container,
        attachment: Attachment,
    },
    /// Undo `RuntimeJoin` (the runtime has moved the peer back to the host, or it is gone).
    RuntimeLeave {
        container: Container,
        attachment: Attachment,
    },
    /// Containers of a cluster-scoped network on other hosts came (`add`) or went
    /// (`remove`) (API 1.2).
    NetworkPeers {
        network: Network,
        add: Vec<Peer>,
        remove: Vec<Peer>,
    },
}

impl Call {
    pub fn name(&self) -> &'static str {
        match self {
            Call::NetworkCreate { .. } => "network_create",
            Call::NetworkRemove { .. } => "network_remove",
            Call::ContainerStart { .. } => "container_start",
            Call::ContainerStop { .. } => "container_stop",
            Call::ContainerConnect { .. } => "container_connect",
            Call::ContainerDisconnect { .. } => "container_disconnect",
            Call::RuntimeJoin { .. } => "runtime_join",
            Call::RuntimeLeave { .. } => "runtime_leave",
            Call::NetworkPeers { .. } => "network_peers",
        }
    }
}

impl Attachment {
    /// The endpoint's addresses as host aliases (/32, /128) on the network's interface: how a
    /// driver sharing the host's stack (ipnet) gives a container its addresses. `add` false
    /// gives the removals.
    pub fn host_aliases(&self, add: bool) -> impl Iterator<Item = crate::Op> + '_ {
        self.endpoint.addresses().map(move |address| {
            let (link, sandbox) = (self.network.interface.clone(), None);
            let prefix = crate::Cidr::max_prefix(address);
            if add {
                crate::Op::AddAddress { link, address, prefix, sandbox }
            } else {
                crate::Op::RemoveAddress { link, address, prefix, sandbox }
            }
        })
    }

    /// The endpoint's addresses, each with its network's prefix length.
    pub fn cidrs(&self) -> impl Iterator<Item = crate::Cidr> + '_ {
        let prefix = |ip: std::net::IpAddr| {
            let subnet = if ip.is_ipv4() { self.network.subnet } else { self.network.subnet6 };
            subnet.map_or(crate::Cidr::max_prefix(ip), |s| s.prefix)
        };
        self.endpoint.addresses().map(move |addr| crate::Cidr { addr, prefix: prefix(addr) })
    }
}

impl PluginInfo {
    /// Info for a network-type plugin (`version` is usually `env!("CARGO_PKG_VERSION")`).
    pub fn network_type(name: &str, version: &str, description: &str) -> PluginInfo {
        PluginInfo {
            name: name.into(),
            kind: PluginKind::NetworkType,
            version: version.into(),
            api_version: crate::API_VERSION.into(),
            description: description.into(),
            network_types: vec![],
            driver_traits: None,
            network_traits: None,
            defaults: vec![],
        }
    }

    /// Declare a network type's traits (builder style, after [`PluginInfo::network_type`]).
    pub fn with_network_traits(mut self, traits: NetworkTraits) -> PluginInfo {
        self.network_traits = Some(traits);
        self
    }

    /// Declare the stack a driver's containers get (after [`PluginInfo::driver`]).
    pub fn with_stack(mut self, stack: crate::Stack) -> PluginInfo {
        self.driver_traits = Some(DriverTraits { stack });
        self
    }

    /// Offer this plugin as the host's choice when the operator names none.
    pub fn default_for(mut self, role: DefaultFor) -> PluginInfo {
        self.defaults.push(role);
        self
    }

    /// Info for a driver that can join the given network types.
    pub fn driver(name: &str, version: &str, description: &str, network_types: &[&str]) -> PluginInfo {
        PluginInfo {
            kind: PluginKind::Driver,
            network_types: network_types.iter().map(|t| t.to_string()).collect(),
            ..PluginInfo::network_type(name, version, description)
        }
    }
}

impl Call {
    /// The refusal for a call this kind of plugin does not handle.
    pub fn unsupported(&self, plugin: &str) -> crate::PluginError {
        crate::PluginError(format!("plugin '{plugin}' cannot handle {}", self.name()))
    }
}
