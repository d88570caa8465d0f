//! The FreeBSD renderer: the `ifconfig`, `route` and `jail` command lines a plan means, as
//! Kleene runs them (reference, section 5). Nothing is executed.
//!
//! A jail is started by one `jail -c` whose parameters do the jail's network setup, so
//! `CreateSandbox` opens a *pending jail*: the operations that belong to its start become
//! parameters (`vnet.interface=`, `exec.prestart=`, `exec.start=`, `ip4.addr=`, ...) and the
//! `jail -c` line is written when the plan ends or an operation needs the jail to exist.
//! Other commands are written at once, so they come before the `jail -c` line, as in Kleene
//! (`ifconfig epair create` must run before the jail can take the `b` end).

use super::{Executor, Fact, Renderer};
use anyhow::Result;
use kleene_plugin_api::{mac_string, Check, Cidr, LinkKind, Op, Stack};
use std::collections::HashMap;
use std::net::IpAddr;

/// A jail whose `jail -c` line is still being assembled.
struct PendingJail {
    name: String,
    stack: Stack,
    params: Vec<String>,
}

#[derive(Default)]
pub struct FreeBsdRenderer {
    lines: Vec<String>,
    pending: Option<PendingJail>,
    /// Simulated `ifconfig epair create` results: FreeBSD numbers pairs itself.
    epairs: u32,
    /// Planned host-end name -> `epairNa`.
    hosts: HashMap<String, String>,
    /// (jail, planned peer name) -> `epairNb`.
    peers: HashMap<(String, String), String>,
    /// `epairNa` -> the jail its `b` end went to.
    host_jail: HashMap<String, String>,
    /// Bridges this plan created (they have a MAC of their own).
    bridges: std::collections::HashSet<String>,
}

impl FreeBsdRenderer {
    fn run(&mut self, line: String) {
        self.lines.push(line);
    }

    fn render(&mut self, op: &Op) -> Vec<Fact> {
        match op {
            Op::CreateLink { name, kind } => {
                if *kind == LinkKind::Bridge {
                    self.bridges.insert(name.clone());
                }
                self.run(format!("ifconfig {} create name {}", clone_kind(*kind), word(name)))
            }
            Op::DeleteLink { name, .. } => self.run(format!("ifconfig {} destroy", word(name))),
            Op::SetLinkMac { name, mac } => self.set_mac(name, mac),
            Op::SetLinkUp { name, sandbox } => self.link_up(name, sandbox.as_deref()),
            Op::SetLinkDown { name, sandbox } => self.link_down(name, sandbox.as_deref()),
            Op::AddAddress { link, address, prefix, sandbox } => {
                self.add_address(link, *address, *prefix, sandbox.as_deref())
            }
            Op::RemoveAddress { link, address, sandbox, .. } => self.remove_address(link, *address, sandbox.as_deref()),
            Op::CreatePair { host, peer, sandbox } => return self.create_pair(host, peer, sandbox),
            Op::DeletePair { host, .. } => self.run(format!("ifconfig {} destroy", word(&self.host_name(host)))),
            Op::AttachToBridge { bridge, member } => {
                let member = self.host_name(member);
                self.prestart_or_run(&member, format!("ifconfig {} addm {}", word(bridge), word(&member)));
            }
            Op::DetachFromBridge { bridge, member } => {
                self.run(format!("ifconfig {} deletem {}", word(bridge), word(&self.host_name(member))));
            }
            Op::AddDefaultRoute { gateway, sandbox } => {
                self.start_or_jexec(sandbox, format!("route add {} default {gateway}", route_family(*gateway)));
            }
            Op::RemoveDefaultRoute { gateway, sandbox } => {
                self.jexec(sandbox, format!("route delete {} default {gateway}", route_family(*gateway)));
            }
            Op::CreateSandbox { sandbox, stack } => self.open_jail(sandbox, *stack),
            Op::DestroySandbox { sandbox, .. } => {
                self.flush();
                self.run(format!("jail -r {}", word(sandbox)));
            }
            Op::RestrictAddresses { sandbox, addresses } => self.restrict(sandbox, addresses),
        }
        vec![]
    }

    /// An `if_bridge` has a stable address of its own already (from the host id and its
    /// name, never a member's), so a fixed MAC for a bridge is kleene's Linux concern only;
    /// any other link gets the address as asked.
    fn set_mac(&mut self, name: &str, mac: &[u8; 6]) {
        if self.bridges.contains(name) {
            return;
        }
        self.run(format!("ifconfig {} ether {}", word(name), mac_string(mac)));
    }

    fn is_pending(&self, jail: &str) -> bool {
        self.pending.as_ref().is_some_and(|p| p.name == jail)
    }

    fn param(&mut self, param: String) {
        self.pending.as_mut().expect("only called for a pending jail").params.push(param);
    }

    fn open_jail(&mut self, name: &str, stack: Stack) {
        self.flush();
        let params = match stack {
            Stack::Host => vec!["ip4=inherit".into(), "ip6=inherit".into()],
            Stack::Disabled => vec!["ip4=disable".into(), "ip6=disable".into()],
            Stack::Private => vec!["vnet".into()],
            // Filled in by the aliases and `RestrictAddresses` that follow.
            Stack::Restricted => vec![],
        };
        self.pending = Some(PendingJail { name: name.into(), stack, params });
    }

    /// Write the pending jail's `jail -c` line.
    fn flush(&mut self) {
        if let Some(jail) = self.pending.take() {
            let mut line = format!("jail -c path=/ name={} persist", word(&jail.name));
            for param in &jail.params {
                line.push(' ');
                line.push_str(param);
            }
            self.run(line);
        }
    }

    /// A command inside a jail that cannot be a parameter: the jail must exist first.
    fn jexec(&mut self, jail: &str, command: String) {
        if self.is_pending(jail) {
            self.flush();
        }
        self.run(format!("jexec {} {command}", word(jail)));
    }

    fn start_or_jexec(&mut self, jail: &str, command: String) {
        if self.is_pending(jail) {
            self.param(exec_param("exec.start", &command));
        } else {
            self.jexec(jail, command);
        }
    }

    /// A host command about a pending jail's pair end runs before that jail starts.
    fn prestart_or_run(&mut self, host_end: &str, command: String) {
        match self.host_jail.get(host_end) {
            Some(jail) if self.is_pending(jail) => self.param(exec_param("exec.prestart", &command)),
            _ => self.run(command),
        }
    }

    fn host_name(&self, planned: &str) -> String {
        self.hosts.get(planned).cloned().unwrap_or_else(|| planned.to_string())
    }

    fn peer_name(&self, jail: &str, planned: &str) -> String {
        let key = (jail.to_string(), planned.to_string());
        self.peers.get(&key).cloned().unwrap_or_else(|| planned.to_string())
    }

    fn link_up(&mut self, name: &str, sandbox: Option<&str>) {
        match sandbox {
            // FreeBSD brings an interface up when it gets an address, so a jail being
            // started needs no parameter for this.
            Some(jail) if self.is_pending(jail) => {}
            Some(jail) => self.jexec(jail, format!("ifconfig {} up", word(&self.peer_name(jail, name)))),
            None => {
                let name = self.host_name(name);
                self.prestart_or_run(&name, format!("ifconfig {} up", word(&name)));
            }
        }
    }

    fn link_down(&mut self, name: &str, sandbox: Option<&str>) {
        match sandbox {
            Some(jail) => self.jexec(jail, format!("ifconfig {} down", word(&self.peer_name(jail, name)))),
            None => self.run(format!("ifconfig {} down", word(&self.host_name(name)))),
        }
    }

    fn add_address(&mut self, link: &str, address: IpAddr, prefix: u8, sandbox: Option<&str>) {
        let family = if_family(address);
        match sandbox {
            Some(jail) => {
                let link = self.peer_name(jail, link);
                self.start_or_jexec(jail, format!("ifconfig {} {family} {address}/{prefix}", word(&link)));
            }
            None => {
                let command = format!("ifconfig {} {family} {address}/{prefix} alias", word(&self.host_name(link)));
                // An ipnet jail's aliases are added as it starts, as Kleene does.
                if self.pending.as_ref().is_some_and(|p| p.stack == Stack::Restricted) {
                    self.param(exec_param("exec.prestart", &command));
                } else {
                    self.run(command);
                }
            }
        }
    }

    fn remove_address(&mut self, link: &str, address: IpAddr, sandbox: Option<&str>) {
        let family = if_family(address);
        match sandbox {
            Some(jail) => {
                let link = self.peer_name(jail, link);
                self.jexec(jail, format!("ifconfig {} {family} {address} -alias", word(&link)));
            }
            None => self.run(format!("ifconfig {} {family} {address} -alias", word(&self.host_name(link)))),
        }
    }

    fn create_pair(&mut self, host: &str, peer: &str, jail: &str) -> Vec<Fact> {
        let n = self.epairs;
        self.epairs += 1;
        let (a, b) = (format!("epair{n}a"), format!("epair{n}b"));
        self.run("ifconfig epair create".into());
        self.hosts.insert(host.into(), a.clone());
        self.peers.insert((jail.into(), peer.into()), b.clone());
        self.host_jail.insert(a.clone(), jail.into());
        if self.is_pending(jail) {
            self.param(format!("vnet.interface={b}"));
        } else {
            // Moving the `b` end into a running vnet jail, which Kleene refuses to do.
            self.run(format!("ifconfig {b} vnet {}", word(jail)));
        }
        vec![Fact::LinkName { planned: host.into(), actual: a }, Fact::LinkName { planned: peer.into(), actual: b }]
    }

    fn restrict(&mut self, jail: &str, addresses: &[Cidr]) {
        let addresses: Vec<IpAddr> = addresses.iter().map(|c| c.addr).collect();
        let (v4, v6) = split_families(&addresses);
        if self.is_pending(jail) {
            // A family without addresses is disabled rather than left to jail(8)'s default.
            self.param(if v4.is_empty() { "ip4=disable".into() } else { format!("ip4.addr={v4}") });
            self.param(if v6.is_empty() { "ip6=disable".into() } else { format!("ip6.addr={v6}") });
        } else {
            // Both families, even when empty, so that removed addresses really go (Kleene
            // puts IPv6 into ip4.addr and never removes it).
            self.run(format!("jail -m name={} ip4.addr={v4} ip6.addr={v6}", word(jail)));
        }
    }
}

impl Executor for FreeBsdRenderer {
    fn check(&mut self, _check: &Check) -> Result<()> {
        // Checks ask the live system; there is no command line that means them.
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<Vec<Fact>> {
        Ok(self.render(op))
    }

    fn undo(&mut self, op: &Op) -> Result<()> {
        self.render(op);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush();
        Ok(())
    }

    /// `pfctl -a kleene -f -` fed the anchor as a here-document. Forwarding
    /// (`gateway_enable`, `ipv6_gateway_enable`) is the operator's rc.conf, as in Kleene.
    fn apply_firewall(&mut self, rules: &crate::firewall::Ruleset) -> Result<()> {
        self.flush();
        self.lines.extend(super::here_document("pfctl -a kleene -f -", &crate::firewall::pf::render(rules)));
        Ok(())
    }
}

impl Renderer for FreeBsdRenderer {
    fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// The `ifconfig <cloner> create` cloner for a link kind.
fn clone_kind(kind: LinkKind) -> &'static str {
    match kind {
        LinkKind::Loopback => "lo",
        LinkKind::Bridge => "bridge",
    }
}

fn if_family(address: IpAddr) -> &'static str {
    if address.is_ipv4() {
        "inet"
    } else {
        "inet6"
    }
}

fn route_family(address: IpAddr) -> &'static str {
    if address.is_ipv4() {
        "-inet"
    } else {
        "-inet6"
    }
}

/// Comma-separated IPv4 and IPv6 lists, as `ip4.addr`/`ip6.addr` take them.
fn split_families(addresses: &[IpAddr]) -> (String, String) {
    let list = |v4: bool| {
        let family: Vec<String> = addresses.iter().filter(|a| a.is_ipv4() == v4).map(|a| a.to_string()).collect();
        family.join(",")
    };
    (list(true), list(false))
}

/// A jail parameter holding a command: `key="command"`.
fn exec_param(key: &str, command: &str) -> String {
    let mut quoted = String::with_capacity(command.len() + 2);
    for c in command.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    format!("{key}=\"{quoted}\"")
}

/// One shell word: names from state or the operator are quoted unless plainly safe.
fn word(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "._-:/,=@%+".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(word("kleene0"), "kleene0");
        assert_eq!(word("my if"), "'my if'");
        assert_eq!(word("it's"), r"'it'\''s'");
        assert_eq!(word(""), "''");
    }

    #[test]
    fn exec_params_escape_the_shell() {
        assert_eq!(exec_param("exec.start", "echo \"$x\""), r#"exec.start="echo \"\$x\"""#);
    }

    #[test]
    fn unmapped_names_are_used_as_they_are() {
        let mut r = FreeBsdRenderer::default();
        r.apply(&Op::DeletePair { host: "epair3a".into(), peer: "eth0".into(), sandbox: "c".into() }).unwrap();
        assert_eq!(r.lines(), ["ifconfig epair3a destroy"]);
    }
}
