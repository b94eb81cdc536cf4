//! The push protocol server: one task reads a connection's frames, one writes them, and one task
//! per subscription delivers records as they become durable, within the credit the client has
//! granted. Records come from the log through a [`ShardCursor`], so a slow client costs a log
//! position, not memory.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

use super::frame::{decode, encode, EndReason, Frame, PushRecord, Start, FRAME_LEN_MAX, VERSION, VERSION_AUTH};
use crate::config::AuthMode;
use crate::http::sigv4::PushAuth;
use crate::http::tls::Tls;
use crate::kinesis::access::Named;
use crate::kinesis::fanout::Pacer;
use crate::kinesis::positions::parse_position;
use crate::kinesis::shards::find_shard;
use crate::protocol::error::ApiError;
use crate::reader::leases::{Cancel, Lease};
use crate::reader::{ShardCursor, DELIVERY_BYTES_MAX};
use crate::runtime::ShardKey;
use crate::service::Service;
use crate::stream::meta::ConsumerStatus;
use crate::stream::seqno::SeqNo;

/// Protocol-level error codes (request errors use [`ApiError::push_code`]).
pub const CODE_BAD_FRAME: u16 = 1;
pub const CODE_UNSUPPORTED_VERSION: u16 = 2;
/// Frames queued for a connection's writer.
const OUTBOUND_FRAMES_MAX: usize = 64;
/// Subscriptions one connection may hold.
const SUBSCRIPTIONS_PER_CONNECTION_MAX: usize = 1024;
/// A connection that sends nothing for this many heartbeat intervals is closed.
const MISSED_HEARTBEATS_MAX: u32 = 3;

/// Serves until aborted; with `tls`, every connection is a TLS one.
pub async fn serve(listener: TcpListener, svc: Arc<Service>, tls: Option<Arc<Tls>>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "push accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let ended = match tls {
                None => connection(svc, stream).await,
                Some(tls) => match tls.accept_push(stream).await {
                    Some(stream) => connection(svc, stream).await,
                    None => Ok(()),
                },
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "push connection ended");
            }
        });
    }
}

struct Credit {
    bytes: AtomicI64,
    more: Notify,
}

async fn connection<S>(svc: Arc<Service>, stream: S) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (out, mut out_rx) = mpsc::channel::<Frame>(OUTBOUND_FRAMES_MAX);
    let writer = tokio::spawn(async move {
        let mut wr = BufWriter::new(wr);
        let mut buf = Vec::new();
        while let Some(f) = out_rx.recv().await {
            buf.clear();
            encode(&f, &mut buf);
            wr.write_all(&buf).await?;
            if out_rx.is_empty() {
                wr.flush().await?;
            }
        }
        wr.flush().await
    });
    let heartbeat = svc.cfg.fanout.heartbeat_interval;
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut hello = false;
    // Version 2: the CHALLENGE sent and the HELLO's client name, until AUTH answers it.
    let mut challenge: Option<(Vec<u8>, String)> = None;
    // The access key that authenticated the connection (an index into `[[auth.keys]]`).
    let mut caller: Option<crate::http::iam::Caller> = None;
    let hello_ok = |version| Frame::HelloOk {
        version,
        server: format!("sluice/{}", env!("CARGO_PKG_VERSION")),
        heartbeat_ms: heartbeat.as_millis() as u32,
    };
    let mut missed = 0u32;
    let mut subs: std::collections::HashMap<u32, (Arc<Credit>, tokio::task::AbortHandle)> = Default::default();
    let next_id = AtomicU32::new(1);
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    let result = loop {
        // Drain whole frames already buffered.
        let frame = match decode(&buf) {
            Ok(Some((f, used))) => {
                let _ = buf.split_to(used);
                Some(f)
            }
            Ok(None) => None,
            Err(e) => {
                let _ = out.send(Frame::Error { id: 0, code: CODE_BAD_FRAME, message: e.to_string() }).await;
                break Ok(());
            }
        };
        let Some(frame) = frame else {
            if buf.capacity() - buf.len() < 8 << 10 {
                buf.reserve((64 << 10).min(FRAME_LEN_MAX));
            }
            tokio::select! {
                n = rd.read_buf(&mut buf) => match n {
                    Ok(0) => break Ok(()),
                    Ok(_) => missed = 0,
                    Err(e) => break Err(e),
                },
                _ = ticker.tick() => {
                    missed += 1;
                    if missed > MISSED_HEARTBEATS_MAX {
                        break Ok(());
                    }
                    let _ = out.try_send(Frame::Ping { nonce: u64::from(missed) });
                }
            }
            continue;
        };
        match frame {
            Frame::Hello { version, client } if !hello && challenge.is_none() => {
                if version != VERSION && version != VERSION_AUTH {
                    let _ = out
                        .send(Frame::Error {
                            id: 0,
                            code: CODE_UNSUPPORTED_VERSION,
                            message: format!(
                                "version {version} is not supported; this server speaks {VERSION} and {VERSION_AUTH}"
                            ),
                        })
                        .await;
                    break Ok(());
                }
                if version == VERSION_AUTH {
                    let mut nonce = vec![0u8; 32];
                    if getrandom::getrandom(&mut nonce).is_err() {
                        let e = ApiError::InternalFailure("No randomness for a challenge.".into());
                        let _ =
                            out.send(Frame::Error { id: 0, code: e.push_code(), message: e.message().into() }).await;
                        break Ok(());
                    }
                    let _ = out.send(Frame::Challenge { nonce: nonce.clone() }).await;
                    challenge = Some((nonce, client));
                    continue;
                }
                if svc.cfg.auth.mode == AuthMode::Sigv4 {
                    let e = ApiError::MissingAuthenticationToken(format!(
                        "This server authenticates push connections: send HELLO with version {VERSION_AUTH} and \
                         answer its CHALLENGE."
                    ));
                    let _ = out.send(Frame::Error { id: 0, code: e.push_code(), message: e.message().into() }).await;
                    break Ok(());
                }
                hello = true;
                let _ = out.send(hello_ok(VERSION)).await;
            }
            Frame::Auth { access_key_id, date_ms, signature } if !hello && challenge.is_some() => {
                let (nonce, client) = challenge.take().unwrap_or_default();
                if svc.cfg.auth.mode == AuthMode::Sigv4 {
                    let auth = PushAuth { nonce: &nonce, access_key_id: &access_key_id, date_ms, client: &client };
                    match auth.verify(&svc.cfg.auth.keys, &svc.cfg.region, svc.now_ms(), &signature) {
                        Ok(k) => caller = Some(svc.cfg.auth.keys[k].caller()),
                        Err(e) => {
                            let _ = out
                                .send(Frame::Error { id: 0, code: e.push_code(), message: e.message().into() })
                                .await;
                            break Ok(());
                        }
                    }
                }
                hello = true;
                let _ = out.send(hello_ok(VERSION_AUTH)).await;
            }
            _ if !hello => {
                let _ = out
                    .send(Frame::Error {
                        id: 0,
                        code: CODE_BAD_FRAME,
                        message: "the first frames must be HELLO (and AUTH for version 2)".into(),
                    })
                    .await;
                break Ok(());
            }
            Frame::Subscribe { request_id, stream, consumer, shard, start, credit_bytes } => {
                subs.retain(|_, (_, task)| !task.is_finished());
                if subs.len() >= SUBSCRIPTIONS_PER_CONNECTION_MAX {
                    let e = ApiError::LimitExceeded("Too many subscriptions on this connection.".into());
                    let _ = out
                        .send(Frame::Error { id: request_id, code: e.push_code(), message: e.message().into() })
                        .await;
                    continue;
                }
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let allowed = match &caller {
                    Some(c) => {
                        // A subscription through a consumer is the consumer's: its policy decides.
                        let consumer_name = Some(consumer.as_str()).filter(|c| !c.is_empty());
                        let named = Named { stream_name: Some(&stream), consumer_name, ..Default::default() };
                        crate::kinesis::access::authorize(&svc, c, "SubscribeToShard", &named)
                    }
                    None => Ok(()),
                };
                // The stream is named in the caller's own account, by a stream name (a name inside
                // the daemon, `<account>/<name>` or `~...`, is none).
                let valid = crate::service::validate_stream_name(&stream);
                let account = crate::kinesis::accounts::account_of(&svc, caller.as_ref());
                let stream = crate::stream::meta::qualified(account, &svc.cfg.account_id, &stream);
                let started = match valid.and(allowed) {
                    Ok(()) => start_subscription(&svc, &stream, &consumer, &shard, start).await,
                    Err(e) => Err(e),
                }
                .map_err(|e| crate::kinesis::accounts::present_error(&svc, e));
                match started {
                    Ok((cursor, lease, seq)) => {
                        let credit =
                            Arc::new(Credit { bytes: AtomicI64::new(i64::from(credit_bytes)), more: Notify::new() });
                        let continuation =
                            SeqNo::continuation(seq.stream_id, seq.shard_index, cursor.position).encode();
                        let _ = out.send(Frame::Subscribed { request_id, subscription_id: id, continuation }).await;
                        let task =
                            tokio::spawn(deliver(svc.clone(), id, cursor, lease, seq, credit.clone(), out.clone()));
                        subs.insert(id, (credit, task.abort_handle()));
                    }
                    Err(e) => {
                        let _ = out
                            .send(Frame::Error { id: request_id, code: e.push_code(), message: e.message().into() })
                            .await;
                    }
                }
            }
            Frame::Credit { subscription_id, bytes } => {
                if let Some((c, _)) = subs.get(&subscription_id) {
                    c.bytes.fetch_add(i64::from(bytes), Ordering::Relaxed);
                    c.more.notify_one();
                }
            }
            Frame::Unsubscribe { subscription_id } => {
                if let Some((_, task)) = subs.remove(&subscription_id) {
                    task.abort();
                    let _ = out
                        .send(Frame::End {
                            subscription_id,
                            reason: EndReason::Unsubscribed,
                            continuation: String::new(),
                        })
                        .await;
                }
            }
            Frame::Ping { nonce } => {
                let _ = out.send(Frame::Pong { nonce }).await;
            }
            Frame::Pong { .. } => {}
            other => {
                let _ = out
                    .send(Frame::Error {
                        id: 0,
                        code: CODE_BAD_FRAME,
                        message: format!("unexpected frame from a client: {other:?}"),
                    })
                    .await;
                break Ok(());
            }
        }
    };
    for (_, (_, task)) in subs {
        task.abort();
    }
    drop(out);
    let _ = writer.await;
    result
}

/// Resolves a SUBSCRIBE: the stream, the shard, the consumer (if named) and the start.
async fn start_subscription(
    svc: &Arc<Service>,
    stream: &str,
    consumer: &str,
    shard: &str,
    start: Start,
) -> Result<(ShardCursor, Option<Lease>, SeqNo), ApiError> {
    let meta = svc.stream(stream)?;
    svc.writable(&meta)?;
    let shard = find_shard(svc, &meta, shard)?;
    let consumer_arn = if consumer.is_empty() {
        None
    } else {
        let c = meta.consumers.iter().find(|c| c.name == consumer).ok_or_else(|| {
            ApiError::ResourceNotFound(format!("Consumer {consumer} of stream {stream} is not registered."))
        })?;
        if c.status != ConsumerStatus::Active {
            return Err(ApiError::ResourceInUse(format!("Consumer {consumer} is {}, not ACTIVE.", c.status.as_str())));
        }
        Some(c.arn(&svc.arn(&meta)))
    };
    let (kind, seq, ts) = match &start {
        Start::TrimHorizon => ("TRIM_HORIZON", None, None),
        Start::Latest => ("LATEST", None, None),
        Start::AtSequenceNumber(s) => ("AT_SEQUENCE_NUMBER", Some(s.as_str()), None),
        Start::AfterSequenceNumber(s) => ("AFTER_SEQUENCE_NUMBER", Some(s.as_str()), None),
        Start::AtTimestamp(ms) => ("AT_TIMESTAMP", None, Some(serde_json::json!(*ms as f64 / 1000.0))),
    };
    let position = parse_position(svc, &meta, shard, kind, "start", seq, ts.as_ref())?;
    let key = ShardKey { stream_id: meta.id, shard_index: shard.index };
    let cursor = ShardCursor::open(svc.runtime.clone(), key, position).await?;
    // Only a subscription that can start takes the consumer's slot (and ends an older one).
    let lease = match consumer_arn {
        Some(arn) => Some(svc.subscriptions.acquire(&arn, shard.index, svc.cfg.fanout.takeover_after)?),
        None => None,
    };
    Ok((cursor, lease, SeqNo::shard_start(meta.id, shard.index)))
}

async fn deliver(
    svc: Arc<Service>,
    id: u32,
    mut cursor: ShardCursor,
    mut lease: Option<Lease>,
    seq: SeqNo,
    credit: Arc<Credit>,
    out: mpsc::Sender<Frame>,
) {
    let heartbeat = svc.cfg.fanout.heartbeat_interval;
    let mut pacer = Pacer::new(svc.cfg.limits.enforce.then_some(svc.cfg.limits.fanout_bytes_per_s));
    loop {
        let available = credit.bytes.load(Ordering::Relaxed);
        let cancelled = async {
            match lease.as_mut() {
                Some(l) => match l.cancelled.changed().await {
                    Ok(()) => *l.cancelled.borrow(),
                    Err(_) => Some(Cancel::Shutdown),
                },
                None => std::future::pending().await,
            }
        };
        let next = async {
            if available <= 0 {
                // Out of credit: wait for more (a takeover or shutdown still ends the wait).
                credit.more.notified().await;
                return None;
            }
            Some(cursor.next((available as usize).min(DELIVERY_BYTES_MAX), heartbeat).await)
        };
        let d = tokio::select! {
            why = cancelled => {
                let reason = match why {
                    Some(Cancel::Shutdown) => EndReason::ServerShutdown,
                    Some(Cancel::Deregistered) => EndReason::Deregistered,
                    _ => EndReason::TakenOver,
                };
                let continuation = SeqNo::continuation(seq.stream_id, seq.shard_index, cursor.position).encode();
                let _ = out.send(Frame::End { subscription_id: id, reason, continuation }).await;
                return;
            }
            d = next => d,
        };
        let d = match d {
            None => continue,
            Some(Err(e)) => {
                let _ = out.send(Frame::Error { id, code: e.push_code(), message: e.message().into() }).await;
                return;
            }
            Some(Ok(d)) => d,
        };
        if d.records.is_empty() && d.ended {
            let continuation = SeqNo::continuation(seq.stream_id, seq.shard_index, cursor.position).encode();
            let _ = out.send(Frame::End { subscription_id: id, reason: EndReason::ShardEnded, continuation }).await;
            return;
        }
        if d.records.is_empty() {
            continue;
        }
        let bytes: u64 = d.records.iter().map(|r| r.data.len() as u64).sum();
        credit.bytes.fetch_sub(bytes as i64, Ordering::Relaxed);
        let records = d
            .records
            .into_iter()
            .map(|r| PushRecord {
                sequence_number: SeqNo::record(seq.stream_id, seq.shard_index, r.ordinal).encode(),
                arrival_ms: r.ts_ms,
                partition_key: r.partition_key,
                data: r.data.to_vec(),
            })
            .collect::<Vec<_>>();
        let count = records.len() as u64;
        let continuation = SeqNo::continuation(seq.stream_id, seq.shard_index, cursor.position).encode();
        let frame = Frame::Records { subscription_id: id, millis_behind: d.millis_behind, continuation, records };
        if out.send(frame).await.is_err() {
            return;
        }
        if let Some(meta) = svc.stream_by_id(seq.stream_id) {
            svc.metrics.record_fanout(&meta.name, count, bytes);
        }
        pacer.pace(bytes).await;
        if d.ended {
            let continuation = SeqNo::continuation(seq.stream_id, seq.shard_index, cursor.position).encode();
            let _ = out.send(Frame::End { subscription_id: id, reason: EndReason::ShardEnded, continuation }).await;
            return;
        }
    }
}
