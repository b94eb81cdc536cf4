//! `sluice bench fanout`: how long after a put is acknowledged each enhanced fan-out subscriber
//! has the record, over the AWS event-stream path (SubscribeToShard, HTTP/1.1) and the binary push
//! path, for a number of consumers and shards, at a light and a heavy open-loop rate.
//!
//! Every record carries its id and a checksum ([`super::payload`]); the producer notes when each
//! put was sent and acknowledged, each subscriber when it received each id. Every delivered
//! record is verified (checksum, once per subscriber, in order per shard); any failure fails the
//! run. Latency "from ack" is receive − acknowledgement (clamped at
//! zero: a subscriber can be woken by the commit before the producer reads its reply), "from send"
//! is receive − send. All clocks are one monotonic clock in one process.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::conn::{parse_endpoint, Conn, Endpoint};
use super::percentile;
use crate::protocol::eventstream;
use crate::push::client::{Event, PushClient};
use crate::push::frame::Start;

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
    /// The push protocol address.
    #[arg(long, default_value = "127.0.0.1:4568")]
    pub push: String,
    /// Run the whole matrix: 1/5/20 consumers x 1/4 shards x light/heavy x both paths.
    #[arg(long)]
    pub matrix: bool,
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// Records per second (open loop).
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// "eventstream" or "push".
    #[arg(long, default_value = "push")]
    pub path: String,
    #[arg(long, default_value_t = 256)]
    pub record_size: usize,
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
}

/// The light and heavy rates of the matrix, records per second.
pub const LIGHT_RATE: u64 = 200;
pub const HEAVY_RATE: u64 = 10_000;

struct Sample {
    /// The record's id, or `None` if its checksum failed.
    id: Option<u64>,
    received_ns: u64,
    /// Which of the subscriber's subscriptions (shard) delivered it: order is checked per lane.
    lane: u32,
}

type Samples = Arc<Mutex<Vec<Sample>>>;

pub async fn run(args: FanoutArgs) -> anyhow::Result<()> {
    let ep = parse_endpoint(&args.endpoint)?;
    let cases: Vec<(usize, u32, u64, String)> = if args.matrix {
        let mut v = Vec::new();
        for path in ["eventstream", "push"] {
            for shards in [1, 4] {
                for consumers in [1, 5, 20] {
                    for rate in [LIGHT_RATE, HEAVY_RATE] {
                        v.push((consumers, shards, rate, path.to_owned()));
                    }
                }
            }
        }
        v
    } else {
        vec![(args.consumers, args.shards, args.rate, args.path.clone())]
    };
    println!("| path | shards | consumers | rate (rec/s) | delivered | p50 ms | p99 ms | p999 ms | max ms | p99 from send ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, (consumers, shards, rate, path)) in cases.into_iter().enumerate() {
        let stream = format!("fanout-bench-{}-{i}", std::process::id());
        let r = case(&ep, &args, &stream, consumers, shards, rate, &path).await?;
        println!(
            "| {path} | {shards} | {consumers} | {rate} | {}/{} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.delivered,
            r.expected,
            r.ack[0] as f64 / 1e6,
            r.ack[1] as f64 / 1e6,
            r.ack[2] as f64 / 1e6,
            r.ack[3] as f64 / 1e6,
            r.send_p99 as f64 / 1e6
        );
        let mut c = Conn::open(&ep).await?;
        let _ = c.json("DeleteStream", json!({"StreamName": stream, "EnforceConsumerDeletion": true})).await;
    }
    Ok(())
}

struct CaseResult {
    delivered: usize,
    expected: usize,
    /// p50, p99, p999, max from acknowledgement, ns.
    ack: [u64; 4],
    send_p99: u64,
}

async fn wait_active(c: &mut Conn, op: &str, body: Value, pointer: &str) -> anyhow::Result<Value> {
    for _ in 0..500 {
        let (_, v) = c.json(op, body.clone()).await?;
        if v.pointer(pointer).and_then(Value::as_str) == Some("ACTIVE") {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("{op} never showed ACTIVE")
}

#[allow(clippy::too_many_arguments)]
async fn case(
    ep: &Endpoint,
    args: &FanoutArgs,
    stream: &str,
    consumers: usize,
    shards: u32,
    rate: u64,
    path: &str,
) -> anyhow::Result<CaseResult> {
    let mut c = Conn::open(ep).await?;
    let (s, v) = c.json("CreateStream", json!({"StreamName": stream, "ShardCount": shards})).await?;
    if s != 200 {
        bail!("CreateStream: {v}");
    }
    let summary = wait_active(
        &mut c,
        "DescribeStreamSummary",
        json!({"StreamName": stream}),
        "/StreamDescriptionSummary/StreamStatus",
    )
    .await?;
    let stream_arn = summary["StreamDescriptionSummary"]["StreamARN"].as_str().context("StreamARN")?.to_owned();
    let mut consumer_arns = Vec::new();
    for i in 0..consumers {
        let (s, v) =
            c.json("RegisterStreamConsumer", json!({"StreamARN": stream_arn, "ConsumerName": format!("c{i}")})).await?;
        if s != 200 {
            bail!("RegisterStreamConsumer: {v}");
        }
        let arn = v["Consumer"]["ConsumerARN"].as_str().context("ConsumerARN")?.to_owned();
        wait_active(
            &mut c,
            "DescribeStreamConsumer",
            json!({"ConsumerARN": arn}),
            "/ConsumerDescription/ConsumerStatus",
        )
        .await?;
        consumer_arns.push(arn);
    }
    let start = Instant::now();
    let mut all_samples: Vec<Samples> = Vec::new();
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(1024);
    for (ci, arn) in consumer_arns.iter().enumerate() {
        let samples: Samples = Arc::default();
        all_samples.push(samples.clone());
        match path {
            "push" => {
                let mut client = PushClient::connect(&args.push, "bench").await?;
                for shard in 0..shards {
                    client
                        .subscribe(stream, &format!("c{ci}"), &crate::stream::meta::shard_id(shard), Start::Latest)
                        .await?;
                }
                let _ = ready_tx.send(()).await;
                tasks.push(tokio::spawn(async move {
                    while let Ok(Event::Records { records, subscription_id, .. }) = client.next_event().await {
                        let now = start.elapsed().as_nanos() as u64;
                        let mut s = samples.lock().expect("samples");
                        for r in records {
                            s.push(Sample { id: record_id(&r.data), received_ns: now, lane: subscription_id });
                        }
                    }
                }));
            }
            _ => {
                for shard in 0..shards {
                    let (arn, samples, ready) = (arn.clone(), samples.clone(), ready_tx.clone());
                    let ep = Endpoint::clone(ep);
                    tasks.push(tokio::spawn(async move {
                        if let Err(e) = event_stream_subscriber(&ep, &arn, shard, start, samples, ready).await {
                            eprintln!("subscriber: {e:#}");
                        }
                    }));
                }
            }
        }
    }
    let subscriptions = if path == "push" { consumers } else { consumers * shards as usize };
    for _ in 0..subscriptions {
        ready_rx.recv().await.context("a subscriber failed to start")?;
    }
    // Open loop: every tick sends what the rate owes, in one PutRecords.
    let tick = Duration::from_millis(5);
    let total = rate * args.seconds;
    let mut sent_ns = vec![0u64; total as usize];
    let mut ack_ns = vec![0u64; total as usize];
    let filler = super::payload::filler(0, args.record_size);
    let mut next_id = 0u64;
    let began = Instant::now();
    let mut producer = Conn::open(ep).await?;
    while next_id < total {
        let due = ((began.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
        if due > next_id {
            let ids: Vec<u64> = (next_id..due.min(next_id + 500)).collect();
            let records: Vec<Value> = ids
                .iter()
                .map(|id| {
                    let sent = start.elapsed().as_nanos() as u64;
                    let mut d = super::payload::header(0, *id, sent, &filler).to_vec();
                    d.extend_from_slice(&filler);
                    json!({"Data": base64::engine::general_purpose::STANDARD.encode(d), "PartitionKey": format!("k{id}")})
                })
                .collect();
            let body = Bytes::from(json!({"StreamName": stream, "Records": records}).to_string());
            let t = start.elapsed().as_nanos() as u64;
            for id in &ids {
                sent_ns[*id as usize] = t;
            }
            let (s, _) = producer.call("PutRecords", body).await?;
            let t = start.elapsed().as_nanos() as u64;
            if s == 200 {
                for id in &ids {
                    ack_ns[*id as usize] = t;
                }
            }
            next_id = *ids.last().expect("not empty") + 1;
        } else {
            tokio::time::sleep(tick).await;
        }
    }
    // Let the last records arrive.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let got: usize = all_samples.iter().map(|s| s.lock().expect("samples").len()).sum();
        if got >= total as usize * consumers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in &tasks {
        t.abort();
    }
    let mut from_ack = Vec::new();
    let mut from_send = Vec::new();
    let (mut corrupt, mut duplicated, mut reordered) = (0usize, 0usize, 0usize);
    for s in &all_samples {
        let mut seen = std::collections::HashSet::new();
        let mut last: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
        for sample in s.lock().expect("samples").iter() {
            let Some(id) = sample.id else {
                corrupt += 1;
                continue;
            };
            if !seen.insert(id) {
                duplicated += 1;
            }
            if last.insert(sample.lane, id).is_some_and(|prev| prev >= id) {
                reordered += 1;
            }
            let i = id as usize;
            if i < ack_ns.len() && ack_ns[i] > 0 {
                from_ack.push(sample.received_ns.saturating_sub(ack_ns[i]));
                from_send.push(sample.received_ns.saturating_sub(sent_ns[i]));
            }
        }
    }
    if corrupt + duplicated + reordered > 0 {
        bail!("VERIFICATION FAILED: {corrupt} corrupt, {duplicated} duplicated, {reordered} out of order");
    }
    from_ack.sort_unstable();
    from_send.sort_unstable();
    Ok(CaseResult {
        delivered: from_ack.len(),
        expected: total as usize * consumers,
        ack: [
            percentile(&from_ack, 0.5),
            percentile(&from_ack, 0.99),
            percentile(&from_ack, 0.999),
            from_ack.last().copied().unwrap_or(0),
        ],
        send_p99: percentile(&from_send, 0.99),
    })
}

/// The id of a delivered record, if its checksum holds.
fn record_id(data: &[u8]) -> Option<u64> {
    super::payload::check(data).map(|p| p.seq)
}

/// One SubscribeToShard over HTTP/1.1, decoding events as they stream in.
async fn event_stream_subscriber(
    ep: &Endpoint,
    consumer_arn: &str,
    shard: u32,
    start: Instant,
    samples: Samples,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port)).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let body = json!({
        "ConsumerARN": consumer_arn,
        "ShardId": crate::stream::meta::shard_id(shard),
        "StartingPosition": {"Type": "LATEST"},
    })
    .to_string();
    let req = Request::post("/")
        .header("host", format!("{}:{}", ep.host, ep.port))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
        .header("x-amz-date", super::conn::BENCH_DATE)
        .header("authorization", super::conn::BENCH_AUTHORIZATION)
        .body(Full::new(Bytes::from(body)))?;
    let resp = sender.send_request(req).await?;
    if resp.status() != 200 {
        let b = resp.into_body().collect().await?.to_bytes();
        bail!("SubscribeToShard: {}", String::from_utf8_lossy(&b));
    }
    let mut body = resp.into_body();
    let mut buf = BytesMut::new();
    let mut announced = false;
    while let Some(frame) = body.frame().await {
        let frame: hyper::body::Frame<Bytes> = frame?;
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        while let Some((m, used)) = eventstream::decode(&buf)? {
            let _ = buf.split_to(used);
            if m.header(":event-type") == Some("initial-response") {
                if !announced {
                    announced = true;
                    let _ = ready.send(()).await;
                }
                continue;
            }
            let now = start.elapsed().as_nanos() as u64;
            let v: Value = serde_json::from_slice(&m.payload)?;
            let mut s = samples.lock().expect("samples");
            for r in v["Records"].as_array().into_iter().flatten() {
                let data = base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str().unwrap_or(""))?;
                s.push(Sample { id: record_id(&data), received_ns: now, lane: shard });
            }
        }
    }
    Ok(())
}
