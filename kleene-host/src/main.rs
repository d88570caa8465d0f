use clap::{CommandFactory, Parser};
use kleene::cli::{Cli, Command, ContainerCmd, NetworkCmd, PluginCmd, SystemCmd};
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
    match run(&mut ctx, cli.command) {
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
        Command::Network(cmd) => match cmd {
            NetworkCmd::Create(args) => network::create(ctx, &args)?,
            NetworkCmd::Ls { json } => network::ls(ctx, json)?,
            NetworkCmd::Inspect { network, json } => network::inspect(ctx, &network, json)?,
            NetworkCmd::Rm { networks } => network::rm(ctx, &networks)?,
            NetworkCmd::Prune { .. } => network::prune(ctx)?,
            NetworkCmd::Connect { ip, ip6, network, container } => {
                attach::connect(ctx, &network, &container, ip.as_deref(), ip6.as_deref())?
            }
            NetworkCmd::Disconnect { network, container } => attach::disconnect(ctx, &network, &container)?,
        },
        Command::Container(cmd) => match cmd {
            ContainerCmd::Create { driver, network, ip, ip6, publish, name } => container::create(
                ctx,
                container::CreateArgs {
                    name: &name,
                    driver: driver.as_deref(),
                    network: network.as_deref(),
                    ip: ip.as_deref(),
                    ip6: ip6.as_deref(),
                    publish: &publish,
                },
            )?,
            ContainerCmd::Start { container } => container::start(ctx, &container)?,
            ContainerCmd::Stop { container } => container::stop(ctx, &container)?,
            ContainerCmd::Rm { force, containers } => container::rm(ctx, &containers, force)?,
            ContainerCmd::Ls { all, json } => container::ls(ctx, all, json)?,
            ContainerCmd::Inspect { container, .. } => container::inspect(ctx, &container)?,
            ContainerCmd::Exec { container, command } => return container::exec(ctx, &container, &command),
        },
        Command::System(SystemCmd::Reconcile) => system::reconcile(ctx)?,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kleene", &mut std::io::stdout());
        }
        Command::Manpage => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?,
    }
    Ok(0)
}
