//! The HTTP edge: the TLS accept loop, the axum router with thin handlers, and the gate every
//! request passes first (operation class and stats, `api-version`, SAS/bearer authorization).
//! `/$iothub/websocket` is no service route: it is upgraded to MQTT over WebSockets
//! (`mqtt::websocket`), which authenticates in its CONNECT as MQTT over TLS does.
//! After authorization the gate applies fault injection (`faults`) and then quota simulation
//! (`throttle`), by class; neither touches `/_emulator/`.
//!
//! Handlers parse the request, call the store on a blocking thread (redb commits fsync), and turn
//! domain errors into IoT Hub's error responses through `error::Error`'s `IntoResponse`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::auth::{Authority, Need, Permission};
use super::clock::unix_now;
use super::error::{self, Error};
use super::faults::{Fault, Faults};
use super::stats::{OpClass, Stats};
use super::store::{IfMatch, Store, Target};
use super::throttle::{self, Throttle};
use super::twin::{Desired, ServiceWrite, strip_read_only};
use super::{bulk, device_actions, identity, pager, tls};
use twinops_iothub::wire::{self, JsonMap};
use twinops_iothub::{
    ACCEPTED_API_VERSIONS, CONTINUATION_HEADER, ITEM_TYPE_HEADER, MAX_ITEM_COUNT_HEADER,
};

/// Request bodies above this are refused with 413 `MessageTooLarge` (twins are at most ~72 KB).
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1024;
/// Bulk calls carry up to 100 full rows.
pub(crate) const MAX_BULK_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Query pages hold this many rows unless the client asks for fewer.
pub(crate) const DEFAULT_PAGE: usize = 100;

/// Everything a request can reach.
pub(crate) struct Hub {
    pub(crate) store: Store,
    pub(crate) authority: Authority,
    pub(crate) stats: Stats,
    pub(crate) query_page_max: usize,
    /// `--throttle`: quota simulation, when asked for.
    pub(crate) throttle: Option<Throttle>,
    /// `--faults`: fault injection, when asked for.
    pub(crate) faults: Option<Faults>,
    /// Wakes the configuration loop after a configuration is created, updated or deleted.
    pub(crate) configurations_changed: Notify,
    /// Where the MQTT device side listens, for `/_emulator/info`.
    pub(crate) mqtt_addr: Option<std::net::SocketAddr>,
    /// The device side (unless `--mqtt off`), which MQTT over WebSockets on this listener joins.
    pub(crate) devices: Option<super::mqtt::Devices>,
    /// Import/export jobs.
    pub(crate) jobs: super::jobs::Jobs,
}

pub(crate) type Shared = Arc<Hub>;

/// The router: IoT Hub's service routes and the emulator's own `/_emulator/` routes.
pub(crate) fn app(hub: Shared) -> Router {
    Router::new()
        .route("/devices", get(list_devices).post(bulk_call))
        .route(
            "/devices/query",
            post(query)
                .get(get_device_named_query)
                .put(put_device_named_query)
                .delete(delete_device_named_query),
        )
        .route(
            "/devices/{id}",
            get(get_device).put(put_device).delete(delete_device),
        )
        .route("/devices/{id}/modules", get(list_modules))
        .route(
            "/devices/{id}/applyConfigurationContent",
            post(device_actions::apply_configuration_content),
        )
        .route(
            "/devices/keys/regenerate",
            post(device_actions::regenerate_keys),
        )
        .route(
            "/devices/{id}/modules/{mid}",
            get(get_module).put(put_module).delete(delete_module),
        )
        .route("/twins/{id}", get(get_twin).patch(patch_twin).put(put_twin))
        .route(
            "/twins/{id}/modules/{mid}",
            get(get_module_twin)
                .patch(patch_module_twin)
                .put(put_module_twin),
        )
        .route("/configurations", get(list_configurations))
        .route(
            "/configurations/{id}",
            get(get_configuration)
                .put(put_configuration)
                .delete(delete_configuration),
        )
        .merge(super::jobs::routes())
        .route(
            super::mqtt::websocket::PATH,
            get(super::mqtt::websocket::upgrade),
        )
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/info", get(info))
        .route("/_emulator/twins/{id}/reported", patch(reported))
        .route(
            "/_emulator/twins/{id}/modules/{mid}/reported",
            patch(module_reported),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(hub.clone(), gate))
        .with_state(hub)
}

/// Serves `app` over TLS on `listener` until `shutdown` turns true, then drops every connection.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            tcp = tls::next_connection(&listener, "REST") => {
                let acceptor = acceptor.clone();
                let app = app.clone();
                conns.spawn(async move {
                    let Some(tls) = tls::handshake(&acceptor, tcp).await else {
                        return;
                    };
                    // Fault injection drops a connection by waking this: the connection future
                    // (and with it the TLS stream and socket) is dropped without an answer.
                    let kill = Arc::new(Notify::new());
                    let tag = ConnectionKill(kill.clone());
                    let app = tower::ServiceExt::map_request(app, move |mut req: Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(tag.clone());
                        req
                    });
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    // With upgrades: MQTT over WebSockets upgrades its HTTP/1.1 request.
                    let conn = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service);
                    tokio::select! {
                        ended = conn => {
                            if let Err(e) = ended {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        }
                        _ = kill.notified() => tracing::debug!("connection dropped by fault injection"),
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// The path's segments, percent-decoded (`%24edgeAgent` → `$edgeAgent`).
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

fn api_version(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "api-version").then(|| percent_decode_str(v).decode_utf8_lossy().into_owned())
    })
}

/// What a class of request needs from its caller. Which permission guards `/configurations` is
/// not documented: reads need RegistryRead, writes RegistryWrite.
fn need(class: OpClass, method: &Method) -> Need {
    Need::Permission(match class {
        // Which permission IoT Hub asks of the jobs API is not documented. Export jobs read the
        // registry, so RegistryRead, cancelling included: a reader cancels the jobs it started.
        OpClass::RegistryRead | OpClass::Jobs => Permission::RegistryRead,
        OpClass::RegistryWrite | OpClass::Bulk => Permission::RegistryWrite,
        OpClass::TwinRead | OpClass::TwinWrite | OpClass::Query => Permission::ServiceConnect,
        OpClass::Configuration if method == Method::GET => Permission::RegistryRead,
        OpClass::Configuration => Permission::RegistryWrite,
    })
}

/// The resource a request touches, as token scopes name it: twins are their device's (or
/// module's) resources, queries and bulk calls the `devices` collection's.
fn scope_segments(class: OpClass, segs: &[String]) -> Vec<&str> {
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (class, segs.as_slice()) {
        (OpClass::Query | OpClass::Bulk, _) => vec!["devices"],
        // Key regeneration names its identities in the body: it is the collection's resource,
        // so a token scoped to a device named `keys` cannot reach it.
        (_, ["devices", "keys", "regenerate"]) => vec!["devices"],
        (_, ["twins", rest @ ..]) => std::iter::once("devices")
            .chain(rest.iter().copied())
            .collect(),
        _ => segs,
    }
}

/// How an authorized request proved itself: live hubs answer some module identity operations
/// differently under SAS and under Entra ID (`--bearer-token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    Sas,
    Bearer,
}

impl Caller {
    fn of(auth_header: Option<&str>) -> Caller {
        let bearer = auth_header.is_some_and(|h| {
            h.trim()
                .get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
        });
        if bearer { Caller::Bearer } else { Caller::Sas }
    }
}

/// Every request passes here first.
async fn gate(State(hub): State<Shared>, mut req: Request, next: Next) -> Response {
    let segs = segments(req.uri().path());
    let auth_header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if segs.first().map(String::as_str) == Some("_emulator") {
        let scope: Vec<&str> = segs.iter().map(String::as_str).collect();
        if let Err(r) = hub
            .authority
            .check(auth_header, &scope, Need::Owner, unix_now())
        {
            return Error::Unauthorized(r.to_string()).into_response();
        }
        return next.run(req).await;
    }
    let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let Some(class) = OpClass::classify(req.method().as_str(), &seg_refs) else {
        return next.run(req).await;
    };
    hub.stats.count(class);
    let version = api_version(req.uri().query());
    if !version.is_some_and(|v| ACCEPTED_API_VERSIONS.contains(&v.as_str())) {
        return Error::InvalidProtocolVersion.into_response();
    }
    let scope = scope_segments(class, &segs);
    if let Err(r) = hub
        .authority
        .check(auth_header, &scope, need(class, req.method()), unix_now())
    {
        tracing::debug!(refusal = %r, "request refused");
        return Error::Unauthorized(r.to_string()).into_response();
    }
    let caller = Caller::of(auth_header);
    req.extensions_mut().insert(caller);
    if let Some(faults) = &hub.faults {
        let draw = faults.draw();
        if let Some(delay) = draw.delay {
            hub.stats.count_delayed();
            tokio::time::sleep(delay).await;
        }
        if let Some(fault) = draw.fault {
            hub.stats.count_fault(fault);
            return inject(&hub, fault, class, req, next).await;
        }
    }
    let req = match &hub.throttle {
        Some(throttle) => {
            let (req, rows) = if class == OpClass::Bulk && throttle.counts_rows() {
                match bulk_rows(req).await {
                    Ok(r) => r,
                    Err(e) => return e.into_response(),
                }
            } else {
                (req, 0)
            };
            if !throttle.admit(class, rows) {
                hub.stats.count_throttled();
                return throttle::refusal(class, req.method()).into_response();
            }
            req
        }
        None => req,
    };
    next.run(req).await
}

/// Buffers a bulk call's body to count its rows (a body that is no JSON array counts as one row;
/// the handler then refuses it).
async fn bulk_rows(req: Request) -> Result<(Request, u64), Error> {
    let (parts, body) = req.into_parts();
    let bytes = read_body(body, MAX_BULK_BODY_BYTES).await?;
    let rows = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&bytes)
        .map(|rows| rows.len() as u64)
        .unwrap_or(1);
    Ok((Request::from_parts(parts, Body::from(bytes)), rows))
}

/// Marks the connection a request came on, so fault injection can drop it.
#[derive(Clone)]
pub(crate) struct ConnectionKill(Arc<Notify>);

/// Answers (or drops) a request with an injected fault.
async fn inject(hub: &Shared, fault: Fault, class: OpClass, req: Request, next: Next) -> Response {
    let kill = req.extensions().get::<ConnectionKill>().cloned();
    match fault {
        Fault::Throttle | Fault::ThrottleRetryAfter => {
            hub.stats.count_throttled();
            let mut resp = throttle::refusal(class, req.method()).into_response();
            if fault == Fault::ThrottleRetryAfter {
                resp.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from_static("1"),
                );
            }
            resp
        }
        Fault::ServerError => error::response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &twinops_iothub::error_code::ErrorCode::ServerError,
            "injected fault",
        ),
        Fault::Unavailable => Error::Unavailable("injected fault".into()).into_response(),
        Fault::Reset => drop_connection(kill).await,
        Fault::ResetAfter => {
            // The write is committed before the answer would be sent; the answer is then lost.
            let _ = next.run(req).await;
            drop_connection(kill).await
        }
    }
}

/// Drops the request's connection unanswered. Over HTTP/1 the connection task drops this future
/// with the connection; over HTTP/2 a stream's future may outlive it briefly, so it gives up after
/// a while with a 503 nobody reads. Without a connection marker (in-process tests) it answers 503.
async fn drop_connection(kill: Option<ConnectionKill>) -> Response {
    if let Some(ConnectionKill(kill)) = kill {
        kill.notify_one();
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Error::Unavailable("connection reset injected".into()).into_response()
}

async fn not_found() -> Error {
    Error::RouteNotFound("no such IoT Hub route".into())
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed("the route does not take this method".into())
}

/// Runs a store operation on a blocking thread (commits wait for fsync).
pub(crate) async fn blocking<T: Send + 'static>(
    hub: &Shared,
    f: impl FnOnce(&Hub) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let hub = hub.clone();
    tokio::task::spawn_blocking(move || f(&hub))
        .await
        .map_err(|e| Error::Server(format!("worker failed: {e}")))?
}

/// How much of an oversized body is still read (and discarded) so the client, which is still sending,
/// receives the 413 instead of a connection reset.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;

pub(crate) async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, Error> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Error::Deserialization(format!("reading the request body: {e}")))?;
        total += chunk.len();
        if total <= limit {
            buf.extend_from_slice(&chunk);
        } else if total > limit + DRAIN_BYTES {
            break;
        }
    }
    if total > limit {
        return Err(Error::MessageTooLarge(format!(
            "request body is over {limit} bytes"
        )));
    }
    Ok(buf.into())
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Deserialization(format!("request body is not valid: {}", redact_strings(&e)))
    })
}

/// serde's message with the string values it quotes blanked: `invalid type: string "…"` would
/// otherwise echo a key sent in the wrong place (`"symmetricKey": "<key>"`) into the error body.
fn redact_strings(e: &serde_json::Error) -> String {
    let mut out = String::new();
    for (i, part) in e.to_string().split('"').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        } else {
            out.push_str("\"…\"");
        }
    }
    out
}

/// A body that must be a JSON object. serde's derived structs also accept a JSON array of the
/// fields in order (`["SELECT * FROM devices"]` would be a query); IoT Hub takes objects only.
pub(crate) fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(Error::Deserialization(
            "request body must be a JSON object".into(),
        ));
    }
    parse_json(bytes)
}

/// The rows of a bulk call, decoded one by one: a row whose authentication type IoT Hub does not
/// define fails alone (`ArgumentInvalid`, as a device PUT answers), the others are applied; any
/// other row that does not decode refuses the call (`DeserializationError`). Each row is decoded
/// from the parsed value in place (no copy of it; bulk calls are the hot path of large fleets).
fn decode_bulk_rows(values: &[Value]) -> Result<Vec<bulk::Row>, Error> {
    values
        .iter()
        .map(|v| match wire::ExportImportDevice::deserialize(v) {
            Ok(row) => Ok(bulk::Row::Valid(Box::new(row))),
            Err(e) => match identity::unknown_authentication_type(v) {
                Some(refused) => Ok(bulk::Row::Refused {
                    device_id: text(v, "id"),
                    module_id: v
                        .get("moduleId")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    import_mode: text(v, "importMode"),
                    error: refused,
                }),
                None => Err(Error::Deserialization(format!(
                    "request body is not valid: {}",
                    redact_strings(&e)
                ))),
            },
        })
        .collect()
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A device or module body. One that fails to decode because of an unknown authentication type
/// answers as IoT Hub does, `ArgumentInvalid` naming the allowed types; any other failure is
/// `parse_object`'s.
fn parse_identity<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    parse_object(bytes).map_err(|e| {
        serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| identity::unknown_authentication_type(&v))
            .unwrap_or(e)
    })
}

/// The `If-Match` precondition. A value that is not text (obs-text bytes) is kept, lossily, as an
/// etag that matches nothing: treating it as absent would turn a conditional write unconditional.
fn if_match(headers: &HeaderMap) -> IfMatch {
    let value = headers
        .get("if-match")
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    IfMatch::parse(value.as_deref())
}

/// The route's path parameters, percent-decoded. axum's own `Path` answers a segment that does
/// not decode to UTF-8 (`%FF`) with a plain-text 400; IoT Hub's clients expect its error format.
pub(crate) struct Path<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Error> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(t)| Path(t))
            .map_err(|_| {
                Error::ArgumentInvalid("a path segment is not valid percent-encoded UTF-8".into())
            })
    }
}

pub(crate) fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    (status, axum::Json(v)).into_response()
}

// ---- device identities ----

#[derive(serde::Deserialize)]
struct Top {
    top: Option<i64>,
}

async fn list_devices(
    State(hub): State<Shared>,
    q: Result<axum::extract::Query<Top>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Error> {
    // axum's rejection is plain text; IoT Hub answers a `top` that is no number in its format.
    let q = q.map_err(|_| Error::ArgumentInvalid("top must be an integer".into()))?;
    // IoT Hub treats a `top` outside 1..=1000 as 1000.
    let top = q.top.filter(|t| (1..=1000).contains(t)).unwrap_or(1000) as usize;
    let devices = blocking(&hub, move |h| h.store.list_devices(top)).await?;
    let wire: Vec<wire::Device> = devices.iter().map(|d| d.to_wire()).collect();
    Ok(json(StatusCode::OK, &wire))
}

async fn get_device(State(hub): State<Shared>, Path(id): Path<String>) -> Result<Response, Error> {
    let d = blocking(&hub, move |h| h.store.device(&id)).await?;
    Ok(json(StatusCode::OK, &d.to_wire()))
}

/// Device create answers 200, not 201: the SDKs accept nothing else.
async fn put_device(
    State(hub): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let body: wire::Device = parse_identity(&read_body(body, MAX_BODY_BYTES).await?)?;
    let m = if_match(&headers);
    let d = blocking(&hub, move |h| h.store.put_device(&id, &body, &m)).await?;
    Ok(json(StatusCode::OK, &d.to_wire()))
}

async fn delete_device(
    State(hub): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let m = if_match(&headers);
    blocking(&hub, move |h| h.store.delete_device(&id, &m)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// `/devices/query` is also the path of a device named `query`.
async fn get_device_named_query(hub: State<Shared>) -> Result<Response, Error> {
    get_device(hub, Path("query".into())).await
}

async fn put_device_named_query(
    hub: State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    put_device(hub, Path("query".into()), headers, body).await
}

async fn delete_device_named_query(
    hub: State<Shared>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    delete_device(hub, Path("query".into()), headers).await
}

// ---- module identities ----

async fn list_modules(
    State(hub): State<Shared>,
    caller: Option<axum::Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let caller = caller_of(caller);
    let mods = blocking(&hub, move |h| {
        h.store.module_device_access(&id, caller == Caller::Sas)?;
        h.store.modules(&id)
    })
    .await?;
    let wire: Vec<wire::Module> = mods.iter().map(|m| m.to_wire()).collect();
    Ok(json(StatusCode::OK, &wire))
}

/// The caller the gate recorded (SAS when none was: in-process calls without the gate).
fn caller_of(ext: Option<axum::Extension<Caller>>) -> Caller {
    ext.map(|axum::Extension(c)| c).unwrap_or(Caller::Sas)
}

async fn get_module(
    State(hub): State<Shared>,
    caller: Option<axum::Extension<Caller>>,
    Path((id, mid)): Path<(String, String)>,
) -> Result<Response, Error> {
    let caller = caller_of(caller);
    let m = blocking(&hub, move |h| {
        h.store.module_device_access(&id, caller == Caller::Sas)?;
        h.store.module(&id, &mid)
    })
    .await?;
    Ok(json(StatusCode::OK, &m.to_wire()))
}

/// Module create and update both answer 200, as live hubs do.
async fn put_module(
    State(hub): State<Shared>,
    caller: Option<axum::Extension<Caller>>,
    Path((id, mid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let caller = caller_of(caller);
    let body: wire::Module = parse_identity(&read_body(body, MAX_BODY_BYTES).await?)?;
    let m = if_match(&headers);
    let (rec, _created) = blocking(&hub, move |h| {
        h.store.module_device_access(&id, caller == Caller::Sas)?;
        h.store.put_module(&id, &mid, &body, &m)
    })
    .await?;
    Ok(json(StatusCode::OK, &rec.to_wire()))
}

async fn delete_module(
    State(hub): State<Shared>,
    caller: Option<axum::Extension<Caller>>,
    Path((id, mid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let caller = caller_of(caller);
    let m = if_match(&headers);
    blocking(&hub, move |h| {
        h.store.module_device_access(&id, caller == Caller::Sas)?;
        h.store.delete_module(&id, &mid, &m)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- twins ----

/// Reads `tags` and `properties.desired` from a twin body; everything else in it (identity fields,
/// `properties.reported`, `$metadata`, `$version`) is read-only and ignored, as IoT Hub does.
/// `"desired": null` clears desired; `"tags": null` (and `"properties": null`) changes nothing,
/// as on live hubs, where a patch cannot reset tags (MicrosoftDocs/azure-docs#32289).
fn service_write(bytes: &[u8]) -> Result<ServiceWrite, Error> {
    let v: Value = parse_json(bytes)?;
    let Value::Object(root) = v else {
        return Err(Error::Deserialization(
            "a twin body is a JSON object".into(),
        ));
    };
    let section = |v: Option<&Value>, name: &str| -> Result<Option<JsonMap>, Error> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(strip_read_only(m.clone()))),
            Some(_) => Err(Error::ArgumentInvalid(format!(
                "{name} must be a JSON object"
            ))),
        }
    };
    let desired = match root.get("properties") {
        None | Some(Value::Null) => Desired::Untouched,
        Some(Value::Object(p)) => match p.get("desired") {
            Some(Value::Null) => Desired::Cleared,
            d => Desired::patch(section(d, "properties.desired")?),
        },
        Some(_) => {
            return Err(Error::ArgumentInvalid(
                "properties must be a JSON object".into(),
            ));
        }
    };
    Ok(ServiceWrite {
        tags: section(root.get("tags"), "tags")?,
        desired,
    })
}

async fn read_twin(hub: Shared, target: Target) -> Result<Response, Error> {
    let t = blocking(&hub, move |h| h.store.twin(&target)).await?;
    Ok(json(StatusCode::OK, &t))
}

async fn write_twin(
    hub: Shared,
    target: Target,
    replace: bool,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let write = service_write(&read_body(body, MAX_BODY_BYTES).await?)?;
    let m = if_match(&headers);
    let t = blocking(&hub, move |h| {
        h.store.write_twin(&target, replace, write, &m)
    })
    .await?;
    Ok(json(StatusCode::OK, &t))
}

async fn get_twin(State(hub): State<Shared>, Path(id): Path<String>) -> Result<Response, Error> {
    read_twin(hub, Target::Device(id)).await
}

async fn patch_twin(
    State(hub): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    write_twin(hub, Target::Device(id), false, headers, body).await
}

async fn put_twin(
    State(hub): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    write_twin(hub, Target::Device(id), true, headers, body).await
}

async fn get_module_twin(
    State(hub): State<Shared>,
    Path((id, mid)): Path<(String, String)>,
) -> Result<Response, Error> {
    read_twin(hub, Target::Module(id, mid)).await
}

async fn patch_module_twin(
    State(hub): State<Shared>,
    Path((id, mid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    write_twin(hub, Target::Module(id, mid), false, headers, body).await
}

async fn put_module_twin(
    State(hub): State<Shared>,
    Path((id, mid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    write_twin(hub, Target::Module(id, mid), true, headers, body).await
}

// ---- query and bulk ----

fn page_size(headers: &HeaderMap, cap: usize) -> usize {
    let asked = headers
        .get(MAX_ITEM_COUNT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n > 0)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_PAGE);
    asked.min(cap).max(1)
}

async fn query(
    State(hub): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let spec: wire::QuerySpecification = parse_object(&read_body(body, MAX_BODY_BYTES).await?)?;
    let size = page_size(&headers, hub.query_page_max);
    // A token that is not text is refused, not dropped: dropping it would restart the query.
    let continuation = headers
        .get(CONTINUATION_HEADER)
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| {
            Error::ArgumentInvalid("the continuation token is not valid for this query".into())
        })?;
    let page = blocking(&hub, move |h| {
        pager::run(&h.store, &spec.query, continuation.as_deref(), size)
    })
    .await?;
    let mut resp = json(StatusCode::OK, &page.items);
    let headers = resp.headers_mut();
    headers.insert(ITEM_TYPE_HEADER, HeaderValue::from_static(page.item_type));
    if let Some(c) = page.continuation
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        headers.insert(CONTINUATION_HEADER, v);
    }
    Ok(resp)
}

async fn bulk_call(State(hub): State<Shared>, body: Body) -> Result<Response, Error> {
    let values: Vec<Value> = parse_json(&read_body(body, MAX_BULK_BODY_BYTES).await?)?;
    let rows = decode_bulk_rows(&values)?;
    let result = blocking(&hub, move |h| bulk::run(&h.store, rows)).await?;
    let status = if result.is_successful {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(json(status, &result))
}

// ---- automatic configurations ----

/// A configuration as live hubs render it: `schemaVersion` and `labels` are null unless set.
fn configuration_json(c: &super::configuration::ConfigurationRecord) -> Value {
    let mut v = serde_json::to_value(c.to_wire()).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for key in ["schemaVersion", "labels"] {
            m.entry(key).or_insert(Value::Null);
        }
    }
    v
}

/// A configuration answer: the body's etag is unquoted, the `ETag` header quoted.
fn configuration_response(c: &super::configuration::ConfigurationRecord) -> Response {
    let mut resp = json(StatusCode::OK, &configuration_json(c));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", c.etag)) {
        resp.headers_mut().insert(axum::http::header::ETAG, v);
    }
    resp
}

/// Live hubs honour only a quoted `If-Match` on configurations: an unquoted etag answers 409.
/// `*` (bare or quoted) stays the wildcard.
fn configuration_if_match(headers: &HeaderMap) -> Result<IfMatch, Error> {
    let m = if_match(headers);
    if let IfMatch::Etag(_) = &m {
        let raw = headers
            .get("if-match")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
            .unwrap_or_default();
        let raw = raw.strip_prefix("W/").unwrap_or(&raw);
        if !(raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"')) {
            return Err(Error::UnquotedEtag(
                "the If-Match etag of a configuration must be quoted".into(),
            ));
        }
    }
    Ok(m)
}

/// `?top` is ignored, as on live hubs: every configuration is listed (at most 100 exist).
async fn list_configurations(State(hub): State<Shared>) -> Result<Response, Error> {
    let list = blocking(&hub, move |h| h.store.list_configurations(usize::MAX)).await?;
    let wire: Vec<Value> = list.iter().map(configuration_json).collect();
    Ok(json(StatusCode::OK, &wire))
}

async fn get_configuration(
    State(hub): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let c = blocking(&hub, move |h| h.store.configuration(&id)).await?;
    Ok(configuration_response(&c))
}

/// Create and update both answer 200 (the SWAGGER allows 200 or 201; devices answer 200 too).
async fn put_configuration(
    State(hub): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let body: wire::Configuration = parse_json(&read_body(body, MAX_BODY_BYTES).await?)?;
    let m = configuration_if_match(&headers)?;
    let c = blocking(&hub, move |h| h.store.put_configuration(&id, &body, &m)).await?;
    hub.configurations_changed.notify_one();
    Ok(configuration_response(&c))
}

async fn delete_configuration(
    State(hub): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let m = configuration_if_match(&headers)?;
    blocking(&hub, move |h| h.store.delete_configuration(&id, &m)).await?;
    hub.configurations_changed.notify_one();
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- /_emulator ----

async fn stats(State(hub): State<Shared>) -> Response {
    json(StatusCode::OK, &hub.stats.to_json())
}

/// `{"mqtt": "127.0.0.1:8883"}` (`null` when the device side is off or its port was busy).
async fn info(State(hub): State<Shared>) -> Response {
    let mqtt = hub.mqtt_addr.map(|a| a.to_string());
    json(StatusCode::OK, &serde_json::json!({ "mqtt": mqtt }))
}

async fn patch_reported(hub: Shared, target: Target, body: Body) -> Result<Response, Error> {
    let patch: Value = parse_json(&read_body(body, MAX_BODY_BYTES).await?)?;
    let Value::Object(patch) = patch else {
        return Err(Error::Deserialization(
            "a reported patch is a JSON object".into(),
        ));
    };
    let t = blocking(&hub, move |h| h.store.patch_reported(&target, &patch)).await?;
    Ok(json(StatusCode::OK, &t))
}

async fn reported(
    State(hub): State<Shared>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, Error> {
    patch_reported(hub, Target::Device(id), body).await
}

async fn module_reported(
    State(hub): State<Shared>,
    Path((id, mid)): Path<(String, String)>,
    body: Body,
) -> Result<Response, Error> {
    patch_reported(hub, Target::Module(id, mid), body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_is_read_from_the_query_string() {
        assert_eq!(
            api_version(Some("api-version=2021-04-12")).as_deref(),
            Some("2021-04-12")
        );
        assert_eq!(
            api_version(Some("top=5&api-version=2020-09-30")).as_deref(),
            Some("2020-09-30")
        );
        assert_eq!(api_version(Some("top=5")), None);
        assert_eq!(api_version(None), None);
    }

    #[test]
    fn twins_are_scoped_as_their_device() {
        let segs: Vec<String> = ["twins", "d", "modules", "m"].map(String::from).to_vec();
        assert_eq!(
            scope_segments(OpClass::TwinRead, &segs),
            ["devices", "d", "modules", "m"]
        );
        let segs: Vec<String> = ["devices", "query"].map(String::from).to_vec();
        assert_eq!(scope_segments(OpClass::Query, &segs), ["devices"]);
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(
            segments("/devices/d/modules/%24edgeAgent"),
            ["devices", "d", "modules", "$edgeAgent"]
        );
    }

    #[test]
    fn twin_bodies_keep_only_tags_and_desired() {
        let w = service_write(br#"{"deviceId":"x","etag":"e","tags":{"a":1},"properties":{"desired":{"b":2,"$metadata":{},"$version":4},"reported":{"c":3}}}"#).unwrap();
        assert_eq!(Value::Object(w.tags.unwrap()), serde_json::json!({"a": 1}));
        assert_eq!(
            w.desired,
            Desired::Set(serde_json::json!({"b": 2}).as_object().unwrap().clone())
        );
        let cleared = service_write(br#"{"tags": null, "properties": {"desired": null}}"#).unwrap();
        assert_eq!((cleared.tags, cleared.desired), (None, Desired::Cleared));
        let absent = service_write(br#"{"properties": null}"#).unwrap();
        assert_eq!(absent.desired, Desired::Untouched);
        assert!(service_write(b"[1]").is_err());
        assert!(service_write(br#"{"tags": 5}"#).is_err());
        assert!(service_write(b"{not json").is_err());
    }

    #[test]
    fn deserialization_errors_do_not_echo_string_values() {
        let Err(Error::Deserialization(m)) =
            parse_json::<wire::Device>(br#"{"authentication": {"symmetricKey": "c2VjcmV0a2V5"}}"#)
        else {
            panic!("a string is no symmetric key");
        };
        assert!(!m.contains("c2VjcmV0a2V5"), "{m}");
        assert!(m.contains("line 1"), "{m}");
    }

    #[test]
    fn bulk_rows_decode_alone_refuse_unknown_authentication_types_alone_and_echo_no_strings() {
        let rows = serde_json::json!([
            {"id": "a", "importMode": "create"},
            {"id": "b", "moduleId": "m", "importMode": "create", "authentication": {"type": "weird"}},
        ]);
        let decoded = decode_bulk_rows(rows.as_array().unwrap()).unwrap();
        assert!(matches!(&decoded[0], bulk::Row::Valid(r) if r.id == "a"));
        let bulk::Row::Refused {
            device_id,
            module_id,
            import_mode,
            error,
        } = &decoded[1]
        else {
            panic!("an unknown authentication type fails its row alone");
        };
        assert_eq!(
            (
                device_id.as_str(),
                module_id.as_deref(),
                import_mode.as_str()
            ),
            ("b", Some("m"), "create")
        );
        assert_eq!(
            error.code(),
            twinops_iothub::error_code::ErrorCode::ArgumentInvalid
        );
        let mistyped = serde_json::json!([{"id": "c", "status": 5}]);
        let Err(Error::Deserialization(m)) = decode_bulk_rows(mistyped.as_array().unwrap()) else {
            panic!("a row that does not decode refuses the call");
        };
        assert_eq!(
            m,
            "request body is not valid: invalid type: integer `5`, expected a string"
        );
        let secret = serde_json::json!([{"id": "c", "capabilities": "c2VjcmV0"}]);
        let Err(Error::Deserialization(m)) = decode_bulk_rows(secret.as_array().unwrap()) else {
            panic!("a row that does not decode refuses the call");
        };
        assert!(!m.contains("c2VjcmV0"), "{m}");
    }

    #[test]
    fn page_size_defaults_and_caps() {
        let mut h = HeaderMap::new();
        assert_eq!(page_size(&h, 100), 100);
        h.insert(MAX_ITEM_COUNT_HEADER, HeaderValue::from_static("-1"));
        assert_eq!(page_size(&h, 100), 100);
        h.insert(MAX_ITEM_COUNT_HEADER, HeaderValue::from_static("5"));
        assert_eq!(page_size(&h, 100), 5);
        h.insert(MAX_ITEM_COUNT_HEADER, HeaderValue::from_static("5000"));
        assert_eq!(page_size(&h, 1000), 1000);
        assert_eq!(page_size(&HeaderMap::new(), 50), 50);
    }
}
