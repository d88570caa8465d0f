//! `kleene network ...`: create, ls, inspect, rm, prune.

use super::output::network_json;
use super::{apply, attach, validate_name, Ctx};
use crate::cli::NetworkCreate;
use crate::executor::Fact;
use crate::state::{self, ipam, NetworkRow};
use anyhow::{anyhow, bail, Result};
use kleene_plugin_api::model::{from_bits, to_bits};
use kleene_plugin_api::{Call, Cidr, DefaultFor, Network, Plan, PluginKind};
use serde_json::json;
use std::net::IpAddr;

/// Linux and FreeBSD both cap interface names at 15 bytes.
const MAX_IFNAME: usize = 15;

/// Blocks the host uses for itself (or that cannot be a container subnet at all): a network
/// over any of them would shadow the host's own addresses or never route.
const RESERVED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "'this network'"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved and broadcast"),
    ("::/127", "unspecified and loopback"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

pub(crate) fn parse_subnet(field: &str, value: Option<&str>, v4: bool) -> Result<Option<Cidr>> {
    let Some(value) = value.filter(|v| !v.is_empty()) else { return Ok(None) };
    let cidr: Cidr = value.parse().map_err(|e| anyhow!("invalid {field}: {e}"))?;
    if cidr.addr.is_ipv4() != v4 {
        bail!("invalid {field}: wrong IP protocol");
    }
    let network = Cidr { addr: cidr.network(), prefix: cidr.prefix };
    if network.addr != cidr.addr {
        bail!("invalid {field}: {cidr} has host bits set; use {network}");
    }
    for (block, what) in RESERVED {
        let block: Cidr = block.parse().expect("valid reserved block");
        if block.overlaps(&network) {
            let private = if v4 { "10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16" } else { "fd00::/8" };
            bail!("invalid {field}: {network} overlaps {block} ({what}); pick a private range such as {private}");
        }
    }
    Ok(Some(network))
}

/// Refuse a subnet that an address on a host interface already lies in (the gateway would
/// duplicate the host's address, and routes would clash). Interfaces of kleene's own networks
/// are judged by the overlap check between networks instead; `own` (a custom network's
/// existing interface) may hold addresses of its subnet: they count as used.
fn check_host_addresses(
    field: &str,
    subnet: &Cidr,
    host: &[(String, Cidr)],
    existing: &[NetworkRow],
    own: Option<&str>,
) -> Result<()> {
    let kleenes = |name: &str| existing.iter().any(|r| r.network.interface == name) || own == Some(name);
    if let Some((name, held)) = host.iter().find(|(name, held)| !kleenes(name) && held.overlaps(subnet)) {
        bail!(
            "invalid {field}: {subnet} overlaps {held} on host interface {name}; pick a subnet the host does not use"
        );
    }
    Ok(())
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

/// Interface names both kernels take and that need no quoting in nftables or pf rules (a
/// `"`, `\` or `*` would be rewritten or read as a wildcard there, and match nothing).
pub(crate) fn validate_interface(name: &str) -> Result<()> {
    let ok = name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= MAX_IFNAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        bail!(
            "invalid interface name '{name}': use 1-{MAX_IFNAME} letters, digits, '_', '.' or '-', starting with a letter or digit"
        );
    }
    Ok(())
}

/// The lowest `kleene<N>` that neither a network nor the kernel (`taken`) already uses.
fn free_interface(existing: &[NetworkRow], mut taken: impl FnMut(&str) -> bool) -> String {
    let used: std::collections::HashSet<&str> = existing.iter().map(|r| r.network.interface.as_str()).collect();
    (0..).map(|n| format!("kleene{n}")).find(|n| !used.contains(n.as_str()) && !taken(n)).expect("unbounded")
}

/// Create a network; its id.
pub fn create(ctx: &mut Ctx, args: &NetworkCreate) -> Result<String> {
    create_recording(ctx, args, |_, _| Ok(()))
}

/// [`create`], with `also` (given the new network's id) recorded in the same state
/// transaction: another front end's own record of the network (Docker's plugin).
pub fn create_recording(
    ctx: &mut Ctx,
    args: &NetworkCreate,
    also: impl FnOnce(&rusqlite::Connection, &str) -> Result<()>,
) -> Result<String> {
    validate_name("network", &args.name)?;
    let kind = match &args.kind {
        Some(kind) => kind.clone(),
        None => ctx.default_plugin(PluginKind::NetworkType, DefaultFor::NetworkType)?,
    };
    let plugin = ctx.plugin(&kind, PluginKind::NetworkType)?;
    let traits = plugin.network_traits();
    if args.mtu.is_some() && !traits.cluster_scoped {
        bail!("--mtu is for cluster networks, whose tunnels need the room: drop it for a {kind} network");
    }
    let subnet = parse_subnet("subnet", args.subnet.as_deref(), true)?;
    let subnet6 = parse_subnet("subnet6", args.subnet6.as_deref(), false)?;
    let (gateway, gateway_auto) = parse_gateway("gateway", args.gw.as_deref(), subnet, traits.auto_gateway)?;
    let (gateway6, gateway6_auto) = parse_gateway("gateway6", args.gw6.as_deref(), subnet6, traits.auto_gateway)?;
    let dns_domain = args.dns_domain.as_deref().map(crate::dns::parse_dns_domain).transpose()?;
    if dns_domain.is_some() && traits.cluster_scoped {
        bail!("--dns-domain: {kind} networks serve no container DNS; leave out --dns-domain");
    }
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    let existing = state::networks(&state.db)?;
    if existing.iter().any(|r| r.network.name == args.name) {
        bail!("network name is already taken");
    }
    let mut session = session;
    let held_gateway = (gateway.is_some() && gateway_auto) || (gateway6.is_some() && gateway6_auto);
    let resolver_installed = session.executor().map_or(true, |exec| exec.dns_resolver_installed());
    let dns = dns_setting(args, held_gateway, resolver_installed)?;
    let interface = match &args.interface {
        Some(i) => i.clone(),
        None if traits.existing_interface => {
            bail!("{kind} networks need -i/--interface naming an existing interface")
        }
        None => match session.executor() {
            Some(exec) => free_interface(&existing, |name| {
                exec.check(&kleene_plugin_api::Check::LinkAbsent { name: name.into() }).is_err()
            }),
            None => free_interface(&existing, |_| false),
        },
    };
    validate_interface(&interface)?;
    if !traits.existing_interface {
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
        if let Some(exec) = session.executor() {
            let own = traits.existing_interface.then_some(interface.as_str());
            check_host_addresses(field, &mine, &exec.host_addresses()?, &existing, own)?;
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
        kind: kind.clone(),
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
        cluster: None,
    };
    if traits.cluster_scoped {
        return crate::cluster::networks::create(ctx, session, network, args);
    }
    let plan = plugin.plan(&Call::NetworkCreate { network: network.clone() })?;
    let id = network.id.clone();
    // Kleene counts the addresses already on the interface as used (custom networks).
    let on_link = match (session.executor(), traits.existing_interface) {
        (Some(exec), true) => exec.link_addresses(&network.interface).unwrap_or_default(),
        _ => Vec::new(),
    };
    apply(ctx, &mut state, session, &format!("network create {}", network.name), &plan, |tx, facts| {
        let link_kind = facts.iter().find_map(|f| match f {
            Fact::LinkKind { name, kind } if *name == network.interface => Some(kind.clone()),
            _ => None,
        });
        let row = NetworkRow { network: network.clone(), link_kind, forwarded: Some(traits.forwarded), dns };
        state::insert_network(tx, &row)?;
        if let Some(domain) = &dns_domain {
            state::set_network_dns_domain(tx, &network.id, domain)?;
        }
        for (s, gw) in [(network.subnet, network.gateway), (network.subnet6, network.gateway6)] {
            if let Some(s) = s {
                let reserved: Vec<IpAddr> = gw.into_iter().chain(on_link.iter().copied()).collect();
                ipam::init(tx, &network.id, &s, &reserved)?;
            }
        }
        also(tx, &network.id)
    })?;
    Ok(id)
}

/// Whether a new network serves DNS: by default where the host holds a gateway to serve it
/// on (and the resolver is installed: else off, with a warning); `--dns` insists, and
/// fails where it cannot be had. So does `--dns-domain`: a domain needs DNS.
fn dns_setting(args: &NetworkCreate, held_gateway: bool, resolver_installed: bool) -> Result<bool> {
    let insisting = if args.dns { Some("--dns") } else { args.dns_domain.as_ref().map(|_| "--dns-domain") };
    if args.no_dns {
        if let Some(flag) = insisting {
            // The CLI refuses the pair itself; the API's `"dns": false` arrives here.
            bail!("{flag}: network '{}' is created without DNS (--no-dns); leave out one of them", args.name);
        }
        return Ok(false);
    }
    if let (Some(flag), false) = (insisting, held_gateway) {
        bail!(
            "{flag}: network '{}' has no gateway on the host to serve DNS on; give it a --subnet with --gw auto, or leave out {flag}",
            args.name
        );
    }
    if held_gateway && !resolver_installed {
        let line = crate::dns::missing_resolver();
        if insisting.is_some() {
            bail!("{line}");
        }
        tracing::warn!("network '{}' is created without DNS: {line}", args.name);
        return Ok(false);
    }
    Ok(held_gateway)
}

/// Every network, oldest first.
pub fn ls(ctx: &Ctx) -> Result<Vec<Network>> {
    let state = ctx.read_state()?;
    Ok(state::networks(&state.db)?.into_iter().map(|r| r.network).collect())
}

/// A network, its endpoints, how its interface was made and its address usage.
pub fn inspect(ctx: &Ctx, ident: &str) -> Result<serde_json::Value> {
    let state = ctx.read_state()?;
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
    let aliases = state::endpoint_aliases(&state.db)?;
    let mut network = network_json(&row.network);
    network["dns"] = json!(row.dns);
    network["dns_domain"] = json!(state::network_dns_domain(&state.db, &id)?);
    // The MTU this host gave the network's links, where the network prescribes one.
    if let Some(mtu) = row.network.link_mtu() {
        network["mtu"] = json!(mtu);
    }
    let doc = json!({
        "network": network,
        "network_endpoints": endpoints.iter().map(|e| super::output::endpoint_json(e, &aliases)).collect::<Vec<_>>(),
        "link_kind": row.link_kind,
        "address_usage": usage,
    });
    Ok(doc)
}

/// `network rm`: every name is resolved before anything changes (one unknown name changes
/// nothing), then all of them go at once; their ids go to `removed`.
pub fn rm(ctx: &mut Ctx, idents: &[String], removed: &mut Vec<String>) -> Result<()> {
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    let mut ids: Vec<String> = Vec::new();
    for ident in idents {
        let id = state::resolve(&state.db, "networks", "network", ident)?;
        if let Some(docker) = state::docker::network_of(&state.db, &id)? {
            bail!(
                "network {ident} serves Docker network {}: remove it with docker network rm",
                state::docker::short(&docker)
            );
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    remove(ctx, &mut state, session, &ids, removed)
}

/// `network prune`: the networks without endpoints, chosen under the host lock so no
/// container joins one between the choice and the removal; their ids go to `removed`.
pub fn prune(ctx: &mut Ctx, removed: &mut Vec<String>) -> Result<()> {
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    let mut unused = Vec::new();
    for row in state::networks(&state.db)? {
        // Docker's networks go with `docker network rm`; cluster networks are the cluster's
        // (`network rm` removes one).
        if crate::cluster::is_cluster(&row.network) || state::docker::network_of(&state.db, &row.network.id)?.is_some()
        {
            continue;
        }
        if state::endpoints_where(&state.db, "network_id", &row.network.id)?.is_empty() {
            unused.push(row.network.id);
        }
    }
    remove(ctx, &mut state, session, &unused, removed)
}

/// Remove the networks `ids` (disconnecting their containers) as one plan: one journal row,
/// one state transaction, one firewall update, and the links deleted together by the
/// executor. Removing hundreds this way costs about what creating them did, where one
/// command per network paid the transaction, the firewall and a kernel RCU wait each time.
fn remove(
    ctx: &mut Ctx,
    state: &mut state::State,
    session: super::Session,
    ids: &[String],
    removed: &mut Vec<String>,
) -> Result<()> {
    remove_recording(ctx, state, session, ids, removed, |_| Ok(()))
}

/// Remove network `id` for another front end, with `also` (its own record of the network,
/// dropped first) in the same state transaction.
pub fn remove_one_recording(
    ctx: &mut Ctx,
    id: &str,
    also: impl FnOnce(&rusqlite::Connection) -> Result<()>,
) -> Result<()> {
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    remove_recording(ctx, &mut state, session, &[id.to_string()], &mut Vec::new(), also)
}

fn remove_recording(
    ctx: &mut Ctx,
    state: &mut state::State,
    session: super::Session,
    ids: &[String],
    removed: &mut Vec<String>,
    also: impl FnOnce(&rusqlite::Connection) -> Result<()>,
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
    crate::cluster::networks::remove(&rows)?;
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
        also(tx)?;
        for ep in &endpoints {
            state::delete_endpoint(tx, &ep.id)?;
        }
        ids.iter().try_for_each(|id| state::delete_network(tx, id))
    })?;
    removed.extend(ids.iter().cloned());
    Ok(())
}
