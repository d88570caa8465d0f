//! Living beside iptables users (Docker, ufw) that drop forwarded traffic by policy.
//!
//! Docker sets the FORWARD policy of iptables' `filter` table to DROP when it turns forwarding
//! on. An `accept` in kleene's own nftables table cannot overrule that: a packet passes a hook
//! only if every base chain on it lets it through, and a drop anywhere is final. With
//! `br_netfilter` (which Docker loads, and which is on by default in every namespace once it
//! is), even traffic *bridged* between two containers of one kleene network goes through the
//! IP FORWARD hook, so it would be dropped too.
//!
//! So kleene keeps one chain of its own in iptables' `filter` table, `KLEENE-FORWARD`, jumped
//! to from FORWARD, accepting what enters or leaves a kleene network's interface. It decides
//! nothing: what kleene's networks may exchange is still judged by kleene's nftables table,
//! whose drops stand. The chain is replaced whole (`iptables-restore --noflush` flushes a chain
//! it declares) when the set of interfaces changes, and the jump is appended once (after
//! Docker's `DOCKER-USER`, whose rules therefore still apply). Without iptables installed, or
//! while its filter table has no FORWARD chain, there is no one to coexist with, and nothing
//! is done (a firewall started later is met at the next change, or `system reconcile`).

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// kleene's chain in iptables' filter table.
pub const CHAIN: &str = "KLEENE-FORWARD";

/// File in the run dir holding the interfaces last written into the chain.
pub const APPLIED: &str = "iptables-forward";

fn binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].into_iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The restore script of the chain: accept in and out of each of `interfaces`.
pub fn script(interfaces: &[String]) -> String {
    let mut s = format!("*filter\n:{CHAIN} - [0:0]\n");
    for i in interfaces {
        s.push_str(&format!("-A {CHAIN} -i {i} -j ACCEPT\n-A {CHAIN} -o {i} -j ACCEPT\n"));
    }
    s.push_str("COMMIT\n");
    s
}

/// The memo of one family: the interfaces last written, one a line.
fn memo_of(memo: &Path, family: &str) -> PathBuf {
    memo.with_extension(family)
}

/// Make iptables' FORWARD accept the traffic of the interfaces of each family (`v4` for
/// iptables, `v6` for ip6tables). A family is left alone when its list is what was last
/// written (its memo in the run dir), and never touched while kleene has no network of it:
/// each change costs a process start or two, so network commands pay it only when needed.
pub fn allow_forwarding(v4: &[String], v6: &[String], memo: &Path) -> Result<()> {
    for (family, interfaces, tool, restore) in
        [("v4", v4, "iptables", "iptables-restore"), ("v6", v6, "ip6tables", "ip6tables-restore")]
    {
        let memo = memo_of(memo, family);
        let wanted = interfaces.join("\n");
        let done = std::fs::read_to_string(&memo).ok();
        if done.as_deref() == Some(wanted.as_str()) || (done.is_none() && interfaces.is_empty()) {
            continue;
        }
        let (Some(tool), Some(restore)) = (binary(tool), binary(restore)) else {
            tracing::debug!("{tool} is not installed: no FORWARD policy to live with");
            continue;
        };
        if done.is_none() && !forward_chain_exists(family) {
            tracing::debug!("{} has no FORWARD chain here: nothing to live with", tool.display());
            continue;
        }
        load(&restore, &script(interfaces))?;
        // The jump, once: a memo means it was made (the memo lives in /run, and `system
        // reconcile` forgets it).
        if done.is_none() {
            let jump = ["FORWARD", "-j", CHAIN];
            let present = Command::new(&tool).args(["-w", "-C"]).args(jump).stderr(Stdio::null()).status()?.success();
            if !present {
                let out = Command::new(&tool).args(["-w", "-A"]).args(jump).output()?;
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    bail!("{} -A FORWARD -j {CHAIN} failed: {}", tool.display(), err.trim());
                }
            }
        }
        std::fs::write(&memo, wanted).with_context(|| format!("cannot write {}", memo.display()))?;
    }
    Ok(())
}

/// Whether iptables' filter table has a FORWARD chain in this namespace, through either
/// backend: the nftables table iptables-nft keeps (asked in-process through libnftables when
/// installed), or the legacy tables the kernel lists in /proc. Where none exists nobody can
/// drop forwarded traffic by iptables policy, and kleene creates no iptables state.
fn forward_chain_exists(family: &str) -> bool {
    let (nft_family, legacy) = match family {
        "v4" => ("ip", "/proc/net/ip_tables_names"),
        _ => ("ip6", "/proc/net/ip6_tables_names"),
    };
    let legacy_filter = std::fs::read_to_string(legacy).is_ok_and(|t| t.lines().any(|l| l == "filter"));
    legacy_filter || super::nft::load(&format!("list chain {nft_family} filter FORWARD")).is_ok()
}

/// Forget what was written (the rules may have been flushed behind kleene's back).
pub fn forget(memo: &Path) {
    for family in ["v4", "v6"] {
        let _ = std::fs::remove_file(memo_of(memo, family));
    }
}

fn load(restore: &Path, script: &str) -> Result<()> {
    let mut child = Command::new(restore)
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", restore.display()))?;
    let _ = child.stdin.take().expect("piped").write_all(script.as_bytes());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{} failed: {}", restore.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_chain_accepts_in_and_out_of_each_interface_and_nothing_else() {
        let s = super::script(&["kleene0".into(), "br-x".into()]);
        assert_eq!(
            s,
            "*filter\n:KLEENE-FORWARD - [0:0]\n\
             -A KLEENE-FORWARD -i kleene0 -j ACCEPT\n-A KLEENE-FORWARD -o kleene0 -j ACCEPT\n\
             -A KLEENE-FORWARD -i br-x -j ACCEPT\n-A KLEENE-FORWARD -o br-x -j ACCEPT\nCOMMIT\n"
        );
        assert_eq!(super::script(&[]), "*filter\n:KLEENE-FORWARD - [0:0]\nCOMMIT\n");
    }
}
