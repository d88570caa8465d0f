use clap::{CommandFactory, Parser};
use kleene::cli::{Cli, Command, ContainerCmd, NetworkCmd, PluginCmd, SystemCmd};
use kleene::commands::output::{network_json, print_table};
use kleene::commands::{attach, container, network, plugin, system, Ctx};
use kleene::logging;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A reader that goes away (`kleene network ls | head -1`) ends the command quietly, as it
    // ends every other Unix tool, instead of a panic in println!. (A long-lived server must
    // keep ignoring SIGPIPE: this is for the one-shot CLI.)
    // SAFETY: setting a signal disposition before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    logging::init(cli.global.verbose, cli.global.log.as_deref());
    let mut ctx = Ctx::new(cli.global.clone());
    // Without a server watching the cluster, every command brings this host in line first.
    let syncs = matches!(cli.command, Command::Network(_) | Command::Container(_) | Command::System(_));
    let skipped = if syncs && !ctx.global.dry_run { kleene::cluster::sync::before_command(&mut ctx) } else { None };
    tracing::trace!("command begins");
    let result = run(&mut ctx, cli.command);
    tracing::trace!("command ends");
    if let (Some(why), Ok(_)) = (skipped, &result) {
        tracing::warn!("{why}");
    }
    kleene::cluster::report_round_trips();
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("kleene: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(ctx: &mut Ctx, command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Plugin(PluginCmd::Ls { json }) => plugin::ls(ctx, json)?,
        Command::Plugin(PluginCmd::Inspect { name, json }) => plugin::inspect(ctx, &name, json)?,
        Command::Network(cmd) => network_command(ctx, cmd)?,
        Command::Container(ContainerCmd::Exec { container, command }) => {
            return container::exec(ctx, &container, &command)
        }
        Command::Container(cmd) => container_command(ctx, cmd)?,
        Command::System(SystemCmd::Reconcile) => system::reconcile(ctx)?,
        Command::Serve { socket, docker_socket, no_docker } => {
            let docker = docker_socket.or_else(kleene::server::default_docker_socket).filter(|_| !no_docker);
            kleene::server::serve(ctx, socket, docker)?
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kleene", &mut std::io::stdout());
        }
        Command::Manpage => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?,
    }
    Ok(0)
}

/// Print what a mutating command made or removed (nothing under --dry-run, which printed
/// its commands instead).
fn print_ids(ctx: &Ctx, ids: &[String]) {
    if !ctx.global.dry_run {
        ids.iter().for_each(|id| println!("{id}"));
    }
}

fn print_json(doc: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(doc)?);
    Ok(())
}

/// Run a command that removes several things: the ids removed are printed even when a later
/// one is refused.
fn removing(ctx: &mut Ctx, f: impl FnOnce(&mut Ctx, &mut Vec<String>) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut removed = Vec::new();
    let result = f(ctx, &mut removed);
    print_ids(ctx, &removed);
    result
}

fn network_command(ctx: &mut Ctx, cmd: NetworkCmd) -> anyhow::Result<()> {
    match cmd {
        NetworkCmd::Create(args) => {
            let id = network::create(ctx, &args)?;
            print_ids(ctx, &[id]);
        }
        NetworkCmd::Ls { json: true } => print_json(&network::ls(ctx)?.iter().map(network_json).collect::<Vec<_>>())?,
        NetworkCmd::Ls { json: false } => {
            let rows = network::ls(ctx)?.into_iter().map(|n| {
                let subnets = [n.subnet, n.subnet6].iter().flatten().map(|s| s.to_string()).collect::<Vec<_>>();
                vec![n.id, n.name, n.kind, n.interface, subnets.join(",")]
            });
            print_table(&["NETWORK ID", "NAME", "TYPE", "INTERFACE", "SUBNETS"], rows);
        }
        NetworkCmd::Inspect { network } => print_json(&network::inspect(ctx, &network)?)?,
        NetworkCmd::Rm { networks } => removing(ctx, |ctx, removed| network::rm(ctx, &networks, removed))?,
        NetworkCmd::Prune { .. } => removing(ctx, network::prune)?,
        NetworkCmd::Connect { ip, ip6, aliases, network, container } => {
            attach::connect(ctx, &network, &container, ip.as_deref(), ip6.as_deref(), &aliases)?
        }
        NetworkCmd::Disconnect { network, container } => attach::disconnect(ctx, &network, &container)?,
    }
    Ok(())
}

fn container_command(ctx: &mut Ctx, cmd: ContainerCmd) -> anyhow::Result<()> {
    match cmd {
        ContainerCmd::Create(args) => {
            let id = container::create(ctx, &args)?;
            print_ids(ctx, &[id]);
        }
        // As before the API existed, start and stop print nothing on success.
        ContainerCmd::Start { container } => drop(container::start(ctx, &container)?),
        ContainerCmd::Stop { container } => drop(container::stop(ctx, &container)?),
        ContainerCmd::Rm { force, containers } => {
            removing(ctx, |ctx, removed| container::rm(ctx, &containers, force, removed))?
        }
        ContainerCmd::Ls { all, json: true } => print_json(&container::ls(ctx, all)?)?,
        ContainerCmd::Ls { all, json: false } => {
            let rows = container::ls(ctx, all)?.into_iter().map(|c| {
                let status = if c["running"] == true { "running" } else { "stopped" };
                [&c["id"], &c["name"], &c["network_driver"]]
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .chain(std::iter::once(status.to_string()))
                    .collect()
            });
            print_table(&["CONTAINER ID", "NAME", "DRIVER", "STATUS"], rows);
        }
        ContainerCmd::Inspect { container } => print_json(&container::inspect(ctx, &container)?)?,
        ContainerCmd::Exec { .. } => unreachable!("handled by run"),
    }
    Ok(())
}
