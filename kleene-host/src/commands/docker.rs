//! Docker's network-driver and IPAM plugin calls, as kleene operations (the protocol itself is
//! `server/docker/`). A Docker network is a kleene network; a Docker endpoint is a kleene
//! container whose sandbox is Docker's: its driver plans `RuntimeJoin`, a pair with both ends
//! on the host, and Docker moves the peer into the container and configures it.
//!
//! Addresses come from kleene's IPAM once: `RequestAddress` takes the address in the kleene
//! network and `CreateEndpoint` records exactly that address (a network whose addresses another
//! IPAM driver chooses has them taken by `CreateEndpoint`, and given back with the endpoint).

use super::attach::{attachments, planned_links};
use super::container::record_start;
use super::{apply, Ctx};
use crate::cli::NetworkCreate;
use crate::error::NotFound;
use crate::firewall;
use crate::state::docker::{self as dstate, DockerEndpoint, DockerNetwork};
use crate::state::{self, ipam, NetworkRow, State};
use anyhow::{anyhow, bail, Result};
use kleene_plugin_api::model::from_bits;
use kleene_plugin_api::{Attachment, Call, Cidr, Container, Endpoint, Network, Plan, PluginKind, Stack};
use std::net::IpAddr;

/// The driver option naming an existing kleene network (`docker network create -o`).
pub const OPT_NETWORK: &str = "kleene.network";
/// The driver option naming the network type of a network kleene creates for Docker.
pub const OPT_TYPE: &str = "kleene.type";

/// What `Join` answers: the interface Docker moves in, and the gateways it routes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub src_name: String,
    pub gateway: Option<IpAddr>,
    pub gateway6: Option<IpAddr>,
}

/// An IPAM pool id is the pool itself (`10.77.0.0/24`): it stays meaningful before the
/// network holding it exists (Docker asks for the gateway before `CreateNetwork`).
fn parse_pool(pool_id: &str) -> Result<Cidr> {
    pool_id.parse().map_err(|_| NotFound(format!("unknown pool '{pool_id}': not one kleene's IPAM handed out")).into())
}

/// The kleene network whose subnet (of the pool's family) is exactly `pool`.
fn network_with_pool(db: &rusqlite::Connection, pool: &Cidr) -> Result<Option<NetworkRow>> {
    Ok(state::networks(db)?
        .into_iter()
        .find(|r| [r.network.subnet, r.network.subnet6].into_iter().flatten().any(|s| s == *pool)))
}

/// `RequestPool`: the pool is the subnet the operator gave (`--subnet`); it may be exactly a
/// kleene network's subnet (adopted with `-o kleene.network=NAME`) but overlap no other.
pub fn request_pool(ctx: &Ctx, pool: &str, sub_pool: &str, v6: bool) -> Result<String> {
    if pool.is_empty() {
        bail!("kleene's IPAM hands out addresses from the subnet you give: add --subnet to docker network create");
    }
    if !sub_pool.is_empty() {
        bail!("kleene's IPAM does not take --ip-range: give only --subnet");
    }
    let field = if v6 { "IPv6 subnet" } else { "subnet" };
    let cidr = super::network::parse_subnet(field, Some(pool), !v6)?.expect("not empty");
    let state = ctx.read_state()?;
    for row in state::networks(&state.db)? {
        for theirs in [row.network.subnet, row.network.subnet6].into_iter().flatten() {
            if theirs.overlaps(&cidr) && theirs != cidr {
                bail!(
                    "{field} {cidr} overlaps kleene network '{}' ({theirs}); pick a disjoint subnet",
                    row.network.name
                );
            }
        }
    }
    Ok(cidr.to_string())
}

/// `RequestAddress`: the gateway (held by the network, never allocated) or a container's
/// address, taken from the kleene network holding the pool. Answers `address/prefix`.
pub fn request_address(ctx: &mut Ctx, pool_id: &str, address: &str, gateway: bool) -> Result<String> {
    let pool = parse_pool(pool_id)?;
    let requested: Option<IpAddr> = match address {
        "" => None,
        text => Some(text.parse().map_err(|_| anyhow!("invalid address '{text}'"))?),
    };
    if let Some(ip) = requested.filter(|ip| !pool.contains(*ip)) {
        bail!("address {ip} is outside pool {pool}");
    }
    let with_prefix = |ip: IpAddr| format!("{ip}/{}", pool.prefix);
    let mut state = ctx.state()?;
    let row = network_with_pool(&state.db, &pool)?;
    if gateway {
        let held = row.as_ref().and_then(|r| if pool.addr.is_ipv4() { r.network.gateway } else { r.network.gateway6 });
        return Ok(with_prefix(match (held, requested) {
            (Some(gw), Some(ip)) if gw != ip => {
                bail!("the kleene network of pool {pool} has gateway {gw}, not {ip}: leave --gateway out")
            }
            (Some(gw), _) => gw,
            (None, Some(ip)) => ip,
            (None, None) => from_bits(pool.addr, ipam::usable_range(&pool).0),
        }));
    }
    let Some(row) = row else {
        bail!("no kleene network holds pool {pool}: create the Docker network with -d kleene first");
    };
    let session = ctx.begin(&state)?;
    let net = row.network;
    let ip = match requested {
        Some(ip) if !ipam::is_free(&state.db, &net.id, ip)? => {
            bail!("address {ip} is already in use (or reserved) in network '{}'", net.name)
        }
        Some(ip) => ip,
        None => {
            let tx = state.db.unchecked_transaction()?;
            let ip = ipam::allocate(&tx, &net.id, &pool);
            tx.rollback()?;
            ip?
        }
    };
    let what = format!("docker address {ip} in network {}", net.name);
    apply(ctx, &mut state, session, &what, &Plan::new(), |tx, _| ipam::take(tx, &net.id, ip))?;
    Ok(with_prefix(ip))
}

/// `ReleaseAddress`: give a container's address back (the gateway, an address an endpoint
/// still holds, or one of a network already gone is left as it is).
pub fn release_address(ctx: &mut Ctx, pool_id: &str, address: &str) -> Result<()> {
    let pool = parse_pool(pool_id)?;
    let ip: IpAddr = address.parse().map_err(|_| anyhow!("invalid address '{address}'"))?;
    let mut state = ctx.state()?;
    let Some(row) = network_with_pool(&state.db, &pool)? else { return Ok(()) };
    let net = row.network;
    let held = state::endpoints_where(&state.db, "network_id", &net.id)?.iter().any(|e| e.addresses().any(|a| a == ip));
    if held || Some(ip) == net.gateway || Some(ip) == net.gateway6 || ipam::is_free(&state.db, &net.id, ip)? {
        return Ok(());
    }
    let session = ctx.begin(&state)?;
    let what = format!("docker release {ip} in network {}", net.name);
    apply(ctx, &mut state, session, &what, &Plan::new(), |tx, _| ipam::release(tx, &net.id, ip))
}

/// A pool and gateway as Docker's `IPAMData` gives them (`10.77.0.0/24`, `10.77.0.1/24`).
#[derive(Debug, Clone, Default)]
pub struct PoolData {
    pub pool: String,
    pub gateway: String,
}

/// `CreateNetwork`: adopt the kleene network named by `kleene.network`, or create one (of the
/// type `kleene.type` names, or the first installed type that is bridge-like) with Docker's
/// pools and gateways.
pub fn create_network(
    ctx: &mut Ctx,
    docker_id: &str,
    options: &serde_json::Map<String, serde_json::Value>,
    v4: Option<PoolData>,
    v6: Option<PoolData>,
) -> Result<()> {
    check_docker_id("network", docker_id)?;
    let option = |key: &str| options.get(key).and_then(|v| v.as_str()).map(String::from);
    {
        let state = ctx.read_state()?;
        if dstate::network(&state.db, docker_id)?.is_some() {
            bail!("Docker network {docker_id} is already known to kleene");
        }
    }
    let mapping = |network_id: &str, owned| DockerNetwork {
        docker_id: docker_id.to_string(),
        network_id: network_id.to_string(),
        owned,
    };
    match option(OPT_NETWORK) {
        Some(name) => {
            let id = adopt(ctx, &name, v4.as_ref(), v6.as_ref())?;
            let mut state = ctx.state()?;
            let session = ctx.begin(&state)?;
            apply(ctx, &mut state, session, "docker network create", &Plan::new(), |tx, _| {
                dstate::insert_network(tx, &mapping(&id, false))
            })
        }
        None => {
            let kind = match option(OPT_TYPE) {
                Some(kind) => kind,
                None => bridge_like_type(ctx)?,
            };
            let gw = |p: &Option<PoolData>| p.as_ref().and_then(gateway_setting);
            let args = NetworkCreate {
                kind: Some(kind),
                subnet: v4.as_ref().map(|p| p.pool.clone()),
                subnet6: v6.as_ref().map(|p| p.pool.clone()),
                gw: gw(&v4),
                gw6: gw(&v6),
                name: format!("docker-{}", dstate::short(docker_id)),
                ..NetworkCreate::default()
            };
            // The network and Docker's record of it commit together.
            super::network::create_recording(ctx, &args, |tx, id| dstate::insert_network(tx, &mapping(id, true)))?;
            Ok(())
        }
    }
}

/// The gateway setting of a network made for Docker: `auto` (held by the network's interface,
/// as Docker expects of its driver) when Docker's gateway is the one kleene would pick, the
/// address otherwise (then it is only the containers' default route, as in Kleene).
fn gateway_setting(p: &PoolData) -> Option<String> {
    let gw = p.gateway.split('/').next().unwrap_or_default();
    let pool: Cidr = p.pool.parse().ok()?;
    let first = from_bits(pool.addr, ipam::usable_range(&pool).0).to_string();
    match gw {
        "" => None,
        gw if gw == first => Some("auto".into()),
        gw => Some(gw.to_string()),
    }
}

/// The kleene network `name`, if Docker's pools are its subnets and no Docker network has it.
fn adopt(ctx: &Ctx, name: &str, v4: Option<&PoolData>, v6: Option<&PoolData>) -> Result<String> {
    let state = ctx.read_state()?;
    let id =
        state::resolve(&state.db, "networks", "network", name).map_err(|e| anyhow!("{OPT_NETWORK}={name}: {e:#}"))?;
    let net = state::network_by_id(&state.db, &id)?.network;
    if let Some(other) = dstate::network_of(&state.db, &id)? {
        bail!("kleene network '{name}' already serves Docker network {}", dstate::short(&other));
    }
    for (pool, subnet, flag) in [(v4, net.subnet, "--subnet"), (v6, net.subnet6, "--subnet (IPv6)")] {
        let given = pool.map(|p| p.pool.as_str()).filter(|p| !p.is_empty());
        if given.map(|p| p.parse::<Cidr>().ok()) != given.map(|_| subnet) {
            let want = subnet.map_or("none".to_string(), |s| s.to_string());
            bail!("kleene network '{name}' has subnet {want}: give docker network create {flag} {want}");
        }
    }
    Ok(id)
}

/// The first installed network type that owns a bridge-like interface: its own interface
/// (not an existing one), gateways held by it, traffic forwarded, and joinable by a driver
/// that can hand pairs to a runtime (a private stack).
fn bridge_like_type(ctx: &mut Ctx) -> Result<String> {
    for name in candidate_names(ctx) {
        let Ok(p) = ctx.plugin(&name, PluginKind::NetworkType) else { continue };
        let t = p.network_traits();
        if !t.existing_interface && t.auto_gateway && t.forwarded && handoff_driver(ctx, &name).is_ok() {
            return Ok(name);
        }
    }
    bail!("no installed network type is bridge-like (own interface, gateways on it, forwarded) with a private-stack driver; name one with -o {OPT_TYPE}=TYPE")
}

fn candidate_names(ctx: &mut Ctx) -> Vec<String> {
    ctx.registry().candidates.iter().filter(|c| c.shadowed_by.is_none()).map(|c| c.name.clone()).collect()
}

/// The driver of Docker endpoints on networks of type `kind`: the first installed driver whose
/// containers get a stack of their own (what Docker's sandbox is) and that joins `kind`.
fn handoff_driver(ctx: &mut Ctx, kind: &str) -> Result<(String, Stack)> {
    for name in candidate_names(ctx) {
        let Ok(p) = ctx.plugin(&name, PluginKind::Driver) else { continue };
        if p.stack() == Stack::Private && p.info.network_types.iter().any(|t| t == kind) {
            return Ok((name, Stack::Private));
        }
    }
    bail!("no installed driver gives containers a stack of their own on {kind} networks: Docker's endpoints need one")
}

fn check_docker_id(what: &str, id: &str) -> Result<()> {
    if !dstate::is_docker_id(id) {
        bail!("invalid Docker {what} id '{}': expected 64 hex digits", id.escape_debug());
    }
    Ok(())
}

fn docker_network(state: &State, docker_id: &str) -> Result<(DockerNetwork, Network)> {
    let Some(mapping) = dstate::network(&state.db, docker_id)? else {
        return Err(NotFound(format!("unknown network {docker_id}: kleene serves no such Docker network")).into());
    };
    let net = state::network_by_id(&state.db, &mapping.network_id)?.network;
    Ok((mapping, net))
}

/// `DeleteNetwork`: forget the mapping; a network kleene created for Docker goes with it.
pub fn delete_network(ctx: &mut Ctx, docker_id: &str) -> Result<()> {
    let mut state = ctx.state()?;
    let (mapping, net) = docker_network(&state, docker_id)?;
    let n: i64 =
        state
            .db
            .query_row("SELECT COUNT(*) FROM docker_endpoints WHERE docker_network = ?1", [docker_id], |r| r.get(0))?;
    if n > 0 {
        bail!("Docker network {} still has {n} endpoint(s)", dstate::short(docker_id));
    }
    if mapping.owned {
        drop(state);
        // The network and Docker's record of it go together.
        return super::network::remove_one_recording(ctx, &net.id, |tx| dstate::delete_network(tx, docker_id));
    }
    let session = ctx.begin(&state)?;
    apply(ctx, &mut state, session, "docker network rm", &Plan::new(), |tx, _| dstate::delete_network(tx, docker_id))
}

/// `CreateEndpoint`: a kleene container (stopped, its sandbox Docker's) on the network, with
/// exactly the addresses Docker's IPAM chose.
pub fn create_endpoint(
    ctx: &mut Ctx,
    docker_net: &str,
    docker_ep: &str,
    address: Option<Cidr>,
    address6: Option<Cidr>,
) -> Result<()> {
    check_docker_id("endpoint", docker_ep)?;
    let mut state = ctx.state()?;
    let (_, net) = docker_network(&state, docker_net)?;
    if dstate::endpoint(&state.db, docker_ep)?.is_some() {
        bail!("Docker endpoint {} already exists", dstate::short(docker_ep));
    }
    let (driver, stack) = handoff_driver(ctx, &net.kind)?;
    let session = ctx.begin(&state)?;
    let held = state::endpoints_where(&state.db, "network_id", &net.id)?;
    let mut free = Vec::new();
    for (cidr, subnet, family) in [(address, net.subnet, "IPv4"), (address6, net.subnet6, "IPv6")] {
        let Some(cidr) = cidr else { continue };
        if !subnet.is_some_and(|s| s.contains(cidr.addr) && s.prefix == cidr.prefix) {
            let want = subnet.map_or(format!("no {family} subnet"), |s| s.to_string());
            bail!("address {cidr} does not fit kleene network '{}' ({want})", net.name);
        }
        if held.iter().any(|e| e.addresses().any(|a| a == cidr.addr)) {
            bail!("address {} is already a container's in network '{}'", cidr.addr, net.name);
        }
        free.push(ipam::is_free(&state.db, &net.id, cidr.addr)?);
    }
    // Either every address came from kleene's IPAM (taken already) or none did.
    let took_addresses = free.first().copied().unwrap_or(false);
    let container =
        Container { id: state::new_id(), name: format!("docker-{}", dstate::short(docker_ep)), driver, running: false };
    let endpoint = Endpoint {
        id: state::new_id(),
        network_id: net.id.clone(),
        container_id: container.id.clone(),
        epair: None,
        interface: None,
        ip_address: address.map(|c| c.addr),
        ip_address6: address6.map(|c| c.addr),
        mac: None,
    };
    let mapping = DockerEndpoint {
        docker_id: docker_ep.to_string(),
        docker_network: docker_net.to_string(),
        container_id: container.id.clone(),
        took_addresses,
    };
    let what = format!("docker endpoint {} on network {}", container.name, net.name);
    apply(ctx, &mut state, session, &what, &Plan::new(), |tx, _| {
        state::insert_container(tx, &container, stack)?;
        state::insert_endpoint(tx, &endpoint)?;
        if took_addresses {
            endpoint.addresses().try_for_each(|ip| ipam::take(tx, &net.id, ip))?;
        }
        dstate::insert_endpoint(tx, &mapping)
    })
}

/// The container of a Docker endpoint and its one attachment.
fn endpoint_parts(state: &State, docker_ep: &str) -> Result<(DockerEndpoint, Container, Attachment)> {
    let Some(mapping) = dstate::endpoint(&state.db, docker_ep)? else {
        return Err(NotFound(format!("unknown endpoint {docker_ep}: kleene serves no such Docker endpoint")).into());
    };
    let container = state::container_by_id(&state.db, &mapping.container_id)?;
    let attachment = attachments(&state.db, &container.id)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("Docker endpoint {} has no kleene endpoint", dstate::short(docker_ep)))?;
    Ok((mapping, container, attachment))
}

/// `Join`: the driver's hand-off pair, host end on the network; Docker moves the peer.
pub fn join(ctx: &mut Ctx, docker_ep: &str, sandbox_key: &str) -> Result<Joined> {
    let mut state = ctx.state()?;
    let (_, container, mut attachment) = endpoint_parts(&state, docker_ep)?;
    if container.running {
        bail!("Docker endpoint {} has joined a sandbox already", dstate::short(docker_ep));
    }
    let session = ctx.begin(&state)?;
    let driver = ctx.plugin(&container.driver, PluginKind::Driver)?;
    let running = Container { running: true, ..container.clone() };
    let plan = driver.plan(&Call::RuntimeJoin { container: running, attachment: attachment.clone() })?;
    let (host, peer) = planned_links(&plan, &attachment.network)
        .filter(|(_, peer)| !peer.is_empty())
        .ok_or_else(|| anyhow!("driver {} planned no hand-off pair for Docker", container.driver))?;
    attachment.endpoint.epair = Some(host);
    attachment.endpoint.interface = Some(peer.clone());
    let config = serde_json::json!({ "runtime": dstate::RUNTIME, "sandbox_key": sandbox_key, "endpoint": docker_ep });
    let what = format!("docker join {}", container.name);
    apply(ctx, &mut state, session, &what, &plan, |tx, _| {
        record_start(tx, &container, std::slice::from_ref(&attachment))?;
        state::set_container_config(tx, &container.id, &config)
    })?;
    let net = &attachment.network;
    Ok(Joined { src_name: peer, gateway: net.gateway, gateway6: net.gateway6 })
}

/// `Leave`: the pair goes (Docker has moved the peer back to the host, or it went with the
/// sandbox). Leaving an endpoint that is not joined changes nothing.
pub fn leave(ctx: &mut Ctx, docker_ep: &str) -> Result<()> {
    let mut state = ctx.state()?;
    let (_, container, attachment) = endpoint_parts(&state, docker_ep)?;
    if !container.running {
        return Ok(());
    }
    let session = ctx.begin(&state)?;
    let driver = ctx.plugin(&container.driver, PluginKind::Driver)?;
    let plan = driver.plan(&Call::RuntimeLeave { container: container.clone(), attachment: attachment.clone() })?;
    let cleared = Endpoint { epair: None, interface: None, ..attachment.endpoint.clone() };
    apply(ctx, &mut state, session, &format!("docker leave {}", container.name), &plan, |tx, _| {
        state::set_running(tx, &container.id, false)?;
        state::update_endpoint_links(tx, &cleared)?;
        delete_published(tx, &container.id)
    })
}

/// `DeleteEndpoint`: the container record goes (after leaving, should Docker not have).
pub fn delete_endpoint(ctx: &mut Ctx, docker_ep: &str) -> Result<()> {
    leave(ctx, docker_ep)?;
    let mut state = ctx.state()?;
    let (mapping, container, attachment) = endpoint_parts(&state, docker_ep)?;
    let session = ctx.begin(&state)?;
    let ep = attachment.endpoint;
    apply(ctx, &mut state, session, &format!("docker endpoint rm {}", container.name), &Plan::new(), |tx, _| {
        dstate::delete_endpoint(tx, docker_ep)?;
        if mapping.took_addresses {
            ep.addresses().try_for_each(|ip| ipam::release(tx, &ep.network_id, ip))?;
        }
        state::delete_endpoint(tx, &ep.id)?;
        state::delete_container(tx, &container.id)
    })
}

/// `EndpointOperInfo`: what kleene made for the endpoint.
pub fn endpoint_info(ctx: &Ctx, docker_ep: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    let state = ctx.read_state()?;
    let (_, container, attachment) = endpoint_parts(&state, docker_ep)?;
    let mut info = serde_json::Map::new();
    info.insert("kleene.container".into(), container.id.into());
    info.insert("kleene.network".into(), attachment.network.name.into());
    if let Some(host) = attachment.endpoint.epair {
        info.insert("kleene.host_interface".into(), host.into());
    }
    Ok(info)
}

/// One published port as Docker's port map gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    pub proto: firewall::Proto,
    pub port: u16,
    /// The host address of `-p ADDRESS:HOST:PORT`, if one was given.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub host_port_end: u16,
}

impl PortMap {
    /// The kleene published-port spec (`HOST[-END]:PORT/PROTO`), or why kleene cannot publish
    /// it as Docker asks. Docker's own driver binds a host address and picks free host ports;
    /// kleene's firewall redirects a port on every host address and picks none, so a binding
    /// that needs either is refused rather than published more widely than asked.
    fn spec(&self) -> Result<String> {
        let proto = self.proto.as_str();
        if let Some(ip) = self.host_ip.filter(|ip| !ip.is_unspecified()) {
            bail!(
                "kleene publishes ports on every host address, not on {ip} alone: drop the address (-p {}:{}/{proto})",
                self.host_port.max(self.port),
                self.port
            );
        }
        if self.host_port == 0 {
            bail!("kleene does not pick host ports: give one for container port {}/{proto} (-p HOSTPORT:{}/{proto}; not -p {} or -P)", self.port, self.port, self.port);
        }
        let host = if self.host_port_end > self.host_port {
            format!("{}-{}", self.host_port, self.host_port_end)
        } else {
            self.host_port.to_string()
        };
        Ok(format!("{host}:{}/{proto}", self.port))
    }
}

/// `ProgramExternalConnectivity`: Docker's published ports become the container's kleene
/// published ports (the firewall redirects them to its address). Docker calls it for the
/// endpoint that holds the container's default route, and moves it (revoke, program) when
/// `docker network connect` brings an endpoint that takes the route over.
pub fn publish(ctx: &mut Ctx, docker_ep: &str, ports: &[PortMap]) -> Result<()> {
    let mut state = ctx.state()?;
    let (_, container, _) = endpoint_parts(&state, docker_ep)?;
    let specs = ports.iter().map(PortMap::spec).collect::<Result<Vec<_>>>()?;
    let parsed =
        specs.iter().map(|s| firewall::parse_publish(s)).collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?;
    // Another container's port (kleene's or Docker's) is refused: the firewall can redirect a
    // host port to one container only.
    super::container::check_port_conflicts_except(&state, &parsed, Some(&container.id))?;
    let session = ctx.begin(&state)?;
    apply(ctx, &mut state, session, &format!("docker publish {}", container.name), &Plan::new(), |tx, _| {
        delete_published(tx, &container.id)?;
        state::insert_published(tx, &container.id, &specs)
    })
}

/// `RevokeExternalConnectivity`: the published ports go.
pub fn unpublish(ctx: &mut Ctx, docker_ep: &str) -> Result<()> {
    publish(ctx, docker_ep, &[])
}

fn delete_published(tx: &rusqlite::Connection, container_id: &str) -> Result<()> {
    tx.execute("DELETE FROM published WHERE container_id = ?1", [container_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::PortMap;
    use crate::firewall::Proto;

    fn map(host_ip: Option<&str>, host_port: u16, host_port_end: u16) -> PortMap {
        PortMap {
            proto: Proto::Tcp,
            port: 80,
            host_ip: host_ip.map(|ip| ip.parse().unwrap()),
            host_port,
            host_port_end,
        }
    }

    #[test]
    fn docker_port_bindings_become_kleene_specs_or_are_refused() {
        assert_eq!(map(None, 8080, 8080).spec().unwrap(), "8080:80/tcp");
        assert_eq!(map(Some("0.0.0.0"), 8080, 0).spec().unwrap(), "8080:80/tcp");
        assert_eq!(map(Some("::"), 9000, 9001).spec().unwrap(), "9000-9001:80/tcp");
        let local = map(Some("127.0.0.1"), 8080, 8080).spec().unwrap_err().to_string();
        assert_eq!(
            local,
            "kleene publishes ports on every host address, not on 127.0.0.1 alone: drop the address (-p 8080:80/tcp)"
        );
        let ephemeral = map(None, 0, 0).spec().unwrap_err().to_string();
        assert!(ephemeral.starts_with("kleene does not pick host ports"), "{ephemeral}");
    }
}
