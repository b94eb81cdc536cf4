//! The AWS JSON client `sluice kcl` speaks with: one endpoint, one service, SigV4-signed
//! `POST /` calls over keep-alive HTTP/1.1 connections (a small pool), and AWS-shaped errors
//! decoded from `__type`.
//!
//! `https://` endpoints use TLS (rustls) with the system's trusted roots, or the PEM bundle named
//! by `AWS_CA_BUNDLE` as the AWS SDKs read it; over TLS, SubscribeToShard goes over HTTP/2 (ALPN
//! `h2`), as AWS requires, and every other call over HTTP/1.1. Credentials come from the
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or the shared
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`, profile
//! `AWS_PROFILE` or `default`); without either, a fixed local key pair that Sluice accepts. Not
//! read: instance metadata, SSO and web-identity credentials.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Where a service is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Endpoint {
    /// `http://host[:port][/]` or `https://...`. A bare `host:port` is taken as `http://`.
    pub fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let (tls, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.strip_prefix("http://").unwrap_or(url)),
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().with_context(|| format!("port of endpoint '{url}'"))?),
            None => (authority.to_owned(), if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            anyhow::bail!("endpoint '{url}' has no host");
        }
        Ok(Endpoint { host, port, tls })
    }

    /// `host[:port]`, the port left out when it is the scheme's.
    pub fn authority(&self) -> String {
        if self.port == if self.tls { 443 } else { 80 } {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// The path of a URL (`/` when it has none).
pub fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// An HTTP/1.1 connection over `io`, its driver spawned: the sender of its requests.
pub async fn http1<IO>(io: IO) -> Result<SendRequest<Full<Bytes>>, hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A rustls client configuration trusting `roots` and offering one ALPN protocol.
pub fn tls_client_config(
    roots: tokio_rustls::rustls::RootCertStore,
    alpn: &[u8],
) -> anyhow::Result<Arc<tokio_rustls::rustls::ClientConfig>> {
    use tokio_rustls::rustls;
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(c))
}

/// The TLS client configurations of an `https://` endpoint: HTTP/1.1 and HTTP/2 by ALPN.
struct Tls {
    http1: tokio_rustls::TlsConnector,
    h2: tokio_rustls::TlsConnector,
    name: tokio_rustls::rustls::pki_types::ServerName<'static>,
}

impl Tls {
    fn new(host: &str, roots: tokio_rustls::rustls::RootCertStore) -> anyhow::Result<Tls> {
        use tokio_rustls::rustls;
        Ok(Tls {
            http1: tls_client_config(roots.clone(), b"http/1.1")?.into(),
            h2: tls_client_config(roots, b"h2")?.into(),
            name: rustls::pki_types::ServerName::try_from(host.to_owned())
                .with_context(|| format!("TLS server name '{host}'"))?,
        })
    }
}

/// The roots to trust: the PEM bundle `AWS_CA_BUNDLE` names, else the system's.
pub fn trusted_roots() -> anyhow::Result<tokio_rustls::rustls::RootCertStore> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    if let Some(path) = std::env::var_os("AWS_CA_BUNDLE").filter(|p| !p.is_empty()) {
        let pem = std::fs::read(&path).with_context(|| format!("reading AWS_CA_BUNDLE {}", path.to_string_lossy()))?;
        add_pem(&mut roots, &pem)?;
    } else {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    Ok(roots)
}

/// Adds every certificate of a PEM bundle.
pub fn add_pem(roots: &mut tokio_rustls::rustls::RootCertStore, pem: &[u8]) -> anyhow::Result<()> {
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.context("a certificate of the CA bundle")?)?;
        n += 1;
    }
    if n == 0 {
        anyhow::bail!("the CA bundle holds no certificate");
    }
    Ok(())
}

/// An access key, its secret, and a session token if the key is temporary.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl Credentials {
    /// The environment, then the shared credentials file, then a local placeholder.
    pub fn from_environment() -> Credentials {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: env("AWS_SESSION_TOKEN"),
            };
        }
        let file = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials")));
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
        if let Some(found) =
            file.and_then(|f| std::fs::read_to_string(f).ok()).and_then(|t| profile_credentials(&t, &profile))
        {
            return found;
        }
        Credentials { access_key_id: "SLUICELOCAL".into(), secret_access_key: "sluice".into(), session_token: None }
    }
}

/// One profile's keys from an INI-style shared credentials file.
fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && line.ends_with(']') {
            in_profile = line[1..line.len() - 1].trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_owned();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials { access_key_id: id?, secret_access_key: secret?, session_token: token })
}

/// A failed call: an AWS error (`kind` is the `__type` without its namespace) or no answer.
#[derive(Debug, Clone)]
pub struct CallError {
    /// The HTTP status, 0 when the request got no answer.
    pub status: u16,
    pub kind: String,
    pub message: String,
}

impl CallError {
    fn transport(e: impl fmt::Display) -> CallError {
        CallError { status: 0, kind: "ConnectionError".into(), message: e.to_string() }
    }

    pub fn is(&self, kind: &str) -> bool {
        self.kind == kind
    }

    /// Throttling, a server fault or no answer: worth retrying later.
    pub fn is_retryable(&self) -> bool {
        self.status == 0
            || self.status >= 500
            || self.kind.contains("Throughput")
            || self.kind.contains("Throttl")
            || self.kind == "LimitExceededException"
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status == 0 {
            write!(f, "no answer: {}", self.message)
        } else {
            write!(f, "{} ({}): {}", self.kind, self.status, self.message)
        }
    }
}

impl std::error::Error for CallError {}

/// A signed JSON client of one AWS service at one endpoint.
pub struct AwsClient {
    endpoint: Endpoint,
    region: String,
    /// The SigV4 signing name (`kinesis`, `dynamodb`).
    signing_name: &'static str,
    /// `Kinesis_20131202`, `DynamoDB_20120810`.
    target_prefix: &'static str,
    content_type: &'static str,
    credentials: Credentials,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    timeout: Duration,
    tls: Option<Tls>,
}

impl AwsClient {
    pub fn kinesis(endpoint: Endpoint, region: &str, credentials: Credentials) -> AwsClient {
        AwsClient::new(endpoint, region, "kinesis", "Kinesis_20131202", "application/x-amz-json-1.1", credentials)
    }

    pub fn dynamodb(endpoint: Endpoint, region: &str, credentials: Credentials) -> AwsClient {
        AwsClient::new(endpoint, region, "dynamodb", "DynamoDB_20120810", "application/x-amz-json-1.0", credentials)
    }

    fn new(
        endpoint: Endpoint,
        region: &str,
        signing_name: &'static str,
        target_prefix: &'static str,
        content_type: &'static str,
        credentials: Credentials,
    ) -> AwsClient {
        AwsClient {
            endpoint,
            region: region.to_owned(),
            signing_name,
            target_prefix,
            content_type,
            credentials,
            idle: Mutex::new(Vec::new()),
            timeout: Duration::from_secs(30),
            tls: None,
        }
    }

    /// Trusts these roots for an `https://` endpoint (required before calls to one).
    pub fn with_roots(mut self, roots: tokio_rustls::rustls::RootCertStore) -> anyhow::Result<AwsClient> {
        if self.endpoint.tls {
            self.tls = Some(Tls::new(&self.endpoint.host, roots)?);
        }
        Ok(self)
    }

    async fn tcp(&self) -> Result<tokio::net::TcpStream, CallError> {
        let tcp = tokio::net::TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
            .await
            .map_err(CallError::transport)?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    fn tls(&self) -> Result<&Tls, CallError> {
        self.tls.as_ref().ok_or_else(|| CallError::transport("an https endpoint needs trusted roots (with_roots)"))
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn connection(&self) -> Result<SendRequest<Full<Bytes>>, CallError> {
        loop {
            let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match pooled {
                Some(mut s) => {
                    if s.ready().await.is_ok() {
                        return Ok(s);
                    }
                }
                None => break,
            }
        }
        let tcp = self.tcp().await?;
        if self.endpoint.tls {
            let tls = self.tls()?;
            let stream = tls.http1.connect(tls.name.clone(), tcp).await.map_err(CallError::transport)?;
            return http1(stream).await.map_err(CallError::transport);
        }
        http1(tcp).await.map_err(CallError::transport)
    }

    /// A signed request for `op` with this body.
    pub fn request(&self, op: &str, body: Bytes) -> Result<http::Request<Full<Bytes>>, CallError> {
        let target = format!("{}.{op}", self.target_prefix);
        let host = self.endpoint.authority();
        let uri = format!("{}://{host}/", self.endpoint.scheme());
        let mut req = http::Request::post(uri.as_str())
            .header("host", &host)
            .header("content-type", self.content_type)
            .header("x-amz-target", &target)
            .header("user-agent", concat!("sluice-kcl/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body.clone()))
            .map_err(CallError::transport)?;
        self.sign(&mut req, &body)?;
        Ok(req)
    }

    fn sign(&self, req: &mut http::Request<Full<Bytes>>, body: &[u8]) -> Result<(), CallError> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        use aws_sigv4::sign::v4;
        let c = &self.credentials;
        let identity = aws_credential_types::Credentials::new(
            &c.access_key_id,
            &c.secret_access_key,
            c.session_token.clone(),
            None,
            "sluice",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.signing_name)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| CallError::transport(format!("signing: {e}")))?
            .into();
        let headers: Vec<(&str, &str)> =
            req.headers().iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))).collect();
        let uri = req.uri().to_string();
        let signable = SignableRequest::new("POST", uri, headers.into_iter(), SignableBody::Bytes(body))
            .map_err(|e| CallError::transport(format!("signing: {e}")))?;
        let (instructions, _) =
            sign(signable, &params).map_err(|e| CallError::transport(format!("signing: {e}")))?.into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }

    /// Calls `op` and answers its JSON, or the error the service gave.
    pub async fn call(&self, op: &str, body: &Value) -> Result<Value, CallError> {
        let (status, bytes) = self.call_raw(op, Bytes::from(body.to_string())).await?;
        let value: Value = if bytes.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).map_err(|e| CallError {
                status,
                kind: "SerializationException".into(),
                message: format!("answer of {op} is not JSON: {e}"),
            })?
        };
        if status == 200 {
            return Ok(value);
        }
        let kind = value["__type"].as_str().unwrap_or("UnknownError");
        let kind = kind.rsplit('#').next().unwrap_or(kind).to_owned();
        let message = value["message"].as_str().or(value["Message"].as_str()).unwrap_or("").to_owned();
        Err(CallError { status, kind, message })
    }

    /// Calls `op` with a body as is; answers the status and body, whatever the status.
    pub async fn call_raw(&self, op: &str, body: Bytes) -> Result<(u16, Bytes), CallError> {
        let req = self.request(op, body)?;
        let mut sender = self.connection().await?;
        let exchange = async {
            let resp = sender.send_request(req).await.map_err(CallError::transport)?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.map_err(CallError::transport)?.to_bytes();
            Ok::<_, CallError>((status, body))
        };
        let out = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| CallError::transport(format!("{op} timed out after {:?}", self.timeout)))??;
        if !sender.is_closed() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(sender);
        }
        Ok(out)
    }

    /// Sends a signed request for a streaming answer (SubscribeToShard) on a connection of its
    /// own: HTTP/2 over TLS (as AWS requires), HTTP/1.1 otherwise (as Sluice serves it).
    pub async fn stream(&self, op: &str, body: &Value) -> Result<hyper::Response<hyper::body::Incoming>, CallError> {
        let mut req = self.request(op, Bytes::from(body.to_string()))?;
        if self.endpoint.tls {
            let tls = self.tls()?;
            let stream = tls.h2.connect(tls.name.clone(), self.tcp().await?).await.map_err(CallError::transport)?;
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(CallError::transport)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            // HTTP/2 carries the host as :authority.
            req.headers_mut().remove("host");
            return sender.send_request(req).await.map_err(CallError::transport);
        }
        let mut sender = self.connection().await?;
        sender.send_request(req).await.map_err(CallError::transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let ep = |h: &str, port, tls| Endpoint { host: h.into(), port, tls };
        assert_eq!(Endpoint::parse("http://127.0.0.1:4567").unwrap(), ep("127.0.0.1", 4567, false));
        assert_eq!(Endpoint::parse("localhost:99/").unwrap(), ep("localhost", 99, false));
        assert_eq!(Endpoint::parse("http://example.com").unwrap().port, 80);
        let aws = Endpoint::parse("https://kinesis.us-east-1.amazonaws.com").unwrap();
        assert_eq!(aws, ep("kinesis.us-east-1.amazonaws.com", 443, true));
        assert_eq!(aws.authority(), "kinesis.us-east-1.amazonaws.com");
        assert!(Endpoint::parse("http://:1").is_err());
        assert_eq!(
            url_path("http://127.0.0.1:9/2015-03-31/functions/f/invocations"),
            "/2015-03-31/functions/f/invocations"
        );
        assert_eq!(url_path("https://example.com"), "/");
        assert!(Endpoint::parse("http://h:notaport").is_err());
    }

    #[test]
    fn shared_credentials_file_profiles() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n[other]\naws_access_key_id=C\n\
                    aws_secret_access_key = D\naws_session_token = T\n";
        let d = profile_credentials(text, "default").unwrap();
        assert_eq!((d.access_key_id.as_str(), d.secret_access_key.as_str(), d.session_token), ("A", "B", None));
        let o = profile_credentials(text, "other").unwrap();
        assert_eq!(o.session_token.as_deref(), Some("T"));
        assert!(profile_credentials(text, "missing").is_none());
    }

    /// A TLS server with a certificate of our own CA answers as a service would; the client
    /// trusts that CA only, and a client without it is refused.
    #[tokio::test]
    async fn https_endpoints_over_tls() {
        use tokio_rustls::rustls;
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
        let mut server =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        let target = req.headers()["x-amz-target"].to_str().unwrap_or("").to_owned();
                        let signed = req.headers().contains_key("authorization");
                        let version = format!("{:?}", req.version());
                        let body =
                            serde_json::json!({"target": target, "signed": signed, "version": version}).to_string();
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                    });
                    let auto = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    let _ = auto.serve_connection(TokioIo::new(tls), svc).await;
                });
            }
        });
        let creds = Credentials { access_key_id: "a".into(), secret_access_key: "b".into(), session_token: None };
        let ep = Endpoint::parse(&format!("https://localhost:{port}")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        add_pem(&mut roots, ck.cert.pem().as_bytes()).unwrap();
        let client = AwsClient::kinesis(ep.clone(), "us-east-1", creds.clone()).with_roots(roots).unwrap();
        for _ in 0..2 {
            let v = client.call("ListShards", &serde_json::json!({})).await.unwrap();
            assert_eq!(
                v,
                serde_json::json!({"target": "Kinesis_20131202.ListShards", "signed": true, "version": "HTTP/1.1"})
            );
        }
        // A streaming call goes over HTTP/2, as AWS serves SubscribeToShard.
        let resp = client.stream("SubscribeToShard", &serde_json::json!({})).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((v["version"].as_str(), v["signed"].as_bool()), (Some("HTTP/2.0"), Some(true)), "{v}");
        let stranger = AwsClient::kinesis(ep, "us-east-1", creds).with_roots(rustls::RootCertStore::empty()).unwrap();
        let e = stranger.call("ListShards", &serde_json::json!({})).await.unwrap_err();
        assert_eq!(e.status, 0, "an untrusted certificate is refused: {e}");
        assert!(add_pem(&mut rustls::RootCertStore::empty(), b"not pem").is_err());
    }

    #[test]
    fn requests_are_signed_for_the_service() {
        let creds = Credentials { access_key_id: "AKID".into(), secret_access_key: "s".into(), session_token: None };
        let c = AwsClient::dynamodb(Endpoint::parse("http://127.0.0.1:4567").unwrap(), "eu-west-1", creds);
        let req = c.request("GetItem", Bytes::from_static(b"{}")).unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/"), "{auth}");
        assert!(auth.contains("/eu-west-1/dynamodb/aws4_request"), "{auth}");
        assert!(auth.contains("x-amz-target"), "{auth}");
        assert_eq!(req.headers()["x-amz-target"], "DynamoDB_20120810.GetItem");
        assert!(req.headers().contains_key("x-amz-date"));
    }
}
