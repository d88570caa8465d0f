//! The CNI protocol (spec 1.1.0, answering clients of 0.3.x, 0.4.0 and 1.0.0 too): the
//! environment, the network configuration on stdin, and the JSON written to stdout.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::path::PathBuf;

/// The spec versions this plugin speaks, oldest first; the last is its own.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The driver of attachments when the configuration names none: kleene's built-in driver
/// for containers with a network stack of their own.
pub const DEFAULT_DRIVER: &str = "vnet";

/// The spec's well-known error codes (0-99), and kleene's own (100+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    NotAvailable = 50,
    /// kleene refused or failed the change (the message says why).
    Kleene = 100,
    /// `CHECK` found the attachment not as kleene made it.
    CheckFailed = 101,
}

/// An error as the spec has plugins report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub msg: String,
    pub details: Option<String>,
}

impl Error {
    pub fn new(code: Code, msg: impl Into<String>) -> Error {
        Error { code, msg: msg.into(), details: None }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Error {
        self.details = Some(details.into());
        self
    }

    /// The error document, in the given spec version.
    pub fn to_json(&self, version: &str) -> Value {
        let mut doc = serde_json::json!({ "cniVersion": version, "code": self.code as u32, "msg": self.msg });
        if let Some(details) = &self.details {
            doc["details"] = Value::String(details.clone());
        }
        doc
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(text: &str) -> Result<Command, Error> {
        Ok(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            other => {
                return Err(Error::new(Code::InvalidEnvironment, format!("unknown CNI_COMMAND {other:?}"))
                    .with_details("expected ADD, DEL, CHECK, STATUS, GC or VERSION"))
            }
        })
    }
}

/// The `CNI_*` environment of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub container_id: Option<String>,
    /// Empty for a `DEL` whose namespace the runtime no longer has.
    pub netns: Option<PathBuf>,
    pub ifname: Option<String>,
    /// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
    pub args: Option<String>,
}

impl Env {
    /// Read from the process environment (empty variables count as unset).
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Env {
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS").map(PathBuf::from),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
        }
    }

    /// The value of `key` in `CNI_ARGS` (e.g. `K8S_POD_NAME`, which podman sets to the
    /// container's name and Kubernetes to the pod's).
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .as_deref()?
            .split(';')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// A variable the command needs.
    pub fn require<'a>(&self, name: &str, value: &'a Option<String>) -> Result<&'a str, Error> {
        value.as_deref().ok_or_else(|| Error::new(Code::InvalidEnvironment, format!("{name} is not set")))
    }

    pub fn container_id(&self) -> Result<&str, Error> {
        self.require("CNI_CONTAINERID", &self.container_id)
    }

    pub fn ifname(&self) -> Result<&str, Error> {
        self.require("CNI_IFNAME", &self.ifname)
    }
}

/// The network configuration on stdin: the well-known fields, kleene-cni's own, and the
/// runtime's additions (`runtimeConfig`, `prevResult`, GC's valid attachments).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    /// The kleene network to join (default: `name`).
    pub network: Option<String>,
    /// The kleene driver (default: [`DEFAULT_DRIVER`]); its containers must have a network
    /// stack of their own.
    pub driver: Option<String>,
    /// kleene's directories (default: kleene's own defaults, or `KLEENE_STATE_DIR`, ...).
    pub state_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    /// Where kleene's plugins are (colon-separated, searched first).
    pub plugin_dir: Option<String>,
    /// Given back in the result as is.
    pub dns: Option<Dns>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    pub prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

impl NetConf {
    pub fn parse(text: &str) -> Result<NetConf, Error> {
        let conf: NetConf = serde_json::from_str(text).map_err(|e| {
            Error::new(Code::Decode, "cannot decode the network configuration").with_details(e.to_string())
        })?;
        Ok(conf)
    }

    pub fn driver(&self) -> &str {
        self.driver.as_deref().unwrap_or(DEFAULT_DRIVER)
    }

    pub fn network(&self) -> &str {
        self.network.as_deref().unwrap_or(&self.name)
    }
}

/// The capabilities kleene-cni declares: `ips` and `portMappings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// Requested addresses, each `ADDRESS/PREFIX` or `ADDRESS`.
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(rename = "hostIP", default)]
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The result of `ADD`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Success {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`: optional in the spec, required by podman 4's CNI backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IpConfig {
    /// `"4"` or `"6"`: results before 1.0.0 carry it, 1.0.0 dropped it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'static str>,
    /// `ADDRESS/PREFIX`.
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// Whether results of `version` carry the address family in each `ips` entry.
pub fn ips_carry_version(version: &str) -> bool {
    version.starts_with("0.")
}

/// The answer to `VERSION`.
pub fn version_json(asked: &str) -> Value {
    let own = SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1];
    let version = if SUPPORTED_VERSIONS.contains(&asked) { asked } else { own };
    serde_json::json!({ "cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS })
}

/// Refuse a configuration of a spec version this plugin does not speak.
pub fn check_version(version: &str) -> Result<(), Error> {
    if SUPPORTED_VERSIONS.contains(&version) {
        return Ok(());
    }
    Err(Error::new(Code::IncompatibleVersion, format!("kleene-cni does not speak CNI version {version:?}"))
        .with_details(format!("supported: {}", SUPPORTED_VERSIONS.join(", "))))
}

/// Fields of the configuration kleene-cni does not know, for the log (the spec lets a
/// plugin ignore them; `args` is the runtime's to add).
pub fn unknown_fields(text: &str) -> Vec<String> {
    const KNOWN: [&str; 16] = [
        "cniVersion",
        "name",
        "type",
        "network",
        "driver",
        "stateDir",
        "runDir",
        "pluginDir",
        "dns",
        "runtimeConfig",
        "prevResult",
        "cni.dev/valid-attachments",
        "args",
        "capabilities",
        "disableCheck",
        "disableGC",
    ];
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) else { return Vec::new() };
    let fields: Map<String, Value> = fields;
    fields.keys().filter(|k| !KNOWN.contains(&k.as_str())).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_code_msg_and_details() {
        let e = Error::new(Code::UnknownContainer, "gone").with_details("long story");
        assert_eq!(
            e.to_json("1.0.0"),
            serde_json::json!({"cniVersion": "1.0.0", "code": 3, "msg": "gone", "details": "long story"})
        );
    }

    #[test]
    fn ip_version_field_only_before_1_0() {
        assert!(ips_carry_version("0.4.0"));
        assert!(!ips_carry_version("1.0.0"));
    }

    #[test]
    fn version_answers_in_the_asked_version() {
        assert_eq!(version_json("0.4.0")["cniVersion"], "0.4.0");
        assert_eq!(version_json("9.9.9")["cniVersion"], "1.1.0");
        assert!(check_version("0.2.0").is_err());
    }

    #[test]
    fn valid_attachments_parse() {
        let conf = NetConf::parse(
            r#"{"cniVersion":"1.1.0","name":"n","type":"kleene-cni",
                "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(
            conf.valid_attachments.unwrap(),
            [ValidAttachment { container_id: "a".into(), ifname: "eth0".into() }]
        );
        assert_eq!(conf.network.as_deref(), None);
    }
}
