//! A Rust client for the push protocol.
//!
//! ```no_run
//! # async fn run() -> Result<(), sluice::push::client::ClientError> {
//! use sluice::push::client::{Event, PushClient};
//! use sluice::push::frame::Start;
//! let mut client = PushClient::connect("127.0.0.1:4568", "example").await?;
//! let sub = client.subscribe("sensor-data-stream", "", "shardId-000000000000", Start::TrimHorizon).await?;
//! while let Event::Records { records, .. } = client.next_event().await? {
//!     for r in records {
//!         println!("{} {}", r.sequence_number, String::from_utf8_lossy(&r.data));
//!     }
//! }
//! # let _ = sub; Ok(()) }
//! ```
//!
//! The client grants [`CREDIT_WINDOW_BYTES`] of credit per subscription and tops it up as it
//! consumes records, answers pings, and remembers each subscription's continuation sequence
//! number, so that a new connection can resume with `Start::AfterSequenceNumber` exactly where
//! the last one stopped.
//!
//! [`PushClient::connect_with`] adds TLS (a server certificate checked against given roots) and
//! authentication with an access key (protocol version 2).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::frame::{decode, encode, EndReason, Frame, FrameError, PushRecord, Start, VERSION, VERSION_AUTH};
use crate::http::sigv4::PushAuth;

/// A connection's byte stream: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An access key to authenticate with.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The region the server signs for (its `region`).
    pub region: String,
}

/// TLS towards the server: the roots its certificate must chain to, and the name it must carry.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    server_name: rustls::pki_types::ServerName<'static>,
}

impl TlsClient {
    /// Trusts the certificates of a PEM file (a private CA, or the server's self-signed one).
    pub fn from_ca_file(path: &std::path::Path, server_name: &str) -> Result<TlsClient, ClientError> {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(path)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| ClientError::Protocol(format!("{}: {e}", path.display())))?;
            roots.add(cert).map_err(|e| ClientError::Protocol(format!("{}: {e}", path.display())))?;
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| ClientError::Protocol(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"sluice-push".to_vec()];
        let server_name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| ClientError::Protocol(format!("server name {server_name}: {e}")))?;
        Ok(TlsClient { config: Arc::new(config), server_name })
    }
}

/// How to connect: plain or TLS, anonymous or with a key.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    pub tls: Option<TlsClient>,
    pub credentials: Option<Credentials>,
}

/// Credit granted per subscription; records flow while it lasts.
pub const CREDIT_WINDOW_BYTES: u32 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from the server: {0}")]
    Frame(#[from] FrameError),
    #[error("server error {code}: {message}")]
    Server { code: u16, message: String },
    #[error("protocol: {0}")]
    Protocol(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: u32,
    /// Where the subscription starts: `AfterSequenceNumber` of this resumes at the same place.
    pub continuation: String,
}

#[derive(Debug)]
pub enum Event {
    Records { subscription_id: u32, records: Vec<PushRecord>, continuation: String, millis_behind: u64 },
    End { subscription_id: u32, reason: EndReason, continuation: String },
    Error { subscription_id: u32, code: u16, message: String },
}

pub struct PushClient {
    stream: Box<dyn Io>,
    buf: BytesMut,
    out: Vec<u8>,
    next_request: u32,
    /// Each subscription's continuation sequence number, as of the last records received.
    pub continuations: HashMap<u32, String>,
}

impl PushClient {
    /// Connects over plain TCP without a key (protocol version 1).
    pub async fn connect(addr: &str, client_name: &str) -> Result<PushClient, ClientError> {
        PushClient::connect_with(addr, client_name, &ConnectOptions::default()).await
    }

    /// Connects as `options` say: with credentials the client speaks version 2 and answers the
    /// server's challenge.
    pub async fn connect_with(
        addr: &str,
        client_name: &str,
        options: &ConnectOptions,
    ) -> Result<PushClient, ClientError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Io> = match &options.tls {
            None => Box::new(tcp),
            Some(tls) => Box::new(
                tokio_rustls::TlsConnector::from(tls.config.clone()).connect(tls.server_name.clone(), tcp).await?,
            ),
        };
        let mut c = PushClient {
            stream,
            buf: BytesMut::with_capacity(64 << 10),
            out: Vec::new(),
            next_request: 1,
            continuations: HashMap::new(),
        };
        let version = if options.credentials.is_some() { VERSION_AUTH } else { VERSION };
        c.send(&Frame::Hello { version, client: client_name.into() }).await?;
        if let Some(creds) = &options.credentials {
            let nonce = match c.read_frame().await? {
                Frame::Challenge { nonce } => nonce,
                Frame::Error { code, message, .. } => return Err(ClientError::Server { code, message }),
                other => return Err(ClientError::Protocol(format!("expected CHALLENGE, got {other:?}"))),
            };
            let date_ms = crate::time::now_ms();
            let auth = PushAuth { nonce: &nonce, access_key_id: &creds.access_key_id, date_ms, client: client_name };
            let signature = auth.sign(&creds.secret_access_key, &creds.region);
            c.send(&Frame::Auth { access_key_id: creds.access_key_id.clone(), date_ms, signature }).await?;
        }
        match c.read_frame().await? {
            Frame::HelloOk { .. } => Ok(c),
            Frame::Error { code, message, .. } => Err(ClientError::Server { code, message }),
            other => Err(ClientError::Protocol(format!("expected HELLO_OK, got {other:?}"))),
        }
    }

    async fn send(&mut self, f: &Frame) -> Result<(), ClientError> {
        self.out.clear();
        encode(f, &mut self.out);
        self.stream.write_all(&self.out).await?;
        Ok(())
    }

    async fn read_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            if let Some((f, used)) = decode(&self.buf)? {
                let _ = self.buf.split_to(used);
                return Ok(f);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Subscribes to a shard; `consumer` may be empty (no registration, no takeover rule).
    pub async fn subscribe(
        &mut self,
        stream: &str,
        consumer: &str,
        shard: &str,
        start: Start,
    ) -> Result<Subscription, ClientError> {
        let request_id = self.next_request;
        self.next_request += 1;
        let f = Frame::Subscribe {
            request_id,
            stream: stream.into(),
            consumer: consumer.into(),
            shard: shard.into(),
            start,
            credit_bytes: CREDIT_WINDOW_BYTES,
        };
        self.send(&f).await?;
        loop {
            match self.read_frame().await? {
                Frame::Subscribed { request_id: r, subscription_id, continuation } if r == request_id => {
                    self.continuations.insert(subscription_id, continuation.clone());
                    return Ok(Subscription { id: subscription_id, continuation });
                }
                Frame::Error { id, code, message } if id == request_id || id == 0 => {
                    return Err(ClientError::Server { code, message })
                }
                Frame::Ping { nonce } => self.send(&Frame::Pong { nonce }).await?,
                // Records of other subscriptions may arrive first; this simple client is meant
                // to subscribe before it consumes.
                other => return Err(ClientError::Protocol(format!("unexpected frame while subscribing: {other:?}"))),
            }
        }
    }

    /// The next records (or the end or error of a subscription). Answers pings and replenishes
    /// credit on the way.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            match self.read_frame().await? {
                Frame::Records { subscription_id, millis_behind, continuation, records } => {
                    let bytes: u32 = records.iter().map(|r| r.data.len() as u32).sum();
                    self.send(&Frame::Credit { subscription_id, bytes }).await?;
                    self.continuations.insert(subscription_id, continuation.clone());
                    return Ok(Event::Records { subscription_id, records, continuation, millis_behind });
                }
                Frame::End { subscription_id, reason, continuation } => {
                    return Ok(Event::End { subscription_id, reason, continuation })
                }
                Frame::Error { id, code, message } => return Ok(Event::Error { subscription_id: id, code, message }),
                Frame::Ping { nonce } => self.send(&Frame::Pong { nonce }).await?,
                Frame::Pong { .. } => {}
                other => return Err(ClientError::Protocol(format!("unexpected frame: {other:?}"))),
            }
        }
    }

    pub async fn unsubscribe(&mut self, subscription_id: u32) -> Result<(), ClientError> {
        self.send(&Frame::Unsubscribe { subscription_id }).await
    }
}
