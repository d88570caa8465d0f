//! The command line, as clap types. Option names mirror Kleene's `klee`.

use crate::executor::Os;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "kleene", version, about = "Container networking in the style of Kleene, as a plugin host")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Directories searched for plugins first, colon-separated.
    #[arg(long, global = true, env = "KLEENE_PLUGIN_PATH", value_name = "DIRS")]
    pub plugin_path: Option<String>,
    /// Where kleene keeps its state database.
    #[arg(long, global = true, env = "KLEENE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where kleene keeps runtime files (network namespaces of containers).
    #[arg(long, global = true, env = "KLEENE_RUN_DIR", value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// More output: -v shows plugin and host events, -vv traces every operation.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log filter in tracing's syntax (overrides -v).
    #[arg(long, global = true, env = "KLEENE_LOG", value_name = "FILTER", hide = true)]
    pub log: Option<String>,
    /// Print the plan instead of changing anything.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// etcd client URLs of the cluster this host is in (overlay networks), comma-separated.
    #[arg(long, global = true, env = "KLEENE_CLUSTER", value_name = "URLS")]
    pub cluster: Option<String>,
    /// This host's underlay address in the cluster (tunnels are sent to and from it).
    #[arg(long, global = true, env = "KLEENE_CLUSTER_ADDRESS", value_name = "ADDR")]
    pub cluster_address: Option<String>,
    /// With --dry-run: render the plan as this platform's commands.
    #[arg(long, global = true, value_enum, requires = "dry_run")]
    pub os: Option<Os>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List and inspect plugins.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage containers' network sandboxes.
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Host-wide maintenance.
    #[command(subcommand)]
    System(SystemCmd),
    /// Serve Kleene's HTTP API (kleened's routes) on a unix socket until SIGTERM/SIGINT.
    Serve {
        /// The socket to listen on (a stale socket file is replaced; a live one is refused).
        #[arg(long, env = "KLEENE_SOCKET", default_value = "/var/run/kleened.sock")]
        socket: std::path::PathBuf,
        /// Where Docker's plugin protocol is answered (network driver and IPAM `kleene`).
        /// Default on Linux: /run/docker/plugins/kleene.sock, where Docker finds plugins.
        #[arg(long, env = "KLEENE_DOCKER_SOCKET")]
        docker_socket: Option<std::path::PathBuf>,
        /// Do not answer Docker's plugin protocol.
        #[arg(long, conflicts_with = "docker_socket")]
        no_docker: bool,
    },
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Manpage,
}

#[derive(Subcommand, Debug)]
pub enum PluginCmd {
    /// List every plugin found, including broken and shadowed files.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show one plugin's metadata.
    Inspect {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network and print its id.
    Create(NetworkCreate),
    /// List networks.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show a network, its endpoints and address usage (a JSON document, as `docker inspect`).
    Inspect { network: String },
    /// Remove networks (connected containers are disconnected first).
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove every network without endpoints.
    Prune {
        /// Do not ask for confirmation (kleene never asks; accepted for klee compatibility).
        #[arg(short, long)]
        force: bool,
    },
    /// Connect a container to a network.
    Connect {
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        ip6: Option<String>,
        /// Another name the container answers to in this network's DNS (repeatable).
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect { network: String, container: String },
}

#[derive(Args, Debug, Default)]
pub struct NetworkCreate {
    /// Network type: the name of a network-type plugin (default: the one that declares itself
    /// the default, `loopback` as shipped).
    #[arg(short = 't', long = "type")]
    pub kind: Option<String>,
    /// Interface name (default: the lowest free kleene<N>).
    #[arg(short, long)]
    pub interface: Option<String>,
    #[arg(long)]
    pub subnet: Option<String>,
    #[arg(long)]
    pub subnet6: Option<String>,
    /// IPv4 gateway: auto, none or an address (bridge networks).
    #[arg(long = "gw")]
    pub gw: Option<String>,
    /// IPv6 gateway: auto, none or an address (bridge networks).
    #[arg(long = "gw6")]
    pub gw6: Option<String>,
    /// Interface outbound traffic is NATed to (default: the default-route interface).
    #[arg(long, conflicts_with = "no_nat")]
    pub nat_if: Option<String>,
    /// No NAT for this network.
    #[arg(long)]
    pub no_nat: bool,
    /// Containers of this network may not talk to each other.
    #[arg(long)]
    pub no_icc: bool,
    /// Nothing leaves the network.
    #[arg(long)]
    pub internal: bool,
    /// Serve containers' names on the gateways (the default where the host holds one).
    #[arg(long, conflicts_with = "no_dns")]
    pub dns: bool,
    /// No container DNS on this network.
    #[arg(long)]
    pub no_dns: bool,
    /// MTU of the network's links on every host (cluster networks; default: each host's
    /// underlay MTU less the tunnel's headers, e.g. 1450 under 1500 for VXLAN over IPv4).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// The network's DNS domain: its containers search it, and their names answer qualified
    /// with it (web.DOMAIN) as well as plain.
    #[arg(long, value_name = "DOMAIN", conflicts_with = "no_dns")]
    pub dns_domain: Option<String>,
    pub name: String,
}

#[derive(Args, Debug, Default)]
pub struct ContainerCreate {
    /// Network driver: the name of a driver plugin (default: the one that declares itself
    /// the default, with or without --network: `host` and `ipnet` as shipped).
    #[arg(short = 'l', long)]
    pub driver: Option<String>,
    #[arg(short, long)]
    pub network: Option<String>,
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long)]
    pub ip6: Option<String>,
    /// Another name the container answers to in DNS on --network (repeatable).
    #[arg(long = "alias", value_name = "NAME", requires = "network")]
    pub aliases: Vec<String>,
    /// Publish a port: [IF:]HOST[-END][:CONTAINER|:C-*|:C-CEND|:*][/tcp|/udp] (repeatable).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    pub name: String,
    /// What a runtime gave at create through the API (Kleene's `ContainerConfig`), kept as
    /// given; the CLI has none.
    #[arg(skip)]
    pub config: Option<serde_json::Value>,
}

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Create a container (stopped) and print its id.
    Create(ContainerCreate),
    /// Build the container's sandbox.
    Start { container: String },
    /// Stop every process of the container and tear its sandbox down.
    Stop { container: String },
    /// Remove containers.
    Rm {
        /// Stop running containers first.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers (running only, unless -a).
    Ls {
        #[arg(short, long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show a container and its endpoints (a JSON document, as `docker inspect`).
    Inspect { container: String },
    /// Run a command inside a running container's network context.
    Exec {
        container: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Finish any interrupted operation and re-apply host state.
    Reconcile,
}
