//! kleened's routes, bodies and answers (see docs/api.md), translated to and from the
//! service layer. klee's generated client fails on any status code its spec does not list,
//! so each route answers only with the codes kleened documents for it, or 500.

use super::Service;
use crate::cli::{ContainerCreate, NetworkCreate};
use crate::commands::output::network_json;
use crate::commands::{attach, container, network};
use crate::error::is_not_found;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn router(service: Service) -> Router {
    Router::new()
        .route("/networks/list", get(network_list))
        .route("/networks/create", post(network_create))
        .route("/networks/prune", post(network_prune))
        .route("/networks/connect", post(network_connect))
        .route("/networks/{network}/disconnect/{container}", post(network_disconnect))
        .route("/networks/{network}/inspect", get(network_inspect))
        .route("/networks/{network}", delete(network_remove))
        .route("/containers/list", get(container_list))
        .route("/containers/create", post(container_create))
        .route("/containers/{container}/inspect", get(container_inspect))
        .route("/containers/{container}/start", post(container_start))
        .route("/containers/{container}/stop", post(container_stop))
        .route("/containers/{container}", delete(container_remove))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .with_state(service)
}

/// A refusal: a status kleened uses for the route, and Kleene's message.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "message": self.1 }))).into_response()
    }
}

/// What each route answers for "not found" and for any other refusal.
#[derive(Clone, Copy)]
struct Codes {
    not_found: StatusCode,
    refused: StatusCode,
}

const CONFLICT: Codes = Codes { not_found: StatusCode::NOT_FOUND, refused: StatusCode::CONFLICT };
/// kleened answers disconnect refusals with 409, which crashes klee: every refusal is a 404.
const ALL_NOT_FOUND: Codes = Codes { not_found: StatusCode::NOT_FOUND, refused: StatusCode::NOT_FOUND };
/// Routes whose spec lists only 404 and 500.
const NOT_FOUND_OR_500: Codes = Codes { not_found: StatusCode::NOT_FOUND, refused: StatusCode::INTERNAL_SERVER_ERROR };

impl Codes {
    fn error(self, e: anyhow::Error) -> ApiError {
        let status = if is_not_found(&e) { self.not_found } else { self.refused };
        tracing::info!(status = status.as_u16(), "refused: {e:#}");
        ApiError(status, format!("{e:#}"))
    }
}

type Answer = Result<Response, ApiError>;

/// A path parameter. One that cannot be decoded (`%FF`) names nothing there is: 404, which
/// every route with a parameter lists, where axum's own answer would be a plain-text 400.
struct ApiPath<T>(T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(e) => Err(ApiError(StatusCode::NOT_FOUND, format!("invalid path: {}", e.body_text()))),
        }
    }
}

/// A query string of type `T`; a malformed one (`?all=banana`) is the route's refusal, with
/// the reason, never axum's plain-text 400 (no kleened route lists 400).
fn query<T>(q: Result<Query<T>, QueryRejection>, codes: Codes, fix: &str) -> Result<T, ApiError> {
    q.map(|Query(value)| value).map_err(|e| {
        tracing::info!(status = codes.refused.as_u16(), "refused: {}", e.body_text());
        ApiError(codes.refused, format!("{}: use {fix}", e.body_text()))
    })
}

/// A JSON body of type `T`; anything else is the route's refusal, with serde's reason.
fn body<T: DeserializeOwned>(bytes: &Bytes, codes: Codes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError(codes.refused, format!("invalid request body: {e}")))
}

fn id_answer(status: StatusCode, id: String) -> Response {
    (status, Json(json!({ "id": id }))).into_response()
}

/// kleened's `Network`: a type klee does not know (a third-party network-type plugin) would
/// crash `klee network ls`, so such networks are listed as `custom` (kleened's type for an
/// interface it does not manage) with the real type in `kleene_type`. The list is kleened's
/// `NetworkConfig.type` enum: the API's vocabulary, not a plugin lookup.
fn api_network(mut doc: Value) -> Value {
    const KLEENED_TYPES: [&str; 3] = ["bridge", "loopback", "custom"];
    let kind = doc["type"].as_str().unwrap_or_default().to_string();
    if !KLEENED_TYPES.contains(&kind.as_str()) {
        doc["type"] = json!("custom");
        doc["kleene_type"] = json!(kind);
    }
    doc
}

async fn network_list(State(s): State<Service>) -> Answer {
    let list = s.call(|ctx| network::ls(ctx)).await.map_err(|e| NOT_FOUND_OR_500.error(e))?;
    Ok(Json(list.iter().map(|n| api_network(network_json(n))).collect::<Vec<_>>()).into_response())
}

/// kleened's `NetworkConfig`. Sentinels: `"<auto>"` gateways, `""` for none; `nat` is
/// `"<host-gateway>"` (the default-route interface), `""` (no NAT) or an interface.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkConfig {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    interface: String,
    #[serde(default)]
    subnet: String,
    #[serde(default)]
    subnet6: String,
    gateway: Option<String>,
    gateway6: Option<String>,
    nat: Option<String>,
    #[serde(default = "yes")]
    icc: bool,
    #[serde(default)]
    internal: bool,
    /// kleene's: container DNS on (true), off (false) or the default (absent).
    dns: Option<bool>,
    /// kleene's: the network's DNS domain (`--dns-domain`).
    dns_domain: Option<String>,
}

fn yes() -> bool {
    true
}

impl From<NetworkConfig> for NetworkCreate {
    fn from(c: NetworkConfig) -> NetworkCreate {
        let some = |s: String| (!s.is_empty()).then_some(s);
        let (nat_if, no_nat) = match c.nat.as_deref() {
            None | Some("<host-gateway>") => (None, false),
            Some("") => (None, true),
            Some(interface) => (Some(interface.to_string()), false),
        };
        NetworkCreate {
            kind: Some(c.kind),
            interface: some(c.interface),
            subnet: some(c.subnet),
            subnet6: some(c.subnet6),
            gw: c.gateway,
            gw6: c.gateway6,
            nat_if,
            no_nat,
            no_icc: !c.icc,
            internal: c.internal,
            dns: c.dns == Some(true),
            no_dns: c.dns == Some(false),
            mtu: None,
            dns_domain: c.dns_domain,
            name: c.name,
        }
    }
}

async fn network_create(State(s): State<Service>, bytes: Bytes) -> Answer {
    let args: NetworkCreate = body::<NetworkConfig>(&bytes, CONFLICT)?.into();
    let id = s.call(move |ctx| network::create(ctx, &args)).await.map_err(|e| CONFLICT.error(e))?;
    Ok(id_answer(StatusCode::CREATED, id))
}

async fn network_remove(State(s): State<Service>, ApiPath(ident): ApiPath<String>) -> Answer {
    let removed = s
        .call(move |ctx| {
            let mut removed = Vec::new();
            network::rm(ctx, &[ident], &mut removed)?;
            Ok(removed)
        })
        .await
        .map_err(|e| {
            // kleened's own words, with its full stop.
            if is_not_found(&e) {
                ApiError(StatusCode::NOT_FOUND, "network not found.".into())
            } else {
                NOT_FOUND_OR_500.error(e)
            }
        })?;
    Ok(id_answer(StatusCode::OK, removed.into_iter().next().unwrap_or_default()))
}

async fn network_prune(State(s): State<Service>) -> Answer {
    let removed = s
        .call(|ctx| {
            let mut removed = Vec::new();
            network::prune(ctx, &mut removed)?;
            Ok(removed)
        })
        .await
        .map_err(|e| NOT_FOUND_OR_500.error(e))?;
    Ok(Json(removed).into_response())
}

async fn network_inspect(State(s): State<Service>, ApiPath(ident): ApiPath<String>) -> Answer {
    let mut doc = s.call(move |ctx| network::inspect(ctx, &ident)).await.map_err(|e| NOT_FOUND_OR_500.error(e))?;
    doc["network"] = api_network(doc["network"].take());
    Ok(Json(doc).into_response())
}

/// kleened's `EndPointConfig`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndPointConfig {
    container: String,
    network: String,
    ip_address: Option<String>,
    ip_address6: Option<String>,
    /// kleene's: other names the container answers to in the network's DNS.
    #[serde(default)]
    aliases: Vec<String>,
}

async fn network_connect(State(s): State<Service>, bytes: Bytes) -> Answer {
    let c: EndPointConfig = body(&bytes, CONFLICT)?;
    s.call(move |ctx| {
        attach::connect(ctx, &c.network, &c.container, c.ip_address.as_deref(), c.ip_address6.as_deref(), &c.aliases)
    })
    .await
    .map_err(|e| CONFLICT.error(e))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn network_disconnect(State(s): State<Service>, ApiPath((net, ctr)): ApiPath<(String, String)>) -> Answer {
    s.call(move |ctx| attach::disconnect(ctx, &net, &ctr)).await.map_err(|e| ALL_NOT_FOUND.error(e))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

async fn container_list(State(s): State<Service>, q: Result<Query<ListQuery>, QueryRejection>) -> Answer {
    let q = query(q, NOT_FOUND_OR_500, "all=true or all=false")?;
    let list = s.call(move |ctx| container::ls(ctx, q.all)).await.map_err(|e| NOT_FOUND_OR_500.error(e))?;
    Ok(Json(list.into_iter().map(container_summary).collect::<Vec<_>>()).into_response())
}

/// kleened's `ContainerSummary` also carries the image's name and tag and the jail id; klee's
/// `container ls` prints an unset one as a Python object's address. Kleene runs no images and
/// no jails on Linux: empty names (klee then shows the image id) and no jail id, unless the
/// service layer gave them.
fn container_summary(mut doc: Value) -> Value {
    for (key, empty) in [("image_name", json!("")), ("image_tag", json!("")), ("jid", Value::Null)] {
        if doc.get(key).is_none() {
            doc[key] = empty;
        }
    }
    doc
}

async fn container_inspect(State(s): State<Service>, ApiPath(ident): ApiPath<String>) -> Answer {
    let doc = s.call(move |ctx| container::inspect(ctx, &ident)).await.map_err(|e| NOT_FOUND_OR_500.error(e))?;
    Ok(Json(doc).into_response())
}

/// kleened's `PublishedPortConfig`.
#[derive(Deserialize)]
struct PublicPort {
    #[serde(default)]
    interfaces: Vec<String>,
    host_port: String,
    container_port: String,
    #[serde(default = "tcp")]
    protocol: String,
}

fn tcp() -> String {
    "tcp".into()
}

impl PublicPort {
    /// The CLI's `--publish` specs: one per interface (none: every interface).
    fn specs(&self) -> Vec<String> {
        let ports = format!("{}:{}/{}", self.host_port, self.container_port, self.protocol);
        if self.interfaces.is_empty() {
            vec![ports]
        } else {
            self.interfaces.iter().map(|i| format!("{i}:{ports}")).collect()
        }
    }
}

/// kleened's `ContainerConfig`: what kleene acts on. The whole body is kept as given.
#[derive(Deserialize)]
struct ContainerConfig {
    name: String,
    network_driver: Option<String>,
    #[serde(default)]
    public_ports: Vec<PublicPort>,
}

async fn container_create(State(s): State<Service>, bytes: Bytes) -> Answer {
    let config: Value = body(&bytes, CONFLICT)?;
    let c: ContainerConfig = serde_json::from_value(config.clone())
        .map_err(|e| ApiError(StatusCode::CONFLICT, format!("invalid request body: {e}")))?;
    let args = ContainerCreate {
        // kleened's default driver is the one for containers on networks: klee connects them
        // after create.
        driver: c.network_driver.filter(|d| !d.is_empty()),
        network: None,
        publish: c.public_ports.iter().flat_map(PublicPort::specs).collect(),
        name: c.name,
        config: Some(config),
        ..ContainerCreate::default()
    };
    let id = s
        .call(move |ctx| {
            let args = match args.driver {
                Some(_) => args,
                None => ContainerCreate {
                    driver: Some(ctx.default_plugin(
                        kleene_plugin_api::PluginKind::Driver,
                        kleene_plugin_api::DefaultFor::DriverWithNetwork,
                    )?),
                    ..args
                },
            };
            container::create(ctx, &args)
        })
        .await
        .map_err(|e| CONFLICT.error(e))?;
    Ok(id_answer(StatusCode::CREATED, id))
}

async fn container_start(State(s): State<Service>, ApiPath(ident): ApiPath<String>) -> Answer {
    let id = s.call(move |ctx| container::start(ctx, &ident)).await.map_err(|e| CONFLICT.error(e))?;
    Ok(id_answer(StatusCode::OK, id))
}

async fn container_stop(State(s): State<Service>, ApiPath(ident): ApiPath<String>) -> Answer {
    let id = s.call(move |ctx| container::stop(ctx, &ident)).await.map_err(|e| CONFLICT.error(e))?;
    Ok(id_answer(StatusCode::OK, id))
}

#[derive(Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

async fn container_remove(
    State(s): State<Service>,
    ApiPath(ident): ApiPath<String>,
    q: Result<Query<RemoveQuery>, QueryRejection>,
) -> Answer {
    let q = query(q, CONFLICT, "force=true or force=false")?;
    let removed = s
        .call(move |ctx| {
            let mut removed = Vec::new();
            container::rm(ctx, &[ident], q.force, &mut removed)?;
            Ok(removed)
        })
        .await
        .map_err(|e| CONFLICT.error(e))?;
    Ok(id_answer(StatusCode::OK, removed.into_iter().next().unwrap_or_default()))
}
