//! `sample`: an example third-party driver for kleene.
//!
//! Containers share the host's network stack but may only use their own addresses: each
//! address becomes a host-length alias (/32 or /128) on its network's interface, and the
//! host restricts the sandbox to exactly that set. It joins bridge and custom networks; the
//! host enforces that from [`PluginInfo::network_types`] before the plugin is ever asked,
//! so `kleene container create -l sample -n <loopback net>` is refused by the host.
//!
//! Build: `cargo build --release`, then copy `target/release/libkleene_sample.so` into a
//! plugin directory (see docs/plugin-authors.md).

use kleene_plugin_api::{Call, Cidr, Host, Level, Op, Plan, Plugin, PluginError, PluginInfo, Stack};

#[derive(Default)]
pub struct Sample;

const NAME: &str = "sample";

impl Plugin for Sample {
    fn info(&self) -> PluginInfo {
        PluginInfo::driver(
            NAME,
            env!("CARGO_PKG_VERSION"),
            "example third-party driver: host stack, restricted to the container's aliases",
            &["bridge", "custom"],
        )
    }

    fn plan(&self, call: &Call, host: &Host<'_>) -> Result<Plan, PluginError> {
        let mut plan = Plan::new();
        match call {
            Call::ContainerStart { container, attachments } => {
                let sandbox = container.id.clone();
                plan.push(Op::CreateSandbox { sandbox: sandbox.clone(), stack: Stack::Restricted });
                for op in attachments.iter().flat_map(|a| a.host_aliases(true)) {
                    plan.push(op);
                }
                let addresses: Vec<Cidr> = attachments.iter().flat_map(|a| a.cidrs()).collect();
                host.log(
                    Level::Info,
                    format_args!("container {} gets {} address(es)", container.name, addresses.len()),
                );
                // Destroying the sandbox lifts the restriction: no undo needed.
                plan.push_with_undo(Op::RestrictAddresses { sandbox, addresses }, vec![]);
            }
            Call::ContainerStop { container, attachments } => {
                for op in attachments.iter().flat_map(|a| a.host_aliases(false)) {
                    plan.push(op);
                }
                plan.push(Op::DestroySandbox { sandbox: container.id.clone(), stack: Stack::Restricted });
            }
            // A stopped container's networks change in the host's state only.
            Call::ContainerConnect { container, .. } | Call::ContainerDisconnect { container, .. }
                if !container.running => {}
            Call::ContainerConnect { .. } | Call::ContainerDisconnect { .. } => {
                return Err(PluginError::from(
                    "the 'sample' driver cannot change the networks of a running container; stop it first",
                ));
            }
            other => return Err(other.unsupported(NAME)),
        }
        Ok(plan)
    }
}

kleene_plugin_api::export_plugin!(Sample);

#[cfg(test)]
mod tests {
    use super::*;
    use kleene_plugin_api::{with_null_host, Attachment, Container, Endpoint, Network};

    fn attachment() -> Attachment {
        let network =
            Network { subnet: Some("10.0.0.0/24".parse().unwrap()), ..Network::new("n1", "net", "bridge", "kleene0") };
        let endpoint = Endpoint {
            id: "e1".into(),
            network_id: "n1".into(),
            container_id: "c1".into(),
            epair: None,
            interface: None,
            ip_address: Some("10.0.0.2".parse().unwrap()),
            ip_address6: None,
        };
        Attachment { network, endpoint }
    }

    #[test]
    fn start_aliases_then_restricts() {
        let container = Container { id: "c1".into(), name: "c".into(), driver: NAME.into(), running: true };
        let call = Call::ContainerStart { container, attachments: vec![attachment()] };
        let plan = with_null_host(|host| Sample.plan(&call, host)).unwrap();
        let ops: Vec<&str> = plan.steps.iter().map(|s| s.op.name()).collect();
        assert_eq!(ops, ["create_sandbox", "add_address", "restrict_addresses"]);
    }
}
