//! `sluice bench analytics`: rows/s through a Kinesis Analytics filter pump and through a
//! tumbling GROUP BY over many keys, and the time from a put to its output record, against the
//! plain ingest rate (PutRecords into the input stream) measured in the same run.
//!
//! The input is put once; each application then reads it from TRIM_HORIZON, and its progress is
//! read from the daemon's own `/metrics` (`sluice_analytics_input_records_total`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::conn::{ensure_stream, metric, parse_endpoint, Conn, Endpoint};

#[derive(Debug, Clone, clap::Args)]
pub struct AnalyticsArgs {
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
    /// Input records (JSON rows of about 60 bytes).
    #[arg(long, default_value_t = 200_000)]
    pub records: usize,
    /// Distinct GROUP BY keys.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Shards of the input stream.
    #[arg(long, default_value_t = 2)]
    pub shards: u32,
    /// Put-to-output latency samples.
    #[arg(long, default_value_t = 20)]
    pub latency_samples: usize,
    #[arg(long)]
    pub json: bool,
}

const ROLE: &str = "arn:aws:iam::123456789012:role/bench";

async fn analytics(c: &mut Conn, op: &str, body: Value) -> anyhow::Result<Value> {
    let (status, b) = c
        .call_target(
            &format!("KinesisAnalytics_20150814.{op}"),
            "application/x-amz-json-1.1",
            Bytes::from(body.to_string()),
        )
        .await?;
    let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
    if status != 200 {
        anyhow::bail!("{op}: {status} {v}");
    }
    Ok(v)
}

fn arn(stream: &str) -> String {
    format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}")
}

/// Creates and starts an application reading `input` with `code`, its DESTINATION_SQL_STREAM
/// going to `output`.
async fn start_app(
    c: &mut Conn,
    name: &str,
    input: &str,
    output: &str,
    code: &str,
    position: &str,
) -> anyhow::Result<()> {
    let schema = json!({
        "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
        "RecordColumns": [
            {"Name": "K", "SqlType": "VARCHAR(16)", "Mapping": "$.k"},
            {"Name": "V", "SqlType": "DOUBLE", "Mapping": "$.v"},
            {"Name": "N", "SqlType": "BIGINT", "Mapping": "$.n"},
        ],
    });
    analytics(
        c,
        "CreateApplication",
        json!({
            "ApplicationName": name,
            "Inputs": [{"NamePrefix": "SOURCE_SQL_STREAM", "KinesisStreamsInput": {"ResourceARN": arn(input), "RoleARN": ROLE}, "InputSchema": schema}],
            "Outputs": [{"Name": "DESTINATION_SQL_STREAM", "KinesisStreamsOutput": {"ResourceARN": arn(output), "RoleARN": ROLE},
                         "DestinationSchema": {"RecordFormatType": "JSON"}}],
            "ApplicationCode": code,
        }),
    )
    .await?;
    analytics(
        c,
        "StartApplication",
        json!({"ApplicationName": name, "InputConfigurations": [{"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": position}}]}),
    )
    .await?;
    for _ in 0..600 {
        let v = analytics(c, "DescribeApplication", json!({"ApplicationName": name})).await?;
        if v["ApplicationDetail"]["ApplicationStatus"] == "RUNNING" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("{name} did not start")
}

async fn counter(ep: &Endpoint, series: &str, app: &str) -> u64 {
    metric(ep, &format!("{series}{{application=\"{app}\"}}")).await.unwrap_or(0.0) as u64
}

async fn wait_counter(ep: &Endpoint, series: &str, app: &str, want: u64, limit: Duration) -> anyhow::Result<Instant> {
    let until = Instant::now() + limit;
    loop {
        if counter(ep, series, app).await >= want {
            return Ok(Instant::now());
        }
        if Instant::now() > until {
            anyhow::bail!("{app}: {series} did not reach {want} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn row(i: usize, keys: usize) -> Value {
    let v = (i.wrapping_mul(2_654_435_761) % 10_000) as f64 / 100.0;
    json!({"k": format!("key-{}", i % keys.max(1)), "v": v, "n": i})
}

async fn put_all(c: &mut Conn, stream: &str, records: usize, keys: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut sent = 0;
    while sent < records {
        let n = 500.min(records - sent);
        let batch: Vec<Value> = (sent..sent + n)
            .map(|i| {
                let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, row(i, keys).to_string());
                json!({"Data": data, "PartitionKey": format!("p{i}")})
            })
            .collect();
        let (status, v) = c.json("PutRecords", json!({"StreamName": stream, "Records": batch})).await?;
        if status != 200 || v["FailedRecordCount"] != 0 {
            anyhow::bail!("PutRecords: {status} {v}");
        }
        sent += n;
    }
    Ok(t.elapsed().as_secs_f64())
}

pub async fn run(args: AnalyticsArgs) -> anyhow::Result<()> {
    let ep = parse_endpoint(&args.endpoint)?;
    let mut id = [0u8; 4];
    let _ = getrandom::getrandom(&mut id);
    let tag: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let input = format!("bench-sql-in-{tag}");
    let output = format!("bench-sql-out-{tag}");
    ensure_stream(&ep, &input, args.shards).await?;
    ensure_stream(&ep, &output, args.shards).await?;
    let mut c = Conn::open(&ep).await?;
    // The baseline: the same records put into the stream.
    let put_s = put_all(&mut c, &input, args.records, args.keys).await?;
    let ingest = args.records as f64 / put_s;
    let total = args.records as u64;
    let mut rows = Vec::new();
    let cases = [
        ("filter", "CREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"DESTINATION_SQL_STREAM\" SELECT STREAM K, V FROM \"SOURCE_SQL_STREAM_001\" WHERE V > 50.0;".to_owned()),
        (
            "tumbling",
            "CREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"DESTINATION_SQL_STREAM\" SELECT STREAM K, COUNT(*) AS C, AVG(V) AS A, MAX(V) AS M, \
             STEP(\"SOURCE_SQL_STREAM_001\".ROWTIME BY INTERVAL '1' SECOND) AS W FROM \"SOURCE_SQL_STREAM_001\" \
             GROUP BY K, STEP(\"SOURCE_SQL_STREAM_001\".ROWTIME BY INTERVAL '1' SECOND);"
                .to_owned(),
        ),
    ];
    for (case, code) in &cases {
        let app = format!("bench-{case}-{tag}");
        // Timed from RUNNING (STARTING lasts 200 ms; the run begins as it ends).
        start_app(&mut c, &app, &input, &output, code, "TRIM_HORIZON").await?;
        let t = Instant::now();
        let done =
            wait_counter(&ep, "sluice_analytics_input_records_total", &app, total, Duration::from_secs(600)).await?;
        let secs = (done - t).as_secs_f64();
        let out = counter(&ep, "sluice_analytics_output_records_total", &app).await;
        rows.push(json!({"query": case, "rows": total, "seconds": secs, "rows_per_s": total as f64 / secs,
                         "ratio_to_ingest": total as f64 / secs / ingest, "output_records": out}));
        c = Conn::open(&ep).await?;
        let _ = analytics(&mut c, "StopApplication", json!({"ApplicationName": app})).await;
    }
    // Put to output: a filter that passes everything, one record at a time.
    let app = format!("bench-latency-{tag}");
    start_app(
        &mut c,
        &app,
        &input,
        &output,
        "CREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"DESTINATION_SQL_STREAM\" SELECT STREAM K, V FROM \"SOURCE_SQL_STREAM_001\";",
        "NOW",
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::new();
    for i in 0..args.latency_samples {
        let before = counter(&ep, "sluice_analytics_output_records_total", &app).await;
        let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, row(i, args.keys).to_string());
        let t = Instant::now();
        let (status, v) =
            c.json("PutRecord", json!({"StreamName": input, "Data": data, "PartitionKey": "latency"})).await?;
        if status != 200 {
            anyhow::bail!("PutRecord: {status} {v}");
        }
        let done =
            wait_counter(&ep, "sluice_analytics_output_records_total", &app, before + 1, Duration::from_secs(30))
                .await?;
        latencies.push((done - t).as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    let summary = json!({"records": total, "keys": args.keys, "ingest_records_per_s": ingest, "queries": rows,
                         "put_to_output_ms": latencies});
    if args.json {
        println!("{summary:#}");
        return Ok(());
    }
    println!("analytics: {total} JSON rows, {} keys, {} input shards", args.keys, args.shards);
    println!("  ingest (PutRecords, one connection): {ingest:>9.0} records/s");
    for r in &rows {
        println!(
            "  {:<9} {:>9.0} rows/s, {:.2}x the ingest rate ({} output records)",
            r["query"].as_str().unwrap_or(""),
            r["rows_per_s"].as_f64().unwrap_or(0.0),
            r["ratio_to_ingest"].as_f64().unwrap_or(0.0),
            r["output_records"]
        );
    }
    let med = latencies.get(latencies.len() / 2).copied().unwrap_or(0.0);
    let p99 = latencies.last().copied().unwrap_or(0.0);
    println!("  put to output record: median {med:.1} ms, max {p99:.1} ms over {} records", latencies.len());
    Ok(())
}
