//! IPnet driver: the container shares the host's stack but may only use its own addresses
//! (jail `ip4.addr`). Each address is a /32 or /128 alias on its network's interface; the
//! host restricts the sandbox to exactly the set of addresses of all its endpoints.

use kleene_plugin_api::{
    Attachment, Call, Cidr, DefaultFor, Host, Level, Op, Plan, Plugin, PluginError, PluginInfo, Stack,
};

#[derive(Default)]
pub struct Ipnet;

fn addresses<'a>(attachments: impl IntoIterator<Item = &'a Attachment>) -> Vec<Cidr> {
    attachments.into_iter().flat_map(|a| a.cidrs()).collect()
}

impl Plugin for Ipnet {
    fn info(&self) -> PluginInfo {
        PluginInfo::driver(
            "ipnet",
            env!("CARGO_PKG_VERSION"),
            "the host's network stack, restricted to the container's own addresses",
            &["loopback", "bridge", "custom"],
        )
        .with_stack(Stack::Restricted)
        .default_for(DefaultFor::DriverWithNetwork)
    }

    fn plan(&self, call: &Call, host: &Host<'_>) -> Result<Plan, PluginError> {
        let mut plan = Plan::new();
        match call {
            Call::ContainerStart { container, attachments } => {
                let sandbox = container.id.clone();
                plan.push(Op::CreateSandbox { sandbox: sandbox.clone(), stack: Stack::Restricted });
                attachments.iter().flat_map(|a| a.host_aliases(true)).for_each(|op| {
                    plan.push(op);
                });
                let addresses = addresses(attachments);
                let shown: Vec<String> = addresses.iter().map(|c| c.addr.to_string()).collect();
                host.log(
                    Level::Debug,
                    format_args!("container {} restricted to [{}]", container.name, shown.join(", ")),
                );
                // Destroying the sandbox drops the restriction, so this step needs no undo.
                plan.push_with_undo(Op::RestrictAddresses { sandbox, addresses }, vec![]);
            }
            Call::ContainerStop { container, attachments } => {
                attachments.iter().flat_map(|a| a.host_aliases(false)).for_each(|op| {
                    plan.push(op);
                });
                // A rolled-back stop must never leave the container's cgroup unrestricted: the
                // sandbox comes back with its restriction, in that order.
                let sandbox = container.id.clone();
                let undo = vec![
                    Op::CreateSandbox { sandbox: sandbox.clone(), stack: Stack::Restricted },
                    Op::RestrictAddresses { sandbox: sandbox.clone(), addresses: addresses(attachments) },
                ];
                plan.push_with_undo(Op::DestroySandbox { sandbox, stack: Stack::Restricted }, undo);
            }
            Call::ContainerConnect { container, attachment, others } if container.running => {
                let before = addresses(others);
                let after = addresses(others.iter().chain([attachment]));
                attachment.host_aliases(true).for_each(|op| {
                    plan.push(op);
                });
                let sandbox = container.id.clone();
                let undo = vec![Op::RestrictAddresses { sandbox: sandbox.clone(), addresses: before }];
                plan.push_with_undo(Op::RestrictAddresses { sandbox, addresses: after }, undo);
            }
            Call::ContainerDisconnect { container, attachment, others } if container.running => {
                let before = addresses(others.iter().chain([attachment]));
                let sandbox = container.id.clone();
                let undo = vec![Op::RestrictAddresses { sandbox: sandbox.clone(), addresses: before }];
                plan.push_with_undo(Op::RestrictAddresses { sandbox, addresses: addresses(others) }, undo);
                attachment.host_aliases(false).for_each(|op| {
                    plan.push(op);
                });
            }
            // A stopped container only changes state; its sandbox is built at start.
            Call::ContainerConnect { .. } | Call::ContainerDisconnect { .. } => {}
            other => return Err(other.unsupported("ipnet")),
        }
        Ok(plan)
    }
}

kleene_plugin_api::export_plugin!(Ipnet);
