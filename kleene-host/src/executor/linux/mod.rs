//! The Linux executor: netlink for links, addresses and routes; persistent network
//! namespaces for private stacks; one cgroup-v2 directory per container for its processes
//! and, for restricted (ipnet) stacks, the BPF socket hooks.

pub mod bridge_limits;
pub mod cgroup;
pub mod ipnet;
pub mod iptables;
pub mod netlink;
pub mod netns;
pub mod netns_pool;
pub mod nft;
pub mod reaper;
pub mod resolver;
pub mod spawn;

use super::{Executor, Fact, LinkReaping};
use anyhow::{anyhow, Context, Result};
use kleene_plugin_api::{Check, Cidr, LinkKind, Op, Stack};
use netlink::Netlink;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The interface group of every host interface kleene creates (hex 0x4b4c4e45, "KLNE";
/// `ip link show group 1263291973` lists them). The kernel sets it in the very request that
/// creates the interface, so no instant exists in which one of kleene's interfaces is
/// outside it. It is the kernel's own record that the interface is kleene's, which no
/// database row can forge: crash recovery touches an interface the database does not record
/// only if it is in this group.
pub const KLEENE_GROUP: u32 = 0x4b4c_4e45;

pub struct LinuxExecutor {
    run_dir: PathBuf,
    host: Option<Netlink>,
    sandboxes: HashMap<String, Netlink>,
    cgroup_root: Option<PathBuf>,
    /// Pair deletions put off until `finish`, after the plan's other steps. The host end is
    /// always deleted explicitly: a pair whose namespace is destroyed would die with it only
    /// once nothing else holds that namespace (an fd, a process, a copied mount), and
    /// the kernel reaps namespaces asynchronously even then.
    deferred_pairs: Vec<(String, String)>,
    /// Sandboxes the plan destroyed (their pairs may die after the answer).
    destroyed_sandboxes: Vec<String>,
    /// Link deletions put off until `finish`, where they go to the kernel as one batch
    /// (`network rm` of many, `network prune`).
    deferred_links: Vec<String>,
    /// Sandboxes whose namespace, when created, is another runtime's (see `adopt_sandbox`).
    adopted: HashMap<String, PathBuf>,
    /// Set by `defer_link_deletion`: the host ends of deleted pairs are only retired in
    /// `finish`, for the [`reaper`] to delete after the answer; and detaching a member from
    /// its bridge waits until `finish`, where it is skipped for a pair about to go anyway
    /// (the deletion detaches it, without taking the kernel's lock once more).
    reaping: Option<LinkReaping>,
    deferred_detach: Vec<String>,
    /// Host ends a detached process deletes once this executor is dropped: name (for
    /// messages) and interface index (what is deleted: a pair made again under the same name
    /// before that process runs is not the one it deletes).
    reap_on_drop: Vec<(String, u32)>,
    /// Sandboxes take their namespace from those made ahead ([`netns_pool`]).
    namespaces_ahead: bool,
    /// Links were retired that a detached process deletes once this executor is dropped.
    reap_retired_on_drop: bool,
}

impl LinuxExecutor {
    pub fn new(run_dir: &Path) -> LinuxExecutor {
        LinuxExecutor {
            run_dir: run_dir.to_path_buf(),
            host: None,
            sandboxes: HashMap::new(),
            cgroup_root: None,
            deferred_pairs: Vec::new(),
            destroyed_sandboxes: Vec::new(),
            deferred_links: Vec::new(),
            adopted: HashMap::new(),
            reaping: None,
            deferred_detach: Vec::new(),
            reap_on_drop: Vec::new(),
            reap_retired_on_drop: false,
            namespaces_ahead: false,
        }
    }

    /// The bind-mounted namespace file of a container.
    pub fn netns_path(run_dir: &Path, sandbox: &str) -> PathBuf {
        run_dir.join("netns").join(sandbox)
    }

    /// The container's cgroup directory: `<cgroup2 mount>/kleene/<id>`.
    pub fn cgroup_path(&mut self, sandbox: &str) -> Result<PathBuf> {
        if self.cgroup_root.is_none() {
            let mount = match cgroup::cgroup2_mount() {
                Ok(m) => m,
                // Hosts on cgroup v1 alone (or a private /sys) still have the v2 hierarchy:
                // mount it under the run dir rather than giving up.
                Err(_) => cgroup::mount_private(&self.run_dir.join("cgroup2")).context("no cgroup2 file system")?,
            };
            self.cgroup_root = Some(mount.join("kleene"));
        }
        Ok(self.cgroup_root.as_ref().expect("set above").join(sandbox))
    }

    fn host(&mut self) -> Result<&mut Netlink> {
        if self.host.is_none() {
            self.host = Some(Netlink::open().context("cannot open a netlink socket")?);
        }
        Ok(self.host.as_mut().expect("set above"))
    }

    /// A netlink socket in the host namespace or in a container's.
    fn nl(&mut self, sandbox: Option<&str>) -> Result<&mut Netlink> {
        let Some(id) = sandbox else { return self.host() };
        if !self.sandboxes.contains_key(id) {
            let path = Self::netns_path(&self.run_dir, id);
            let nl = netns::open_pinned(&path)
                .and_then(|_| Netlink::open_in(&path))
                .with_context(|| format!("container {id} has no network namespace (run `kleene system reconcile`)"))?;
            self.sandboxes.insert(id.to_string(), nl);
        }
        Ok(self.sandboxes.get_mut(id).expect("inserted above"))
    }

    /// The default-route interface of the host, for NAT defaults.
    pub fn default_route_interface(&mut self) -> Result<Option<String>> {
        Ok(self.host()?.default_route_interface()?)
    }

    fn create_link(&mut self, name: &str, kind: LinkKind) -> Result<Vec<Fact>> {
        let nl = self.host()?;
        let used = match kind {
            LinkKind::Bridge => {
                nl.create_link(name, "bridge", KLEENE_GROUP)?;
                "bridge"
            }
            // `dummy` is the natural loopback; kernels without it (EOPNOTSUPP) get an `ifb`,
            // which likewise holds addresses and carries no traffic of its own.
            LinkKind::Loopback => match nl.create_link(name, "dummy", KLEENE_GROUP) {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    nl.create_link(name, "ifb", KLEENE_GROUP)?;
                    tracing::info!("kernel has no dummy interfaces; {name} is an ifb instead");
                    "ifb"
                }
                other => other.map(|()| "dummy")?,
            },
        };
        Ok(vec![Fact::LinkKind { name: name.to_string(), kind: used.to_string() }])
    }

    fn create_pair(&mut self, host: &str, peer: &str, sandbox: &str) -> Result<()> {
        let ns = netns::open_pinned(&Self::netns_path(&self.run_dir, sandbox))
            .with_context(|| format!("container {sandbox} has no network namespace (run `kleene system reconcile`)"))?;
        let nl = self.host()?;
        let ns = std::os::fd::AsFd::as_fd(&ns);
        match nl.create_veth(host, peer, ns, KLEENE_GROUP) {
            // A pair left behind by a crash or a namespace still being torn down: our names
            // are ours, so replace it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                tracing::info!("replacing leftover interface {host}");
                match nl.delete_link(host) {
                    // It went with its namespace in the meantime.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    other => other?,
                }
                nl.create_veth(host, peer, ns, KLEENE_GROUP)?;
            }
            other => other?,
        }
        Ok(())
    }

    /// A pair with both ends in the host namespace, for a runtime to move the peer out of
    /// (the same request as any pair, with this process's own namespace as the peer's).
    fn create_handoff_pair(&mut self, host: &str, peer: &str) -> Result<()> {
        let own = std::fs::File::open("/proc/self/ns/net").context("cannot open the host's network namespace")?;
        let nl = self.host()?;
        nl.create_veth(host, peer, std::os::fd::AsFd::as_fd(&own), KLEENE_GROUP)?;
        Ok(())
    }

    /// Whether the pair `host`-`peer` is whole: `host` on the host, `peer` inside the
    /// sandbox's current namespace, each the other's peer. A host end whose peer went with
    /// an earlier namespace (one being torn down, or held alive by something) is not.
    fn pair_intact(&mut self, host: &str, peer: &str, sandbox: &str) -> Result<bool> {
        let Some(host_end) = self.host()?.link(host)? else { return Ok(false) };
        // A retired end is down and about to be deleted: the pair must be made again.
        if host_end.group != KLEENE_GROUP {
            return Ok(false);
        }
        let Ok(inside) = self.nl(Some(sandbox)) else { return Ok(false) };
        Ok(inside.link(peer)?.is_some_and(|p| {
            p.kind.as_deref() == Some("veth") && p.link == Some(host_end.index) && host_end.link == Some(p.index)
        }))
    }

    fn create_sandbox(&mut self, sandbox: &str, stack: Stack) -> Result<()> {
        let cg = self.cgroup_path(sandbox)?;
        cgroup::create(&cg).with_context(|| format!("cannot create cgroup {}", cg.display()))?;
        if let Err(e) = self.create_netns(sandbox, stack) {
            let _ = cgroup::remove(&cg);
            return Err(e);
        }
        Ok(())
    }

    /// Undo a sandbox's destruction: make again whichever part is missing, and keep a part
    /// that is there (a live cgroup holds the container's processes, a live namespace its
    /// links).
    fn restore_sandbox(&mut self, sandbox: &str, stack: Stack) -> Result<()> {
        let cg = self.cgroup_path(sandbox)?;
        if !cg.is_dir() {
            match cgroup::create(&cg) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                other => other.with_context(|| format!("cannot create cgroup {}", cg.display()))?,
            }
        }
        if netns::open_pinned(&Self::netns_path(&self.run_dir, sandbox)).is_err() {
            self.create_netns(sandbox, stack)?;
        }
        Ok(())
    }

    /// The pinned namespace of a private or disabled stack (a private one with lo up).
    fn create_netns(&mut self, sandbox: &str, stack: Stack) -> Result<()> {
        self.destroyed_sandboxes.retain(|s| s != sandbox);
        if !matches!(stack, Stack::Private | Stack::Disabled) {
            return Ok(());
        }
        // A socket cached for an earlier namespace of this container would talk to that one.
        self.sandboxes.remove(sandbox);
        let path = Self::netns_path(&self.run_dir, sandbox);
        match self.adopted.get(sandbox) {
            Some(source) => netns::adopt(source, &path)
                .with_context(|| format!("cannot adopt network namespace {}", source.display()))?,
            None => {
                let ready = if self.namespaces_ahead { netns_pool::take() } else { None };
                let nl = match ready {
                    Some(ready) => {
                        tracing::trace!("pinning a namespace made ahead");
                        netns::pin_fd(std::os::fd::AsFd::as_fd(&ready.ns), &path)
                            .with_context(|| format!("cannot pin network namespace {}", path.display()))?;
                        ready.netlink
                    }
                    // Its netlink socket is opened inside it as it is made.
                    None => netns::create_and_run(&path, Netlink::open)
                        .with_context(|| format!("cannot create network namespace {}", path.display()))?,
                };
                self.sandboxes.insert(sandbox.to_string(), nl);
            }
        }
        if stack == Stack::Private {
            self.nl(Some(sandbox))?.set_up("lo", true)?;
        }
        Ok(())
    }

    fn destroy_sandbox(&mut self, sandbox: &str) -> Result<()> {
        self.sandboxes.remove(sandbox);
        self.destroyed_sandboxes.push(sandbox.to_string());
        let cg = self.cgroup_path(sandbox)?;
        cgroup::remove(&cg).with_context(|| format!("cannot remove cgroup {}", cg.display()))?;
        // The shared `kleene` parent goes with the last container; busy means others remain.
        if let Some(parent) = cg.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        netns::delete(&Self::netns_path(&self.run_dir, sandbox))?;
        Ok(())
    }

    fn attach_to_bridge(&mut self, bridge: &str, member: &str) -> Result<()> {
        let nl = self.host()?;
        match nl.set_master(member, Some(bridge)) {
            Err(e) if e.raw_os_error() == Some(libc::EXFULL) => return Err(bridge_limits::full_bridge(bridge)),
            other => other?,
        }
        if let Some(port) = nl.link(member)?.and_then(|l| l.bridge_port) {
            bridge_limits::fit_large_bridge(bridge, port);
        }
        Ok(())
    }

    fn delete_deferred_links(&mut self) -> Result<()> {
        let links = std::mem::take(&mut self.deferred_links);
        if !links.is_empty() {
            let what = match links.as_slice() {
                [one] => format!("interface {one}"),
                [first, rest @ ..] => format!("interfaces {first} and {} more", rest.len()),
                [] => unreachable!("not empty"),
            };
            self.host()?.delete_links(&links).with_context(|| format!("cannot delete {what}"))?;
        }
        Ok(())
    }

    fn apply_op(&mut self, op: &Op) -> Result<Vec<Fact>> {
        match op {
            Op::CreateLink { name, kind } => {
                // A name deleted earlier in this plan is free only once that deletion ran.
                if self.deferred_links.contains(name) {
                    self.delete_deferred_links()?;
                }
                return self.create_link(name, *kind);
            }
            Op::DeleteLink { name, .. } => self.deferred_links.push(name.clone()),
            Op::SetLinkMac { name, mac, sandbox } => self.nl(sandbox.as_deref())?.set_mac(name, mac)?,
            Op::SetLinkMtu { name, mtu, sandbox } => self.nl(sandbox.as_deref())?.set_mtu(name, *mtu)?,
            Op::NoIpv6LinkLocal { name, sandbox } => self.nl(sandbox.as_deref())?.no_ipv6_link_local(name)?,
            Op::SetLinkUp { name, sandbox } => self.nl(sandbox.as_deref())?.set_up(name, true)?,
            Op::SetLinkDown { name, sandbox } => self.nl(sandbox.as_deref())?.set_up(name, false)?,
            Op::AddAddress { link, address, prefix, sandbox } => {
                self.nl(sandbox.as_deref())?.add_address(link, *address, *prefix)?
            }
            Op::RemoveAddress { link, address, prefix, sandbox } => {
                self.nl(sandbox.as_deref())?.del_address(link, *address, *prefix)?
            }
            Op::CreatePair { host, peer, sandbox } => self.create_pair(host, peer, sandbox)?,
            Op::CreateHandoffPair { host, peer, .. } => self.create_handoff_pair(host, peer)?,
            Op::DeletePair { host, sandbox, .. } => self.deferred_pairs.push((host.clone(), sandbox.clone())),
            Op::AttachToBridge { bridge, member } => self.attach_to_bridge(bridge, member)?,
            Op::DetachFromBridge { member, .. } if self.reaping.is_some() => self.deferred_detach.push(member.clone()),
            Op::DetachFromBridge { member, .. } => self.host()?.set_master(member, None)?,
            Op::AddDefaultRoute { gateway, sandbox } => self.nl(Some(sandbox))?.add_default_route(*gateway)?,
            Op::RemoveDefaultRoute { gateway, sandbox } => self.nl(Some(sandbox))?.del_default_route(*gateway)?,
            Op::CreateSandbox { sandbox, stack } => self.create_sandbox(sandbox, *stack)?,
            Op::DestroySandbox { sandbox, .. } => self.destroy_sandbox(sandbox)?,
            Op::RestrictAddresses { sandbox, addresses } => self.restrict(sandbox, addresses)?,
            Op::CreateVxlan { name, vni, local, port } => {
                if self.deferred_links.contains(name) {
                    self.delete_deferred_links()?;
                }
                self.host()?.create_vxlan(name, *vni, *local, *port, KLEENE_GROUP)?
            }
            Op::DeleteVxlan { name, .. } => self.deferred_links.push(name.clone()),
            Op::AddForwarding { link, mac, remote } => self.host()?.forwarding(link, mac, *remote, true)?,
            Op::RemoveForwarding { link, mac, remote } => self.host()?.forwarding(link, mac, *remote, false)?,
            Op::AddNeighbour { link, address, mac } => self.host()?.neighbour(link, *address, mac, true)?,
            Op::RemoveNeighbour { link, address, mac } => self.host()?.neighbour(link, *address, mac, false)?,
        }
        Ok(vec![])
    }

    fn restrict(&mut self, sandbox: &str, addresses: &[Cidr]) -> Result<()> {
        let cg = self.cgroup_path(sandbox)?;
        let mut r = ipnet::Restriction::default();
        for a in addresses {
            match a.addr {
                IpAddr::V4(v4) => {
                    r.v4.push(v4);
                    r.local4.push((v4, a.prefix));
                }
                IpAddr::V6(v6) => {
                    r.v6.push(v6);
                    r.local6.push((v6, a.prefix));
                }
            }
        }
        ipnet::apply(&cg, &r).with_context(|| format!("cannot restrict container {sandbox} to its addresses"))
    }
}

/// Errors that mean what an undo would add is there already.
fn already_there(e: &anyhow::Error) -> bool {
    e.chain().filter_map(|c| c.downcast_ref::<io::Error>()).any(|io| io.kind() == io::ErrorKind::AlreadyExists)
}

/// Errors that mean an undo has nothing left to do.
fn already_done(e: &anyhow::Error) -> bool {
    e.chain().filter_map(|c| c.downcast_ref::<io::Error>()).any(|io| {
        io.kind() == io::ErrorKind::NotFound
            || matches!(io.raw_os_error(), Some(libc::ENODEV | libc::ESRCH | libc::EADDRNOTAVAIL | libc::ENOENT))
    })
}

impl Executor for LinuxExecutor {
    fn check(&mut self, check: &Check) -> Result<()> {
        match check {
            Check::LinkExists { name } => {
                if self.host()?.link(name)?.is_none() {
                    return Err(anyhow!(super::check_failure(check)));
                }
            }
            Check::LinkAbsent { name } => {
                if self.host()?.link(name)?.is_some() {
                    return Err(anyhow!(super::check_failure(check)));
                }
            }
        }
        Ok(())
    }

    fn apply_firewall(&mut self, rules: &crate::firewall::Ruleset) -> Result<()> {
        // Whatever happens from here, the rules in place are no longer known to be those of
        // the recorded generation (the engine records the new one after its commit).
        nft::forget_generation(&self.run_dir).context("cannot drop the firewall's recorded generation")?;
        nft::apply(rules, &self.run_dir.join(nft::APPLIED))?;
        let forwarded = || rules.networks.iter().filter(|n| n.forwarded).map(|n| &n.network);
        let v4: Vec<String> = forwarded().filter(|n| n.subnet.is_some()).map(|n| n.interface.clone()).collect();
        let v6: Vec<String> = forwarded().filter(|n| n.subnet6.is_some()).map(|n| n.interface.clone()).collect();
        iptables::allow_forwarding(&v4, &v6, &self.run_dir.join(iptables::APPLIED))
    }

    fn link_addresses(&mut self, name: &str) -> Result<Vec<IpAddr>> {
        Ok(self.host()?.addresses(name)?.into_iter().map(|(a, _)| a).collect())
    }

    fn exec_in_sandbox(
        &mut self,
        sandbox: &str,
        own_netns: bool,
        resolv_conf: Option<&Path>,
        argv: &[String],
    ) -> Result<i32> {
        let scope = if own_netns { spawn::NetworkScope::Own } else { spawn::NetworkScope::Host };
        let resolv_conf = resolv_conf.filter(|p| p.is_file());
        spawn::run(&self.run_dir, sandbox, scope, resolv_conf, argv)
    }

    fn dns_resolver_installed(&mut self) -> bool {
        resolver::binary().is_some()
    }

    fn apply_dns(&mut self, config: &crate::dns::DnsConfig) -> Result<()> {
        resolver::apply(&self.run_dir, config)
    }

    fn address_mtu(&mut self, address: IpAddr) -> Result<Option<u32>> {
        let nl = self.host()?;
        let Some((index, ..)) = nl.all_addresses()?.into_iter().find(|(_, a, _)| *a == address) else {
            return Ok(None);
        };
        Ok(nl.links()?.into_iter().find(|l| l.index == index).map(|l| l.mtu).filter(|&m| m > 0))
    }

    fn host_addresses(&mut self) -> Result<Vec<(String, Cidr)>> {
        let nl = self.host()?;
        let names: HashMap<u32, String> = nl.links()?.into_iter().map(|l| (l.index, l.name)).collect();
        Ok(nl
            .all_addresses()?
            .into_iter()
            .filter_map(|(index, addr, prefix)| Some((names.get(&index)?.clone(), Cidr { addr, prefix })))
            .collect())
    }

    fn sandbox_intact(&mut self, sandbox: &str, stack: Stack) -> Result<bool> {
        let has_cgroup = self.cgroup_path(sandbox)?.exists();
        let needs_netns = matches!(stack, Stack::Private | Stack::Disabled);
        Ok(has_cgroup && (!needs_netns || netns::open_pinned(&Self::netns_path(&self.run_dir, sandbox)).is_ok()))
    }

    fn adopt_sandbox(&mut self, sandbox: &str, netns: &Path) -> Result<()> {
        self.adopted.insert(sandbox.to_string(), netns.to_path_buf());
        Ok(())
    }

    fn sandbox_is(&mut self, sandbox: &str, other: &Path) -> Result<bool> {
        match netns::same(&Self::netns_path(&self.run_dir, sandbox), other) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            other => Ok(other?),
        }
    }

    fn sandbox_interface(&mut self, sandbox: &str, name: &str) -> Result<Option<super::SandboxInterface>> {
        let nl = self.nl(Some(sandbox))?;
        let Some(link) = nl.link(name)? else { return Ok(None) };
        let addresses = nl.addresses(name)?.into_iter().map(|(addr, prefix)| Cidr { addr, prefix }).collect();
        let gateways =
            nl.default_gateways()?.into_iter().filter(|(oif, _)| *oif == link.index).map(|(_, gw)| gw).collect();
        Ok(Some(super::SandboxInterface { up: link.up, addresses, gateways }))
    }

    fn host_link_is_kleenes(&mut self, name: &str) -> Result<bool> {
        // Absent: whatever an undo does with the name, no interface of someone else's is hurt.
        Ok(match self.host()?.link(name)? {
            None => true,
            Some(link) => link.group == KLEENE_GROUP || link.group == reaper::DYING_GROUP,
        })
    }

    fn firewall_generation(&mut self) -> Option<i64> {
        nft::recorded_generation(&self.run_dir)
    }

    fn record_firewall_generation(&mut self, generation: i64) {
        nft::record_generation(&self.run_dir, generation);
    }

    fn forget_firewall(&mut self) {
        let _ = nft::forget_generation(&self.run_dir);
        let _ = std::fs::remove_file(self.run_dir.join(nft::APPLIED));
        iptables::forget(&self.run_dir.join(iptables::APPLIED));
    }

    fn apply(&mut self, op: &Op) -> Result<Vec<Fact>> {
        match self.apply_op(op) {
            Err(e) if op.is_teardown() && already_done(&e) => {
                tracing::info!("{} found nothing to remove: {e:#}", op.name());
                Ok(vec![])
            }
            other => other,
        }
    }

    /// An undo makes the state before its step so, if it is not so already: what is there
    /// stays as it is (a live pair, link, sandbox, address or route is never replaced, and a
    /// step that never ran undoes nothing).
    fn undo(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::CreatePair { host, peer, sandbox } => {
                // Re-creating a pair cancels its deferred deletion: it was never deleted.
                self.deferred_pairs.retain(|(h, _)| h != host);
                self.reap_on_drop.retain(|(h, _)| h != host);
                if self.pair_intact(host, peer, sandbox)? {
                    return Ok(());
                }
            }
            Op::CreateLink { name, .. } | Op::CreateVxlan { name, .. } if self.host()?.link(name)?.is_some() => {
                return Ok(())
            }
            // The runtime may hold the peer in its sandbox by now: a host end is the pair.
            Op::CreateHandoffPair { host, .. } => {
                self.deferred_pairs.retain(|(h, _)| h != host);
                if self.host()?.link(host)?.is_some() {
                    return Ok(());
                }
            }
            Op::CreateSandbox { sandbox, stack } => return self.restore_sandbox(sandbox, *stack),
            // Re-attaching a member whose detach is still pending: it never left.
            Op::AttachToBridge { member, .. } if self.deferred_detach.contains(member) => {
                self.deferred_detach.retain(|m| m != member);
                return Ok(());
            }
            _ => {}
        }
        // Re-creating a link whose deletion is still pending: it was never deleted.
        if let Op::CreateLink { name, .. } | Op::CreateVxlan { name, .. } = op {
            if let Some(pending) = self.deferred_links.iter().position(|l| l == name) {
                self.deferred_links.remove(pending);
                return Ok(());
            }
        }
        match self.apply(op) {
            Err(e) if already_done(&e) => Ok(()),
            // An address or route to add that is there already.
            Err(e) if !op.is_teardown() && already_there(&e) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    fn defer_link_deletion(&mut self, how: LinkReaping) {
        self.reaping = Some(how);
    }

    fn make_namespaces_ahead(&mut self) {
        self.namespaces_ahead = true;
    }

    /// Delete the host ends of the pairs deleted by the plan, or, when deletion is deferred
    /// and the plan destroyed the pair's sandbox: in a server, retire them for the [`reaper`]
    /// thread to delete right after the answer; in the CLI, retire them for a detached
    /// process started on drop; in kleene-cni, leave them to that process. Every one is
    /// tried, even after one fails: a host end left behind outlives its container.
    fn finish(&mut self) -> Result<()> {
        self.delete_deferred_links()?;
        let destroyed = std::mem::take(&mut self.destroyed_sandboxes);
        let pairs = std::mem::take(&mut self.deferred_pairs);
        for member in std::mem::take(&mut self.deferred_detach) {
            if !pairs.iter().any(|(host, _)| *host == member) {
                match self.host()?.set_master(&member, None) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    other => other?,
                }
            }
        }
        // A pair whose container keeps its namespace (a disconnect) is deleted now, however
        // deletion is deferred: its container end holds an interface name (eth1) that a
        // connect right after needs free.
        let (going, now): (Vec<_>, Vec<_>) = match self.reaping {
            Some(_) => pairs.into_iter().partition(|(_, sandbox)| destroyed.contains(sandbox)),
            None => (Vec::new(), pairs),
        };
        let going: Vec<String> = going.into_iter().map(|(host, _)| host).collect();
        let mut failed = Vec::new();
        let mut each = |host: &str, done: io::Result<()>| match done {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => failed.push(format!("{host}: {e}")),
            Ok(()) => {}
        };
        for (host, _) in &now {
            each(host, self.host()?.delete_link(host));
        }
        match self.reaping {
            // Not even retired here: any request for the link waits for the kernel's routing
            // lock, which the previous caller's deletion holds for 15-30 ms. The runtime
            // deletes the namespace next, and the pair goes with it if the process is killed.
            Some(LinkReaping::DetachedProcess) => {
                for host in going {
                    if let Some(link) = self.host()?.link(&host)? {
                        self.reap_on_drop.push((host, link.index));
                    }
                }
            }
            Some(how) if !going.is_empty() => {
                for host in &going {
                    each(host, self.host()?.retire(host, reaper::DYING_GROUP));
                }
                match how {
                    LinkReaping::BackgroundThread => reaper::wake(),
                    _ => self.reap_retired_on_drop = true,
                }
            }
            _ => {}
        }
        if !failed.is_empty() {
            return Err(anyhow!("cannot delete {}", failed.join(", ")));
        }
        Ok(())
    }

    fn delete_retired_links(&mut self) -> Result<()> {
        if reaper::delete_retired(self.host()?).context("cannot delete the retired links")? {
            tracing::info!("deleted host links a stopped server had retired");
        }
        Ok(())
    }
}

impl Drop for LinuxExecutor {
    /// Have a detached process delete the host ends left under
    /// [`LinkReaping::DetachedProcess`] (or, when one cannot be started, delete them here).
    fn drop(&mut self) {
        let links = std::mem::take(&mut self.reap_on_drop);
        if links.is_empty() && !self.reap_retired_on_drop {
            return;
        }
        // Sockets into container namespaces are not the reaper's to inherit.
        self.sandboxes.clear();
        if self.reap_retired_on_drop {
            if let Err(e) = reaper::in_detached_process(|| Netlink::open()?.delete_group(reaper::DYING_GROUP).map(drop))
            {
                tracing::debug!("deleting the retired links in place: {e}");
                if let Err(e) = self.host().map_err(io::Error::other).and_then(reaper::delete_retired) {
                    tracing::warn!("cannot delete the retired links: {e}");
                }
            }
        }
        if links.is_empty() {
            return;
        }
        let names = links.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ");
        let indexes: Vec<u32> = links.iter().map(|(_, index)| *index).collect();
        if let Err(e) =
            reaper::in_detached_process(|| Netlink::open().and_then(|mut nl| reaper::delete_links(&mut nl, &indexes)))
        {
            tracing::debug!("deleting {names} in place: {e}");
            if let Ok(nl) = self.host() {
                if let Err(e) = reaper::delete_links(nl, &indexes) {
                    tracing::warn!("cannot delete {names}: {e}");
                }
            }
        }
    }
}
