//! `container exec`: run a command inside a container's cgroup and, if it has one, its
//! network namespace, with stdio inherited.

use super::{netns, LinuxExecutor};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Command;

pub fn run(run_dir: &Path, sandbox: &str, argv: &[String]) -> Result<i32> {
    let mut exec = LinuxExecutor::new(run_dir);
    let cg = exec.cgroup_path(sandbox)?;
    // Open everything before fork: the child may only make async-signal-safe calls.
    let mut procs = File::options()
        .write(true)
        .open(cg.join("cgroup.procs"))
        .with_context(|| format!("container {sandbox} has no cgroup"))?;
    let ns_path = LinuxExecutor::netns_path(run_dir, sandbox);
    let ns = if ns_path.exists() { Some(netns::open(&ns_path)?) } else { None };
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    // SAFETY: the closure only writes to an open fd and calls setns(2).
    unsafe {
        cmd.pre_exec(move || {
            procs.write_all(b"0")?;
            if let Some(ns) = &ns {
                netns::enter(ns.as_fd())?;
            }
            Ok(())
        });
    }
    let status = cmd.status().with_context(|| format!("cannot run {}", argv[0]))?;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
