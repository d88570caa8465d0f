//! Docker's remote plugin protocol (libnetwork's remote network driver and remote IPAM), on a
//! socket of its own: POSTs with JSON bodies, named `/Plugin.Activate`,
//! `/NetworkDriver.<Method>` and `/IpamDriver.<Method>`, answered through the service layer
//! (`commands::docker`). The two protocols name their error field differently: `Err` for the
//! network driver, `Error` for IPAM. A body that does not decode is a 400; a refusal is a 200
//! carrying the error field (what libnetwork reads as the call's failure); an unknown method is
//! a 404 (libnetwork takes that as "not implemented").

use super::Service;
use crate::commands::docker::{self, PoolData, PortMap};
use crate::firewall::Proto;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use kleene_plugin_api::Cidr;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::marker::PhantomData;

/// The media type of Docker's plugin protocol, version 1.2.
const MEDIA_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

pub fn router(service: Service) -> Router {
    Router::new()
        .route("/Plugin.Activate", post(|| async { answer(json!({"Implements": ["NetworkDriver", "IpamDriver"]})) }))
        .route(
            "/NetworkDriver.GetCapabilities",
            post(|| async { answer(json!({"Scope": "local", "ConnectivityScope": "local"})) }),
        )
        .route("/NetworkDriver.CreateNetwork", post(create_network))
        .route("/NetworkDriver.DeleteNetwork", post(delete_network))
        .route("/NetworkDriver.CreateEndpoint", post(create_endpoint))
        .route("/NetworkDriver.EndpointOperInfo", post(endpoint_info))
        .route("/NetworkDriver.DeleteEndpoint", post(delete_endpoint))
        .route("/NetworkDriver.Join", post(join))
        .route("/NetworkDriver.Leave", post(leave))
        .route("/NetworkDriver.DiscoverNew", post(discover))
        .route("/NetworkDriver.DiscoverDelete", post(discover))
        .route("/NetworkDriver.ProgramExternalConnectivity", post(program_external))
        .route("/NetworkDriver.RevokeExternalConnectivity", post(revoke_external))
        .route(
            "/IpamDriver.GetCapabilities",
            post(|| async { answer(json!({"RequiresMACAddress": false, "RequiresRequestReplay": false})) }),
        )
        .route(
            "/IpamDriver.GetDefaultAddressSpaces",
            post(|| async {
                answer(json!({"LocalDefaultAddressSpace": "kleene", "GlobalDefaultAddressSpace": "kleene-global"}))
            }),
        )
        .route("/IpamDriver.RequestPool", post(request_pool))
        .route("/IpamDriver.ReleasePool", post(release_pool))
        .route("/IpamDriver.RequestAddress", post(request_address))
        .route("/IpamDriver.ReleaseAddress", post(release_address))
        .fallback(|| async { (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, MEDIA_TYPE)], "{}").into_response() })
        .with_state(service)
}

fn answer(body: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, MEDIA_TYPE)], body.to_string()).into_response()
}

/// Which protocol a call belongs to: its error field.
#[derive(Clone, Copy)]
enum Protocol {
    Network,
    Ipam,
}

impl Protocol {
    fn error(self, status: StatusCode, message: String) -> Response {
        let field = match self {
            Protocol::Network => "Err",
            Protocol::Ipam => "Error",
        };
        tracing::info!(status = status.as_u16(), "docker call refused: {message}");
        (status, [(header::CONTENT_TYPE, MEDIA_TYPE)], json!({ field: message }).to_string()).into_response()
    }

    fn refused(self, e: anyhow::Error) -> Response {
        self.error(StatusCode::OK, format!("{e:#}"))
    }

    /// The body as `T`, or what is wrong with it (for [`Protocol::bad_request`]).
    fn body<T: DeserializeOwned>(self, bytes: &Bytes) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("invalid request body: {e}"))
    }

    /// A body that does not decode: a 4xx, as the protocol asks.
    fn bad_request(self, why: String) -> Response {
        self.error(StatusCode::BAD_REQUEST, why)
    }

    /// Run `f` through the service: its answer, or the refusal.
    async fn call<T: Send + 'static>(
        self,
        service: &Service,
        f: impl FnOnce(&mut crate::commands::Ctx) -> anyhow::Result<T> + Send + 'static,
        reply: impl FnOnce(T) -> Value,
    ) -> Response {
        match service.call(f).await {
            Ok(v) => answer(reply(v)),
            Err(e) => self.refused(e),
        }
    }
}

/// A request body decoded as `T` before the handler runs; one that does not decode is
/// answered 400 in the error field of protocol `P` ([`Net`] or [`Ip`]).
struct Body<P, T>(T, PhantomData<P>);
type NetworkBody<T> = Body<Net, T>;
type IpamBody<T> = Body<Ip, T>;

trait Which {
    const PROTOCOL: Protocol;
}
struct Net;
struct Ip;
impl Which for Net {
    const PROTOCOL: Protocol = Protocol::Network;
}
impl Which for Ip {
    const PROTOCOL: Protocol = Protocol::Ipam;
}

impl<P: Which, T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<P, T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        P::PROTOCOL.body(&bytes).map(|t| Body(t, PhantomData)).map_err(|e| P::PROTOCOL.bad_request(e))
    }
}

/// Docker's `IPAMData`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamData {
    pool: String,
    gateway: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(default)]
    options: Map<String, Value>,
    #[serde(rename = "IPv4Data", default)]
    ipv4_data: Option<Vec<IpamData>>,
    #[serde(rename = "IPv6Data", default)]
    ipv6_data: Option<Vec<IpamData>>,
}

/// Docker puts `-o` options under this key of a network's options.
const GENERIC: &str = "com.docker.network.generic";

fn first_pool(data: Option<Vec<IpamData>>) -> Option<PoolData> {
    let d = data?.into_iter().next()?;
    Some(PoolData { pool: d.pool, gateway: d.gateway })
}

async fn create_network(State(s): State<Service>, Body(req, _): NetworkBody<CreateNetwork>) -> Response {
    let p = Protocol::Network;
    let generic = req.options.get(GENERIC).and_then(|g| g.as_object()).cloned().unwrap_or_default();
    let (v4, v6) = (first_pool(req.ipv4_data), first_pool(req.ipv6_data));
    p.call(&s, move |ctx| docker::create_network(ctx, &req.network_id, &generic, v4, v6), |()| json!({})).await
}

#[derive(Deserialize)]
struct NetworkOnly {
    #[serde(rename = "NetworkID")]
    network_id: String,
}

async fn delete_network(State(s): State<Service>, Body(req, _): NetworkBody<NetworkOnly>) -> Response {
    let p = Protocol::Network;
    p.call(&s, move |ctx| docker::delete_network(ctx, &req.network_id), |()| json!({})).await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Interface {
    address: String,
    #[serde(rename = "AddressIPv6")]
    address_ipv6: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(default)]
    interface: Option<Interface>,
}

fn cidr(field: &str, text: &str) -> anyhow::Result<Option<Cidr>> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| anyhow::anyhow!("invalid Interface.{field}: {e}"))
}

async fn create_endpoint(State(s): State<Service>, Body(req, _): NetworkBody<CreateEndpoint>) -> Response {
    let p = Protocol::Network;
    let iface = req.interface.unwrap_or_default();
    // Docker gave the addresses: the answer's Interface must be empty.
    p.call(
        &s,
        move |ctx| {
            let v4 = cidr("Address", &iface.address)?;
            let v6 = cidr("AddressIPv6", &iface.address_ipv6)?;
            docker::create_endpoint(ctx, &req.network_id, &req.endpoint_id, v4, v6)
        },
        |()| json!({}),
    )
    .await
}

#[derive(Deserialize)]
struct EndpointRef {
    #[serde(rename = "NetworkID", default)]
    _network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
}

async fn endpoint_info(State(s): State<Service>, Body(req, _): NetworkBody<EndpointRef>) -> Response {
    let p = Protocol::Network;
    p.call(&s, move |ctx| docker::endpoint_info(ctx, &req.endpoint_id), |info| json!({ "Value": info })).await
}

async fn delete_endpoint(State(s): State<Service>, Body(req, _): NetworkBody<EndpointRef>) -> Response {
    let p = Protocol::Network;
    p.call(&s, move |ctx| docker::delete_endpoint(ctx, &req.endpoint_id), |()| json!({})).await
}

#[derive(Deserialize)]
struct Join {
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(rename = "SandboxKey", default)]
    sandbox_key: String,
}

/// The prefix Docker names the moved interface with (it appends an index: `eth0`).
const DST_PREFIX: &str = "eth";

async fn join(State(s): State<Service>, Body(req, _): NetworkBody<Join>) -> Response {
    let p = Protocol::Network;
    p.call(
        &s,
        move |ctx| docker::join(ctx, &req.endpoint_id, &req.sandbox_key),
        |joined| {
            let mut body = json!({ "InterfaceName": { "SrcName": joined.src_name, "DstPrefix": DST_PREFIX } });
            if let Some(gw) = joined.gateway {
                body["Gateway"] = json!(gw.to_string());
            }
            if let Some(gw) = joined.gateway6 {
                body["GatewayIPv6"] = json!(gw.to_string());
            }
            body
        },
    )
    .await
}

async fn leave(State(s): State<Service>, Body(req, _): NetworkBody<EndpointRef>) -> Response {
    let p = Protocol::Network;
    p.call(&s, move |ctx| docker::leave(ctx, &req.endpoint_id), |()| json!({})).await
}

/// Node discovery is for global-scope drivers; a local one has nothing to do.
async fn discover(_: NetworkBody<Value>) -> Response {
    answer(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PortBinding {
    proto: u8,
    port: u16,
    /// `-p ADDRESS:HOST:PORT`'s address (empty without one).
    #[serde(rename = "HostIP", default)]
    host_ip: String,
    #[serde(default)]
    host_port: u16,
    #[serde(default)]
    host_port_end: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct External {
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(default)]
    options: Map<String, Value>,
}

/// Where Docker puts `-p` in `ProgramExternalConnectivity`'s options.
const PORTMAP: &str = "com.docker.network.portmap";

async fn program_external(State(s): State<Service>, Body(req, _): NetworkBody<External>) -> Response {
    let p = Protocol::Network;
    let bindings: Vec<PortBinding> = match req.options.get(PORTMAP).cloned().map(serde_json::from_value) {
        None => Vec::new(),
        Some(Ok(b)) => b,
        Some(Err(e)) => return p.error(StatusCode::BAD_REQUEST, format!("invalid {PORTMAP}: {e}")),
    };
    let mut ports = Vec::new();
    for b in bindings {
        // IANA protocol numbers, as Docker sends them.
        let proto = match b.proto {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            other => {
                return p.refused(anyhow::anyhow!("kleene publishes tcp and udp ports only, not protocol {other}"))
            }
        };
        let host_ip = match b.host_ip.as_str() {
            "" => None,
            text => match text.parse() {
                Ok(ip) => Some(ip),
                Err(_) => return p.error(StatusCode::BAD_REQUEST, format!("invalid {PORTMAP} HostIP '{text}'")),
            },
        };
        ports.push(PortMap { proto, port: b.port, host_ip, host_port: b.host_port, host_port_end: b.host_port_end });
    }
    p.call(&s, move |ctx| docker::publish(ctx, &req.endpoint_id, &ports), |()| json!({})).await
}

async fn revoke_external(State(s): State<Service>, Body(req, _): NetworkBody<EndpointRef>) -> Response {
    let p = Protocol::Network;
    p.call(&s, move |ctx| docker::unpublish(ctx, &req.endpoint_id), |()| json!({})).await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RequestPool {
    #[serde(default)]
    pool: String,
    #[serde(default)]
    sub_pool: String,
    #[serde(rename = "V6", default)]
    v6: bool,
}

async fn request_pool(State(s): State<Service>, Body(req, _): IpamBody<RequestPool>) -> Response {
    let p = Protocol::Ipam;
    p.call(
        &s,
        move |ctx| docker::request_pool(ctx, &req.pool, &req.sub_pool, req.v6),
        |pool| json!({ "PoolID": pool, "Pool": pool, "Data": {} }),
    )
    .await
}

#[derive(Deserialize)]
struct PoolRef {
    #[serde(rename = "PoolID")]
    _pool_id: String,
}

/// Pools are subnets of kleene networks, which go with `docker network rm`: nothing to do.
async fn release_pool(_: IpamBody<PoolRef>) -> Response {
    answer(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RequestAddress {
    #[serde(rename = "PoolID")]
    pool_id: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    options: Option<Map<String, Value>>,
}

/// The option by which Docker asks for the gateway rather than a container's address.
const ADDRESS_TYPE: &str = "RequestAddressType";
const GATEWAY_TYPE: &str = "com.docker.network.gateway";

async fn request_address(State(s): State<Service>, Body(req, _): IpamBody<RequestAddress>) -> Response {
    let p = Protocol::Ipam;
    let gateway = req.options.unwrap_or_default().get(ADDRESS_TYPE).and_then(|v| v.as_str()) == Some(GATEWAY_TYPE);
    p.call(
        &s,
        move |ctx| docker::request_address(ctx, &req.pool_id, &req.address, gateway),
        |address| json!({ "Address": address, "Data": {} }),
    )
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReleaseAddress {
    #[serde(rename = "PoolID")]
    pool_id: String,
    address: String,
}

async fn release_address(State(s): State<Service>, Body(req, _): IpamBody<ReleaseAddress>) -> Response {
    let p = Protocol::Ipam;
    p.call(&s, move |ctx| docker::release_address(ctx, &req.pool_id, &req.address), |()| json!({})).await
}
