//! VNET driver: the container gets a network stack of its own. Per bridge network, a pair
//! joins it: the host end on the bridge, the peer inside the container with the endpoint's
//! addresses. The first network with a gateway of a family supplies the default route.

use kleene_plugin_api::{pairs, Attachment, Call, Host, Op, Plan, Plugin, PluginError, PluginInfo, Stack};

#[derive(Default)]
pub struct Vnet;

/// Host-side name: unique per endpoint and within the 15-byte interface-name limit.
pub fn host_end(a: &Attachment) -> String {
    format!("kv{}", &a.endpoint.id[..a.endpoint.id.len().min(12)])
}

/// The peer of a pair handed to a runtime: it waits on the host, so it needs a host-unique
/// name too until the runtime moves and renames it.
pub fn handoff_peer(a: &Attachment) -> String {
    format!("kw{}", &a.endpoint.id[..a.endpoint.id.len().min(12)])
}

fn join(plan: &mut Plan, sandbox: &str, a: &Attachment, peer: String, earlier: &[Attachment]) {
    pairs::join(plan, sandbox, a, host_end(a), peer, earlier);
}

fn leave(plan: &mut Plan, sandbox: &str, a: &Attachment, earlier: &[Attachment]) {
    pairs::leave_after(plan, sandbox, a, host_end(a), earlier);
}

impl Plugin for Vnet {
    fn info(&self) -> PluginInfo {
        PluginInfo::driver(
            "vnet",
            env!("CARGO_PKG_VERSION"),
            "a network stack of its own, joined to bridges by pairs",
            &["bridge", "overlay"],
        )
        .with_stack(Stack::Private)
    }

    fn plan(&self, call: &Call, _host: &Host<'_>) -> Result<Plan, PluginError> {
        let mut plan = Plan::new();
        match call {
            Call::ContainerStart { container, attachments } => {
                plan.push(Op::CreateSandbox { sandbox: container.id.clone(), stack: Stack::Private });
                for (i, a) in attachments.iter().enumerate() {
                    let peer = a.endpoint.interface.clone().unwrap_or_else(|| format!("eth{i}"));
                    join(&mut plan, &container.id, a, peer, &attachments[..i]);
                }
            }
            Call::ContainerStop { container, attachments } => {
                for (i, a) in attachments.iter().enumerate() {
                    leave(&mut plan, &container.id, a, &attachments[..i]);
                }
                plan.push(Op::DestroySandbox { sandbox: container.id.clone(), stack: Stack::Private });
            }
            Call::ContainerConnect { container, attachment, others } if container.running => {
                join(&mut plan, &container.id, attachment, pairs::free_peer_name(others), others);
            }
            Call::ContainerDisconnect { container, attachment, .. } if container.running => {
                leave(&mut plan, &container.id, attachment, &[]);
            }
            Call::ContainerConnect { .. } | Call::ContainerDisconnect { .. } => {}
            Call::RuntimeJoin { container, attachment } => {
                pairs::hand_off(&mut plan, &container.id, attachment, host_end(attachment), handoff_peer(attachment));
            }
            Call::RuntimeLeave { container, attachment } => {
                pairs::take_back(&mut plan, &container.id, attachment, host_end(attachment), handoff_peer(attachment));
            }
            other => return Err(other.unsupported("vnet")),
        }
        Ok(plan)
    }
}

kleene_plugin_api::export_plugin!(Vnet);
