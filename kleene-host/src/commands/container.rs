//! `kleene container ...`: create, start, stop, rm, ls, inspect, exec.

use super::attach::{self, attachments, check_matrix, new_endpoint, planned_links, record_endpoint};
use super::output::endpoint_json;
use super::{apply, validate_name, Ctx};
use crate::cli::ContainerCreate;
use crate::firewall;
use crate::state::{self, State};
use anyhow::{bail, Result};
use kleene_plugin_api::{Attachment, Call, Container, DefaultFor, Plan, PluginKind, Stack};
use rusqlite::Connection;
use serde_json::json;

/// Create a container (stopped); its id.
pub fn create(ctx: &mut Ctx, args: &ContainerCreate) -> Result<String> {
    validate_name("container", &args.name)?;
    // As klee: one default driver without a network, another with one (plugins declare them).
    let driver = match &args.driver {
        Some(d) => d.clone(),
        None if args.network.is_some() => ctx.default_plugin(PluginKind::Driver, DefaultFor::DriverWithNetwork)?,
        None => ctx.default_plugin(PluginKind::Driver, DefaultFor::DriverWithoutNetwork)?,
    };
    let driver = driver.as_str();
    let stack = ctx.plugin(driver, PluginKind::Driver)?.stack();
    if !args.publish.is_empty() {
        firewall::check_can_publish(driver, stack).map_err(anyhow::Error::msg)?;
    }
    let aliases = crate::dns::parse_aliases(&args.aliases)?;
    let mut ports = Vec::new();
    for spec in &args.publish {
        ports.push(firewall::parse_publish(spec).map_err(anyhow::Error::msg)?);
    }
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    if state::resolve(&state.db, "containers", "container", &args.name)
        .is_ok_and(|id| state::container_by_id(&state.db, &id).is_ok_and(|c| c.name == args.name))
    {
        bail!("container name is already taken");
    }
    check_port_conflicts(&state, &ports)?;
    let container =
        Container { id: state::new_id(), name: args.name.to_string(), driver: driver.to_string(), running: false };
    let endpoint = match args.network.as_deref() {
        None => None,
        Some(net) => {
            let id = state::resolve(&state.db, "networks", "network", net)?;
            let row = state::network_by_id(&state.db, &id)?;
            check_matrix(ctx, driver, &row.network)?;
            Some(new_endpoint(&state.db, &row.network, &container.id, args.ip.as_deref(), args.ip6.as_deref())?)
        }
    };
    let plan = kleene_plugin_api::Plan::new();
    apply(ctx, &mut state, session, &format!("container create {}", container.name), &plan, |tx, _| {
        state::insert_container(tx, &container, stack)?;
        state::insert_published(tx, &container.id, &args.publish)?;
        if let Some(config) = &args.config {
            state::set_container_config(tx, &container.id, config)?;
        }
        endpoint.iter().try_for_each(|ep| {
            record_endpoint(tx, ep)?;
            state::set_endpoint_aliases(tx, &ep.id, &aliases)
        })
    })?;
    Ok(container.id)
}

/// Whether two published ports claim a common host port of one protocol on some interface.
fn overlap(a: &firewall::Published, b: &firewall::Published) -> bool {
    a.proto == b.proto
        && a.host.0 <= b.host.1
        && b.host.0 <= a.host.1
        && (a.interface.is_none() || b.interface.is_none() || a.interface == b.interface)
}

/// Refuse a host port (and protocol) another container already publishes, running or not
/// (the firewall could only give it to one of them), or that this container lists twice.
pub(super) fn check_port_conflicts(state: &State, ports: &[firewall::Published]) -> Result<()> {
    check_port_conflicts_except(state, ports, None)
}

/// [`check_port_conflicts`], leaving out the ports container `except` publishes now (those
/// it is about to replace).
pub(super) fn check_port_conflicts_except(
    state: &State,
    ports: &[firewall::Published],
    except: Option<&str>,
) -> Result<()> {
    let describe = |p: &firewall::Published| format!("{}/{}", firewall::fmt_ports(p.host, "-"), p.proto.as_str());
    for (i, p) in ports.iter().enumerate() {
        if let Some(q) = ports[..i].iter().find(|q| overlap(p, q)) {
            bail!("host port {} is published twice (overlaps {})", describe(p), describe(q));
        }
    }
    if ports.is_empty() {
        return Ok(());
    }
    for (id, specs) in state::published(&state.db)?.into_iter().filter(|(id, _)| Some(id.as_str()) != except) {
        for spec in specs {
            let Ok(theirs) = firewall::parse_publish(&spec) else { continue };
            if let Some(p) = ports.iter().find(|p| overlap(p, &theirs)) {
                let name = state::container_by_id(&state.db, &id).map_or(id.clone(), |c| c.name);
                bail!("host port {} is already published by container '{name}' ({spec})", describe(p));
            }
        }
    }
    Ok(())
}

fn find(state: &State, ident: &str) -> Result<Container> {
    let id = state::resolve(&state.db, "containers", "container", ident)?;
    state::container_by_id(&state.db, &id)
}

/// [`find`], for a change: a container another runtime owns is refused.
fn find_own(state: &State, ident: &str) -> Result<Container> {
    let c = find(state, ident)?;
    attach::ensure_kleenes(state, &c)?;
    Ok(c)
}

/// Start a container; its id.
pub fn start(ctx: &mut Ctx, ident: &str) -> Result<String> {
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    let container = find_own(&state, ident)?;
    if container.running {
        bail!("container {} is already running", container.name);
    }
    super::adopted::refuse_start(&state, &container)?;
    let (plan, attachments) = start_plan(ctx, &state, &container)?;
    apply(ctx, &mut state, session, &format!("container start {}", container.name), &plan, |tx, _| {
        record_start(tx, &container, &attachments)
    })?;
    Ok(container.id)
}

/// The driver's start plan, and the attachments with the pair names it chose.
pub fn start_plan(ctx: &mut Ctx, state: &State, container: &Container) -> Result<(Plan, Vec<Attachment>)> {
    let mut attachments = attachments(&state.db, &container.id)?;
    let driver = ctx.plugin(&container.driver, PluginKind::Driver)?;
    let running = Container { running: true, ..container.clone() };
    let plan = driver.plan(&Call::ContainerStart { container: running, attachments: attachments.clone() })?;
    for a in &mut attachments {
        if let Some((host, peer)) = planned_links(&plan, &a.network) {
            a.endpoint.epair = Some(host);
            a.endpoint.interface = Some(peer);
        }
    }
    Ok((plan, attachments))
}

/// Record a started container: running, and its endpoints' link names (the planned ones: the
/// FreeBSD script renames the host end of each pair it creates to the planned name).
pub fn record_start(tx: &Connection, c: &Container, attachments: &[Attachment]) -> Result<()> {
    state::set_running(tx, &c.id, true)?;
    for a in attachments {
        state::update_endpoint_links(tx, &a.endpoint)?;
    }
    Ok(())
}

/// Stop a container; its id.
pub fn stop(ctx: &mut Ctx, ident: &str) -> Result<String> {
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    let container = find_own(&state, ident)?;
    if !container.running {
        bail!("container {} is not running", container.name);
    }
    let id = container.id.clone();
    stop_running(ctx, &mut state, session, container)?;
    Ok(id)
}

fn stop_running(ctx: &mut Ctx, state: &mut State, session: super::Session, container: Container) -> Result<()> {
    let attachments = attachments(&state.db, &container.id)?;
    let plan = stop_plan(ctx, state, &container)?;
    apply(ctx, state, session, &format!("container stop {}", container.name), &plan, |tx, _| {
        state::set_running(tx, &container.id, false)?;
        for a in &attachments {
            let cleared = kleene_plugin_api::Endpoint { epair: None, interface: None, ..a.endpoint.clone() };
            state::update_endpoint_links(tx, &cleared)?;
        }
        Ok(())
    })
}

/// The driver's stop plan for a running container.
pub fn stop_plan(ctx: &mut Ctx, state: &State, container: &Container) -> Result<Plan> {
    let attachments = attachments(&state.db, &container.id)?;
    let driver = ctx.plugin(&container.driver, PluginKind::Driver)?;
    driver.plan(&Call::ContainerStop { container: container.clone(), attachments })
}

/// Remove containers (`force`: stopping running ones first); the ids removed go to `removed`
/// as they go, so a refusal part-way still reports them.
pub fn rm(ctx: &mut Ctx, idents: &[String], force: bool, removed: &mut Vec<String>) -> Result<()> {
    for ident in idents {
        let mut state = ctx.state()?;
        let container = find_own(&state, ident)?;
        if container.running {
            if !force {
                bail!("container {} is running: stop it first or use rm -f", container.name);
            }
            let session = ctx.begin(&state)?;
            stop_running(ctx, &mut state, session, container.clone())?;
        }
        let session = ctx.begin(&state)?;
        let endpoints = state::endpoints_where(&state.db, "container_id", &container.id)?;
        let plan = kleene_plugin_api::Plan::new();
        apply(ctx, &mut state, session, &format!("container rm {}", container.name), &plan, |tx, _| {
            endpoints.iter().try_for_each(|ep| attach::forget_endpoint(tx, ep))?;
            state::delete_container(tx, &container.id)
        })?;
        removed.push(container.id);
    }
    Ok(())
}

/// Containers (`all`: stopped ones too), oldest first, in Kleene's `ContainerSummary` shape.
pub fn ls(ctx: &Ctx, all: bool) -> Result<Vec<serde_json::Value>> {
    let state = ctx.read_state()?;
    let mut extras = state::container_extras(&state.db)?;
    Ok(state::containers(&state.db)?
        .into_iter()
        .filter(|c| all || c.running)
        .map(|c| {
            let extra = extras.remove(&c.id).unwrap_or_default();
            container_json(&c, &extra)
        })
        .collect())
}

/// Kleene's container fields. kleene runs no images: what a runtime recorded at create
/// (image, command, ...) is given back as it was given; `created` is ISO-8601 as klee expects.
fn container_json(c: &Container, extra: &state::ContainerExtra) -> serde_json::Value {
    let config = &extra.config;
    let field = |name: &str, default: serde_json::Value| config.get(name).cloned().unwrap_or(default);
    json!({
        "id": c.id, "name": c.name, "network_driver": c.driver, "running": c.running,
        "created": humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(extra.created.max(0) as u64)
        ).to_string(),
        "image_id": field("image", json!("")),
        "cmd": field("cmd", json!([])),
        "user": field("user", json!("")),
        "env": field("env", json!([])),
        "jail_param": field("jail_param", json!([])),
        "persist": field("persist", json!(false)),
        "restart_policy": field("restart_policy", json!("no")),
        "dataset": "",
        "pid": null,
    })
}

/// A container, its endpoints and its published ports.
pub fn inspect(ctx: &Ctx, ident: &str) -> Result<serde_json::Value> {
    let state = ctx.read_state()?;
    let c = find(&state, ident)?;
    let extra = state::container_extras(&state.db)?.remove(&c.id).unwrap_or_default();
    let endpoints = state::endpoints_where(&state.db, "container_id", &c.id)?;
    let aliases = state::endpoint_aliases(&state.db)?;
    // The file `container exec` mounts on /etc/resolv.conf (for a runtime to mount itself).
    let resolv_conf = crate::dns::load(&state.db)?
        .resolv
        .contains_key(&c.id)
        .then(|| crate::dns::resolv_conf_path(&ctx.run_dir, &c.id));
    Ok(json!({
        "container": container_json(&c, &extra),
        "container_endpoints": endpoints.iter().map(|e| endpoint_json(e, &aliases)).collect::<Vec<_>>(),
        "published": state::published(&state.db)?.remove(&c.id).unwrap_or_default(),
        "resolv_conf": resolv_conf,
    }))
}

pub fn exec(ctx: &mut Ctx, ident: &str, command: &[String]) -> Result<i32> {
    let state = ctx.read_state()?;
    let c = find_own(&state, ident)?;
    if !c.running {
        bail!("container {} is not running: start it first", c.name);
    }
    // The driver's declared stack says whether the container has a namespace of its own.
    let own_netns = matches!(ctx.plugin(&c.driver, PluginKind::Driver)?.stack(), Stack::Private | Stack::Disabled);
    let resolv_conf = crate::dns::resolv_conf_path(&ctx.run_dir, &c.id);
    ctx.executor()?.exec_in_sandbox(&c.id, own_netns, Some(&resolv_conf), command)
}
