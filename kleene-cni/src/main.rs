//! kleene-cni: a CNI plugin (spec 1.1.0) that attaches the sandboxes of any CNI runtime
//! (containerd, CRI-O, Kubernetes, podman) to kleene networks. Each invocation is a front
//! end of kleene's service layer (`kleene::commands::adopted`): the runtime's namespace is
//! adopted as an ordinary kleene container's sandbox, so addresses come from kleene's IPAM,
//! the firewall includes it and `kleene container ls` shows it. See docs/runtimes.md.

mod protocol;

use kleene::commands::adopted::{self, Adopted, Adoption};
use kleene::commands::Ctx;
use protocol::{Code, Command, Env, Error, NetConf};
use serde_json::{json, Map, Value};
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    kleene::logging::init(0, std::env::var("KLEENE_LOG").ok().as_deref());
    let mut input = String::new();
    let read = std::io::stdin().read_to_string(&mut input);
    // Errors answer in the configuration's version when it has one the plugin speaks.
    let asked = serde_json::from_str::<Value>(&input).ok().and_then(|v| v["cniVersion"].as_str().map(String::from));
    let version = asked.filter(|v| protocol::check_version(v).is_ok()).unwrap_or_else(|| "1.1.0".into());
    let outcome = match read {
        Err(e) => {
            Err(Error::new(Code::Io, "cannot read the network configuration from stdin").with_details(e.to_string()))
        }
        Ok(_) => run(&input),
    };
    match outcome {
        Ok(Some(doc)) => {
            println!("{doc}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::warn!("{}{}", e.msg, e.details.as_deref().map(|d| format!(": {d}")).unwrap_or_default());
            println!("{}", e.to_json(&version));
            ExitCode::FAILURE
        }
    }
}

fn run(input: &str) -> Result<Option<Value>, Error> {
    let command = Command::parse(&std::env::var("CNI_COMMAND").unwrap_or_default())?;
    if command == Command::Version {
        let asked = serde_json::from_str::<Value>(input).ok();
        let asked = asked.as_ref().and_then(|v| v["cniVersion"].as_str()).unwrap_or_default();
        return Ok(Some(protocol::version_json(asked)));
    }
    let conf = NetConf::parse(input)?;
    protocol::check_version(&conf.cni_version)?;
    if command == Command::Check && conf.cni_version.starts_with("0.3.") {
        return Err(Error::new(Code::IncompatibleVersion, "CHECK needs CNI version 0.4.0 or later"));
    }
    for field in protocol::unknown_fields(input) {
        tracing::debug!("ignoring configuration field {field:?}");
    }
    let env = Env::from_process();
    let mut ctx = context(&conf);
    match command {
        Command::Add => add(&mut ctx, &conf, &env).map(Some),
        Command::Del => del(&mut ctx, &env).map(|()| None),
        Command::Check => check(&mut ctx, &env).map(|()| None),
        Command::Status => status(&mut ctx, &conf).map(|()| None),
        Command::Gc => gc(&mut ctx, &conf).map(|()| None),
        Command::Version => unreachable!("answered above"),
    }
}

/// kleene's context: the configuration's directories, else kleene's environment variables,
/// else its defaults; plugins are looked for next to the CNI bin dir too
/// (`<cni bin>/../kleene/plugins`, where `cargo xtask stage` puts them).
fn context(conf: &NetConf) -> Ctx {
    let env_path = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("../kleene/plugins")));
    let plugin_path = conf
        .plugin_dir
        .clone()
        .or_else(|| std::env::var("KLEENE_PLUGIN_PATH").ok().filter(|v| !v.is_empty()))
        .or_else(|| beside.filter(|d| d.is_dir()).map(|d| d.display().to_string()));
    let env_text = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Ctx::new(kleene::cli::Global {
        plugin_path,
        state_dir: conf.state_dir.clone().or_else(|| env_path("KLEENE_STATE_DIR")),
        run_dir: conf.run_dir.clone().or_else(|| env_path("KLEENE_RUN_DIR")),
        verbose: 0,
        log: None,
        dry_run: false,
        // A container on a cluster (overlay) network is announced to the cluster as the CLI's.
        cluster: env_text("KLEENE_CLUSTER"),
        cluster_address: env_text("KLEENE_CLUSTER_ADDRESS"),
        os: None,
    })
}

/// The container id of an attachment: the same tuple gives the same id in every invocation.
/// The state dir is part of the key: ids name host-wide things (cgroups), so two kleenes on
/// one host (another state dir) must not derive the same ones.
fn container_id(ctx: &Ctx, runtime_id: &str, ifname: &str) -> String {
    adopted::derived_id(&format!("{}\0{runtime_id}/{ifname}", ctx.state_dir.display()))
}

/// A container's name for one of its interfaces: `-IFNAME` appended unless it is `eth0`.
fn per_interface(name: &str, ifname: &str) -> String {
    if ifname == "eth0" {
        name.to_string()
    } else {
        format!("{name}-{ifname}")
    }
}

/// The container's kleene name: the runtime's id (with the interface when not `eth0`), or,
/// when that is no valid kleene name, `cni-<id>`.
fn container_name(runtime_id: &str, ifname: &str, id: &str) -> String {
    let name = per_interface(runtime_id, ifname);
    match kleene::commands::validate_name("container", &name) {
        Ok(()) => name,
        Err(_) => format!("cni-{id}"),
    }
}

/// kleene's refusal or failure as a CNI error: a missing network is the configuration's fault.
fn kleene_error(what: &str, e: anyhow::Error) -> Error {
    let code = if kleene::error::is_not_found(&e) { Code::InvalidConfig } else { Code::Kleene };
    Error::new(code, format!("{what}: {e:#}"))
}

fn add(ctx: &mut Ctx, conf: &NetConf, env: &Env) -> Result<Value, Error> {
    let (runtime_id, ifname) = (env.container_id()?, env.ifname()?);
    let netns = env.netns.as_deref().ok_or_else(|| Error::new(Code::InvalidEnvironment, "CNI_NETNS is not set"))?;
    let id = container_id(ctx, runtime_id, ifname);
    let (ip, ip6) = requested_addresses(&conf.runtime_config.ips)?;
    let publish = published(&conf.runtime_config.port_mappings)?;
    let mut config = Map::new();
    config.insert(
        "cni".into(),
        json!({ "containerID": runtime_id, "ifname": ifname, "network": conf.name, "netns": netns }),
    );
    // The runtime's name for the container, so that it answers in DNS by it (the container
    // id, podman's 64 hex digits, is longer than a DNS label); another interface of it gets
    // the interface's name appended, as the id-based name does.
    let runtime_name = env.arg("K8S_POD_NAME").map(|n| per_interface(n, ifname));
    let adoption = Adoption {
        id: &id,
        name: &container_name(runtime_id, ifname, &id),
        preferred_name: runtime_name.as_deref(),
        driver: conf.driver(),
        network: conf.network(),
        netns,
        interface: ifname,
        ip,
        ip6,
        publish: &publish,
        config,
    };
    let a = adopted::attach(ctx, &adoption).map_err(|e| kleene_error("cannot attach the container", e))?;
    let result = success(&conf.cni_version, &a, netns, conf.dns.clone());
    let result = serde_json::to_value(result).expect("a result serialises");
    Ok(match &conf.prev_result {
        Some(prev) => chain(prev, result),
        None => result,
    })
}

/// The `ips` capability: at most one address of each family (a prefix, if given, is the
/// network's anyway).
fn requested_addresses(ips: &[String]) -> Result<(Option<IpAddr>, Option<IpAddr>), Error> {
    let (mut v4, mut v6) = (None, None);
    for text in ips {
        let addr = text.split_once('/').map_or(text.as_str(), |(a, _)| a);
        let ip: IpAddr = addr.parse().map_err(|_| {
            Error::new(Code::InvalidConfig, format!("runtimeConfig.ips: {text:?} is not an IP address"))
        })?;
        let slot = if ip.is_ipv4() { &mut v4 } else { &mut v6 };
        if slot.replace(ip).is_some() {
            return Err(Error::new(Code::InvalidConfig, "runtimeConfig.ips: one address per family at most"));
        }
    }
    Ok((v4, v6))
}

/// The `portMappings` capability as kleene's published ports (`HOST:CONTAINER/PROTO`).
fn published(mappings: &[protocol::PortMapping]) -> Result<Vec<String>, Error> {
    mappings
        .iter()
        .map(|m| {
            if m.host_ip.as_deref().is_some_and(|ip| !matches!(ip, "" | "0.0.0.0" | "::")) {
                return Err(Error::new(
                    Code::UnsupportedField,
                    format!("portMappings: hostIP {:?} is not supported: kleene publishes on every address", m.host_ip),
                ));
            }
            let proto = m.protocol.as_deref().unwrap_or("tcp").to_ascii_lowercase();
            Ok(format!("{}:{}/{proto}", m.host_port, m.container_port))
        })
        .collect()
}

/// The `ADD` result of an attachment, in the configuration's spec version.
fn success(version: &str, a: &Adopted, netns: &Path, dns: Option<protocol::Dns>) -> protocol::Success {
    let n = &a.network;
    let ifname = a.endpoint.interface.clone().unwrap_or_default();
    let host_end = a.endpoint.epair.clone().unwrap_or_default();
    let interfaces = vec![
        protocol::Interface { name: host_end, mac: None, sandbox: None },
        protocol::Interface {
            name: ifname,
            mac: a.endpoint.mac.as_ref().map(kleene_plugin_api::mac_string),
            sandbox: Some(netns.display().to_string()),
        },
    ];
    let families = [
        (a.endpoint.ip_address, n.subnet, n.gateway, "4", "0.0.0.0/0"),
        (a.endpoint.ip_address6, n.subnet6, n.gateway6, "6", "::/0"),
    ];
    let (mut ips, mut routes) = (Vec::new(), Vec::new());
    for (ip, subnet, gateway, family, default) in families {
        let (Some(ip), Some(subnet)) = (ip, subnet) else { continue };
        ips.push(protocol::IpConfig {
            version: protocol::ips_carry_version(version).then_some(family),
            address: format!("{ip}/{}", subnet.prefix),
            gateway,
            interface: 1,
        });
        if let Some(gw) = gateway {
            routes.push(protocol::Route { dst: default.into(), gw: Some(gw) });
        }
    }
    // The operator's `dns` wins; else a network that serves names gives its resolver, as
    // the bridge plugin with a DNS plugin or netavark with aardvark-dns would.
    let dns = dns.or_else(|| {
        let nameservers: Vec<String> = a.resolver.nameservers.iter().map(|ip| ip.to_string()).collect();
        let search = a.resolver.domain.iter().cloned().collect();
        (!nameservers.is_empty()).then(|| protocol::Dns { nameservers, search, ..Default::default() })
    });
    protocol::Success { cni_version: version.to_string(), interfaces, ips, routes, dns }
}

/// A result that continues an earlier plugin's (`prevResult`): its interfaces, addresses and
/// routes first, then this plugin's (with their interface indices moved past the earlier ones).
fn chain(prev: &Value, mut ours: Value) -> Value {
    let list = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    let offset = list(prev, "interfaces").len();
    for ip in ours["ips"].as_array_mut().into_iter().flatten() {
        if let Some(i) = ip["interface"].as_u64() {
            ip["interface"] = json!(i as usize + offset);
        }
    }
    for key in ["interfaces", "ips", "routes"] {
        let mut merged = list(prev, key);
        merged.extend(list(&ours, key));
        if !merged.is_empty() {
            ours[key] = Value::Array(merged);
        }
    }
    if ours.get("dns").is_none() {
        if let Some(dns) = prev.get("dns") {
            ours["dns"] = dns.clone();
        }
    }
    ours
}

/// `DEL`: release whatever kleene holds for the attachment; nothing held is success (the
/// runtime may call `DEL` twice, or after a failed `ADD`). The namespace may be gone.
fn del(ctx: &mut Ctx, env: &Env) -> Result<(), Error> {
    let id = container_id(ctx, env.container_id()?, env.ifname()?);
    let released = adopted::release(ctx, &id).map_err(|e| kleene_error("cannot release the container", e))?;
    tracing::debug!("DEL {id}: {}", if released { "released" } else { "nothing held" });
    Ok(())
}

/// `CHECK`: the attachment is in kleene's state and whole in the runtime's namespace.
fn check(ctx: &mut Ctx, env: &Env) -> Result<(), Error> {
    let id = container_id(ctx, env.container_id()?, env.ifname()?);
    let netns = env.netns.as_deref().ok_or_else(|| Error::new(Code::InvalidEnvironment, "CNI_NETNS is not set"))?;
    adopted::verify(ctx, &id, netns).map(drop).map_err(|e| {
        let code = if kleene::error::is_not_found(&e) { Code::UnknownContainer } else { Code::CheckFailed };
        Error::new(code, format!("{e:#}"))
    })
}

/// `STATUS`: whether an `ADD` could succeed now.
fn status(ctx: &mut Ctx, conf: &NetConf) -> Result<(), Error> {
    adopted::usable(ctx, conf.network(), conf.driver())
        .map_err(|e| Error::new(Code::NotAvailable, format!("network {} is not usable: {e:#}", conf.network())))
}

/// `GC`: release every attachment of this CNI network that the runtime no longer lists.
fn gc(ctx: &mut Ctx, conf: &NetConf) -> Result<(), Error> {
    let Some(valid) = &conf.valid_attachments else {
        return Err(Error::new(Code::InvalidConfig, "GC needs cni.dev/valid-attachments"));
    };
    let keep: Vec<String> = valid.iter().map(|v| container_id(ctx, &v.container_id, &v.ifname)).collect();
    let all = adopted::list(ctx).map_err(|e| kleene_error("cannot list attachments", e))?;
    let mut failed = Vec::new();
    for a in all {
        let ours = a.config.get("cni").and_then(|c| c["network"].as_str()) == Some(conf.name.as_str());
        if !ours || keep.contains(&a.container.id) {
            continue;
        }
        tracing::info!("GC: releasing {} ({})", a.container.name, a.container.id);
        if let Err(e) = adopted::release(ctx, &a.container.id) {
            failed.push(format!("{}: {e:#}", a.container.name));
        }
    }
    if !failed.is_empty() {
        return Err(Error::new(Code::Kleene, "cannot release every stale attachment").with_details(failed.join("; ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_runtime_id() {
        assert_eq!(container_name("default-c1", "eth0", "abc"), "default-c1");
        assert_eq!(container_name("default-c1", "net1", "abc"), "default-c1-net1");
        assert_eq!(container_name("bad/id", "eth0", "abc"), "cni-abc");
    }

    #[test]
    fn chained_results_keep_the_earlier_plugins() {
        let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "lo0"}],
                          "ips": [{"address": "10.9.0.2/24", "interface": 0}]});
        let ours = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "kvx"}, {"name": "eth0", "sandbox": "/n"}],
                          "ips": [{"address": "10.0.0.2/24", "interface": 1}]});
        let merged = chain(&prev, ours);
        assert_eq!(merged["interfaces"].as_array().unwrap().len(), 3);
        assert_eq!(merged["ips"][1]["interface"], 2);
        assert_eq!(merged["ips"][0]["address"], "10.9.0.2/24");
    }

    #[test]
    fn port_mappings_become_published_ports() {
        let m =
            protocol::PortMapping { host_port: 8080, container_port: 80, protocol: Some("TCP".into()), host_ip: None };
        assert_eq!(published(&[m]).unwrap(), ["8080:80/tcp"]);
        let bound =
            protocol::PortMapping { host_port: 1, container_port: 1, protocol: None, host_ip: Some("10.0.0.1".into()) };
        assert_eq!(published(&[bound]).unwrap_err().code, Code::UnsupportedField);
    }

    #[test]
    fn requested_addresses_one_per_family() {
        let (v4, v6) = requested_addresses(&["10.0.0.7/24".into(), "fd00::7".into()]).unwrap();
        assert_eq!(v4, Some("10.0.0.7".parse().unwrap()));
        assert_eq!(v6, Some("fd00::7".parse().unwrap()));
        assert!(requested_addresses(&["10.0.0.7".into(), "10.0.0.8".into()]).is_err());
        assert!(requested_addresses(&["nonsense".into()]).is_err());
    }
}
