//! The Linux executor: netlink for links, addresses and routes; persistent network
//! namespaces for private stacks; one cgroup-v2 directory per container for its processes
//! and, for restricted (ipnet) stacks, the BPF socket hooks.

pub mod bridge_limits;
pub mod cgroup;
pub mod ipnet;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod spawn;

use super::{Executor, Fact};
use anyhow::{anyhow, Context, Result};
use kleene_plugin_api::{Check, Cidr, LinkKind, Op, Stack};
use netlink::Netlink;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The description kleene gives every host interface it creates: the kernel's own record
/// that the interface is kleene's, which no database row can forge. Crash recovery touches
/// an interface the database does not record only if it carries this mark.
pub const MADE_BY_KLEENE: &str = "made by kleene";

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
    /// Link deletions put off until `finish`, where they go to the kernel as one batch
    /// (`network rm` of many, `network prune`).
    deferred_links: Vec<String>,
}

impl LinuxExecutor {
    pub fn new(run_dir: &Path) -> LinuxExecutor {
        LinuxExecutor {
            run_dir: run_dir.to_path_buf(),
            host: None,
            sandboxes: HashMap::new(),
            cgroup_root: None,
            deferred_pairs: Vec::new(),
            deferred_links: Vec::new(),
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
                nl.create_link(name, "bridge")?;
                "bridge"
            }
            // `dummy` is the natural loopback; kernels without it (EOPNOTSUPP) get an `ifb`,
            // which likewise holds addresses and carries no traffic of its own.
            LinkKind::Loopback => match nl.create_link(name, "dummy") {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    nl.create_link(name, "ifb")?;
                    tracing::info!("kernel has no dummy interfaces; {name} is an ifb instead");
                    "ifb"
                }
                other => other.map(|()| "dummy")?,
            },
        };
        nl.set_alias(name, MADE_BY_KLEENE)?;
        Ok(vec![Fact::LinkKind { name: name.to_string(), kind: used.to_string() }])
    }

    fn create_pair(&mut self, host: &str, peer: &str, sandbox: &str) -> Result<()> {
        let ns = netns::open_pinned(&Self::netns_path(&self.run_dir, sandbox))
            .with_context(|| format!("container {sandbox} has no network namespace (run `kleene system reconcile`)"))?;
        let nl = self.host()?;
        match nl.create_veth(host, peer, std::os::fd::AsFd::as_fd(&ns)) {
            // A pair left behind by a crash or a namespace still being torn down: our names
            // are ours, so replace it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                tracing::info!("replacing leftover interface {host}");
                nl.delete_link(host)?;
                nl.create_veth(host, peer, std::os::fd::AsFd::as_fd(&ns))?;
            }
            other => other?,
        }
        nl.set_alias(host, MADE_BY_KLEENE)?;
        Ok(())
    }

    fn create_sandbox(&mut self, sandbox: &str, stack: Stack) -> Result<()> {
        let cg = self.cgroup_path(sandbox)?;
        cgroup::create(&cg).with_context(|| format!("cannot create cgroup {}", cg.display()))?;
        if matches!(stack, Stack::Private | Stack::Disabled) {
            let path = Self::netns_path(&self.run_dir, sandbox);
            if let Err(e) = netns::create(&path) {
                let _ = cgroup::remove(&cg);
                return Err(e).with_context(|| format!("cannot create network namespace {}", path.display()));
            }
            if stack == Stack::Private {
                self.nl(Some(sandbox))?.set_up("lo", true)?;
            }
        }
        Ok(())
    }

    fn destroy_sandbox(&mut self, sandbox: &str) -> Result<()> {
        self.sandboxes.remove(sandbox);
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
            Op::SetLinkMac { name, mac } => self.host()?.set_mac(name, mac)?,
            Op::SetLinkUp { name, sandbox } => self.nl(sandbox.as_deref())?.set_up(name, true)?,
            Op::SetLinkDown { name, sandbox } => self.nl(sandbox.as_deref())?.set_up(name, false)?,
            Op::AddAddress { link, address, prefix, sandbox } => {
                self.nl(sandbox.as_deref())?.add_address(link, *address, *prefix)?
            }
            Op::RemoveAddress { link, address, prefix, sandbox } => {
                self.nl(sandbox.as_deref())?.del_address(link, *address, *prefix)?
            }
            Op::CreatePair { host, peer, sandbox } => self.create_pair(host, peer, sandbox)?,
            Op::DeletePair { host, sandbox, .. } => self.deferred_pairs.push((host.clone(), sandbox.clone())),
            Op::AttachToBridge { bridge, member } => self.attach_to_bridge(bridge, member)?,
            Op::DetachFromBridge { member, .. } => self.host()?.set_master(member, None)?,
            Op::AddDefaultRoute { gateway, sandbox } => self.nl(Some(sandbox))?.add_default_route(*gateway)?,
            Op::RemoveDefaultRoute { gateway, sandbox } => self.nl(Some(sandbox))?.del_default_route(*gateway)?,
            Op::CreateSandbox { sandbox, stack } => self.create_sandbox(sandbox, *stack)?,
            Op::DestroySandbox { sandbox, .. } => self.destroy_sandbox(sandbox)?,
            Op::RestrictAddresses { sandbox, addresses } => self.restrict(sandbox, addresses)?,
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
        nft::apply(rules, &self.run_dir.join(nft::APPLIED))
    }

    fn link_addresses(&mut self, name: &str) -> Result<Vec<IpAddr>> {
        Ok(self.host()?.addresses(name)?.into_iter().map(|(a, _)| a).collect())
    }

    fn exec_in_sandbox(&mut self, sandbox: &str, own_netns: bool, argv: &[String]) -> Result<i32> {
        let scope = if own_netns { spawn::NetworkScope::Own } else { spawn::NetworkScope::Host };
        spawn::run(&self.run_dir, sandbox, scope, argv)
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

    fn host_link_is_kleenes(&mut self, name: &str) -> Result<bool> {
        // Absent: whatever an undo does with the name, no interface of someone else's is hurt.
        Ok(match self.host()?.link(name)? {
            None => true,
            Some(link) => link.alias.as_deref() == Some(MADE_BY_KLEENE),
        })
    }

    fn forget_firewall(&mut self) {
        let _ = std::fs::remove_file(self.run_dir.join(nft::APPLIED));
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

    fn undo(&mut self, op: &Op) -> Result<()> {
        // Re-creating a pair cancels its deferred deletion.
        if let Op::CreatePair { host, .. } = op {
            self.deferred_pairs.retain(|(h, _)| h != host);
        }
        // Re-creating a link whose deletion is still pending: it was never deleted.
        if let Op::CreateLink { name, .. } = op {
            if let Some(pending) = self.deferred_links.iter().position(|l| l == name) {
                self.deferred_links.remove(pending);
                return Ok(());
            }
        }
        match self.apply(op) {
            Err(e) if already_done(&e) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    fn finish(&mut self) -> Result<()> {
        self.delete_deferred_links()?;
        for (host, _) in std::mem::take(&mut self.deferred_pairs) {
            match self.host()?.delete_link(&host) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        Ok(())
    }
}
