//! Creating and removing cluster-scoped networks: the definition goes to etcd first (name
//! and VNI claimed in one transaction), then every host, this one included, builds its side
//! when it syncs.

use super::store::{self, ClusterNetwork, Snapshot};
use crate::cli::NetworkCreate;
use crate::commands::{Ctx, Session};
use crate::state::NetworkRow;
use anyhow::{bail, Context, Result};
use kleene_plugin_api::{Network, PluginKind};

/// The highest VNI (24 bits).
const MAX_VNI: u32 = (1 << 24) - 1;

/// Define `network` (validated by `network create` against this host) for the whole
/// cluster and build this host's side; its id.
pub fn create(ctx: &mut Ctx, session: Session, network: Network, args: &NetworkCreate) -> Result<String> {
    let cluster = super::required(&format!("{} network '{}'", network.kind, network.name))?;
    if args.interface.is_some() {
        bail!("{} networks name their interface after their VNI (kov<VNI>) on every host: drop -i", network.kind);
    }
    if args.dns {
        bail!(
            "--dns: {} networks have no container DNS (each host's resolver would know only its own containers; see docs/overlay.md): leave out --dns",
            network.kind
        );
    }
    if matches!(session, Session::DryRun) {
        bail!("{} networks are defined in the cluster store: --dry-run cannot show them", network.kind);
    }
    // The cluster-wide checks and the sync after them take the lock themselves.
    drop(session);
    let what = || format!("cannot define network '{}' in the cluster", network.name);
    let snap = Snapshot::read(&mut cluster.etcd()).with_context(what)?;
    if snap.by_name(&network.name).is_some() {
        bail!("network name is already taken (by a network of the cluster)");
    }
    for mine in [network.subnet, network.subnet6].into_iter().flatten() {
        for theirs in snap.networks.values() {
            if let Some(t) = [theirs.subnet, theirs.subnet6].into_iter().flatten().find(|t| t.overlaps(&mine)) {
                bail!(
                    "invalid subnet: {mine} overlaps cluster network '{}' ({t}); pick a disjoint subnet",
                    theirs.name
                );
            }
        }
    }
    if let Some(mtu) = args.mtu {
        let underlay = cluster.config.address;
        let encapsulation = ctx.plugin(&network.kind, PluginKind::NetworkType)?.network_traits().encapsulation;
        let largest = ctx.underlay_mtu(underlay).saturating_sub(super::mtu::overhead(encapsulation, underlay));
        super::mtu::validate(mtu, network.subnet6.is_some(), largest)?;
    }
    let used: Vec<u32> = snap.networks.values().map(|n| n.vni).collect();
    let Some(vni) = (1..=MAX_VNI).find(|v| !used.contains(v)) else { bail!("every VNI is in use") };
    let nat = match (&args.nat_if, args.no_nat) {
        (_, true) => String::new(),
        (Some(i), _) => i.clone(),
        (None, _) => "auto".to_string(),
    };
    let definition = ClusterNetwork {
        id: network.id.clone(),
        name: network.name.clone(),
        kind: network.kind.clone(),
        vni,
        subnet: network.subnet,
        subnet6: network.subnet6,
        gateway: network.gateway,
        gateway_auto: network.gateway_auto,
        gateway6: network.gateway6,
        gateway6_auto: network.gateway6_auto,
        nat,
        icc: network.icc,
        internal: network.internal,
        mtu: args.mtu,
    };
    if !store::create_network(&mut cluster.etcd(), &definition).with_context(what)? {
        bail!("network name '{}' or VNI {vni} was just taken by another host; run the command again", network.name);
    }
    tracing::info!("defined cluster network {} (VNI {vni})", network.name);
    super::sync::sync(ctx)?;
    Ok(network.id)
}

/// Take the cluster networks among `rows` out of the cluster, before this host removes its
/// side: refused while any host (this one included) has a container on one.
pub fn remove(rows: &[NetworkRow]) -> Result<()> {
    for row in rows.iter().filter(|r| super::is_cluster(&r.network)) {
        let n = &row.network;
        let cluster = super::required(&format!("network '{}'", n.name))?;
        let what = || format!("cannot remove network '{}' from the cluster", n.name);
        let definition = Snapshot::read(&mut cluster.etcd()).with_context(what)?.networks.remove(&n.id);
        let Some(definition) = definition else { continue };
        if !store::remove_network(&mut cluster.etcd(), &definition).with_context(what)? {
            bail!(
                "network '{}' still has containers on some host of the cluster: disconnect them first (it is removed only when none has)",
                n.name
            );
        }
    }
    Ok(())
}
