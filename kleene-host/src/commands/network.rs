//! `kleene network ...`: create, ls, inspect, rm, prune.

use super::output::{network_json, print_table};
use super::{apply, attach, validate_name, Ctx};
use crate::cli::NetworkCreate;
use crate::executor::Fact;
use crate::state::{self, ipam, NetworkRow};
use anyhow::{anyhow, bail, Result};
use kleene_plugin_api::model::{from_bits, to_bits};
use kleene_plugin_api::{Call, Cidr, Network, Plan, PluginKind};
use serde_json::json;
use std::net::IpAddr;

/// Linux and FreeBSD both cap interface names at 15 bytes.
const MAX_IFNAME: usize = 15;

fn parse_subnet(field: &str, value: Option<&str>, v4: bool) -> Result<Option<Cidr>> {
    let Some(value) = value.filter(|v| !v.is_empty()) else { return Ok(None) };
    let cidr: Cidr = value.parse().map_err(|e| anyhow!("invalid {field}: {e}"))?;
    if cidr.addr.is_ipv4() != v4 {
        bail!("invalid {field}: wrong IP protocol");
    }
    Ok(Some(Cidr { addr: cidr.network(), prefix: cidr.prefix }))
}

/// A gateway setting: (address, held by the network's interface).
fn parse_gateway(
    field: &str,
    value: Option<&str>,
    subnet: Option<Cidr>,
    default_auto: bool,
) -> Result<(Option<IpAddr>, bool)> {
    let value = value.unwrap_or(if default_auto { "auto" } else { "none" });
    match (value, subnet) {
        ("none" | "", _) => Ok((None, false)),
        ("auto" | "<auto>", None) => Ok((None, false)),
        ("auto" | "<auto>", Some(s)) => {
            let first = from_bits(s.addr, ipam::usable_range(&s).0);
            Ok((Some(first), true))
        }
        (ip, subnet) => {
            let ip: IpAddr = ip.parse().map_err(|_| anyhow!("invalid {field}: could not parse inet address {ip:?}"))?;
            let Some(subnet) = subnet else {
                bail!(
                    "invalid {field}: there is no {} subnet to hold it; add --subnet{}",
                    if ip.is_ipv4() { "IPv4" } else { "IPv6" },
                    if ip.is_ipv4() { "" } else { "6" }
                );
            };
            if ip.is_ipv4() != subnet.addr.is_ipv4() {
                bail!("invalid {field}: wrong IP protocol");
            }
            let (first, last) = ipam::usable_range(&subnet);
            if !subnet.contains(ip) || to_bits(ip) < first || to_bits(ip) > last {
                bail!("invalid {field}: {ip} is not a usable address of subnet {subnet}");
            }
            Ok((Some(ip), false))
        }
    }
}

fn validate_interface(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if !ok {
        bail!("invalid interface name '{name}': use 1-{MAX_IFNAME} printable characters without '/', ':' or spaces");
    }
    Ok(())
}

/// The lowest `kleene<N>` no network uses.
fn free_interface(existing: &[NetworkRow]) -> String {
    let used: std::collections::HashSet<&str> = existing.iter().map(|r| r.network.interface.as_str()).collect();
    (0..).map(|n| format!("kleene{n}")).find(|n| !used.contains(n.as_str())).expect("unbounded")
}

pub fn create(ctx: &mut Ctx, args: &NetworkCreate) -> Result<()> {
    validate_name("network", &args.name)?;
    let plugin = ctx.plugin(&args.kind, PluginKind::NetworkType)?;
    let subnet = parse_subnet("subnet", args.subnet.as_deref(), true)?;
    let subnet6 = parse_subnet("subnet6", args.subnet6.as_deref(), false)?;
    let is_bridge = args.kind == "bridge";
    let (gateway, gateway_auto) = parse_gateway("gateway", args.gw.as_deref(), subnet, is_bridge)?;
    let (gateway6, gateway6_auto) = parse_gateway("gateway6", args.gw6.as_deref(), subnet6, is_bridge)?;
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    let existing = state::networks(&state.db)?;
    if existing.iter().any(|r| r.network.name == args.name) {
        bail!("network name is already taken");
    }
    let interface = match &args.interface {
        Some(i) => i.clone(),
        None if args.kind == "custom" => bail!("custom networks need -i/--interface naming an existing interface"),
        None => free_interface(&existing),
    };
    validate_interface(&interface)?;
    if args.kind != "custom" {
        if let Some(other) = existing.iter().find(|r| r.network.interface == interface) {
            bail!("interface {interface} is already used by network '{}'", other.network.name);
        }
    }
    for (mine, field) in [(subnet, "subnet"), (subnet6, "subnet6")] {
        let Some(mine) = mine else { continue };
        for r in &existing {
            if let Some(theirs) =
                [r.network.subnet, r.network.subnet6].into_iter().flatten().find(|t| t.overlaps(&mine))
            {
                bail!(
                    "invalid {field}: {mine} overlaps network '{}' ({theirs}); pick a disjoint subnet",
                    r.network.name
                );
            }
        }
    }
    let nat = match (&args.nat_if, args.no_nat) {
        (_, true) => String::new(),
        (Some(i), _) => {
            validate_interface(i)?;
            i.clone()
        }
        (None, _) => ctx.host_gw_if(),
    };
    let network = Network {
        id: state::new_id(),
        name: args.name.clone(),
        kind: args.kind.clone(),
        interface,
        subnet,
        subnet6,
        gateway,
        gateway_auto,
        gateway6,
        gateway6_auto,
        nat,
        icc: !args.no_icc,
        internal: args.internal,
    };
    let plan = plugin.plan(&Call::NetworkCreate { network: network.clone() })?;
    let id = network.id.clone();
    // Kleene counts the addresses already on the interface as used (custom networks).
    let mut session = session;
    let on_link = match (&mut session, args.kind == "custom") {
        (Some((_, exec)), true) => exec.link_addresses(&network.interface).unwrap_or_default(),
        _ => Vec::new(),
    };
    apply(ctx, &mut state, session, &format!("network create {}", network.name), &plan, |tx, facts| {
        let link_kind = facts.iter().find_map(|f| match f {
            Fact::LinkKind { name, kind } if *name == network.interface => Some(kind.clone()),
            _ => None,
        });
        state::insert_network(tx, &NetworkRow { network: network.clone(), link_kind })?;
        for (s, gw) in [(network.subnet, network.gateway), (network.subnet6, network.gateway6)] {
            if let Some(s) = s {
                let reserved: Vec<IpAddr> = gw.into_iter().chain(on_link.iter().copied()).collect();
                ipam::init(tx, &network.id, &s, &reserved)?;
            }
        }
        Ok(())
    })?;
    if !ctx.global.dry_run {
        println!("{id}");
    }
    Ok(())
}

pub fn ls(ctx: &Ctx, json: bool) -> Result<()> {
    let state = ctx.state()?;
    let rows = state::networks(&state.db)?;
    if json {
        let list: Vec<_> = rows.iter().map(|r| network_json(&r.network)).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let table = rows.iter().map(|r| {
        let n = &r.network;
        let subnets = [n.subnet, n.subnet6].iter().flatten().map(|s| s.to_string()).collect::<Vec<_>>().join(",");
        vec![n.id.clone(), n.name.clone(), n.kind.clone(), n.interface.clone(), subnets]
    });
    print_table(&["NETWORK ID", "NAME", "TYPE", "INTERFACE", "SUBNETS"], table);
    Ok(())
}

pub fn inspect(ctx: &Ctx, ident: &str, json: bool) -> Result<()> {
    let state = ctx.state()?;
    let id = state::resolve(&state.db, "networks", "network", ident)?;
    let row = state::network_by_id(&state.db, &id)?;
    let endpoints = state::endpoints_where(&state.db, "network_id", &id)?;
    let mut usage = serde_json::Map::new();
    for (field, subnet) in [("subnet", row.network.subnet), ("subnet6", row.network.subnet6)] {
        if let Some(s) = subnet {
            let (used, free) = ipam::usage(&state.db, &id, &s)?;
            usage.insert(
                field.into(),
                json!({"subnet": s.to_string(), "used": used.to_string(), "free": free.to_string()}),
            );
        }
    }
    let doc = json!({
        "network": network_json(&row.network),
        "network_endpoints": endpoints.iter().map(super::output::endpoint_json).collect::<Vec<_>>(),
        "link_kind": row.link_kind,
        "address_usage": usage,
    });
    // Like `docker network inspect`, the document is JSON either way.
    let _ = json;
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

/// `network rm`: every name is resolved before anything changes (one unknown name changes
/// nothing), then all of them go at once.
pub fn rm(ctx: &mut Ctx, idents: &[String]) -> Result<()> {
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    let mut ids: Vec<String> = Vec::new();
    for ident in idents {
        let id = state::resolve(&state.db, "networks", "network", ident)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    remove(ctx, &mut state, session, &ids)
}

/// `network prune`: the networks without endpoints, chosen under the host lock so no
/// container joins one between the choice and the removal.
pub fn prune(ctx: &mut Ctx) -> Result<()> {
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    let mut unused = Vec::new();
    for row in state::networks(&state.db)? {
        if state::endpoints_where(&state.db, "network_id", &row.network.id)?.is_empty() {
            unused.push(row.network.id);
        }
    }
    remove(ctx, &mut state, session, &unused)
}

/// Remove the networks `ids` (disconnecting their containers) as one plan: one journal row,
/// one state transaction, one firewall update, and the links deleted together by the
/// executor. Removing hundreds this way costs about what creating them did, where one
/// command per network paid the transaction, the firewall and a kernel RCU wait each time.
fn remove(
    ctx: &mut Ctx,
    state: &mut state::State,
    session: Option<(state::HostLock, Box<dyn crate::executor::Executor>)>,
    ids: &[String],
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut plan = Plan::new();
    let mut rows = Vec::new();
    let mut endpoints = Vec::new();
    for id in ids {
        rows.push(state::network_by_id(&state.db, id)?);
        endpoints.extend(state::endpoints_where(&state.db, "network_id", id)?);
    }
    let leaving: Vec<String> = endpoints.iter().map(|ep| ep.id.clone()).collect();
    for row in &rows {
        for ep in endpoints.iter().filter(|ep| ep.network_id == row.network.id) {
            plan.extend(attach::disconnect_plan_among(ctx, state, &row.network, ep, &leaving)?);
        }
        let plugin = ctx.plugin(&row.network.kind, PluginKind::NetworkType)?;
        plan.extend(plugin.plan(&Call::NetworkRemove { network: row.network.clone() })?);
    }
    let what = match rows.as_slice() {
        [one] => format!("network rm {}", one.network.name),
        many => format!("network rm of {} networks", many.len()),
    };
    apply(ctx, state, session, &what, &plan, |tx, _| {
        for ep in &endpoints {
            state::delete_endpoint(tx, &ep.id)?;
        }
        ids.iter().try_for_each(|id| state::delete_network(tx, id))
    })?;
    if !ctx.global.dry_run {
        for id in ids {
            println!("{id}");
        }
    }
    Ok(())
}
