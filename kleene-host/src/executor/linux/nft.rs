//! Linux firewall: the rendered `inet kleene` table, loaded by `nft -f -` as one transaction
//! (which replaces only that table), and the forwarding sysctls the networks need.

use crate::firewall::{self, Ruleset};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `nft` from PATH, or where distributions install it when PATH lacks the sbin directories.
fn nft_binary() -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nft"))
        .find(|p| p.is_file());
    in_path
        .or_else(|| ["/usr/sbin/nft", "/sbin/nft"].into_iter().map(PathBuf::from).find(|p| p.is_file()))
        .unwrap_or_else(|| "nft".into())
}

/// Loads `script` with `nft -f -`.
pub fn load(script: &str) -> Result<()> {
    let nft = nft_binary();
    let mut child = Command::new(&nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}: is nftables installed?", nft.display()))?;
    // A write error (nft exited early) shows up as nft's own message below.
    let _ = child.stdin.take().expect("piped").write_all(script.as_bytes());
    let out = child.wait_with_output().context("nft did not finish")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("nft -f - failed ({}): {}", out.status, err.trim());
    }
    Ok(())
}

/// Enables one forwarding sysctl (of this network namespace) if it is off, and says so.
fn enable(path: &Path, name: &str) -> Result<()> {
    let now = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    if now.trim() != "0" {
        return Ok(());
    }
    std::fs::write(path, "1").with_context(|| format!("cannot enable {name}"))?;
    tracing::info!("enabled {name} (a network forwards traffic)");
    Ok(())
}

/// Applies `rules`: forwarding first (never turned off again: other tools may rely on it),
/// then the table.
pub fn apply(rules: &Ruleset) -> Result<()> {
    let (v4, v6) = firewall::forwarding_needed(rules);
    if v4 {
        enable(Path::new("/proc/sys/net/ipv4/ip_forward"), "net.ipv4.ip_forward")?;
    }
    if v6 {
        enable(Path::new("/proc/sys/net/ipv6/conf/all/forwarding"), "net.ipv6.conf.all.forwarding")?;
    }
    let script = firewall::nft::render(rules);
    let t = std::time::Instant::now();
    load(&script)?;
    tracing::info!(
        networks = rules.networks.len(),
        bytes = script.len(),
        "firewall: replaced table {} in {:?}",
        firewall::nft::TABLE,
        t.elapsed()
    );
    Ok(())
}
