//! An application's run: input records through the pumps to the outputs, exactly once.
//!
//! **What is promised.** Each step reads a batch of input records, maps them to rows, runs them
//! through the pumps and lets time advance to the clock, which closes windows. Then, in one
//! synced write, it saves the operator state, the reader's position after the batch and the
//! output records it produced, each with the shard it goes to and that shard's tip before it
//! (the checkpoint's outbox). Only then are the records appended. After `kill -9` the run starts
//! from the checkpoint: the outbox is written again, less the records found already in their
//! shards after the saved tip (a record is its random partition key and its text, so a match is
//! not a coincidence), and input after the saved position is read again with the saved state.
//! So no output row is written twice and none is missed. A step that fails before its
//! checkpoint (a destination missing, the store failing) is run again from the previous one.
//!
//! ROWTIME on input is the time the row enters the application (the clock: the wall clock, or
//! `[analytics] clock_file` for tests and replays), never earlier than the row before it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio::sync::watch;

use super::schema::Mapping;
use super::sql::compile::{compile, Column, InputSpec, Program, TableSpec, ERROR_STREAM};
use super::sql::engine::{Emitted, Engine, Failure, Limits, Row, State as EngineState};
use super::sql::value::Value;
use super::{Application, State};
use crate::log::NewRecord;
use crate::reader::stream::{StreamPosition, StreamReader, StreamSource};
use crate::reader::DELIVERY_BYTES_MAX;
use crate::runtime::{Position, ShardKey};
use crate::service::Service;
use crate::stream::meta::StreamMeta;

pub fn checkpoint_key(name: &str) -> String {
    format!("analytics/checkpoint/{name}")
}

/// Output records planned for one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub stream_id: u64,
    pub stream: String,
    pub shard: u32,
    /// The shard's tip when the records were planned: they are at or after it.
    pub tip: u64,
    /// (partition key, data).
    pub records: Vec<(String, String)>,
}

/// An application's durable run state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub incarnation: u64,
    pub run: u64,
    /// The application version whose program the state belongs to.
    pub version_id: u64,
    pub state: EngineState,
    pub position: StreamPosition,
    pub outbox: Vec<Pending>,
    /// Output records written so far.
    pub records_out: u64,
}

struct Running {
    incarnation: u64,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The runs of RUNNING applications.
#[derive(Default)]
pub struct Runs {
    running: Mutex<HashMap<String, Running>>,
}

impl Runs {
    /// Starts running an application (replacing a run of an older version).
    pub fn start(&self, a: &Arc<State>, app: &Application) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = running.remove(&app.name) {
            let _ = old.stop.send(true);
            old.task.abort();
        }
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(a.clone(), app.clone(), stopped));
        running.insert(app.name.clone(), Running { incarnation: app.incarnation, stop, task });
    }

    /// Stops a run after the step it is in, and waits for it.
    pub async fn stop(&self, name: &str) {
        let r = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        if let Some(r) = r {
            let _ = r.stop.send(true);
            let mut task = r.task;
            if tokio::time::timeout(Duration::from_secs(10), &mut task).await.is_err() {
                task.abort();
            }
        }
    }

    pub fn is_running(&self, name: &str, incarnation: u64) -> bool {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.get(name).is_some_and(|r| r.incarnation == incarnation && !r.task.is_finished())
    }
}

/// Runs until stopped; a failed step is logged and the run resumes from its checkpoint.
async fn run(a: Arc<State>, app: Application, mut stopped: watch::Receiver<bool>) {
    loop {
        match run_once(&a, &app, &mut stopped).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(application = %app.name, error = %e, "application run interrupted; resuming from its checkpoint in 1 s")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// The in-application inputs of an application, as the compiler takes them.
pub fn input_specs(app: &Application) -> Result<Vec<InputSpec>, String> {
    app.inputs
        .iter()
        .map(|i| {
            Ok(InputSpec {
                name_prefix: i["NamePrefix"].as_str().unwrap_or_default().to_owned(),
                columns: super::schema::columns(&i["InputSchema"])?,
            })
        })
        .collect()
}

/// The reference tables of an application, as the compiler takes them.
pub fn table_specs(app: &Application) -> Result<Vec<TableSpec>, String> {
    app.references
        .iter()
        .map(|r| {
            Ok(TableSpec {
                name: r["TableName"].as_str().unwrap_or_default().to_owned(),
                columns: super::schema::columns(&r["ReferenceSchema"])?,
            })
        })
        .collect()
}

/// The application's program, compiled.
pub fn program(app: &Application) -> Result<Program, String> {
    let inputs = input_specs(app)?;
    let tables = table_specs(app)?;
    compile(&app.code, &inputs, &tables).map_err(|e| e.to_string())
}

/// The rows of each reference table, read from its bucket object when the run starts. Rows that
/// do not fit the table's schema are left out (and logged).
async fn load_tables(svc: &Service, app: &Application) -> Result<Vec<Vec<Vec<Value>>>, String> {
    let mut out = Vec::new();
    for r in &app.references {
        let s3 = &r["S3ReferenceDataSourceDescription"];
        let bucket = s3["BucketARN"].as_str().unwrap_or_default().trim_start_matches("arn:aws:s3:::");
        let key = s3["FileKey"].as_str().unwrap_or_default();
        let body = crate::firehose::delivery::read_object(svc, bucket, key)
            .await
            .map_err(|e| format!("reference data {bucket}/{key}: {e}"))?;
        let mapping = Mapping::new(&r["ReferenceSchema"])?;
        let mut rows = Vec::new();
        for row in mapping.rows(&body) {
            match row {
                Ok(v) => rows.push(v),
                Err(e) => {
                    tracing::warn!(application = %app.name, object = %key, error = %e, "a reference data row does not fit its schema")
                }
            }
        }
        out.push(rows);
    }
    Ok(out)
}

/// The stream behind an ARN: a Kinesis stream, or a delivery stream's records (its internal
/// stream, or its source stream).
pub fn stream_of(a: &State, arn: &str) -> Result<Arc<StreamMeta>, String> {
    if let Some(name) = arn.split(":deliverystream/").nth(1).filter(|_| arn.starts_with("arn:aws:firehose:")) {
        let ds = a.firehose.get(&delivery_stream_of_arn(&a.svc, arn, name)?).map_err(|e| e.to_string())?;
        return crate::firehose::delivery::source_stream(&a.svc, &ds)
            .map_err(|e| format!("The delivery stream {name} cannot be read: {e}."));
    }
    // The ARN's own account's stream (another account's is `<account>/<name>` inside the daemon).
    let name = a.svc.stream_of_arn(arn).ok_or_else(|| format!("{arn} is not a stream ARN."))?;
    a.svc.stream(&name).map_err(|_| format!("The stream {} does not exist.", a.svc.account_and_name(&name).1))
}

/// The name inside the daemon of the delivery stream `name` a Firehose ARN names, in the ARN's
/// account.
/// An ARN whose name is not a delivery stream name (`[a-zA-Z0-9_.-]+`) names none: a `/` in it would
/// reach into another account's names inside the daemon.
fn delivery_stream_of_arn(svc: &Service, arn: &str, name: &str) -> Result<String, String> {
    let valid =
        (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !valid {
        return Err(format!("{arn} is not a delivery stream ARN."));
    }
    let account = svc.effective_account(crate::stream::meta::arn_account(arn).unwrap_or_default());
    Ok(crate::stream::meta::qualified(account, &svc.cfg.account_id, name))
}

/// Where an output's records go: a Kinesis stream, or a DirectPut delivery stream's storage.
fn destination(a: &State, output: &Json) -> Result<Arc<StreamMeta>, String> {
    if let Some(arn) = output.pointer("/KinesisStreamsOutputDescription/ResourceARN").and_then(Json::as_str) {
        return stream_of(a, arn);
    }
    if let Some(arn) = output.pointer("/KinesisFirehoseOutputDescription/ResourceARN").and_then(Json::as_str) {
        let name = arn.split(":deliverystream/").nth(1).unwrap_or_default();
        let name = delivery_stream_of_arn(&a.svc, arn, name)?;
        return crate::firehose::ops::put_target(&a.firehose, &name).map_err(|e| e.to_string());
    }
    Err("The output has no destination this server can write to.".into())
}

/// The clock ROWTIME is taken from.
fn clock(svc: &Service) -> i64 {
    if let Some(path) = &svc.cfg.analytics.clock_file {
        if let Some(ms) = std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse::<i64>().ok()) {
            return ms;
        }
    }
    svc.now_ms()
}

async fn load(svc: &Service, name: &str) -> Result<Option<Checkpoint>, String> {
    let store = svc.store.clone();
    let key = checkpoint_key(name);
    let bytes = tokio::task::spawn_blocking(move || store.get_meta(&key))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    match bytes {
        Some(b) => {
            serde_json::from_slice(&b).map(Some).map_err(|e| format!("the application checkpoint is unreadable: {e}"))
        }
        None => Ok(None),
    }
}

async fn save(svc: &Service, name: &str, c: &Checkpoint) -> Result<(), String> {
    let bytes = serde_json::to_vec(c).map_err(|e| e.to_string())?;
    svc.put_meta(&checkpoint_key(name), bytes).await.map_err(|e| e.to_string())
}

/// One output: the stream whose rows it sends, how, and where.
struct Output {
    stream: usize,
    json: bool,
    spec: Json,
}

async fn run_once(a: &Arc<State>, app: &Application, stopped: &mut watch::Receiver<bool>) -> Result<(), String> {
    let svc = &a.svc;
    let prog = program(app)?;
    let input = app.inputs.first().ok_or("the application has no input")?;
    let arn = input
        .pointer("/KinesisStreamsInputDescription/ResourceARN")
        .or_else(|| input.pointer("/KinesisFirehoseInputDescription/ResourceARN"))
        .and_then(Json::as_str)
        .ok_or("the input has no source")?;
    let source = stream_of(a, arn)?;
    let mapping = Mapping::new(&input["InputSchema"])?;
    let input_stream = prog.streams.iter().position(|s| s.input == Some(0)).ok_or("the input has no stream")?;
    // Declared input streams take the input's columns by name.
    let order: Vec<usize> = prog.streams[input_stream]
        .columns
        .iter()
        .map(|c| mapping.columns.iter().position(|m| m.name.eq_ignore_ascii_case(&c.name)).unwrap_or(usize::MAX))
        .collect();
    let mut observed = vec![false; prog.streams.len()];
    let mut outputs = Vec::new();
    for o in &app.outputs {
        let name = o["Name"].as_str().unwrap_or_default();
        let stream =
            prog.stream(name).ok_or_else(|| format!("the output's stream {name} does not exist in the code"))?;
        observed[stream] = true;
        let json = o.pointer("/DestinationSchema/RecordFormatType").and_then(Json::as_str) != Some("CSV");
        outputs.push(Output { stream, json, spec: o.clone() });
    }
    let error_stream = prog.stream(ERROR_STREAM).expect("always there");
    let limits = Limits {
        rows_per_window: svc.cfg.analytics.rows_per_window,
        groups_per_window: svc.cfg.analytics.groups_per_window,
        state_bytes: svc.cfg.analytics.state_bytes as usize,
    };
    // The checkpoint, or a fresh start.
    let fresh = || Checkpoint {
        incarnation: app.incarnation,
        run: app.run,
        version_id: app.version_id,
        state: EngineState::new(&prog, clock(svc)),
        position: StreamPosition::default(),
        outbox: Vec::new(),
        records_out: 0,
    };
    let mut cp = match load(svc, &app.name).await? {
        Some(c) if c.incarnation == app.incarnation && c.run == app.run => c,
        _ => fresh(),
    };
    if cp.version_id != app.version_id || !cp.state.fits(&prog) {
        // The code changed: the new program starts with fresh state where the old one stopped.
        cp.state = EngineState::new(&prog, clock(svc));
        cp.version_id = app.version_id;
    }
    if !cp.outbox.is_empty() {
        write_out(svc, &cp.outbox, true).await?;
        cp.records_out += cp.outbox.iter().map(|p| p.records.len() as u64).sum::<u64>();
        cp.outbox.clear();
    }
    let start = match app.run_start {
        Some(ms) => Position::AtTimestamp(ms),
        None => Position::TrimHorizon,
    };
    let mut reader = StreamReader::new(
        svc.runtime.clone(),
        svc.clone() as Arc<dyn StreamSource>,
        source.id,
        start,
        cp.position.clone(),
    );
    let tables = load_tables(svc, app).await?;
    let mut engine = Engine::new(&prog, cp.state.clone(), limits, tables);
    let tick = svc.cfg.analytics.tick;
    loop {
        let batch = tokio::select! {
            b = reader.next(DELIVERY_BYTES_MAX, tick) => b.map_err(|e| e.to_string())?,
            _ = stopped.changed() => return Ok(()),
        };
        if *stopped.borrow() {
            return Ok(());
        }
        let now = clock(svc);
        let mut out = Emitted::default();
        let read_any = batch.is_some();
        if let Some(b) = batch {
            svc.metrics.analytics(&app.name, |c| {
                c.records_in += b.records.len() as u64;
                c.millis_behind = b.millis_behind;
            });
            let last = engine.state.last_rowtime[input_stream];
            let rowtime = now.max(last);
            let mut rows = Vec::with_capacity(b.records.len());
            for r in &b.records {
                for parsed in mapping.rows(&r.data) {
                    match parsed {
                        Ok(vals) => {
                            let values = order.iter().map(|&i| vals.get(i).cloned().unwrap_or(Value::Null)).collect();
                            rows.push(Row { rowtime, arrival: r.ts_ms, values });
                        }
                        Err(m) => out.failures.push(Failure {
                            name: "Error_Parsing_Input",
                            message: m,
                            row: Some(Row { rowtime, arrival: r.ts_ms, values: vec![Value::Str(hex(&r.data))] }),
                            pump: String::new(),
                        }),
                    }
                }
            }
            engine.insert(input_stream, rows, now, &observed, &mut out);
        }
        engine.advance(now, now, &observed, &mut out);
        let size = engine.state_size();
        let full = size > limits.state_bytes;
        if full != engine.state_full {
            if full {
                tracing::error!(application = %app.name, bytes = size, limit = limits.state_bytes,
                    "the application's state is over its limit (state_bytes): rows that would add to it go to error_stream");
            } else {
                tracing::info!(application = %app.name, bytes = size, "the application's state is back under its limit");
            }
            engine.state_full = full;
        }
        if !out.failures.is_empty() {
            svc.metrics.analytics(&app.name, |c| c.error_rows += out.failures.len() as u64);
        }
        let over = out.failures.iter().filter(|f| f.name == "Error_Limit_Exceeded").count();
        if let Some(f) = out.failures.iter().find(|f| f.name == "Error_Limit_Exceeded") {
            tracing::warn!(application = %app.name, pump = %f.pump, rows = over, message = %f.message,
                "rows refused by a state limit (to error_stream)");
        }
        for f in std::mem::take(&mut out.failures) {
            tracing::debug!(application = %app.name, error = f.name, message = %f.message, "row to error_stream");
            if observed[error_stream] {
                out.rows.push((error_stream, error_row(&f, now)));
            }
        }
        if out.rows.is_empty() && !read_any {
            continue;
        }
        let pending = plan(a, &prog, &outputs, &out.rows).await?;
        cp.state = engine.state.clone();
        cp.position = reader.position().clone();
        cp.outbox = pending;
        save(svc, &app.name, &cp).await?;
        if !cp.outbox.is_empty() {
            write_out(svc, &cp.outbox, false).await?;
            let n = cp.outbox.iter().map(|p| p.records.len() as u64).sum::<u64>();
            cp.records_out += n;
            svc.metrics.analytics(&app.name, |c| c.records_out += n);
            cp.outbox.clear();
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A failure as a row of `error_stream`.
fn error_row(f: &Failure, now: i64) -> Row {
    let (data_rowtime, data) = match &f.row {
        Some(r) => {
            let text = match r.values.as_slice() {
                [Value::Str(h)] if f.name == "Error_Parsing_Input" => h.clone(),
                vals => hex(Json::Array(vals.iter().map(Value::to_json).collect()).to_string().as_bytes()),
            };
            (Value::Ts(r.rowtime), Value::Str(text))
        }
        None => (Value::Null, Value::Null),
    };
    Row {
        rowtime: now,
        arrival: now,
        values: vec![
            Value::Ts(now),
            Value::Str("ERROR".into()),
            Value::Str(f.name.into()),
            Value::Str(f.message.clone()),
            data_rowtime,
            data,
            Value::Str(f.pump.clone()),
        ],
    }
}

/// A row as its output's record: JSON (an object keyed by the stored column names, in column
/// order, no newline) or CSV (values in column order, a newline).
pub fn format_row(columns: &[Column], row: &Row, json: bool) -> String {
    if json {
        let mut s = String::from("{");
        for (i, (c, v)) in columns.iter().zip(&row.values).enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&Json::String(c.name.clone()).to_string());
            s.push(':');
            s.push_str(&v.to_json().to_string());
        }
        s.push('}');
        s
    } else {
        let fields: Vec<String> = row
            .values
            .iter()
            .map(|v| {
                let t = v.to_text();
                if t.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", t.replace('"', "\"\""))
                } else {
                    t
                }
            })
            .collect();
        format!("{}\n", fields.join(","))
    }
}

fn random_key() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::getrandom(&mut b);
    hex(&b)
}

/// The output records of a step, routed to their shards, with each shard's tip now.
async fn plan(a: &State, prog: &Program, outputs: &[Output], rows: &[(usize, Row)]) -> Result<Vec<Pending>, String> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut metas: Vec<Option<Arc<StreamMeta>>> = vec![None; outputs.len()];
    for (stream, row) in rows {
        for (k, o) in outputs.iter().enumerate() {
            if o.stream != *stream {
                continue;
            }
            let meta = match &metas[k] {
                Some(m) => m.clone(),
                None => {
                    let m = destination(a, &o.spec)?;
                    metas[k] = Some(m.clone());
                    m
                }
            };
            let text = format_row(&prog.streams[*stream].columns, row, o.json);
            let pk = random_key();
            let shard = meta
                .shard_for_hash(crate::stream::hashing::hash_partition_key(&pk))
                .ok_or_else(|| format!("no open shard of {} takes the record", meta.name))?
                .index;
            match pending.iter_mut().find(|p| p.stream_id == meta.id && p.shard == shard) {
                Some(p) => p.records.push((pk, text)),
                None => pending.push(Pending {
                    stream_id: meta.id,
                    stream: meta.name.clone(),
                    shard,
                    tip: 0,
                    records: vec![(pk, text)],
                }),
            }
        }
    }
    for p in &mut pending {
        let key = ShardKey { stream_id: p.stream_id, shard_index: p.shard };
        let tip = a.svc.runtime.watch(key).await.map_err(|e| e.to_string())?;
        p.tip = tip.borrow().next;
    }
    Ok(pending)
}

/// Appends planned records; after a crash (`recovering`), first skips those already in the
/// shard after its saved tip.
async fn write_out(svc: &Arc<Service>, pending: &[Pending], recovering: bool) -> Result<(), String> {
    for p in pending {
        let key = ShardKey { stream_id: p.stream_id, shard_index: p.shard };
        let mut done = 0;
        if recovering {
            done = already_written(svc, key, p).await?;
        }
        let rest = &p.records[done..];
        if rest.is_empty() {
            continue;
        }
        let records: Vec<NewRecord> = rest
            .iter()
            .map(|(pk, d)| NewRecord { partition_key: pk.clone(), data: Bytes::from(d.clone().into_bytes()) })
            .collect();
        match svc.runtime.append(key, records).await {
            Ok(_) => {}
            Err(crate::protocol::error::ApiError::ShardClosed(_)) => {
                // A reshard closed the shard: route the records on the new shards.
                let meta = svc.stream(&p.stream).map_err(|e| e.to_string())?;
                let routed = rest
                    .iter()
                    .map(|(pk, d)| crate::kinesis::routing::Routed {
                        hash: crate::stream::hashing::hash_partition_key(pk),
                        record: NewRecord { partition_key: pk.clone(), data: Bytes::from(d.clone().into_bytes()) },
                    })
                    .collect();
                for r in crate::kinesis::routing::append_routed(svc, &meta, routed).await {
                    r.map_err(|e| e.to_string())?;
                }
            }
            Err(e) => return Err(format!("writing to {}: {e}", p.stream)),
        }
    }
    Ok(())
}

/// How many of the planned records (a prefix) are in the shard after the saved tip.
async fn already_written(svc: &Service, key: ShardKey, p: &Pending) -> Result<usize, String> {
    let mut from = p.tip;
    let mut matched = 0;
    loop {
        let r = match svc.runtime.read(key, from, 10_000, 4 << 20).await {
            Ok(r) => r,
            Err(crate::protocol::error::ApiError::ResourceNotFound(_)) => return Ok(0),
            Err(e) => return Err(e.to_string()),
        };
        for rec in &r.records {
            let want = &p.records[matched];
            if rec.partition_key == want.0 && rec.data.as_ref() == want.1.as_bytes() {
                matched += 1;
                if matched == p.records.len() {
                    return Ok(matched);
                }
            } else if matched > 0 {
                // The batch is contiguous: what was written of it ended here.
                return Ok(matched);
            }
        }
        if r.records.is_empty() || r.next >= r.tip {
            return Ok(matched);
        }
        from = r.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::sql::value::SqlType;

    #[test]
    fn rows_are_formatted_as_kda_writes_them() {
        let cols = vec![
            Column { name: "SENSOR_ID".into(), ty: SqlType::Varchar(8) },
            Column { name: "avg".into(), ty: SqlType::Double },
            Column { name: "W".into(), ty: SqlType::Timestamp },
        ];
        let row = Row {
            rowtime: 0,
            arrival: 0,
            values: vec![Value::Str("a,b".into()), Value::Float(2.5), Value::Ts(300_000)],
        };
        assert_eq!(format_row(&cols, &row, true), r#"{"SENSOR_ID":"a,b","avg":2.5,"W":"1970-01-01 00:05:00.000"}"#);
        assert_eq!(format_row(&cols, &row, false), "\"a,b\",2.5,1970-01-01 00:05:00.000\n");
    }
}
