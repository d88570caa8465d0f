//! What the host asks of a plugin, and what a plugin says about itself.

use crate::model::{Container, Endpoint, Network};
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
        }
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
