//! Executors carry out plans. One per platform behind one trait: the Linux executor changes
//! the kernel; the FreeBSD and Linux renderers only write the command lines a plan means
//! (for `--dry-run` and for golden tests of the FreeBSD commands).

use anyhow::Result;
use kleene_plugin_api::{Check, Op};
use std::path::Path;

pub mod freebsd;
#[cfg(target_os = "freebsd")]
pub mod freebsd_host;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod render_linux;

/// Something an executor learned while applying an operation, recorded in state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// The kernel kind actually used for a link (e.g. `ifb` when `dummy` is missing).
    LinkKind { name: String, kind: String },
}

/// An interface inside a sandbox, as read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInterface {
    pub up: bool,
    pub addresses: Vec<kleene_plugin_api::Cidr>,
    /// Gateways of the default routes that leave by this interface.
    pub gateways: Vec<std::net::IpAddr>,
}

/// Who deletes the links an executor only retired (see `Executor::defer_link_deletion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkReaping {
    /// Retired (down, in kleene's group of dying links); this long-lived process's
    /// background thread deletes them right after the answer.
    BackgroundThread,
    /// Retired; a detached process started when the executor is dropped (after the commit)
    /// deletes them. For a one-shot command whose user waits for it to exit (the CLI): a
    /// start right after finds the name held by a retired link, which it may replace.
    RetiredForDetachedProcess,
    /// Not even retired: a detached process started when the executor is dropped deletes
    /// them by name. For a caller that deletes the namespace next (kleene-cni's `DEL`).
    DetachedProcess,
}

pub trait Executor {
    /// Verify a precondition without changing anything.
    fn check(&mut self, check: &Check) -> Result<()>;
    /// Carry out one operation.
    fn apply(&mut self, op: &Op) -> Result<Vec<Fact>>;
    /// Carry out an undo operation: like `apply`, but what is already gone counts as done,
    /// so a rollback can be re-run after a crash.
    fn undo(&mut self, op: &Op) -> Result<()>;
    /// Replace kleene's packet-filter rules with `rules` (Linux: table `inet kleene` in one
    /// `nft -f -` transaction, plus the forwarding sysctls it needs; FreeBSD: anchor `kleene`),
    /// leaving every other table or anchor alone.
    fn apply_firewall(&mut self, rules: &crate::firewall::Ruleset) -> Result<()>;
    /// Someone may have changed the rules behind kleene's back (`nft flush ruleset`): the
    /// next `apply_firewall` must load them even if they look unchanged.
    fn forget_firewall(&mut self) {}
    /// The generation of firewall inputs (`firewall::inputs`) the rules in place were derived
    /// at, as [`Executor::record_firewall_generation`] recorded it since the last
    /// `apply_firewall` or `forget_firewall`. None (the default: no record kept) makes every
    /// change derive and apply the rules.
    fn firewall_generation(&mut self) -> Option<i64> {
        None
    }
    /// Record that the rules in place are those of committed state at `generation`.
    fn record_firewall_generation(&mut self, _generation: i64) {}
    /// Whether a container's sandbox is whole on this host: false after a reboot, and when a
    /// part is missing (a private stack whose namespace pin was lost).
    fn sandbox_intact(&mut self, _sandbox: &str, _stack: kleene_plugin_api::Stack) -> Result<bool> {
        Ok(true)
    }
    /// Whether the host interface `name` is absent or was created by kleene (crash recovery
    /// touches no interface of someone else's that the database does not record).
    fn host_link_is_kleenes(&mut self, _name: &str) -> Result<bool> {
        Ok(false)
    }
    /// The addresses an existing interface already holds (none where that cannot be known,
    /// e.g. when rendering): IPAM never hands them out.
    fn link_addresses(&mut self, _name: &str) -> Result<Vec<std::net::IpAddr>> {
        Ok(Vec::new())
    }
    /// The MTU of the host interface that holds `address` (`None` when no interface does, or
    /// where that cannot be known, e.g. when rendering): what a tunnel from that address
    /// can carry, once its headers are taken off.
    fn address_mtu(&mut self, _address: std::net::IpAddr) -> Result<Option<u32>> {
        Ok(None)
    }
    /// Every address on the host's interfaces, with its interface (none where that cannot be
    /// known, e.g. when rendering): new subnets must not overlap them.
    fn host_addresses(&mut self) -> Result<Vec<(String, kleene_plugin_api::Cidr)>> {
        Ok(Vec::new())
    }
    /// Run `argv` as one of the container's processes (its cgroup; its own network namespace
    /// when `own_netns`; `resolv_conf`, if that file exists, mounted on /etc/resolv.conf in a
    /// mount namespace of its own), with stdio inherited; the command's exit code.
    fn exec_in_sandbox(
        &mut self,
        _sandbox: &str,
        _own_netns: bool,
        _resolv_conf: Option<&Path>,
        _argv: &[String],
    ) -> Result<i32> {
        anyhow::bail!("container exec is only implemented on Linux")
    }
    /// Whether the DNS resolver can run here (renderers: assumed, the target host decides).
    fn dns_resolver_installed(&mut self) -> bool {
        true
    }
    /// Bring container DNS to `config` (the resolver's files and process, the containers'
    /// resolv.conf), returning once the resolver answers by it. Renderers do nothing: see
    /// docs/dns.md for what a FreeBSD host gets.
    fn apply_dns(&mut self, _config: &crate::dns::DnsConfig) -> Result<()> {
        Ok(())
    }
    /// Make `netns`, a network namespace someone else made (a container runtime's), the
    /// namespace of `sandbox` when a plan creates that sandbox, instead of a new one. Its
    /// destruction then only lets go of it.
    fn adopt_sandbox(&mut self, _sandbox: &str, _netns: &Path) -> Result<()> {
        anyhow::bail!("adopting another runtime's network namespace is only implemented on Linux")
    }
    /// Whether the namespace of `sandbox` is the one at `netns` (false when it has none).
    fn sandbox_is(&mut self, _sandbox: &str, _netns: &Path) -> Result<bool> {
        anyhow::bail!("reading a container's network namespace is only implemented on Linux")
    }
    /// The interface `name` inside the sandbox's own namespace, as the kernel has it (`None`
    /// when it is not there).
    fn sandbox_interface(&mut self, _sandbox: &str, _name: &str) -> Result<Option<SandboxInterface>> {
        anyhow::bail!("reading a container's interfaces is only implemented on Linux")
    }
    /// Called after the last operation of a plan (renderers flush pending commands here).
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
    /// Deletions the kernel makes slow (a pair's host end) may be finished after the answer,
    /// once what they delete can no longer do anything, by `how`: a long-lived process's
    /// background work ([`finish_background_work`] waits for it), or a detached process for
    /// a one-shot process whose caller waits on it (kleene-cni). Renderers do nothing.
    fn defer_link_deletion(&mut self, _how: LinkReaping) {}
    /// A long-lived process keeps a few empty sandboxes (network namespaces) made ahead, so
    /// a start pins one instead of making it. Renderers do nothing.
    fn make_namespaces_ahead(&mut self) {}
    /// Delete what a long-lived process that was killed had left to delete in the
    /// background (`system reconcile`).
    fn delete_retired_links(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Wait (up to `limit`) for the background deletions of this process to finish.
pub fn finish_background_work(_limit: std::time::Duration) {
    #[cfg(target_os = "linux")]
    linux::reaper::drain(_limit);
}

/// An executor that writes command lines instead of running them.
pub trait Renderer: Executor {
    /// The command lines rendered so far, in order.
    fn lines(&self) -> &[String];
    /// Render one step of a plan; `undo` is what the engine would run to reverse it (a script
    /// may register it, to run should a later command fail).
    fn apply_step(&mut self, op: &Op, _undo: &[Op]) -> Result<Vec<Fact>> {
        self.apply(op)
    }
    /// Render writing `text` to the file `path` (a running container's resolv.conf).
    fn write_file(&mut self, path: &Path, text: &str);
    /// The whole output, as printed: `lines` with whatever must come before them.
    fn script(&self) -> Vec<String> {
        self.lines().to_vec()
    }
}

/// Why `check` failed, in one line naming the interface and the way out (the Linux executor
/// returns it; the FreeBSD renderer prints it from the script's guards).
pub fn check_failure(check: &Check) -> String {
    match check {
        Check::LinkExists { name } => format!("interface {name} does not exist; create it first or pick another with -i"),
        Check::LinkAbsent { name } => format!(
            "interface {name} already exists; kleene will not take it over: pick another name with -i, or use a custom network"
        ),
    }
}

/// The executor of this host's platform: the one place that picks it.
pub fn host_executor(_run_dir: &Path) -> Result<Box<dyn Executor>> {
    #[cfg(target_os = "linux")]
    return Ok(Box::new(linux::LinuxExecutor::new(_run_dir)));
    #[cfg(not(target_os = "linux"))]
    anyhow::bail!("this build of kleene only renders plans here: use --dry-run")
}

/// The interface of this host's IPv4 default route ("" when there is none, or on a platform
/// where kleene cannot ask): the default NAT interface of new networks, and pf's
/// `kleenet_host_gw_if`.
pub fn host_default_route_interface(_run_dir: &Path) -> String {
    #[cfg(target_os = "linux")]
    let found = linux::LinuxExecutor::new(_run_dir).default_route_interface();
    #[cfg(target_os = "freebsd")]
    let found = freebsd_host::default_route_interface();
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    let found: Result<Option<String>> = Ok(None);
    found
        .unwrap_or_else(|e| {
            tracing::warn!("cannot look up the default route: {e:#}");
            None
        })
        .unwrap_or_default()
}

/// The MTU of this host's interface holding `address` (`None` when none does or kleene
/// cannot ask here): what a cluster's tunnels from that address can carry.
pub fn host_address_mtu(run_dir: &Path, address: std::net::IpAddr) -> Option<u32> {
    let mut probe = host_probe(run_dir)?;
    probe.address_mtu(address).unwrap_or_else(|e| {
        tracing::warn!("cannot look up the MTU of the interface holding {address}: {e:#}");
        None
    })
}

/// An executor that only answers checks against this host, for a renderer of this host's
/// platform: a dry run refuses what the real run would refuse.
fn host_probe(_run_dir: &Path) -> Option<Box<dyn Executor>> {
    #[cfg(target_os = "linux")]
    return Some(Box::new(linux::LinuxExecutor::new(_run_dir)));
    #[cfg(not(target_os = "linux"))]
    None
}

/// `command` fed `body` as a shell here-document, one line per entry: how the renderers show
/// a firewall ruleset being loaded.
pub fn here_document(command: &str, body: &str) -> Vec<String> {
    std::iter::once(format!("{command} <<'EOF'"))
        .chain(body.lines().map(String::from))
        .chain(std::iter::once("EOF".to_string()))
        .collect()
}

/// The lines that write `text` to `path`, its directory made first.
pub fn file_lines(path: &Path, text: &str) -> Vec<String> {
    let dir = path.parent().map(|d| format!("mkdir -p {}", d.display()));
    dir.into_iter().chain(here_document(&format!("cat > {}", path.display()), text)).collect()
}

/// Which platform's commands a renderer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Os {
    Linux,
    Freebsd,
}

impl Os {
    pub fn current() -> Os {
        if cfg!(target_os = "freebsd") {
            Os::Freebsd
        } else {
            Os::Linux
        }
    }

    /// The renderer of this platform's commands. Checks are evaluated against this host when
    /// it runs the platform rendered (Linux); the FreeBSD renderer writes them as guards into
    /// its script instead, to run on the target host.
    pub fn renderer(self, run_dir: &Path) -> Box<dyn Renderer> {
        match self {
            Os::Linux if self == Os::current() => Box::new(render_linux::LinuxRenderer::checking(host_probe(run_dir))),
            Os::Linux => Box::new(render_linux::LinuxRenderer::default()),
            Os::Freebsd => Box::new(freebsd::FreeBsdRenderer::for_host(host_default_route_interface(run_dir))),
        }
    }
}
