//! Containers whose network namespace another runtime made (a CNI runtime's `CNI_NETNS`).
//! kleene adopts that namespace as the container's sandbox (its pin in the run dir is a bind
//! mount of the runtime's namespace), joins it to one network with the driver's ordinary
//! start plan, and records an ordinary container: `container ls`, the firewall and every
//! other reader see it as any other. Releasing it runs the driver's stop plan, which only
//! lets go of the namespace. Front end: the `kleene-cni` binary.

use super::attach::{self, check_matrix, new_endpoint, planned_links, record_endpoint};
use super::{apply, container, validate_name, Ctx};
use crate::executor::SandboxInterface;
use crate::firewall;
use crate::state::{self, State};
use anyhow::{anyhow, bail, Result};
use kleene_plugin_api::{local_mac, Attachment, Call, Cidr, Container, Endpoint, Network, PluginKind, Stack};
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The key of a container's recorded configuration that holds the namespace it adopted.
const ADOPTED_NETNS: &str = "adopted_netns";

/// What to adopt, and into which network.
pub struct Adoption<'a> {
    /// The container's id: [`derived_id`] of what identifies it to its runtime.
    pub id: &'a str,
    /// The name when `preferred_name` is absent, not a valid name or taken.
    pub name: &'a str,
    /// The name the runtime knows the container by (podman's `--name`), used when free.
    pub preferred_name: Option<&'a str>,
    /// The driver: one whose containers have a network stack of their own.
    pub driver: &'a str,
    pub network: &'a str,
    pub netns: &'a Path,
    /// The interface's name inside the namespace.
    pub interface: &'a str,
    /// Requested addresses (otherwise IPAM chooses).
    pub ip: Option<IpAddr>,
    pub ip6: Option<IpAddr>,
    /// Published ports, in `container create --publish` syntax.
    pub publish: &'a [String],
    /// What the runtime wants kept with the container (given back by [`find`] and [`list`]).
    pub config: Map<String, Value>,
}

/// Where a network's names are answered: its resolver's addresses and the domain its
/// containers search (docs/dns.md).
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pub nameservers: Vec<IpAddr>,
    pub domain: Option<String>,
}

/// An adopted container as recorded.
#[derive(Debug, Clone)]
pub struct Adopted {
    pub container: Container,
    pub network: Network,
    pub endpoint: Endpoint,
    /// The namespace it adopted, as the runtime named it when it was adopted.
    pub netns: PathBuf,
    /// The network's resolver, when it serves DNS (docs/dns.md), for the runtime's
    /// resolv.conf.
    pub resolver: Resolver,
    /// The runtime's own record (the `config` of its [`Adoption`]).
    pub config: Map<String, Value>,
}

/// A container id derived from `key` (e.g. a runtime's container id and interface name):
/// the same key gives the same id in every process, as `DEL` after `ADD` needs.
pub fn derived_id(key: &str) -> String {
    let mut round = 0u64;
    state::new_id_from(&mut |bytes| {
        round += 1;
        let hash = fnv1a(key.as_bytes(), round);
        bytes.copy_from_slice(&hash.to_be_bytes()[..6]);
    })
}

/// FNV-1a (64 bits), seeded with `round`: stable across builds and platforms.
fn fnv1a(data: &[u8], round: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ round;
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Adopt `a.netns` as a new running container's sandbox, joined to `a.network`.
pub fn attach(ctx: &mut Ctx, a: &Adoption<'_>) -> Result<Adopted> {
    validate_name("container", a.name)?;
    super::network::validate_interface(a.interface)
        .map_err(|e| anyhow!("invalid interface name inside the container: {e}"))?;
    let mut ports = Vec::new();
    for spec in a.publish {
        ports.push(firewall::parse_publish(spec).map_err(anyhow::Error::msg)?);
    }
    let mut state = ctx.state()?;
    let mut session = ctx.begin(&state)?;
    if find_container(&state, a.id)?.is_some() {
        bail!("container {} ({}) is already attached: release it first", a.name, a.id);
    }
    // Under the host lock: a name checked free here is still free when recorded.
    let taken = |name: &str| {
        state::resolve(&state.db, "containers", "container", name)
            .is_ok_and(|id| state::container_by_id(&state.db, &id).is_ok_and(|c| c.name == name))
    };
    let name = match a.preferred_name {
        Some(n) if validate_name("container", n).is_ok() && !taken(n) => n,
        _ => a.name,
    };
    if taken(name) {
        bail!("container name {name} is already taken");
    }
    let net_id = state::resolve(&state.db, "networks", "network", a.network)?;
    let row = state::network_by_id(&state.db, &net_id)?;
    let resolver = resolver(&state, &row)?;
    let network = row.network;
    let driver = a.driver.to_string();
    let stack = ctx.plugin(&driver, PluginKind::Driver)?.stack();
    if stack != Stack::Private {
        bail!("driver '{driver}' gives containers no network stack of their own: adopting a namespace needs one");
    }
    check_matrix(ctx, &driver, &network)?;
    if !ports.is_empty() {
        firewall::check_can_publish(&driver, stack).map_err(anyhow::Error::msg)?;
    }
    container::check_port_conflicts(&state, &ports)?;
    let text = |ip: Option<IpAddr>| ip.map(|ip| ip.to_string());
    let (ip, ip6) = (text(a.ip), text(a.ip6));
    let mut endpoint = new_endpoint(&state.db, &network, a.id, ip.as_deref(), ip6.as_deref())?;
    endpoint.interface = Some(a.interface.to_string());
    // The runtime is told the interface's MAC address (podman 4 refuses a CNI result without
    // one), and kleene must not ask the kernel: a stable one of kleene's own is set instead.
    endpoint.mac.get_or_insert_with(|| local_mac(&endpoint.id));
    let c = Container { id: a.id.to_string(), name: name.to_string(), driver: driver.clone(), running: false };
    let running = Container { running: true, ..c.clone() };
    let mut attachments = vec![Attachment { network: network.clone(), endpoint }];
    let plan = ctx
        .plugin(&driver, PluginKind::Driver)?
        .plan(&Call::ContainerStart { container: running, attachments: attachments.clone() })?;
    let Some((host, peer)) = planned_links(&plan, &network) else {
        bail!("driver '{driver}' joins no pair to network {}: it cannot serve an adopted namespace", network.name);
    };
    if peer != a.interface {
        bail!(
            "driver '{driver}' names the container's interface {peer}, not {}: it cannot serve this runtime",
            a.interface
        );
    }
    attachments[0].endpoint.epair = Some(host);
    if let Some(exec) = session.executor() {
        exec.adopt_sandbox(a.id, a.netns)?;
    }
    let mut config = a.config.clone();
    config.insert(ADOPTED_NETNS.into(), Value::String(a.netns.display().to_string()));
    let recorded = Value::Object(config);
    apply(ctx, &mut state, session, &format!("adopt {name} into {}", network.name), &plan, |tx, _| {
        state::insert_container(tx, &c, stack)?;
        state::insert_published(tx, &c.id, a.publish)?;
        state::set_container_config(tx, &c.id, &recorded)?;
        record_endpoint(tx, &attachments[0].endpoint)?;
        container::record_start(tx, &c, &attachments)
    })?;
    let endpoint = attachments.remove(0).endpoint;
    Ok(Adopted {
        container: Container { running: true, ..c },
        network,
        endpoint,
        netns: a.netns.into(),
        resolver,
        config: a.config.clone(),
    })
}

fn find_container(state: &State, id: &str) -> Result<Option<Container>> {
    match state::container_by_id(&state.db, id) {
        Err(e) if matches!(e.downcast_ref::<rusqlite::Error>(), Some(rusqlite::Error::QueryReturnedNoRows)) => Ok(None),
        other => other.map(Some),
    }
}

/// Refuse to start an adopted container: its namespace is the runtime's, and kleene would
/// make one of its own.
pub fn refuse_start(state: &State, c: &Container) -> Result<()> {
    if is_adopted(state, &c.id)? {
        bail!("container {} runs in another runtime's network namespace: that runtime starts it", c.name);
    }
    Ok(())
}

/// Whether the container `id` runs in an adopted namespace.
pub fn is_adopted(state: &State, id: &str) -> Result<bool> {
    let config: Option<String> =
        state.db.query_row("SELECT config FROM containers WHERE id = ?1", [id], |r| r.get(0))?;
    Ok(config
        .and_then(|text| serde_json::from_str::<Map<String, Value>>(&text).ok())
        .is_some_and(|config| config.contains_key(ADOPTED_NETNS)))
}

/// The adopted container `id`, if there is one.
pub fn find(ctx: &Ctx, id: &str) -> Result<Option<Adopted>> {
    let state = ctx.read_state()?;
    let Some(container) = find_container(&state, id)? else { return Ok(None) };
    let config = state::container_extras(&state.db)?.remove(id).unwrap_or_default().config;
    adopted(&state, container, config)
}

/// Every adopted container.
pub fn list(ctx: &Ctx) -> Result<Vec<Adopted>> {
    let state = ctx.read_state()?;
    let mut extras = state::container_extras(&state.db)?;
    let mut found = Vec::new();
    for c in state::containers(&state.db)? {
        let config = extras.remove(&c.id).unwrap_or_default().config;
        found.extend(adopted(&state, c, config)?);
    }
    Ok(found)
}

/// The record of an adopted container (`None` for any other container).
fn adopted(state: &State, container: Container, mut config: Map<String, Value>) -> Result<Option<Adopted>> {
    let Some(Value::String(netns)) = config.remove(ADOPTED_NETNS) else { return Ok(None) };
    let Some(Attachment { network, endpoint }) = attach::attachments(&state.db, &container.id)?.into_iter().next()
    else {
        return Ok(None);
    };
    let resolver = resolver(state, &state::network_by_id(&state.db, &network.id)?)?;
    Ok(Some(Adopted { container, network, endpoint, netns: netns.into(), resolver, config }))
}

/// The resolver of a network that serves DNS (empty otherwise).
fn resolver(state: &State, row: &state::NetworkRow) -> Result<Resolver> {
    if !row.dns {
        return Ok(Resolver::default());
    }
    let domain = state::network_dns_domain(&state.db, &row.network.id)?;
    Ok(Resolver { nameservers: crate::dns::listen_addresses(row), domain })
}

/// Release the adopted container `id`: its pair, addresses, published ports and record go,
/// and kleene lets go of the namespace (the host end of the pair is deleted by a detached
/// process right after, in a single-threaded caller). `false` when there was no such container (released
/// already: a release is idempotent). The runtime's namespace itself may be gone already.
pub fn release(ctx: &mut Ctx, id: &str) -> Result<bool> {
    let mut state = ctx.state()?;
    let mut session = ctx.begin(&state)?;
    let Some(c) = find_container(&state, id)? else { return Ok(false) };
    // The runtime waits for the release; the kernel's slow part of deleting the pair need
    // not hold it up (done in place by a process with threads, e.g. a server).
    if let Some(exec) = session.executor() {
        exec.defer_link_deletion(crate::executor::LinkReaping::DetachedProcess);
    }
    let endpoints = state::endpoints_where(&state.db, "container_id", &c.id)?;
    let plan = if c.running { container::stop_plan(ctx, &state, &c)? } else { kleene_plugin_api::Plan::new() };
    apply(ctx, &mut state, session, &format!("release {}", c.name), &plan, |tx, _| {
        endpoints.iter().try_for_each(|ep| attach::forget_endpoint(tx, ep))?;
        state::delete_container(tx, &c.id)
    })?;
    Ok(true)
}

/// Verify that the adopted container `id` is still whole in the namespace at `netns`: the
/// same namespace, its interface up with its addresses, and the default routes its network
/// gives. The error says what is missing.
pub fn verify(ctx: &mut Ctx, id: &str, netns: &Path) -> Result<Adopted> {
    let a = find(ctx, id)?.ok_or_else(|| crate::error::NotFound(format!("container {id} not found")))?;
    let mut exec = ctx.executor()?;
    if !exec.sandbox_is(id, netns)? {
        bail!("container {} holds another network namespace than {}", a.container.name, netns.display());
    }
    let name = a.endpoint.interface.clone().unwrap_or_default();
    let Some(found) = exec.sandbox_interface(id, &name)? else {
        bail!("interface {name} is missing from container {}", a.container.name);
    };
    let wanted = expected(&a);
    let problems = differences(&name, &wanted, &found);
    if !problems.is_empty() {
        bail!("container {}: {}", a.container.name, problems.join("; "));
    }
    Ok(a)
}

/// What the interface of an adopted container should have: up, its addresses, and a default
/// route through each gateway of its network.
pub fn expected(a: &Adopted) -> SandboxInterface {
    let n = &a.network;
    let address = |ip: Option<IpAddr>, subnet: Option<Cidr>| Some(Cidr { addr: ip?, prefix: subnet?.prefix });
    let addresses =
        [address(a.endpoint.ip_address, n.subnet), address(a.endpoint.ip_address6, n.subnet6)].into_iter().flatten();
    let gateways = [n.gateway, n.gateway6].into_iter().flatten();
    SandboxInterface { up: true, addresses: addresses.collect(), gateways: gateways.collect() }
}

/// What `found` lacks of `wanted`, one sentence each (what else it has is the runtime's).
fn differences(name: &str, wanted: &SandboxInterface, found: &SandboxInterface) -> Vec<String> {
    let mut problems = Vec::new();
    if wanted.up && !found.up {
        problems.push(format!("interface {name} is down"));
    }
    for a in wanted.addresses.iter().filter(|a| !found.addresses.contains(a)) {
        problems.push(format!("interface {name} lacks its address {a}"));
    }
    for gw in wanted.gateways.iter().filter(|gw| !found.gateways.contains(gw)) {
        problems.push(format!("the default route via {gw} on {name} is missing"));
    }
    problems
}

/// Whether the network and its driver can serve adopted namespaces now (the network exists,
/// its interface is there, the driver loads and has a private stack); the reason otherwise.
pub fn usable(ctx: &mut Ctx, network: &str, driver: &str) -> Result<()> {
    let state = ctx.read_state()?;
    let id = state::resolve(&state.db, "networks", "network", network)?;
    let net = state::network_by_id(&state.db, &id)?.network;
    if ctx.plugin(driver, PluginKind::Driver)?.stack() != Stack::Private {
        bail!("driver '{driver}' gives containers no network stack of their own");
    }
    check_matrix(ctx, driver, &net)?;
    let check = kleene_plugin_api::Check::LinkExists { name: net.interface.clone() };
    if ctx.executor()?.check(&check).is_err() {
        bail!("the interface {} of network {} is missing (run `kleene system reconcile`)", net.interface, net.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_ids() {
        let a = derived_id("default-c1/eth0");
        assert_eq!(a, derived_id("default-c1/eth0"));
        assert_ne!(a, derived_id("default-c1/eth1"));
        assert!(state::checked::is_id(&a), "{a}");
    }

    #[test]
    fn differences_name_what_is_missing() {
        let cidr = |s: &str| s.parse::<Cidr>().unwrap();
        let wanted = SandboxInterface {
            up: true,
            addresses: vec![cidr("10.0.0.2/24")],
            gateways: vec!["10.0.0.1".parse().unwrap()],
        };
        let mut found = wanted.clone();
        found.addresses.push(cidr("fe80::1/64"));
        assert!(differences("eth0", &wanted, &found).is_empty());
        let bare = SandboxInterface { up: false, addresses: vec![], gateways: vec![] };
        assert_eq!(
            differences("eth0", &wanted, &bare),
            [
                "interface eth0 is down",
                "interface eth0 lacks its address 10.0.0.2/24",
                "the default route via 10.0.0.1 on eth0 is missing"
            ]
        );
    }
}
