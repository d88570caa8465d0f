//! What kleene asks the FreeBSD host it runs on. The FreeBSD renderer itself never runs
//! anything; this is the one question a FreeBSD build needs answered before it renders.

use anyhow::{Context, Result};
use std::process::Command;

/// The interface of the IPv4 default route, from `route -n get default` (None when there is
/// no default route: `route` then fails with "route has not been found").
pub fn default_route_interface() -> Result<Option<String>> {
    let out = Command::new("route").args(["-n", "get", "default"]).output().context("cannot run route(8)")?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(super::freebsd::route_get_interface(&String::from_utf8_lossy(&out.stdout)))
}
