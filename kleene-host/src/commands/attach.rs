//! Joining containers to networks and leaving them: the checks (in Kleene's order), the
//! address assignment, and the driver's plan for running containers.

use super::Ctx;
use crate::state::{self, ipam, NetworkRow, State};
use anyhow::{anyhow, bail, Result};
use kleene_plugin_api::{Attachment, Call, Cidr, Container, Endpoint, Network, Op, Plan, PluginKind};
use rusqlite::Connection;
use std::net::IpAddr;

/// Refuse a driver/network-type pair the driver's plugin does not declare.
pub fn check_matrix(ctx: &mut Ctx, driver: &str, network: &Network) -> Result<()> {
    let plugin = ctx.plugin(driver, PluginKind::Driver)?;
    let types = &plugin.info.network_types;
    if types.is_empty() {
        bail!("containers with the '{driver}' network-driver cannot connect to networks.");
    }
    if !types.contains(&network.kind) {
        bail!("containers using the '{driver}' network-driver can't connect to {} networks", network.kind);
    }
    Ok(())
}

/// Decide one family's address: `None`/`auto` allocates when the network has that family;
/// an explicit address must be inside the subnet, not a gateway, and free.
fn choose_address(db: &Connection, net: &Network, requested: Option<&str>, v4: bool) -> Result<Option<IpAddr>> {
    match requested {
        Some("") => Ok(None),
        None | Some("auto") | Some("<auto>") => match family(net, v4).0 {
            None => Ok(None),
            Some(s) => lowest_free(db, net, &s).map(Some),
        },
        Some(text) => {
            let ip = requested_address(net, text, v4)?;
            if !ipam::is_free(db, &net.id, ip)? {
                bail!("address {ip} is already in use (or reserved) in network '{}'", net.name);
            }
            Ok(Some(ip))
        }
    }
}

/// One family of a network: its subnet and gateway.
pub fn family(net: &Network, v4: bool) -> (Option<Cidr>, Option<IpAddr>) {
    if v4 {
        (net.subnet, net.gateway)
    } else {
        (net.subnet6, net.gateway6)
    }
}

/// An address the operator asked for: of the family, inside the subnet, not the gateway
/// (whether it is free is the pool's question).
pub fn requested_address(net: &Network, text: &str, v4: bool) -> Result<IpAddr> {
    let (subnet, gateway) = family(net, v4);
    let name = if v4 { "IPv4" } else { "IPv6" };
    let ip: IpAddr = text.parse().map_err(|_| anyhow!("could not parse inet address {text}: einval"))?;
    if ip.is_ipv4() != v4 {
        bail!("could not parse inet address {text}: wrong IP protocol for --ip{}", if v4 { "" } else { "6" });
    }
    let Some(s) = subnet else {
        bail!("cannot set ip address because there is no {name} subnet defined for this network");
    };
    if !s.contains(ip) {
        bail!("address {ip} is outside the network's subnet {s}");
    }
    if Some(ip) == gateway {
        bail!("address {ip} is the network's gateway");
    }
    Ok(ip)
}

fn lowest_free(db: &Connection, net: &Network, s: &Cidr) -> Result<IpAddr> {
    // Read only: the caller holds the host lock and takes the address when it commits.
    let tx = db.unchecked_transaction()?;
    let ip = ipam::allocate(&tx, &net.id, s);
    tx.rollback()?;
    ip
}

/// A new endpoint of `container` in `net`, with its addresses chosen (not yet recorded).
pub fn new_endpoint(
    db: &Connection,
    net: &Network,
    container_id: &str,
    ip: Option<&str>,
    ip6: Option<&str>,
) -> Result<Endpoint> {
    if crate::cluster::is_cluster(net) {
        return crate::cluster::ipam::new_endpoint(net, container_id, ip, ip6);
    }
    Ok(Endpoint {
        id: state::new_id(),
        network_id: net.id.clone(),
        container_id: container_id.to_string(),
        epair: None,
        interface: None,
        ip_address: choose_address(db, net, ip, true)?,
        ip_address6: choose_address(db, net, ip6, false)?,
        mac: None,
    })
}

/// Record an endpoint and take its addresses, in the caller's transaction.
pub fn record_endpoint(tx: &Connection, ep: &Endpoint) -> Result<()> {
    state::insert_endpoint(tx, ep)?;
    for ip in ep.addresses() {
        ipam::take(tx, &ep.network_id, ip)?;
    }
    Ok(())
}

/// Forget an endpoint and release its addresses (a cluster network's in etcd too: if etcd
/// cannot be reached, the whole change is refused).
pub fn forget_endpoint(tx: &Connection, ep: &Endpoint) -> Result<()> {
    crate::cluster::ipam::release_endpoint(tx, ep)?;
    for ip in ep.addresses() {
        ipam::release(tx, &ep.network_id, ip)?;
    }
    state::delete_endpoint(tx, &ep.id)
}

/// The container's attachments, in the order it joined its networks.
pub fn attachments(db: &Connection, container_id: &str) -> Result<Vec<Attachment>> {
    state::endpoints_where(db, "container_id", container_id)?
        .into_iter()
        .map(|endpoint| {
            let network = state::network_by_id(db, &endpoint.network_id)?.network;
            state::checked::endpoint_on(&endpoint, &network)?;
            Ok(Attachment { network, endpoint })
        })
        .collect()
}

/// The host and container ends of the pair `plan` attaches to `network`'s interface.
pub fn planned_links(plan: &Plan, network: &Network) -> Option<(String, String)> {
    let member = plan.steps.iter().find_map(|s| match &s.op {
        Op::AttachToBridge { bridge, member } if *bridge == network.interface => Some(member.clone()),
        _ => None,
    })?;
    let peer = plan.steps.iter().find_map(|s| match &s.op {
        Op::CreatePair { host, peer, .. } | Op::CreateHandoffPair { host, peer, .. } if *host == member => {
            Some(peer.clone())
        }
        _ => None,
    });
    Some((member, peer.unwrap_or_default()))
}

/// The driver's plan for `ep` leaving its network (empty for stopped containers).
pub fn disconnect_plan(ctx: &mut Ctx, state: &State, network: &Network, ep: &Endpoint) -> Result<Plan> {
    disconnect_plan_among(ctx, state, network, ep, &[])
}

/// [`disconnect_plan`] when the endpoints `leaving` go in the same plan (several networks
/// removed at once): the driver must not count them among the container's other networks.
pub fn disconnect_plan_among(
    ctx: &mut Ctx,
    state: &State,
    network: &Network,
    ep: &Endpoint,
    leaving: &[String],
) -> Result<Plan> {
    let container = state::container_by_id(&state.db, &ep.container_id)?;
    let all = attachments(&state.db, &container.id)?;
    let all = all.into_iter().filter(|a| a.endpoint.id == ep.id || !leaving.contains(&a.endpoint.id));
    let (this, others): (Vec<_>, Vec<_>) = all.partition(|a| a.endpoint.id == ep.id);
    let attachment = this.into_iter().next().unwrap_or(Attachment { network: network.clone(), endpoint: ep.clone() });
    if !container.running {
        return Ok(Plan::new());
    }
    let driver = ctx.plugin(&container.driver, PluginKind::Driver)?;
    driver.plan(&Call::ContainerDisconnect { container, attachment, others })
}

/// Connect checks in Kleene's order: container, network, already connected, matrix.
pub fn resolve_pair(state: &State, network: &str, container: &str) -> Result<(Container, NetworkRow)> {
    let cid = state::resolve(&state.db, "containers", "container", container)?;
    let nid = state::resolve(&state.db, "networks", "network", network)?;
    let container = state::container_by_id(&state.db, &cid)?;
    ensure_kleenes(state, &container)?;
    let row = state::network_by_id(&state.db, &nid)?;
    Ok((container, row))
}

pub fn connect(
    ctx: &mut Ctx,
    network: &str,
    container: &str,
    ip: Option<&str>,
    ip6: Option<&str>,
    aliases: &[String],
) -> Result<()> {
    let aliases = crate::dns::parse_aliases(aliases)?;
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    let (container, row) = resolve_pair(&state, network, container)?;
    if state::endpoint(&state.db, &row.network.id, &container.id)?.is_some() {
        bail!("container already connected to the network");
    }
    check_matrix(ctx, &container.driver, &row.network)?;
    let mut ep = new_endpoint(&state.db, &row.network, &container.id, ip, ip6)?;
    let plan = if container.running {
        let others = attachments(&state.db, &container.id)?;
        let attachment = Attachment { network: row.network.clone(), endpoint: ep.clone() };
        let driver = ctx.plugin(&container.driver, PluginKind::Driver)?;
        driver.plan(&Call::ContainerConnect { container: container.clone(), attachment, others })?
    } else {
        Plan::new()
    };
    if let Some((host, peer)) = planned_links(&plan, &row.network) {
        ep.epair = Some(host);
        ep.interface = Some(peer);
    }
    let what = format!("network connect {} {}", row.network.name, container.name);
    super::apply(ctx, &mut state, session, &what, &plan, |tx, _| {
        record_endpoint(tx, &ep)?;
        state::set_endpoint_aliases(tx, &ep.id, &aliases)
    })
}

pub fn disconnect(ctx: &mut Ctx, network: &str, container: &str) -> Result<()> {
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    let (container, row) = resolve_pair(&state, network, container)?;
    let Some(ep) = state::endpoint(&state.db, &row.network.id, &container.id)? else {
        return Err(crate::error::NotFound("endpoint configuration not found".into()).into());
    };
    let plan = disconnect_plan(ctx, &state, &row.network, &ep)?;
    let what = format!("network disconnect {} {}", row.network.name, container.name);
    super::apply(ctx, &mut state, session, &what, &plan, |tx, _| forget_endpoint(tx, &ep))
}

/// Refuse to change a container whose sandbox another runtime owns (a Docker endpoint):
/// that runtime joins and leaves its networks.
pub fn ensure_kleenes(state: &State, container: &Container) -> Result<()> {
    if let Some(runtime) = state::docker::runtime_of(&state.db, &container.id)? {
        bail!("container {} belongs to {runtime}: manage it with {runtime}", container.name);
    }
    Ok(())
}
