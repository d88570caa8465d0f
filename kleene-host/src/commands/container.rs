//! `kleene container ...`: create, start, stop, rm, ls, inspect, exec.

use super::attach::{self, attachments, check_matrix, new_endpoint, planned_links, record_endpoint};
use super::output::{endpoint_json, print_table};
use super::{apply, validate_name, Ctx};
use crate::firewall;
use crate::state::{self, State};
use anyhow::{bail, Result};
use kleene_plugin_api::{Attachment, Call, Container, DefaultFor, Plan, PluginKind, Stack};
use rusqlite::Connection;
use serde_json::json;

pub struct CreateArgs<'a> {
    pub name: &'a str,
    pub driver: Option<&'a str>,
    pub network: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub ip6: Option<&'a str>,
    /// `--publish` specs, as given.
    pub publish: &'a [String],
}

pub fn create(ctx: &mut Ctx, args: CreateArgs<'_>) -> Result<()> {
    validate_name("container", args.name)?;
    // As klee: one default driver without a network, another with one (plugins declare them).
    let driver = match args.driver {
        Some(d) => d.to_string(),
        None if args.network.is_some() => ctx.default_plugin(PluginKind::Driver, DefaultFor::DriverWithNetwork)?,
        None => ctx.default_plugin(PluginKind::Driver, DefaultFor::DriverWithoutNetwork)?,
    };
    let driver = driver.as_str();
    let stack = ctx.plugin(driver, PluginKind::Driver)?.stack();
    if !args.publish.is_empty() {
        firewall::check_can_publish(driver, stack).map_err(anyhow::Error::msg)?;
    }
    let mut ports = Vec::new();
    for spec in args.publish {
        ports.push(firewall::parse_publish(spec).map_err(anyhow::Error::msg)?);
    }
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    if state::resolve(&state.db, "containers", "container", args.name)
        .is_ok_and(|id| state::container_by_id(&state.db, &id).is_ok_and(|c| c.name == args.name))
    {
        bail!("container name is already taken");
    }
    check_port_conflicts(&state, &ports)?;
    let container =
        Container { id: state::new_id(), name: args.name.to_string(), driver: driver.to_string(), running: false };
    let endpoint = match args.network {
        None => None,
        Some(net) => {
            let id = state::resolve(&state.db, "networks", "network", net)?;
            let row = state::network_by_id(&state.db, &id)?;
            check_matrix(ctx, driver, &row.network)?;
            Some(new_endpoint(&state.db, &row.network, &container.id, args.ip, args.ip6)?)
        }
    };
    let plan = kleene_plugin_api::Plan::new();
    apply(ctx, &mut state, session, &format!("container create {}", container.name), &plan, |tx, _| {
        state::insert_container(tx, &container, stack)?;
        state::insert_published(tx, &container.id, args.publish)?;
        endpoint.iter().try_for_each(|ep| record_endpoint(tx, ep))
    })?;
    if !ctx.global.dry_run {
        println!("{}", container.id);
    }
    Ok(())
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
fn check_port_conflicts(state: &State, ports: &[firewall::Published]) -> Result<()> {
    let describe = |p: &firewall::Published| format!("{}/{}", firewall::fmt_ports(p.host, "-"), p.proto.as_str());
    for (i, p) in ports.iter().enumerate() {
        if let Some(q) = ports[..i].iter().find(|q| overlap(p, q)) {
            bail!("host port {} is published twice (overlaps {})", describe(p), describe(q));
        }
    }
    let names: std::collections::HashMap<String, String> =
        state::containers(&state.db)?.into_iter().map(|c| (c.id, c.name)).collect();
    for (id, specs) in state::published(&state.db)? {
        for spec in specs {
            let Ok(theirs) = firewall::parse_publish(&spec) else { continue };
            if let Some(p) = ports.iter().find(|p| overlap(p, &theirs)) {
                let name = names.get(&id).map(String::as_str).unwrap_or(&id);
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

pub fn start(ctx: &mut Ctx, ident: &str) -> Result<()> {
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    let container = find(&state, ident)?;
    if container.running {
        bail!("container {} is already running", container.name);
    }
    let (plan, attachments) = start_plan(ctx, &state, &container)?;
    apply(ctx, &mut state, session, &format!("container start {}", container.name), &plan, |tx, _| {
        record_start(tx, &container, &attachments)
    })
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

pub fn stop(ctx: &mut Ctx, ident: &str) -> Result<()> {
    let mut state = ctx.state()?;
    let session = ctx.begin(&state)?;
    let container = find(&state, ident)?;
    if !container.running {
        bail!("container {} is not running", container.name);
    }
    stop_running(ctx, &mut state, session, container)
}

fn stop_running(
    ctx: &mut Ctx,
    state: &mut State,
    session: Option<(state::HostLock, Box<dyn crate::executor::Executor>)>,
    container: Container,
) -> Result<()> {
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

pub fn rm(ctx: &mut Ctx, idents: &[String], force: bool) -> Result<()> {
    for ident in idents {
        let mut state = ctx.state()?;
        let container = find(&state, ident)?;
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
        if !ctx.global.dry_run {
            println!("{}", container.id);
        }
    }
    Ok(())
}

pub fn ls(ctx: &Ctx, all: bool, json: bool) -> Result<()> {
    let state = ctx.read_state()?;
    let list: Vec<Container> = state::containers(&state.db)?.into_iter().filter(|c| all || c.running).collect();
    if json {
        let docs: Vec<_> = list.iter().map(container_json).collect();
        println!("{}", serde_json::to_string_pretty(&docs)?);
        return Ok(());
    }
    let rows = list.iter().map(|c| {
        vec![c.id.clone(), c.name.clone(), c.driver.clone(), if c.running { "running" } else { "stopped" }.to_string()]
    });
    print_table(&["CONTAINER ID", "NAME", "DRIVER", "STATUS"], rows);
    Ok(())
}

fn container_json(c: &Container) -> serde_json::Value {
    json!({"id": c.id, "name": c.name, "network_driver": c.driver, "running": c.running})
}

pub fn inspect(ctx: &Ctx, ident: &str) -> Result<()> {
    let state = ctx.read_state()?;
    let c = find(&state, ident)?;
    let endpoints = state::endpoints_where(&state.db, "container_id", &c.id)?;
    let doc = json!({
        "container": container_json(&c),
        "container_endpoints": endpoints.iter().map(endpoint_json).collect::<Vec<_>>(),
        "published": state::published(&state.db)?.remove(&c.id).unwrap_or_default(),
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

pub fn exec(ctx: &mut Ctx, ident: &str, command: &[String]) -> Result<i32> {
    let state = ctx.read_state()?;
    let c = find(&state, ident)?;
    if !c.running {
        bail!("container {} is not running: start it first", c.name);
    }
    let stack = ctx.plugin(&c.driver, PluginKind::Driver)?.stack();
    #[cfg(target_os = "linux")]
    {
        use crate::executor::linux::spawn::{self, NetworkScope};
        let scope = match stack {
            Stack::Private | Stack::Disabled => NetworkScope::Own,
            Stack::Host | Stack::Restricted => NetworkScope::Host,
        };
        spawn::run(ctx.trusted_run_dir()?, &c.id, scope, command)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (command, stack);
        bail!("container exec is only implemented on Linux")
    }
}
