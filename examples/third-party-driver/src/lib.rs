//! `sample`: an example third-party driver for kleene.
//!
//! Each container gets a network stack of its own, joined to bridge networks by pairs whose
//! host ends are named `ks<endpoint id>`, built from the API's [`kleene_plugin_api::pairs`]
//! blocks. The driver declares its stack ([`Stack::Private`]) in its [`PluginInfo`], and that
//! declaration is all the host goes by: the firewall, `container exec` and published ports
//! treat its containers exactly as the built-in vnet driver's, without the host knowing either
//! name. It joins bridge networks only; the host enforces that from
//! [`PluginInfo::network_types`] before the plugin is ever asked.
//!
//! Build: `cargo build --release`, then copy `target/release/libkleene_sample.so` into a
//! plugin directory (see docs/plugin-authors.md).

use kleene_plugin_api::{pairs, Attachment, Call, Host, Level, Op, Plan, Plugin, PluginError, PluginInfo, Stack};

#[derive(Default)]
pub struct Sample;

const NAME: &str = "sample";

/// The host end of a container's pair on one network: unique per endpoint, 14 bytes.
fn host_end(a: &Attachment) -> String {
    format!("ks{}", &a.endpoint.id[..a.endpoint.id.len().min(12)])
}

impl Plugin for Sample {
    fn info(&self) -> PluginInfo {
        PluginInfo::driver(
            NAME,
            env!("CARGO_PKG_VERSION"),
            "example third-party driver: a network stack of its own, joined to bridges by pairs",
            &["bridge"],
        )
        .with_stack(Stack::Private)
    }

    fn plan(&self, call: &Call, host: &Host<'_>) -> Result<Plan, PluginError> {
        let mut plan = Plan::new();
        match call {
            Call::ContainerStart { container, attachments } => {
                plan.push(Op::CreateSandbox { sandbox: container.id.clone(), stack: Stack::Private });
                for (i, a) in attachments.iter().enumerate() {
                    pairs::join(&mut plan, &container.id, a, host_end(a), format!("eth{i}"), &attachments[..i]);
                }
                host.log(
                    Level::Info,
                    format_args!("container {} joins {} network(s)", container.name, attachments.len()),
                );
            }
            Call::ContainerStop { container, attachments } => {
                for a in attachments {
                    pairs::leave(&mut plan, &container.id, a, host_end(a));
                }
                plan.push(Op::DestroySandbox { sandbox: container.id.clone(), stack: Stack::Private });
            }
            Call::ContainerConnect { container, attachment, others } if container.running => {
                let peer = pairs::free_peer_name(others);
                pairs::join(&mut plan, &container.id, attachment, host_end(attachment), peer, others);
            }
            Call::ContainerDisconnect { container, attachment, .. } if container.running => {
                pairs::leave(&mut plan, &container.id, attachment, host_end(attachment));
            }
            // A stopped container's networks change in the host's state only.
            Call::ContainerConnect { .. } | Call::ContainerDisconnect { .. } => {}
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
        let endpoint = Endpoint { ip_address: Some("10.0.0.2".parse().unwrap()), ..Endpoint::new("e1", "n1", "c1") };
        Attachment { network, endpoint }
    }

    #[test]
    fn start_makes_a_sandbox_and_a_pair_on_the_bridge() {
        let container = Container { id: "c1".into(), name: "c".into(), driver: NAME.into(), running: true };
        let call = Call::ContainerStart { container, attachments: vec![attachment()] };
        let plan = with_null_host(|host| Sample.plan(&call, host)).unwrap();
        let ops: Vec<&str> = plan.steps.iter().map(|s| s.op.name()).collect();
        assert_eq!(
            ops,
            [
                "create_sandbox",
                "create_pair",
                // API 1.3: neither end has a use for an IPv6 link-local address (no IPv6 here).
                "no_ipv6_link_local",
                "no_ipv6_link_local",
                "attach_to_bridge",
                "set_link_up",
                "add_address",
                "set_link_up"
            ]
        );
        assert_eq!(Sample.info().driver_traits.map(|t| t.stack), Some(Stack::Private));
    }
}
