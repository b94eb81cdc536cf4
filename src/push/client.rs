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

use std::collections::HashMap;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frame::{decode, encode, EndReason, Frame, FrameError, PushRecord, Start, VERSION};

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
    stream: TcpStream,
    buf: BytesMut,
    out: Vec<u8>,
    next_request: u32,
    /// Each subscription's continuation sequence number, as of the last records received.
    pub continuations: HashMap<u32, String>,
}

impl PushClient {
    pub async fn connect(addr: &str, client_name: &str) -> Result<PushClient, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = PushClient {
            stream,
            buf: BytesMut::with_capacity(64 << 10),
            out: Vec::new(),
            next_request: 1,
            continuations: HashMap::new(),
        };
        c.send(&Frame::Hello { version: VERSION, client: client_name.into() }).await?;
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
