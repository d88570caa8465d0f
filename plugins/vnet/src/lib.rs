//! VNET driver: the container gets a network stack of its own. Per bridge network, a pair
//! joins it: the host end on the bridge, the peer inside the container with the endpoint's
//! addresses. The first network with a gateway of a family supplies the default route.

use kleene_plugin_api::{Attachment, Call, Host, Op, Plan, Plugin, PluginError, PluginInfo, Stack};
use std::net::IpAddr;

#[derive(Default)]
pub struct Vnet;

/// Host-side name: unique per endpoint and within the 15-byte interface-name limit.
pub fn host_end(a: &Attachment) -> String {
    format!("kv{}", &a.endpoint.id[..a.endpoint.id.len().min(12)])
}

/// The lowest `ethN` not used by the container's other pairs.
fn free_peer_name(others: &[Attachment]) -> String {
    let used: Vec<&str> = others.iter().filter_map(|a| a.endpoint.interface.as_deref()).collect();
    (0..).map(|i| format!("eth{i}")).find(|n| !used.contains(&n.as_str())).expect("unbounded range")
}

/// Whether some attachment already provides a default route of `ip`'s family.
fn has_route(attachments: &[Attachment], v4: bool) -> bool {
    attachments.iter().any(|a| if v4 { a.network.gateway.is_some() } else { a.network.gateway6.is_some() })
}

/// One address family of an attachment.
struct Family {
    address: Option<IpAddr>,
    prefix: Option<u8>,
    gateway: Option<IpAddr>,
    v4: bool,
}

/// Join one network: pair, bridge port, addresses, and default routes still missing.
/// Order per family is address then route, as Kleene's jail parameters have it; the peer
/// goes up before the first route (Linux refuses a route over a down link).
fn join(plan: &mut Plan, sandbox: &str, a: &Attachment, peer: String, earlier: &[Attachment]) {
    let host = host_end(a);
    let sandbox = Some(sandbox.to_string());
    let in_sandbox = sandbox.clone().expect("set above");
    plan.push(Op::CreatePair { host: host.clone(), peer: peer.clone(), sandbox: in_sandbox.clone() });
    plan.push(Op::AttachToBridge { bridge: a.network.interface.clone(), member: host.clone() });
    plan.push(Op::SetLinkUp { name: host, sandbox: None });
    let families = [
        Family {
            address: a.endpoint.ip_address,
            prefix: a.network.subnet.map(|s| s.prefix),
            gateway: a.network.gateway,
            v4: true,
        },
        Family {
            address: a.endpoint.ip_address6,
            prefix: a.network.subnet6.map(|s| s.prefix),
            gateway: a.network.gateway6,
            v4: false,
        },
    ];
    let mut peer_up = false;
    for Family { address, prefix, gateway, v4 } in families {
        if let (Some(address), Some(prefix)) = (address, prefix) {
            plan.push(Op::AddAddress { link: peer.clone(), address, prefix, sandbox: sandbox.clone() });
        }
        if !peer_up {
            plan.push(Op::SetLinkUp { name: peer.clone(), sandbox: sandbox.clone() });
            peer_up = true;
        }
        if let Some(gateway) = gateway.filter(|_| !has_route(earlier, v4)) {
            plan.push(Op::AddDefaultRoute { gateway, sandbox: in_sandbox.clone() });
        }
    }
}

/// Leave one network: take the host end off the bridge and destroy the pair.
fn leave(plan: &mut Plan, sandbox: &str, a: &Attachment) {
    let host = a.endpoint.epair.clone().unwrap_or_else(|| host_end(a));
    let peer = a.endpoint.interface.clone().unwrap_or_else(|| "eth0".into());
    plan.push(Op::DetachFromBridge { bridge: a.network.interface.clone(), member: host.clone() });
    plan.push(Op::DeletePair { host, peer, sandbox: sandbox.to_string() });
}

impl Plugin for Vnet {
    fn info(&self) -> PluginInfo {
        PluginInfo::driver(
            "vnet",
            env!("CARGO_PKG_VERSION"),
            "a network stack of its own, joined to bridges by pairs",
            &["bridge"],
        )
    }

    fn plan(&self, call: &Call, _host: &Host<'_>) -> Result<Plan, PluginError> {
        let mut plan = Plan::new();
        match call {
            Call::ContainerStart { container, attachments } => {
                plan.push(Op::CreateSandbox { sandbox: container.id.clone(), stack: Stack::Private });
                for (i, a) in attachments.iter().enumerate() {
                    join(&mut plan, &container.id, a, format!("eth{i}"), &attachments[..i]);
                }
            }
            Call::ContainerStop { container, attachments } => {
                attachments.iter().for_each(|a| leave(&mut plan, &container.id, a));
                plan.push(Op::DestroySandbox { sandbox: container.id.clone(), stack: Stack::Private });
            }
            Call::ContainerConnect { container, attachment, others } if container.running => {
                join(&mut plan, &container.id, attachment, free_peer_name(others), others);
            }
            Call::ContainerDisconnect { container, attachment, .. } if container.running => {
                leave(&mut plan, &container.id, attachment);
            }
            Call::ContainerConnect { .. } | Call::ContainerDisconnect { .. } => {}
            other => return Err(other.unsupported("vnet")),
        }
        Ok(plan)
    }
}

kleene_plugin_api::export_plugin!(Vnet);
