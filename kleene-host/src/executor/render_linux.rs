//! The Linux renderer: each operation as the iproute2 command line that means it, for
//! `--dry-run`. The real Linux executor uses netlink, cgroup2 and BPF directly; these lines
//! show what it does, not how.

use super::{Executor, Fact, Renderer};
use anyhow::Result;
use kleene_plugin_api::{mac_string, Check, Cidr, LinkKind, Op, Stack};
use std::net::IpAddr;

#[derive(Default)]
pub struct LinuxRenderer {
    lines: Vec<String>,
    /// Answers the plan's checks against this host (a dry run on Linux); none in tests.
    probe: Option<Box<dyn Executor>>,
}

impl LinuxRenderer {
    /// A renderer whose checks ask `probe` (this host), as the real run's would.
    pub fn checking(probe: Option<Box<dyn Executor>>) -> LinuxRenderer {
        LinuxRenderer { lines: Vec::new(), probe }
    }

    fn run(&mut self, line: String) {
        self.lines.push(line);
    }

    fn render(&mut self, op: &Op) {
        match op {
            Op::CreateLink { name, kind } => self.run(format!("ip link add {name} type {}", link_type(*kind))),
            Op::DeleteLink { name, .. } => self.run(format!("ip link del {name}")),
            Op::SetLinkMac { name, mac, sandbox } => {
                self.run(format!("{} link set {name} address {}", ip(sandbox), mac_string(mac)))
            }
            Op::SetLinkMtu { name, mtu, sandbox } => self.run(format!("{} link set {name} mtu {mtu}", ip(sandbox))),
            Op::NoIpv6LinkLocal { name, sandbox } => {
                self.run(format!("{} link set {name} addrgenmode none", ip(sandbox)))
            }
            Op::SetLinkUp { name, sandbox } => self.run(format!("{} link set {name} up", ip(sandbox))),
            Op::SetLinkDown { name, sandbox } => self.run(format!("{} link set {name} down", ip(sandbox))),
            Op::AddAddress { link, address, prefix, sandbox } => {
                self.run(format!("{} addr add {address}/{prefix} dev {link}", ip(sandbox)));
            }
            Op::RemoveAddress { link, address, prefix, sandbox } => {
                self.run(format!("{} addr del {address}/{prefix} dev {link}", ip(sandbox)));
            }
            Op::CreatePair { host, peer, sandbox } => {
                self.run(format!("ip link add {host} type veth peer name {peer} netns {sandbox}"));
            }
            Op::CreateHandoffPair { host, peer, .. } => {
                self.run(format!("ip link add {host} type veth peer name {peer}"));
            }
            // Deleting one end of a veth pair deletes both.
            Op::DeletePair { host, .. } => self.run(format!("ip link del {host}")),
            Op::AttachToBridge { bridge, member } => self.run(format!("ip link set {member} master {bridge}")),
            Op::DetachFromBridge { member, .. } => self.run(format!("ip link set {member} nomaster")),
            Op::AddDefaultRoute { gateway, sandbox } => {
                self.run(format!("ip -n {sandbox} {} route add default via {gateway}", family(*gateway)));
            }
            Op::RemoveDefaultRoute { gateway, sandbox } => {
                self.run(format!("ip -n {sandbox} {} route del default via {gateway}", family(*gateway)));
            }
            Op::CreateSandbox { sandbox, stack } => self.create_sandbox(sandbox, *stack),
            Op::DestroySandbox { sandbox, stack } => self.destroy_sandbox(sandbox, *stack),
            Op::RestrictAddresses { sandbox, addresses } => self.run(restrict_line(sandbox, addresses)),
            Op::CreateVxlan { name, vni, local, port } => self
                .run(format!("ip link add {name} type vxlan id {vni} local {local} dstport {port} nolearning proxy")),
            Op::DeleteVxlan { name, .. } => self.run(format!("ip link del {name}")),
            Op::AddForwarding { link, mac, remote } => {
                self.run(format!("bridge fdb replace {} dev {link} dst {remote} self permanent", mac_string(mac)))
            }
            Op::RemoveForwarding { link, mac, remote } => {
                self.run(format!("bridge fdb del {} dev {link} dst {remote} self", mac_string(mac)))
            }
            Op::AddNeighbour { link, address, mac } => {
                self.run(format!("ip neigh replace {address} lladdr {} dev {link} nud permanent", mac_string(mac)))
            }
            Op::RemoveNeighbour { link, address, .. } => self.run(format!("ip neigh del {address} dev {link}")),
        }
    }

    /// Every sandbox has a cgroup (it tracks the container's processes); private and
    /// disabled stacks also get a network namespace.
    fn create_sandbox(&mut self, sandbox: &str, stack: Stack) {
        self.run(format!("mkdir <cgroup2>/kleene/{sandbox}"));
        if has_netns(stack) {
            self.run(format!("ip netns add {sandbox}"));
        }
    }

    fn destroy_sandbox(&mut self, sandbox: &str, stack: Stack) {
        if has_netns(stack) {
            self.run(format!("ip netns del {sandbox}"));
        }
        self.run(format!("rmdir <cgroup2>/kleene/{sandbox}"));
    }
}

impl Executor for LinuxRenderer {
    fn check(&mut self, check: &Check) -> Result<()> {
        // Checks ask the live system; there is no command line that means them.
        match self.probe.as_mut() {
            Some(probe) => probe.check(check),
            None => Ok(()),
        }
    }

    fn apply(&mut self, op: &Op) -> Result<Vec<Fact>> {
        self.render(op);
        Ok(vec![])
    }

    fn undo(&mut self, op: &Op) -> Result<()> {
        self.render(op);
        Ok(())
    }

    /// The sysctls the real executor would enable, then the nft script as a here-document.
    fn apply_firewall(&mut self, rules: &crate::firewall::Ruleset) -> Result<()> {
        let (v4, v6) = crate::firewall::forwarding_needed(rules);
        if v4 {
            self.run("sysctl -w net.ipv4.ip_forward=1".into());
        }
        if v6 {
            self.run("sysctl -w net.ipv6.conf.all.forwarding=1".into());
        }
        self.lines.extend(super::here_document("nft -f -", &crate::firewall::nft::render(rules)));
        Ok(())
    }
}

impl Renderer for LinuxRenderer {
    fn lines(&self) -> &[String] {
        &self.lines
    }

    fn write_file(&mut self, path: &std::path::Path, text: &str) {
        self.lines.extend(super::file_lines(path, text));
    }
}

/// The iproute2 link type. A loopback network is a `dummy`; the real executor falls back
/// to `ifb` where the dummy module is missing (and records that as a fact).
fn link_type(kind: LinkKind) -> &'static str {
    match kind {
        LinkKind::Loopback => "dummy",
        LinkKind::Bridge => "bridge",
    }
}

fn has_netns(stack: Stack) -> bool {
    matches!(stack, Stack::Private | Stack::Disabled)
}

/// `ip`, or `ip -n <sandbox>` for an operation inside a sandbox.
fn ip(sandbox: &Option<String>) -> String {
    match sandbox {
        Some(sandbox) => format!("ip -n {sandbox}"),
        None => "ip".into(),
    }
}

fn family(address: IpAddr) -> &'static str {
    if address.is_ipv4() {
        "-4"
    } else {
        "-6"
    }
}

/// The address restriction is BPF attached to the sandbox's cgroup: no command line exists,
/// so it is shown as a shell comment.
fn restrict_line(sandbox: &str, addresses: &[Cidr]) -> String {
    let list: Vec<String> = addresses.iter().map(|a| a.addr.to_string()).collect();
    let list = if list.is_empty() { "no addresses".to_string() } else { list.join(", ") };
    format!("# restrict {sandbox} to {list} (cgroup BPF)")
}
