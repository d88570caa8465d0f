//! What `kleene serve` does for the cluster: keep this host's lease alive and apply every
//! change to the cluster as it happens (an etcd watch), instead of at the next command.

use super::etcd::Etcd;
use super::store::ROOT;
use crate::cli::Global;
use crate::commands::Ctx;
use std::time::Duration;

/// Start the watcher thread, if this host is in a cluster. It syncs, then waits for the next
/// change under the cluster's keys or a third of the lease TTL, whichever comes first (the
/// sync renews the lease when due), for as long as the process lives.
pub fn spawn(global: &Global) {
    let Ok(Some(cluster)) = super::current() else { return };
    let global = global.clone();
    let heartbeat = Duration::from_secs((cluster.config.ttl / 3).max(1));
    let spawned = std::thread::Builder::new().name("cluster-watch".into()).spawn(move || {
        let mut ctx = Ctx::new(global);
        let mut watcher = match Etcd::new(cluster.config.endpoints.clone()) {
            Ok(w) => w,
            Err(e) => return tracing::error!("cannot watch the cluster: {e:#}"),
        };
        loop {
            ctx.begin_request();
            let revision = match super::sync::sync(&mut ctx) {
                Ok(revision) => revision,
                Err(e) => {
                    tracing::warn!("cluster sync failed (retrying): {e:#}");
                    std::thread::sleep(heartbeat.min(Duration::from_secs(1)));
                    continue;
                }
            };
            cluster.mark_watched();
            if let Err(e) = watcher.wait_for_change(ROOT, revision, heartbeat) {
                tracing::warn!("cluster watch interrupted (retrying): {e:#}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the cluster watcher: {e}");
    }
}
