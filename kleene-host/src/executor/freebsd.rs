//! The FreeBSD renderer: the `ifconfig`, `route`, `jail` and `pfctl` command lines a plan
//! means, as Kleene runs them (reference, section 5), as a `sh` script an operator can run.
//! Nothing is executed.
//!
//! A jail is started by one `jail -c` whose parameters do the jail's network setup, so
//! `CreateSandbox` opens a *pending jail*: the operations that belong to its start become
//! parameters (`vnet.interface=`, `exec.prestart=`, `exec.start=`, `ip4.addr=`, ...) and the
//! `jail -c` line is written when the plan ends or an operation needs the jail to exist.
//! Other commands are written at once, so they come before the `jail -c` line, as in Kleene
//! (`ifconfig epair create` must run before the jail can take the `b` end).
//!
//! FreeBSD names a new pair itself (the lowest free `epairN`), so the script keeps the name
//! `ifconfig epair create` prints in a shell variable (`pair0`), renames the host end to the
//! planned, stable name (`kv<endpoint>`: what state records, the pf macros list and later
//! stop commands use) and refers to the jail end as `${pair0%a}b`.
//!
//! The script stops at the first failing command (`set -e`) and then removes what it
//! created, newest first, with the undo operations the plan carries: each step that creates
//! something (an interface, a pair, a jail, an alias on an interface the script did not
//! create) registers its undo with `on_failure`. What a step does inside a jail, or to an
//! interface the script created, goes with the jail or the interface. Steps that remove things
//! register nothing: like Kleene, a failed stop or removal is not put back. The plan's checks
//! become guards at the top of the script, since they depend on the target host.

use super::{check_failure, Executor, Fact, Renderer};
use anyhow::Result;
use kleene_plugin_api::{mac_string, Check, Cidr, LinkKind, Op, Stack};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// A jail whose `jail -c` line is still being assembled.
struct PendingJail {
    name: String,
    stack: Stack,
    params: Vec<String>,
    /// `jail -r`, registered once `jail -c` has run.
    undo: Option<String>,
}

#[derive(Default)]
pub struct FreeBsdRenderer {
    lines: Vec<String>,
    pending: Option<PendingJail>,
    /// Pairs created so far in this script: pair N's name is in shell variable `pairN`.
    pairs: usize,
    /// (jail, planned peer name) -> the shell variable naming that pair.
    peers: HashMap<(String, String), String>,
    /// Host end -> the jail its `b` end went to.
    host_jail: HashMap<String, String>,
    /// Interfaces this script creates.
    created_links: HashSet<String>,
    /// Bridges this plan created (they have a MAC of their own).
    bridges: HashSet<String>,
    /// The default-route interface for pf's `kleenet_host_gw_if`, when the ruleset has none:
    /// looked up once, only for this renderer (nothing else needs it).
    host_gw_if: String,
}

impl FreeBsdRenderer {
    /// A renderer for a host whose default route goes out of `host_gw_if` ("" for none).
    pub fn for_host(host_gw_if: String) -> FreeBsdRenderer {
        FreeBsdRenderer { host_gw_if, ..FreeBsdRenderer::default() }
    }
}

/// A command line that may name the jail end of a pair created earlier in the script, whose
/// name only the shell knows (`${pair0%a}b`).
struct Cmd(Vec<Seg>);

enum Seg {
    /// Shell text, already quoted where needed.
    Text(String),
    /// The `b` end of the pair whose `a` end's name is in this shell variable.
    JailEnd(String),
}

impl Cmd {
    fn text(s: String) -> Cmd {
        Cmd(vec![Seg::Text(s)])
    }

    /// As a command line of its own.
    fn line(&self) -> String {
        self.0
            .iter()
            .map(|seg| match seg {
                Seg::Text(t) => t.clone(),
                Seg::JailEnd(var) => format!("\"${{{var}%a}}b\""),
            })
            .collect()
    }

    /// As a jail parameter holding the command: `key="command"`, expanded by the shell that
    /// runs `jail -c`.
    fn param(&self, key: &str) -> String {
        let inner: String = self
            .0
            .iter()
            .map(|seg| match seg {
                Seg::Text(t) => escape_in_double_quotes(t),
                Seg::JailEnd(var) => format!("${{{var}%a}}b"),
            })
            .collect();
        format!("{key}=\"{inner}\"")
    }
}

impl FreeBsdRenderer {
    fn run(&mut self, line: String) {
        self.lines.push(line);
    }

    fn render(&mut self, op: &Op) {
        match op {
            Op::CreateLink { name, kind } => {
                self.created_links.insert(name.clone());
                if *kind == LinkKind::Bridge {
                    self.bridges.insert(name.clone());
                }
                self.run(format!("ifconfig {} create name {}", clone_kind(*kind), word(name)))
            }
            Op::DeleteLink { name, .. } => self.run(destroy(name)),
            Op::SetLinkMac { name, mac, sandbox: None } => self.set_mac(name, mac),
            Op::SetLinkMac { name, mac, sandbox: Some(jail) } => {
                let command = self.jail_ifconfig(jail, name, format!("ether {}", mac_string(mac)));
                self.start_or_jexec(jail, command);
            }
            // Before the member joins: if_bridge refuses a member whose MTU differs from its own.
            Op::SetLinkMtu { name, mtu, sandbox: None } => {
                self.prestart_or_run(name, format!("ifconfig {} mtu {mtu}", word(name)))
            }
            Op::SetLinkMtu { name, mtu, sandbox: Some(jail) } => {
                let command = self.jail_ifconfig(jail, name, format!("mtu {mtu}"));
                self.start_or_jexec(jail, command);
            }
            Op::NoIpv6LinkLocal { name, sandbox: None } => {
                self.prestart_or_run(name, format!("ifconfig {} inet6 -auto_linklocal", word(name)))
            }
            Op::NoIpv6LinkLocal { name, sandbox: Some(jail) } => {
                let command = self.jail_ifconfig(jail, name, "inet6 -auto_linklocal".to_string());
                self.start_or_jexec(jail, command);
            }
            Op::SetLinkUp { name, sandbox } => self.link_up(name, sandbox.as_deref()),
            Op::SetLinkDown { name, sandbox } => self.link_down(name, sandbox.as_deref()),
            Op::AddAddress { link, address, prefix, sandbox } => {
                self.add_address(link, *address, *prefix, sandbox.as_deref())
            }
            Op::RemoveAddress { link, address, sandbox, .. } => self.remove_address(link, *address, sandbox.as_deref()),
            Op::CreatePair { host, peer, sandbox } => self.create_pair(host, peer, sandbox, None),
            Op::CreateHandoffPair { host, peer, .. } => self.handoff_pair(host, peer),
            // Destroying one end of an epair destroys both.
            Op::DeletePair { host, .. } => self.run(destroy(host)),
            Op::AttachToBridge { bridge, member } => {
                self.prestart_or_run(member, format!("ifconfig {} addm {}", word(bridge), word(member)));
            }
            Op::DetachFromBridge { bridge, member } => {
                self.run(format!("ifconfig {} deletem {}", word(bridge), word(member)));
            }
            Op::AddDefaultRoute { gateway, sandbox } => {
                let route = format!("route add {} default {gateway}", route_family(*gateway));
                self.start_or_jexec(sandbox, Cmd::text(route));
            }
            Op::RemoveDefaultRoute { gateway, sandbox } => {
                self.jexec(sandbox, Cmd::text(format!("route delete {} default {gateway}", route_family(*gateway))));
            }
            Op::CreateSandbox { sandbox, stack } => self.open_jail(sandbox, *stack),
            Op::DestroySandbox { sandbox, .. } => {
                self.flush();
                self.run(jail_remove(sandbox));
            }
            Op::RestrictAddresses { sandbox, addresses } => self.restrict(sandbox, addresses),
            Op::CreateVxlan { name, vni, local, port } => {
                self.created_links.insert(name.clone());
                self.run(create_vxlan(name, *vni, *local, *port));
            }
            Op::DeleteVxlan { name, .. } => self.run(destroy(name)),
            // vxlan(4) has no static forwarding or neighbour entries: it learns where each
            // MAC is from the traffic its multicast group floods. The entries are kept as
            // comments so the script says what the Linux host would have programmed.
            Op::AddForwarding { link, mac, remote } => {
                self.run(format!("# {link}: {} is at {remote} (vxlan(4) learns it)", mac_string(mac)))
            }
            Op::RemoveForwarding { link, mac, remote } => {
                self.run(format!("# {link}: {} no longer at {remote} (vxlan(4) ages it out)", mac_string(mac)))
            }
            Op::AddNeighbour { link, address, mac } => {
                self.run(format!("# {link}: {address} has {} (answered by the container itself)", mac_string(mac)))
            }
            Op::RemoveNeighbour { link, address, .. } => self.run(format!("# {link}: {address} is gone")),
        }
    }

    /// The `on_failure` line of a step that created something (see the module comment).
    /// An address on an interface this script created goes with the interface.
    fn registration(&self, op: &Op, undo: &[Op]) -> Option<String> {
        let creates = match op {
            Op::CreateLink { .. }
            | Op::CreateVxlan { .. }
            | Op::CreatePair { .. }
            | Op::CreateHandoffPair { .. }
            | Op::CreateSandbox { .. } => true,
            Op::AddAddress { link, sandbox: None, .. } => !self.created_links.contains(link),
            _ => false,
        };
        let commands: Vec<String> = undo.iter().filter_map(undo_line).collect();
        (creates && !commands.is_empty()).then(|| format!("on_failure {}", single_quoted(&commands.join("; "))))
    }

    fn register(&mut self, op: &Op, registration: String) {
        match (op, self.pending.as_mut()) {
            // The jail exists once its `jail -c` line has run.
            (Op::CreateSandbox { sandbox, .. }, Some(jail)) if jail.name == *sandbox => jail.undo = Some(registration),
            _ => self.run(registration),
        }
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
        self.pending = Some(PendingJail { name: name.into(), stack, params, undo: None });
    }

    /// Write the pending jail's `jail -c` line (and then register its removal).
    fn flush(&mut self) {
        if let Some(jail) = self.pending.take() {
            let mut line = format!("jail -c path=/ name={} persist", word(&jail.name));
            for param in &jail.params {
                line.push(' ');
                line.push_str(param);
            }
            self.run(line);
            self.lines.extend(jail.undo);
        }
    }

    /// A command inside a jail that cannot be a parameter: the jail must exist first.
    fn jexec(&mut self, jail: &str, command: Cmd) {
        if self.is_pending(jail) {
            self.flush();
        }
        self.run(format!("jexec {} {}", word(jail), command.line()));
    }

    fn start_or_jexec(&mut self, jail: &str, command: Cmd) {
        if self.is_pending(jail) {
            self.param(command.param("exec.start"));
        } else {
            self.jexec(jail, command);
        }
    }

    /// A host command about a pending jail's pair end runs before that jail starts.
    fn prestart_or_run(&mut self, host_end: &str, command: String) {
        match self.host_jail.get(host_end) {
            Some(jail) if self.is_pending(jail) => self.param(Cmd::text(command).param("exec.prestart")),
            _ => self.run(command),
        }
    }

    /// How the script names `planned` inside `jail`: the jail end of a pair this script
    /// created, or the name as it is (a pair created by an earlier command).
    fn jail_if(&self, jail: &str, planned: &str) -> Seg {
        match self.peers.get(&(jail.to_string(), planned.to_string())) {
            Some(var) => Seg::JailEnd(var.clone()),
            None => Seg::Text(word(planned)),
        }
    }

    /// `ifconfig <the jail's interface> <rest>`.
    fn jail_ifconfig(&self, jail: &str, planned: &str, rest: String) -> Cmd {
        Cmd(vec![Seg::Text("ifconfig ".into()), self.jail_if(jail, planned), Seg::Text(format!(" {rest}"))])
    }

    fn link_up(&mut self, name: &str, sandbox: Option<&str>) {
        match sandbox {
            // FreeBSD brings an interface up when it gets an address, so a jail being
            // started needs no parameter for this.
            Some(jail) if self.is_pending(jail) => {}
            Some(jail) => self.jexec(jail, self.jail_ifconfig(jail, name, "up".into())),
            None => self.prestart_or_run(name, format!("ifconfig {} up", word(name))),
        }
    }

    fn link_down(&mut self, name: &str, sandbox: Option<&str>) {
        match sandbox {
            Some(jail) => self.jexec(jail, self.jail_ifconfig(jail, name, "down".into())),
            None => self.run(format!("ifconfig {} down", word(name))),
        }
    }

    fn add_address(&mut self, link: &str, address: IpAddr, prefix: u8, sandbox: Option<&str>) {
        let family = if_family(address);
        match sandbox {
            Some(jail) => {
                let command = self.jail_ifconfig(jail, link, format!("{family} {address}/{prefix}"));
                self.start_or_jexec(jail, command);
            }
            None => {
                let command = format!("ifconfig {} {family} {address}/{prefix} alias", word(link));
                // An ipnet jail's aliases are added as it starts, as Kleene does.
                if self.pending.as_ref().is_some_and(|p| p.stack == Stack::Restricted) {
                    self.param(Cmd::text(command).param("exec.prestart"));
                } else {
                    self.run(command);
                }
            }
        }
    }

    fn remove_address(&mut self, link: &str, address: IpAddr, sandbox: Option<&str>) {
        match sandbox {
            Some(jail) => {
                let command = self.jail_ifconfig(jail, link, format!("{} {address} -alias", if_family(address)));
                self.jexec(jail, command);
            }
            None => self.run(remove_alias(link, address)),
        }
    }

    /// `ifconfig epair create`, keeping the name FreeBSD chose; the host end takes the
    /// planned name (then the pair's removal is registered), the jail end goes into the jail
    /// (as a parameter of a jail being started, or moved into a running vnet jail, which
    /// Kleene refuses to do).
    fn create_pair(&mut self, host: &str, peer: &str, jail: &str, registration: Option<String>) {
        let var = format!("pair{}", self.pairs);
        self.pairs += 1;
        self.run(format!("{var}=$(ifconfig epair create)"));
        self.run(format!("ifconfig \"${var}\" name {} >/dev/null", word(host)));
        self.lines.extend(registration);
        self.peers.insert((jail.into(), peer.into()), var.clone());
        self.host_jail.insert(host.into(), jail.into());
        if self.is_pending(jail) {
            self.param(format!("vnet.interface=\"${{{var}%a}}b\""));
        } else {
            self.run(format!("ifconfig \"${{{var}%a}}b\" vnet {}", word(jail)));
        }
    }

    /// An epair whose two ends stay on the host, named as planned, for a runtime to move.
    fn handoff_pair(&mut self, host: &str, peer: &str) {
        let var = format!("pair{}", self.pairs);
        self.pairs += 1;
        self.run(format!("{var}=$(ifconfig epair create)"));
        self.run(format!("ifconfig \"${{{var}%a}}b\" name {} >/dev/null", word(peer)));
        self.run(format!("ifconfig \"${var}\" name {} >/dev/null", word(host)));
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
    /// A guard at the top of the script: the target host's interfaces decide.
    fn check(&mut self, check: &Check) -> Result<()> {
        let (name, fails_if_present) = match check {
            Check::LinkExists { name } => (name, false),
            Check::LinkAbsent { name } => (name, true),
        };
        let probe = format!("ifconfig {} >/dev/null 2>&1", word(name));
        let condition = if fails_if_present { probe } else { format!("! {probe}") };
        let message = word(&format!("kleene: {}", check_failure(check)));
        self.run(format!("if {condition}; then echo {message} >&2; exit 1; fi"));
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<Vec<Fact>> {
        self.render(op);
        Ok(vec![])
    }

    fn undo(&mut self, op: &Op) -> Result<()> {
        self.render(op);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush();
        Ok(())
    }

    /// The forwarding sysctls the networks need (kleened turns IPv4 forwarding on itself;
    /// kleene does so per family, as on Linux), then `pfctl -a kleene -f -` fed the anchor as
    /// a here-document.
    fn apply_firewall(&mut self, rules: &crate::firewall::Ruleset) -> Result<()> {
        self.flush();
        let (v4, v6) = crate::firewall::forwarding_needed(rules);
        if v4 {
            self.run("sysctl net.inet.ip.forwarding=1".into());
        }
        if v6 {
            self.run("sysctl net.inet6.ip6.forwarding=1".into());
        }
        let anchor = if rules.host_gw_if.is_empty() && !self.host_gw_if.is_empty() {
            let rules = crate::firewall::Ruleset { host_gw_if: self.host_gw_if.clone(), ..rules.clone() };
            crate::firewall::pf::render(&rules)
        } else {
            crate::firewall::pf::render(rules)
        };
        self.lines.extend(super::here_document("pfctl -a kleene -f -", &anchor));
        Ok(())
    }
}

impl Renderer for FreeBsdRenderer {
    fn lines(&self) -> &[String] {
        &self.lines
    }

    fn write_file(&mut self, path: &std::path::Path, text: &str) {
        self.lines.extend(super::file_lines(path, text));
    }

    fn apply_step(&mut self, op: &Op, undo: &[Op]) -> Result<Vec<Fact>> {
        let registration = self.registration(op, undo);
        match (op, registration) {
            (Op::CreatePair { host, peer, sandbox }, registration) => {
                self.create_pair(host, peer, sandbox, registration)
            }
            (op, registration) => {
                self.render(op);
                if let Some(registration) = registration {
                    self.register(op, registration);
                }
            }
        }
        Ok(vec![])
    }

    fn script(&self) -> Vec<String> {
        PROLOGUE.iter().map(|l| l.to_string()).chain(self.lines.iter().cloned()).collect()
    }
}

/// What every script starts with: stop at the first failure, then run what `on_failure`
/// registered (newest first), and still exit with the failure's status.
pub const PROLOGUE: [&str; 6] = [
    "#!/bin/sh",
    "# kleene's commands for FreeBSD (run as root): stops at the first failure and undoes what it created.",
    "set -eu",
    "undo=''",
    "on_failure() { undo=\"$1; $undo\"; }",
    "trap 'status=$?; if [ \"$status\" -ne 0 ] && [ -n \"$undo\" ]; then echo \"kleene: undoing\" >&2; set +e; eval \"$undo\"; fi; exit \"$status\"' EXIT",
];

/// The command line of an undo operation, for the removals `creates` registers.
fn undo_line(op: &Op) -> Option<String> {
    match op {
        Op::DeleteLink { name, .. } | Op::DeletePair { host: name, .. } | Op::DeleteVxlan { name, .. } => {
            Some(destroy(name))
        }
        Op::DestroySandbox { sandbox, .. } => Some(jail_remove(sandbox)),
        Op::RemoveAddress { link, address, sandbox: None, .. } => Some(remove_alias(link, *address)),
        _ => None,
    }
}

/// A vxlan(4) interface: FreeBSD's takes one remote or one multicast group, not per-MAC
/// entries, so the network's hosts meet in a group derived from the VNI (239.0.0.0/8,
/// organisation-local scope) and the interface learns where each container is.
fn create_vxlan(name: &str, vni: u32, local: IpAddr, port: u16) -> String {
    let group = match local {
        IpAddr::V4(_) => std::net::Ipv4Addr::from(0xef00_0000 | (vni & 0x00ff_ffff)).to_string(),
        IpAddr::V6(_) => format!("ff08::{:x}:{:x}", vni >> 16, vni & 0xffff),
    };
    format!(
        "ifconfig vxlan create name {} vxlanid {vni} vxlanlocal {local} vxlangroup {group} vxlanport {port} vxlanlearn",
        word(name)
    )
}

fn destroy(name: &str) -> String {
    format!("ifconfig {} destroy", word(name))
}

fn jail_remove(jail: &str) -> String {
    format!("jail -r {}", word(jail))
}

fn remove_alias(link: &str, address: IpAddr) -> String {
    format!("ifconfig {} {} {address} -alias", word(link), if_family(address))
}

/// The interface of `route -n get default` output (`  interface: em0`).
pub fn route_get_interface(output: &str) -> Option<String> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("interface:"))
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
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

/// Text inside a double-quoted shell string, taken literally.
fn escape_in_double_quotes(s: &str) -> String {
    let mut quoted = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted
}

/// A jail parameter holding a command: `key="command"`.
#[cfg(test)]
fn exec_param(key: &str, command: &str) -> String {
    Cmd::text(command.to_string()).param(key)
}

/// One shell word, always single-quoted.
fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One shell word: names from state or the operator are quoted unless plainly safe.
fn word(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "._-:/,=@%+".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        single_quoted(s)
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
    fn the_default_route_interface_is_read_from_route_get() {
        let out = "   route to: default\ndestination: default\n       mask: default\n    gateway: 10.0.2.2\n        fib: 0\n  interface: em0\n      flags: <UP,GATEWAY,DONE,STATIC>\n";
        assert_eq!(route_get_interface(out).as_deref(), Some("em0"));
        assert_eq!(route_get_interface("route: route has not been found\n"), None);
    }

    /// The prologue's rollback, run by `sh`: what was registered runs newest first, once a
    /// command failed, and the script still exits with that command's status.
    #[test]
    fn a_failing_command_runs_the_registered_undo_newest_first() {
        let run = |body: &[&str]| {
            let script: Vec<&str> = PROLOGUE.iter().copied().chain(body.iter().copied()).collect();
            let out = std::process::Command::new("sh").arg("-c").arg(script.join("\n")).output().unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let (code, out) =
            run(&["on_failure 'echo first'", "on_failure 'echo \"it'\\''s second\"'", "(exit 3)", "echo not reached"]);
        assert_eq!((code, out.as_str()), (Some(3), "it's second\nfirst\n"));
        let (code, out) = run(&["on_failure 'echo undone'", "echo done"]);
        assert_eq!((code, out.as_str()), (Some(0), "done\n"));
    }

    #[test]
    fn unmapped_names_are_used_as_they_are() {
        let mut r = FreeBsdRenderer::default();
        r.apply(&Op::DeletePair { host: "epair3a".into(), peer: "eth0".into(), sandbox: "c".into() }).unwrap();
        assert_eq!(r.lines(), ["ifconfig epair3a destroy"]);
    }
}
