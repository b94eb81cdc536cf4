//! The HTTP front end: HTTP/1.1 and prior-knowledge h2c on one port (hyper), `GET /healthz`,
//! `GET /metrics`, and `POST /` for the AWS APIs.
//!
//! `POST /` is routed by the `X-Amz-Target` prefix (`<Service_version>.<Operation>`) to the one
//! [`AwsService`] that answers it; the front end reads the body within its bounds, picks the
//! protocol from the content type (AWS JSON 1.0, 1.1 or CBOR, answered in kind) and encodes the
//! service's answer or error. It knows no service: each owns its operations, shapes and errors.
//!
//! Bounds: connections beyond `http.max_connections` are closed at accept; a body larger than
//! `http.max_body_size` is refused without being read past the limit; the bodies being read or held
//! at once are bounded by `http.max_inflight_body_size` (beyond it: 503, unread); HTTP/1.1 headers
//! must arrive within `http.header_read_timeout` and a body within `http.body_read_timeout`; on
//! shutdown in-flight requests get [`DRAIN_TIMEOUT`] to finish.

pub mod auth;
pub mod iam;
pub mod sigv4;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::protocol::codec::{encode_response, MemberKinds, Protocol, PLAIN};
use crate::protocol::error::{ApiError, ApiResult};
use crate::service::Service;

/// A future a service returns for one call.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A service's answer to one call.
pub enum Reply {
    /// A whole answer; `Value::Null` is sent as an empty body (operations without output).
    Whole(ApiResult<serde_json::Value>),
    /// A successful answer already encoded in the request's protocol.
    Encoded(Vec<u8>),
    /// An `application/vnd.amazon.eventstream` answer, streamed.
    Events(Body),
}

/// One AWS service behind the front end.
pub trait AwsService: Send + Sync + 'static {
    /// The `X-Amz-Target` prefix before the dot, e.g. `Kinesis_20131202`.
    fn target_prefix(&self) -> &'static str;
    /// The name its requests are signed for (the SigV4 credential scope's service).
    fn signing_name(&self) -> &'static str;
    /// The protocols it speaks (by content type).
    fn protocols(&self) -> &'static [Protocol];
    /// Whether it has operation `op`.
    fn has_operation(&self, op: &str) -> bool;
    /// What its error `__type`s start with (DynamoDB: `com.amazonaws.dynamodb.v20120810#`).
    fn error_prefix(&self) -> &'static str {
        ""
    }
    /// What the `__type`s of the front end's own errors about its requests (a body that is not
    /// an object, an unknown operation) start with: DynamoDB writes
    /// `com.amazon.coral.service#`, Kinesis nothing.
    fn framing_error_prefix(&self) -> &'static str {
        ""
    }
    /// Which members of its shapes are blobs and timestamps (for CBOR).
    fn member_kinds(&self) -> &'static MemberKinds;
    /// Runs `op` on a body read whole, in `proto`. `auth` is the front end's verdict on the
    /// request's signature: the service answers it after its own checks of the operation name
    /// and the body's framing, and before anything else, as AWS orders them. With a verified
    /// signature it carries the [`iam::Caller`], whose permission the service checks for the
    /// operation's resource once it knows which one that is.
    fn call(&self, op: String, proto: Protocol, body: Bytes, auth: Auth) -> BoxFuture<Reply>;
}

/// The front end's verdict on a request's signature: refused, accepted unverified (`None`,
/// modes `signed` and `none`), or verified as signed by a key.
pub type Auth = ApiResult<Option<Arc<iam::Caller>>>;

/// The services the front end routes to, by target prefix.
#[derive(Clone, Default)]
pub struct Routes {
    services: Vec<Arc<dyn AwsService>>,
    /// `[[auth.keys]]` as callers, by index.
    callers: Arc<Vec<Arc<iam::Caller>>>,
}

impl Routes {
    pub fn with(mut self, service: Arc<dyn AwsService>) -> Routes {
        self.services.push(service);
        self
    }

    fn find(&self, prefix: &str) -> Option<&Arc<dyn AwsService>> {
        self.services.iter().find(|s| s.target_prefix() == prefix)
    }
}

pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const H2_MAX_CONCURRENT_STREAMS: u32 = 256;
/// h2c connections are pinged when idle this long and dropped if the ping goes unanswered.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(60);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves until `shutdown` resolves, then stops accepting and drains in-flight requests.
/// With `tls`, every connection is a TLS one ([`tls::Tls`]).
pub async fn serve(
    listener: TcpListener,
    svc: Arc<Service>,
    routes: Routes,
    tls: Option<Arc<tls::Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let mut routes = routes;
    routes.callers = Arc::new(svc.cfg.auth.keys.iter().map(|k| Arc::new(k.caller())).collect());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(svc.cfg.http.header_read_timeout).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(svc.cfg.http.max_connections));
    let body_budget = Arc::new(Semaphore::new(svc.cfg.http.max_inflight_body_size as usize));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "connection limit reached; closing new connection");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let svc = svc.clone();
                let budget = body_budget.clone();
                let routes = routes.clone();
                let handler = service_fn(move |req| handle(svc.clone(), routes.clone(), budget.clone(), req));
                let watcher = graceful.watcher();
                let builder = builder.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => {
                            let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), handler).into_owned()).await;
                        }
                        Some(tls) => {
                            if let Some(stream) = tls.accept_http(stream).await {
                                let conn = builder.serve_connection(TokioIo::new(stream), handler).into_owned();
                                let _ = watcher.watch(conn).await;
                            }
                        }
                    }
                    drop(permit);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("drain timed out; closing remaining connections"),
    }
}

/// Response bodies: whole (most operations) or streamed (event streams).
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;
type Resp = Response<Body>;

fn whole(b: Bytes) -> Body {
    Full::new(b).boxed()
}

async fn handle(
    svc: Arc<Service>,
    routes: Routes,
    budget: Arc<Semaphore>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path();
    let origin = req.headers().contains_key(http::header::ORIGIN);
    if origin && req.method() == Method::OPTIONS {
        return Ok(preflight(req.headers()));
    }
    let mut resp = match (req.method(), path) {
        (&Method::GET, "/healthz") => plain(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/metrics") if !metrics_allowed(&svc.cfg.auth, req.headers()) => {
            plain(StatusCode::FORBIDDEN, "text/plain", "GET /metrics needs the metrics bearer token\n".into())
        }
        (&Method::GET, "/metrics") => {
            let enabled = |stream: &str| svc.stream(stream).map(|m| m.shard_level_metrics.clone()).unwrap_or_default();
            let mut text = svc.metrics.render(&enabled);
            text.push_str("# HELP sluice_worker_open_shards Open shards owned by each core worker.\n# TYPE sluice_worker_open_shards gauge\n");
            for (w, n) in svc.runtime.open_shards_per_worker().iter().enumerate() {
                text.push_str(&format!("sluice_worker_open_shards{{worker=\"{w}\"}} {n}\n"));
            }
            plain(StatusCode::OK, "text/plain; version=0.0.4", text.into())
        }
        (&Method::POST, "/debug/failpoints") if svc.cfg.debug.failpoints => failpoints(req).await,
        (&Method::POST, _) => api(svc, routes, budget, req).await,
        _ => not_an_operation(&svc, &routes, &req),
    };
    if origin {
        let h = resp.headers_mut();
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(CORS_EXPOSE_HEADERS));
    }
    Ok(resp)
}

/// Whether a `GET /metrics` may be answered: with the configured bearer token; without one, in
/// every mode but `sigv4` (unless `metrics_public`).
fn metrics_allowed(auth: &crate::config::AuthConfig, headers: &http::HeaderMap) -> bool {
    use sha2::{Digest, Sha256};
    match &auth.metrics_token {
        Some(token) => {
            let given = headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            // Digests are compared, so the time taken says nothing about the token.
            Sha256::digest(given.trim().as_bytes()) == Sha256::digest(token.as_bytes())
        }
        None => auth.mode != crate::config::AuthMode::Sigv4 || auth.metrics_public,
    }
}

/// The headers a browser may read from an answer, as AWS's endpoint lists them.
const CORS_EXPOSE_HEADERS: &str =
    "x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,x-amzn-ErrorMessage,Date";
/// How long a browser may cache a preflight answer (AWS's value: two days).
const CORS_MAX_AGE: &str = "172800";

/// A CORS preflight (`OPTIONS` with an `Origin`): allowed, whatever is asked, as AWS answers.
fn preflight(headers: &http::HeaderMap) -> Resp {
    let mut r = Response::new(whole(Bytes::new()));
    let h = r.headers_mut();
    h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(http::header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(CORS_MAX_AGE));
    if let Some(v) = headers.get(http::header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
    }
    if let Some(v) = headers.get(http::header::ACCESS_CONTROL_REQUEST_METHOD) {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_METHODS, v.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        h.insert("x-amzn-RequestId", v);
    }
    r
}

/// A method or path that is neither the API nor one of the daemon's endpoints: AWS's 403 with an
/// XML body and no content type (MissingAuthenticationToken when unsigned).
fn not_an_operation(svc: &Service, routes: &Routes, req: &Request<Incoming>) -> Resp {
    let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let (status, text) = match auth::check(svc.cfg.auth.mode, req.headers(), req.uri().query()) {
        Err(e) => (StatusCode::FORBIDDEN, xml_error(&e)),
        Ok(()) => match target.split_once('.') {
            Some((prefix, op)) => match routes.find(prefix) {
                Some(s) if s.has_operation(op) => (StatusCode::NOT_FOUND, "<UnknownOperationException/>\n".into()),
                Some(_) => (StatusCode::INTERNAL_SERVER_ERROR, "<InternalFailure/>\n".into()),
                None => (
                    StatusCode::FORBIDDEN,
                    xml_error(&ApiError::UnrecognizedClient(format!(
                        "No authorization strategy was found for service: {prefix}, operation: {op}"
                    ))),
                ),
            },
            None => (
                StatusCode::FORBIDDEN,
                xml_error(&ApiError::AccessDenied(
                    "Unable to determine service/operation name to be authorized".into(),
                )),
            ),
        },
    };
    let mut r = Response::new(whole(Bytes::from(text)));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        r.headers_mut().insert("x-amzn-RequestId", v);
    }
    r.headers_mut().insert("x-amz-id-2", amz_id_2());
    r
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// AWS's `x-amz-id-2`: an opaque base64 token, 72 bytes here.
fn amz_id_2() -> HeaderValue {
    use base64::Engine;
    let n = REQUEST_COUNTER.load(Ordering::Relaxed).to_le_bytes();
    let t = (crate::time::now_ms() as u64).to_le_bytes();
    let mut bytes = [0u8; 72];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = n[i % 8] ^ t[(i / 8) % 8].rotate_left(i as u32);
    }
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(bytes)).expect("base64 is a valid header")
}

fn plain(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut r = Response::new(whole(body));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

fn request_id() -> String {
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = crate::time::now_ms() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (t >> 16) as u32,
        t as u16,
        (n >> 48) & 0xfff,
        (n >> 36) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

fn respond(proto: Protocol, status: StatusCode, body: Vec<u8>, error_type: Option<&'static str>) -> Resp {
    let mut r = Response::new(whole(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(proto.content_type()));
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        h.insert("x-amzn-RequestId", v);
    }
    if let Some(t) = error_type {
        h.insert("x-amzn-ErrorType", HeaderValue::from_static(t));
    }
    h.insert("x-amz-id-2", amz_id_2());
    r
}

fn error_response(proto: Protocol, err: &ApiError) -> Resp {
    error_response_for(proto, "", err)
}

fn error_response_for(proto: Protocol, prefix: &str, err: &ApiError) -> Resp {
    let body = encode_response(proto, &err.body_with_prefix(prefix), &PLAIN);
    respond(proto, err.status(), body, Some(err.type_name()))
}

/// `POST /debug/failpoints` with a spec such as `write=EIO` or `off` (see [`crate::log::faults`]).
async fn failpoints(req: Request<Incoming>) -> Resp {
    let body = match Limited::new(req.into_body(), 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return plain(StatusCode::BAD_REQUEST, "text/plain", "body too large\n".into()),
    };
    let spec = String::from_utf8_lossy(&body);
    match crate::log::faults::apply(&spec) {
        Ok(now) => {
            tracing::warn!(failpoints = %now, "fault injection changed");
            plain(StatusCode::OK, "text/plain", format!("{now}\n").into())
        }
        Err(e) => plain(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n").into()),
    }
}

async fn api(svc: Arc<Service>, routes: Routes, budget: Arc<Semaphore>, req: Request<Incoming>) -> Resp {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let routed = target.split_once('.').and_then(|(prefix, op)| Some((routes.find(prefix)?.clone(), op.to_owned())));
    // The protocol is the content type's, if the service speaks it (without a service, the
    // Kinesis family's two); errors about the request itself are answered in it, else in CBOR.
    let accepted = routed.as_ref().map_or(DEFAULT_PROTOCOLS, |(s, _)| s.protocols());
    let spoken = Some(Protocol::from_content_type(Some(&content_type)))
        .filter(|p| p.content_type() == content_type && accepted.contains(p));
    let proto = spoken.unwrap_or(Protocol::Cbor);
    let op = routed.as_ref().map_or("unknown", |(_, op)| op.as_str()).to_owned();
    let checked = auth::check(svc.cfg.auth.mode, req.headers(), req.uri().query());
    // What the signature covers besides the body, kept only when it is verified.
    let signed_parts = (svc.cfg.auth.mode == crate::config::AuthMode::Sigv4).then(|| {
        (
            req.method().as_str().to_owned(),
            req.uri().path().to_owned(),
            req.uri().query().map(str::to_owned),
            req.headers().clone(),
            req.uri().authority().map(|a| a.as_str().to_owned()),
        )
    });
    let limit = svc.cfg.http.max_body_size as usize;
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        let err = ApiError::Validation(format!("Request body is larger than the {limit} bytes this daemon accepts."));
        let mut r = error_response(proto, &err);
        *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        r
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    // Reserve the body's bytes (the limit, if undeclared) in the daemon-wide budget first.
    let reserve = declared.map_or(limit, |n| n as usize).max(1) as u32;
    let Ok(_reservation) = budget.try_acquire_many_owned(reserve) else {
        let err = ApiError::ServiceUnavailable("Too many request bytes in flight; retry with backoff.".into());
        svc.metrics.record_request(&op, err.type_name());
        return error_response(proto, &err);
    };
    let read = tokio::time::timeout(svc.cfg.http.body_read_timeout, Limited::new(req.into_body(), limit).collect());
    let body = match read.await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return too_large(),
        Ok(Err(e)) => {
            let err = ApiError::Serialization(format!("Could not read the request body: {e}"));
            return error_response(proto, &err);
        }
        Err(_) => {
            let err = ApiError::Serialization(format!(
                "The request body did not arrive within {} s.",
                svc.cfg.http.body_read_timeout.as_secs()
            ));
            let mut r = error_response(proto, &err);
            *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
            return r;
        }
    };
    // Framing, as AWS's front end orders it: an empty body, then a content type no service
    // speaks, then the target.
    if body.is_empty() {
        let err = match &routed {
            Some((service, op)) if service.has_operation(op) => ApiError::Serialization(String::new()),
            _ => ApiError::UnknownOperation(String::new()),
        };
        svc.metrics.record_request(if routed.is_some() { &op } else { "unknown" }, err.type_name());
        let prefix = routed.as_ref().map_or("", |(s, _)| s.framing_error_prefix());
        return error_response_for(proto, prefix, &err);
    }
    let Some(proto) = spoken else {
        svc.metrics.record_request("unknown", "UnknownOperationException");
        return unspoken_content_type(&content_type, &target, &body);
    };
    let known = routed.as_ref().is_some_and(|(s, op)| s.has_operation(op));
    if !known {
        // A body that is not a JSON object is refused before the target is looked at.
        let object =
            proto != Protocol::Json || serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.is_object());
        let err =
            if object { ApiError::UnknownOperation(String::new()) } else { ApiError::Serialization(String::new()) };
        svc.metrics.record_request("unknown", err.type_name());
        let prefix = routed.as_ref().map_or("", |(s, _)| s.framing_error_prefix());
        return error_response_for(proto, prefix, &err);
    }
    let Some((service, op)) = routed else {
        return error_response(proto, &ApiError::UnknownOperation(String::new()));
    };
    let auth: Auth = match (checked, &signed_parts) {
        (Err(e), _) => Err(e),
        (Ok(()), None) => Ok(None),
        (Ok(()), Some((method, path, query, headers, authority))) => {
            let signed = sigv4::Request {
                method,
                path,
                query: query.as_deref(),
                headers,
                authority: authority.as_deref(),
                body: &body,
            };
            sigv4::verify(&signed, &svc.cfg.auth.keys, &svc.cfg.region, service.signing_name(), svc.now_ms()).and_then(
                |index| match routes.callers.get(index) {
                    Some(caller) => Ok(Some(caller.clone())),
                    // The keys and the callers are built from one list: a key without a caller is
                    // a fault, refused rather than served unchecked.
                    None => Err(ApiError::InternalFailure("The verified key has no caller.".into())),
                },
            )
        }
    };
    match service.call(op.clone(), proto, body, auth).await {
        Reply::Whole(result) => finish(&svc, proto, service.as_ref(), &op, result),
        Reply::Encoded(body) => {
            svc.metrics.record_request(&op, "ok");
            respond(proto, StatusCode::OK, body, None)
        }
        Reply::Events(events) => {
            svc.metrics.record_request(&op, "ok");
            let mut r = Response::new(events);
            r.headers_mut()
                .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.amazon.eventstream"));
            if let Ok(v) = HeaderValue::from_str(&request_id()) {
                r.headers_mut().insert("x-amzn-RequestId", v);
            }
            r
        }
    }
}

/// What the Kinesis family speaks when no service is named.
const DEFAULT_PROTOCOLS: &[Protocol] = &[Protocol::Json, Protocol::Cbor];

/// A request with a body in a content type the service does not speak, answered as AWS's front
/// end does: the deprecated `application/json` envelope, a 403 for a target without an operation,
/// otherwise a bare 404.
fn unspoken_content_type(content_type: &str, target: &str, body: &[u8]) -> Resp {
    if content_type == "application/json" {
        let is_object = serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.is_object());
        let (status, kind) = if is_object {
            (StatusCode::NOT_FOUND, "UnknownOperationException")
        } else {
            (StatusCode::BAD_REQUEST, "SerializationException")
        };
        let text = format!(r#"{{"Output":{{"__type":"com.amazon.coral.service#{kind}"}},"Version":"1.0"}}"#);
        return plain(status, "application/json", Bytes::from(text));
    }
    let (status, text) = if target.contains('.') {
        (StatusCode::NOT_FOUND, "<UnknownOperationException/>\n".to_owned())
    } else {
        let err = ApiError::AccessDenied("Unable to determine service/operation name to be authorized".into());
        (StatusCode::FORBIDDEN, xml_error(&err))
    };
    let mut r = Response::new(whole(Bytes::from(text)));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        r.headers_mut().insert("x-amzn-RequestId", v);
    }
    r
}

fn xml_error(err: &ApiError) -> String {
    format!("<{t}>\n  <Message>{m}</Message>\n</{t}>\n", t = err.type_name(), m = xml_escape(err.message()))
}

/// Encodes an operation's result (or error) in the request's protocol, and counts it.
fn finish(
    svc: &Service,
    proto: Protocol,
    service: &dyn AwsService,
    op: &str,
    result: ApiResult<serde_json::Value>,
) -> Resp {
    let kinds = service.member_kinds();
    match result {
        Ok(v) => {
            svc.metrics.record_request(op, "ok");
            let body = if v.is_null() { Vec::new() } else { encode_response(proto, &v, kinds) };
            respond(proto, StatusCode::OK, body, None)
        }
        Err(e) => {
            if matches!(e, ApiError::InternalFailure(_)) {
                tracing::error!(operation = %op, error = %e, "internal failure");
            }
            let known = matches!(e, ApiError::UnknownOperation(_));
            svc.metrics.record_request(if known { "unknown" } else { op }, e.type_name());
            error_response_for(proto, service.error_prefix(), &e)
        }
    }
}
