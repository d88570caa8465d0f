//! Shared state literals and rendering helpers of the golden tests.
//!
//! Each plugin's tests are a binary of their own: every plugin rlib exports the same
//! abi_stable root symbol, so two plugins cannot be linked into one binary.

// Each test binary uses a different subset of these helpers and re-exports.
#![allow(dead_code, unused_imports)]

pub use kleene::executor::freebsd::FreeBsdRenderer;
pub use kleene::executor::render_linux::LinuxRenderer;
pub use kleene::executor::{Executor, Fact, Renderer};
pub use kleene_plugin_api::{with_null_host, Attachment, Call, Container, Endpoint, Network, Op, Plugin, Stack};

pub const CID: &str = "c0ffee000001";

// ---- state literals -------------------------------------------------------------------

/// A gateway setting of one family.
#[derive(Clone, Copy)]
pub enum Gw {
    None,
    Auto(&'static str),
    Explicit(&'static str),
}

pub fn network(n: u8, kind: &str, interface: &str) -> Network {
    Network::new(&format!("0000000000{n:02x}"), &format!("net{n}"), kind, interface)
}

pub fn gateway(gw: Gw) -> (Option<std::net::IpAddr>, bool) {
    match gw {
        Gw::None => (None, false),
        Gw::Auto(ip) => (Some(ip.parse().unwrap()), true),
        Gw::Explicit(ip) => (Some(ip.parse().unwrap()), false),
    }
}

pub fn with_v4(mut net: Network, subnet: &str, gw: Gw) -> Network {
    net.subnet = Some(subnet.parse().unwrap());
    (net.gateway, net.gateway_auto) = gateway(gw);
    net
}

pub fn with_v6(mut net: Network, subnet: &str, gw: Gw) -> Network {
    net.subnet6 = Some(subnet.parse().unwrap());
    (net.gateway6, net.gateway6_auto) = gateway(gw);
    net
}

pub fn container(driver: &str, running: bool) -> Container {
    Container { id: CID.into(), name: "web".into(), driver: driver.into(), running }
}

pub fn attach(network: &Network, v4: Option<&str>, v6: Option<&str>) -> Attachment {
    let endpoint = Endpoint {
        id: format!("e{}", &network.id[1..]),
        network_id: network.id.clone(),
        container_id: CID.into(),
        epair: None,
        interface: None,
        ip_address: v4.map(|ip| ip.parse().unwrap()),
        ip_address6: v6.map(|ip| ip.parse().unwrap()),
        mac: None,
    };
    Attachment { network: network.clone(), endpoint }
}

/// An attachment of a running vnet container, with the pair names recorded at its start.
pub fn running(mut a: Attachment, epair: &str, interface: &str) -> Attachment {
    a.endpoint.epair = Some(epair.into());
    a.endpoint.interface = Some(interface.into());
    a
}

pub fn loopback() -> Network {
    with_v6(with_v4(network(1, "loopback", "kleene0"), "10.2.0.0/24", Gw::None), "fd02::/64", Gw::None)
}

pub fn bridge(v4: Gw, v6: Gw) -> Network {
    with_v6(with_v4(network(2, "bridge", "kleene1"), "10.0.0.0/24", v4), "fd00::/64", v6)
}

/// The second vnet network: explicit gateways of both families.
pub fn bridge2() -> Network {
    let net = network(3, "bridge", "kleene2");
    with_v6(with_v4(net, "10.1.0.0/24", Gw::Explicit("10.1.0.254")), "fd01::/64", Gw::Explicit("fd01::fe"))
}

// ---- calls and rendering --------------------------------------------------------------

pub fn create(network: Network) -> Call {
    Call::NetworkCreate { network }
}

pub fn remove(network: Network) -> Call {
    Call::NetworkRemove { network }
}

pub fn start(driver: &str, attachments: Vec<Attachment>) -> Call {
    Call::ContainerStart { container: container(driver, false), attachments }
}

pub fn stop(driver: &str, attachments: Vec<Attachment>) -> Call {
    Call::ContainerStop { container: container(driver, true), attachments }
}

pub fn connect(driver: &str, attachment: Attachment, others: Vec<Attachment>) -> Call {
    Call::ContainerConnect { container: container(driver, true), attachment, others }
}

pub fn disconnect(driver: &str, attachment: Attachment, others: Vec<Attachment>) -> Call {
    Call::ContainerDisconnect { container: container(driver, true), attachment, others }
}

/// The plan of `call`, by the real policy.
pub fn plan_of(plugin: &impl Plugin, call: &Call) -> kleene_plugin_api::Plan {
    with_null_host(|h| plugin.plan(call, h)).expect("the plugin accepts the call")
}

/// Plan `call` with the real policy, then render it as the host would run it.
pub fn render_with<R: Renderer + Default>(plugin: &impl Plugin, call: &Call) -> R {
    let plan = with_null_host(|h| plugin.plan(call, h)).expect("the plugin accepts the call");
    let mut renderer = R::default();
    plan.checks.iter().for_each(|c| renderer.check(c).unwrap());
    for step in &plan.steps {
        renderer.apply_step(&step.op, &step.undo).unwrap();
    }
    renderer.finish().unwrap();
    renderer
}

/// The FreeBSD lines of `call` (after the script's fixed prologue), checked to be a script
/// `sh -n` accepts.
pub fn freebsd(plugin: &impl Plugin, call: Call) -> Vec<String> {
    let renderer = render_with::<FreeBsdRenderer>(plugin, &call);
    assert_sh_syntax(&renderer.script());
    renderer.lines().to_vec()
}

/// `sh -n` (dash here; FreeBSD's sh is its sibling) accepts `script`.
pub fn assert_sh_syntax(script: &[String]) {
    let out = std::process::Command::new("sh").arg("-n").arg("-c").arg(script.join("\n")).output().unwrap();
    assert!(out.status.success(), "sh -n: {}\n{}", String::from_utf8_lossy(&out.stderr), script.join("\n"));
}

pub fn linux(plugin: &impl Plugin, call: Call) -> Vec<String> {
    render_with::<LinuxRenderer>(plugin, &call).lines().to_vec()
}

/// A `jail -c` line with one parameter per element.
pub fn jail_c(params: &[&str]) -> String {
    let mut line = format!("jail -c path=/ name={CID} persist");
    params.iter().for_each(|p| line = format!("{line} {p}"));
    line
}

/// The script's guard for a network type that creates `name`: refuse an interface already
/// there.
pub fn guard_absent(name: &str) -> String {
    format!(
        "if ifconfig {name} >/dev/null 2>&1; then echo 'kleene: interface {name} already exists; kleene will not take it over: pick another name with -i, or use a custom network' >&2; exit 1; fi"
    )
}

/// `lines` after the guard of a network type that creates `name`.
pub fn guarded(name: &str, expected: &[&str]) -> Vec<String> {
    std::iter::once(guard_absent(name)).chain(lines(expected)).collect()
}

/// The `jail -c` line, then the registration of the jail's removal should a later command
/// fail.
pub fn jail_c_registered(params: &[&str]) -> Vec<String> {
    vec![jail_c(params), format!("on_failure 'jail -r {CID}'")]
}

pub fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|s| s.to_string()).collect()
}
