//! Executors carry out plans. One per platform behind one trait: the Linux executor changes
//! the kernel; the FreeBSD and Linux renderers only write the command lines a plan means
//! (for `--dry-run` and for golden tests of the FreeBSD commands).

use anyhow::Result;
use kleene_plugin_api::{Check, Op};

pub mod freebsd;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod render_linux;

/// Something an executor learned while applying an operation, recorded in state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// The kernel kind actually used for a link (e.g. `ifb` when `dummy` is missing).
    LinkKind { name: String, kind: String },
    /// A link the platform named itself (FreeBSD `epair0a` for a planned `kv...`).
    LinkName { planned: String, actual: String },
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
    /// Every address on the host's interfaces, with its interface (none where that cannot be
    /// known, e.g. when rendering): new subnets must not overlap them.
    fn host_addresses(&mut self) -> Result<Vec<(String, kleene_plugin_api::Cidr)>> {
        Ok(Vec::new())
    }
    /// Called after the last operation of a plan (renderers flush pending commands here).
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// An executor that writes command lines instead of running them.
pub trait Renderer: Executor {
    /// The command lines rendered so far, in order.
    fn lines(&self) -> &[String];
}

/// `command` fed `body` as a shell here-document, one line per entry: how the renderers show
/// a firewall ruleset being loaded.
pub fn here_document(command: &str, body: &str) -> Vec<String> {
    std::iter::once(format!("{command} <<'EOF'"))
        .chain(body.lines().map(String::from))
        .chain(std::iter::once("EOF".to_string()))
        .collect()
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

    pub fn renderer(self) -> Box<dyn Renderer> {
        match self {
            Os::Linux => Box::new(render_linux::LinuxRenderer::default()),
            Os::Freebsd => Box::new(freebsd::FreeBsdRenderer::default()),
        }
    }
}
