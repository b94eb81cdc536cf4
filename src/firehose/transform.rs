//! Record transformation: a ProcessingConfiguration's Lambda processor, run by what a
//! `[[delivery.functions]]` entry names (a command, or an HTTP endpoint), with Firehose's event
//! and response formats; and AppendDelimiterToRecord.
//!
//! The event is `{invocationId, deliveryStreamArn, region, records: [{recordId,
//! approximateArrivalTimestamp, data}]}` (a Kinesis source adds `sourceKinesisStreamArn` and each
//! record's `kinesisRecordMetadata`); the response `{records: [{recordId, result, data}]}` with
//! `result` Ok, Dropped or ProcessingFailed. A failed invocation is retried NumberOfRetries times
//! (default 3); then, as for a response that lacks a record or repeats one, every record of the
//! invocation is processing-failed. Records are sent in invocations of at most BufferSizeInMBs
//! (default 1 MiB; AWS's payload limit is 6 MB). A record id is the record's sequence number, so
//! an invocation made again after a crash carries the same ids.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::config::FunctionConfig;

/// A record going through a transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRecord {
    pub id: String,
    pub ts_ms: i64,
    pub data: Vec<u8>,
    pub shard_id: String,
    pub partition_key: String,
}

/// What became of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The data to deliver, and the partition keys the function gave (`metadata.partitionKeys`).
    Ok(Vec<u8>, Vec<(String, String)>),
    Dropped,
    /// errorCode, errorMessage, attempts made.
    Failed(String, String, u32),
}

/// The Lambda processor of a destination, if one is enabled.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaProcessor {
    pub arn: String,
    pub retries: u32,
    pub buffer_bytes: usize,
}

/// How RecordDeAggregation splits a record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubRecords {
    /// Concatenated JSON objects.
    Json,
    /// Records separated by this delimiter.
    Delimited(Vec<u8>),
}

/// The processors of a destination, in the order Firehose applies them: de-aggregation, the
/// Lambda function, the delimiter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Processing {
    pub deaggregation: Option<SubRecords>,
    /// MetadataExtraction's jq query (dynamic partitioning).
    pub metadata: Option<String>,
    pub lambda: Option<LambdaProcessor>,
    pub delimiter: bool,
}

/// Splits a record's data as RecordDeAggregation does; data that does not split is one record.
pub fn split(data: &[u8], how: &SubRecords) -> Vec<Vec<u8>> {
    match how {
        SubRecords::Json => {
            let mut out = Vec::new();
            let mut stream = serde_json::Deserializer::from_slice(data).into_iter::<serde::de::IgnoredAny>();
            let mut at = 0;
            while let Some(item) = stream.next() {
                if item.is_err() {
                    return vec![data.to_vec()];
                }
                let end = stream.byte_offset();
                let piece = data[at..end].trim_ascii();
                if !piece.is_empty() {
                    out.push(piece.to_vec());
                }
                at = end;
            }
            if out.is_empty() {
                vec![data.to_vec()]
            } else {
                out
            }
        }
        SubRecords::Delimited(d) if !d.is_empty() => {
            let mut out = Vec::new();
            let mut rest = data;
            while let Some(i) = rest.windows(d.len()).position(|w| w == d.as_slice()) {
                out.push(rest[..i].to_vec());
                rest = &rest[i + d.len()..];
            }
            if !rest.is_empty() || out.is_empty() {
                out.push(rest.to_vec());
            }
            out
        }
        SubRecords::Delimited(_) => vec![data.to_vec()],
    }
}

/// The processors of a ProcessingConfiguration this daemon runs; the error names what it
/// cannot run.
pub fn processors(pc: Option<&Value>) -> Result<Processing, String> {
    let Some(pc) = pc else { return Ok(Processing::default()) };
    if pc.get("Enabled").and_then(Value::as_bool) != Some(true) {
        return Ok(Processing::default());
    }
    let mut lambda = None;
    let mut delimiter = false;
    let mut deaggregation = None;
    let mut metadata = None;
    for p in pc.get("Processors").and_then(Value::as_array).into_iter().flatten() {
        let params: HashMap<&str, &str> = p
            .get("Parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| Some((x.get("ParameterName")?.as_str()?, x.get("ParameterValue")?.as_str()?)))
            .collect();
        match p.get("Type").and_then(Value::as_str).unwrap_or_default() {
            "Lambda" => {
                let arn = params.get("LambdaArn").ok_or("a Lambda processor needs the LambdaArn parameter")?;
                let retries = match params.get("NumberOfRetries") {
                    Some(n) => n.parse().map_err(|_| format!("NumberOfRetries {n} is not a number"))?,
                    None => 3,
                };
                let mb: f64 = match params.get("BufferSizeInMBs") {
                    Some(n) => n.parse().map_err(|_| format!("BufferSizeInMBs {n} is not a number"))?,
                    None => 1.0,
                };
                if !(0.2..=3.0).contains(&mb) {
                    return Err(format!("BufferSizeInMBs {mb} is outside 0.2-3"));
                }
                lambda =
                    Some(LambdaProcessor { arn: arn.to_string(), retries, buffer_bytes: (mb * 1_048_576.0) as usize });
            }
            "AppendDelimiterToRecord" => delimiter = true,
            "MetadataExtraction" => {
                let q = params
                    .get("MetadataExtractionQuery")
                    .ok_or("MetadataExtraction needs a MetadataExtractionQuery")?;
                if let Some(engine) = params.get("JsonParsingEngine") {
                    if *engine != "JQ-1.6" {
                        return Err(format!("JsonParsingEngine {engine} is not JQ-1.6"));
                    }
                }
                super::partition::Query::compile(q)?;
                metadata = Some(q.to_string());
            }
            "RecordDeAggregation" => {
                deaggregation = Some(match params.get("SubRecordType").copied().unwrap_or("JSON") {
                    "JSON" => SubRecords::Json,
                    "DELIMITED" => {
                        let d = params.get("Delimiter").ok_or("SubRecordType DELIMITED needs a Delimiter (base64)")?;
                        SubRecords::Delimited(
                            base64::engine::general_purpose::STANDARD
                                .decode(d)
                                .map_err(|_| format!("Delimiter {d} is not base64"))?,
                        )
                    }
                    other => return Err(format!("SubRecordType {other} is not one of JSON, DELIMITED")),
                });
            }
            other => return Err(format!("the {other} processor is not supported by this daemon yet")),
        }
    }
    Ok(Processing { deaggregation, metadata, lambda, delimiter })
}

/// `*` matches any run of characters; everything else itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// The entry that runs `arn`: the first exact match, else the first glob that matches.
pub fn function_for<'a>(functions: &'a [FunctionConfig], arn: &str) -> Option<&'a FunctionConfig> {
    functions.iter().find(|f| f.arn == arn).or_else(|| functions.iter().find(|f| glob_match(&f.arn, arn)))
}

/// Context of an invocation.
pub struct Invocation<'a> {
    pub delivery_stream_arn: &'a str,
    pub region: &'a str,
    pub source_stream_arn: Option<&'a str>,
}

fn event(inv: &Invocation, id: &str, records: &[InRecord]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let recs: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut v = json!({"recordId": r.id, "approximateArrivalTimestamp": r.ts_ms, "data": b64.encode(&r.data)});
            if inv.source_stream_arn.is_some() {
                v["kinesisRecordMetadata"] = json!({
                    "shardId": r.shard_id,
                    "partitionKey": r.partition_key,
                    "approximateArrivalTimestamp": r.ts_ms,
                    "sequenceNumber": r.id,
                    "subsequenceNumber": 0,
                });
            }
            v
        })
        .collect();
    let mut e = json!({"invocationId": id, "deliveryStreamArn": inv.delivery_stream_arn, "region": inv.region, "records": recs});
    if let Some(s) = inv.source_stream_arn {
        e["sourceKinesisStreamArn"] = json!(s);
    }
    e
}

/// `metadata.partitionKeys` of a response record, values as strings.
fn lambda_keys(r: &Value) -> Vec<(String, String)> {
    r.pointer("/metadata/partitionKeys")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k.clone(), s.clone())),
                    Value::Number(_) | Value::Bool(_) => Some((k.clone(), v.to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Maps a response to each record's outcome, or the error code for the whole invocation.
pub fn outcomes(response: &[u8], records: &[InRecord]) -> Result<Vec<Outcome>, (String, String)> {
    let v: Value = serde_json::from_slice(response)
        .map_err(|e| ("Lambda.JsonProcessingException".to_owned(), format!("The response is not JSON: {e}")))?;
    let list = v
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| ("Lambda.JsonProcessingException".to_owned(), "The response has no records list.".to_owned()))?;
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    for r in list {
        let Some(id) = r.get("recordId").and_then(Value::as_str) else {
            return Err(("Lambda.MissingRecordId".into(), "A record of the response has no recordId.".into()));
        };
        if by_id.insert(id, r).is_some() {
            return Err((
                "Lambda.DuplicatedRecordId".into(),
                format!("recordId {id} is in the response more than once."),
            ));
        }
    }
    let mut out = Vec::with_capacity(records.len());
    for rec in records {
        let Some(r) = by_id.get(rec.id.as_str()) else {
            return Err(("Lambda.MissingRecordId".into(), format!("recordId {} is not in the response.", rec.id)));
        };
        out.push(match r.get("result").and_then(Value::as_str) {
            Some("Ok") => {
                let data = r.get("data").and_then(Value::as_str).unwrap_or_default();
                match base64::engine::general_purpose::STANDARD.decode(data) {
                    Ok(d) => Outcome::Ok(d, lambda_keys(r)),
                    Err(_) => Outcome::Failed("Lambda.InvalidData".into(), "data is not valid base64".into(), 1),
                }
            }
            Some("Dropped") => Outcome::Dropped,
            Some("ProcessingFailed") => Outcome::Failed(
                "Lambda.ProcessingFailed".into(),
                "The Lambda function returned ProcessingFailed for this record.".into(),
                1,
            ),
            other => Outcome::Failed(
                "Lambda.InvalidResult".into(),
                format!("result {} is not one of Ok, Dropped, ProcessingFailed", other.unwrap_or("(missing)")),
                1,
            ),
        });
    }
    Ok(out)
}

/// Runs the function once on an event.
async fn invoke(f: &FunctionConfig, body: Vec<u8>) -> Result<Vec<u8>, String> {
    if let Some(url) = &f.url {
        return post(url, body).await;
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::new(&f.command[0])
        .args(&f.command[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", f.command[0]))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let write = async move {
        let r = stdin.write_all(&body).await;
        drop(stdin);
        r
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let run = async {
        let (w, o, e) = tokio::join!(write, stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        w.and(o).and(e)?;
        child.wait().await
    };
    let status = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .map_err(|_| "the function ran longer than 5 minutes".to_owned())?
        .map_err(|e| e.to_string())?;
    if !status.success() {
        let tail = String::from_utf8_lossy(&err);
        return Err(format!(
            "the function exited with {status}: {}",
            tail.trim().chars().take(500).collect::<String>()
        ));
    }
    Ok(out)
}

async fn post(url: &str, body: Vec<u8>) -> Result<Vec<u8>, String> {
    use http_body_util::{BodyExt, Full};
    if !url.starts_with("http://") {
        return Err("url must be http://".into());
    }
    let ep = crate::kcl::client::Endpoint::parse(url).map_err(|e| e.to_string())?;
    let authority = ep.authority();
    let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
        .await
        .map_err(|e| format!("connecting to {authority}: {e}"))?;
    let mut sender = crate::kcl::client::http1(tcp).await.map_err(|e| e.to_string())?;
    let req = http::Request::post(crate::kcl::client::url_path(url))
        .header("host", authority)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(300), sender.send_request(req))
        .await
        .map_err(|_| "the function ran longer than 5 minutes".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("the function's endpoint answered {status}"));
    }
    Ok(bytes.to_vec())
}

/// Transforms records in invocations of at most the processor's buffer size.
pub async fn run(
    p: &LambdaProcessor,
    functions: &[FunctionConfig],
    inv: &Invocation<'_>,
    records: &[InRecord],
    invocation_seed: &str,
) -> Vec<Outcome> {
    let Some(f) = function_for(functions, &p.arn) else {
        tracing::warn!(lambda = %p.arn, "no [[delivery.functions]] entry runs this function; its records are processing-failed");
        let msg = format!("No [[delivery.functions]] entry of this daemon runs {}.", p.arn);
        return records.iter().map(|_| Outcome::Failed("Lambda.FunctionNotFound".into(), msg.clone(), 1)).collect();
    };
    let mut out = Vec::with_capacity(records.len());
    let mut start = 0;
    let mut n = 0;
    while start < records.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < records.len() && (end == start || bytes + records[end].data.len() * 4 / 3 <= p.buffer_bytes) {
            bytes += records[end].data.len() * 4 / 3;
            end += 1;
        }
        let chunk = &records[start..end];
        let id = format!("{invocation_seed}-{n}");
        let body = serde_json::to_vec(&event(inv, &id, chunk)).unwrap_or_default();
        let attempts = p.retries + 1;
        let mut last = ("Lambda.FunctionError".to_owned(), String::new());
        let mut done = None;
        for attempt in 1..=attempts {
            match invoke(f, body.clone()).await {
                Ok(resp) => match outcomes(&resp, chunk) {
                    Ok(o) => {
                        done = Some(o);
                        break;
                    }
                    Err(e) => last = e,
                },
                Err(e) => last = ("Lambda.FunctionError".into(), e),
            }
            tracing::warn!(lambda = %p.arn, attempt, error = %last.1, "transform invocation failed");
            if attempt < attempts {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
        match done {
            Some(o) => out.extend(o),
            None => out.extend(chunk.iter().map(|_| Outcome::Failed(last.0.clone(), last.1.clone(), attempts))),
        }
        start = end;
        n += 1;
    }
    out
}

/// One processing-failed record as AWS writes it in an error object.
pub fn error_record(r: &InRecord, code: &str, message: &str, attempts: u32, lambda_arn: &str, now_ms: i64) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({
        "attemptsMade": attempts,
        "arrivalTimestamp": r.ts_ms,
        "errorCode": code,
        "errorMessage": message,
        "attemptEndingTimestamp": now_ms,
        "rawData": base64::engine::general_purpose::STANDARD.encode(&r.data),
        "lambdaArn": lambda_arn,
    }))
    .unwrap_or_default();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, data: &str) -> InRecord {
        InRecord {
            id: id.into(),
            ts_ms: 5,
            data: data.as_bytes().to_vec(),
            shard_id: "shardId-000000000000".into(),
            partition_key: "k".into(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("arn:aws:lambda:*", "arn:aws:lambda:us-east-1:1:function:f"));
        assert!(glob_match("*:function:f", "arn:aws:lambda:x:function:f"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("a*c*e", "abcdf"));
        assert!(glob_match("exact", "exact") && !glob_match("exact", "exactly"));
        let fs = vec![
            FunctionConfig { arn: "arn:aws:lambda:*".into(), command: vec!["glob".into()], url: None },
            FunctionConfig { arn: "arn:aws:lambda:x".into(), command: vec!["exact".into()], url: None },
        ];
        assert_eq!(function_for(&fs, "arn:aws:lambda:x").unwrap().command, ["exact"]);
        assert_eq!(function_for(&fs, "arn:aws:lambda:y").unwrap().command, ["glob"]);
        assert!(function_for(&fs, "arn:other").is_none());
    }

    #[test]
    fn sub_records() {
        assert_eq!(
            split(br#"{"a":1} {"b":[2]}{"c":"}"}"#, &SubRecords::Json),
            [&br#"{"a":1}"#[..], br#"{"b":[2]}"#, br#"{"c":"}"}"#]
        );
        assert_eq!(split(b"not json", &SubRecords::Json), [b"not json"]);
        assert_eq!(split(b"a||b||", &SubRecords::Delimited(b"||".to_vec())), [b"a", b"b"]);
        assert_eq!(split(b"a||b", &SubRecords::Delimited(b"||".to_vec())), [b"a", b"b"]);
        assert_eq!(split(b"", &SubRecords::Delimited(b"|".to_vec())), [b""]);
    }

    #[test]
    fn responses() {
        let recs = [rec("1", "a"), rec("2", "b"), rec("3", "c")];
        let ok = br#"{"records":[{"recordId":"1","result":"Ok","data":"QQ=="},{"recordId":"2","result":"Dropped"},
                     {"recordId":"3","result":"ProcessingFailed","data":""}]}"#;
        let o = outcomes(ok, &recs).unwrap();
        assert_eq!(o[0], Outcome::Ok(b"A".to_vec(), vec![]));
        assert_eq!(o[1], Outcome::Dropped);
        assert!(matches!(&o[2], Outcome::Failed(c, _, _) if c == "Lambda.ProcessingFailed"));
        assert_eq!(outcomes(b"nope", &recs).unwrap_err().0, "Lambda.JsonProcessingException");
        assert_eq!(
            outcomes(br#"{"records":[{"recordId":"1","result":"Ok"}]}"#, &recs).unwrap_err().0,
            "Lambda.MissingRecordId"
        );
        let dup = br#"{"records":[{"recordId":"1","result":"Ok"},{"recordId":"1","result":"Ok"}]}"#;
        assert_eq!(outcomes(dup, &recs).unwrap_err().0, "Lambda.DuplicatedRecordId");
    }

    #[test]
    fn processing_configurations() {
        let pc = json!({"Enabled": true, "Processors": [
            {"Type": "Lambda", "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:..."},
                                              {"ParameterName": "NumberOfRetries", "ParameterValue": "1"}]},
            {"Type": "AppendDelimiterToRecord", "Parameters": []}]});
        let p = processors(Some(&pc)).unwrap();
        assert_eq!(
            p.lambda.unwrap(),
            LambdaProcessor { arn: "arn:aws:lambda:...".into(), retries: 1, buffer_bytes: 1_048_576 }
        );
        assert!(p.delimiter && p.deaggregation.is_none());
        let off = json!({"Enabled": false, "Processors": [{"Type": "X"}]});
        assert_eq!(processors(Some(&off)).unwrap(), Processing::default());
        let d = json!({"Enabled": true, "Processors": [{"Type": "RecordDeAggregation", "Parameters": [
            {"ParameterName": "SubRecordType", "ParameterValue": "DELIMITED"}, {"ParameterName": "Delimiter", "ParameterValue": "fHw="}]}]});
        assert_eq!(processors(Some(&d)).unwrap().deaggregation, Some(SubRecords::Delimited(b"||".to_vec())));
        assert!(processors(Some(&json!({"Enabled": true, "Processors": [{"Type": "MetadataExtraction"}]}))).is_err());
        assert!(
            processors(Some(&json!({"Enabled": true, "Processors": [{"Type": "Lambda", "Parameters": []}]}))).is_err()
        );
    }

    #[tokio::test]
    async fn a_command_transforms_and_a_missing_function_fails_every_record() {
        let f = FunctionConfig {
            arn: "arn:aws:lambda:*".into(),
            command: vec![
                "python3".into(),
                "-c".into(),
                "import json,sys,base64\ne=json.load(sys.stdin)\nprint(json.dumps({'records':[{'recordId':r['recordId'],\
                 'result':'Ok','data':base64.b64encode(base64.b64decode(r['data']).upper()).decode()} for r in e['records']]}))"
                    .into(),
            ],
            url: None,
        };
        let p = LambdaProcessor { arn: "arn:aws:lambda:f".into(), retries: 0, buffer_bytes: 4 };
        let inv = Invocation { delivery_stream_arn: "arn:ds", region: "us-east-1", source_stream_arn: None };
        let recs = [rec("1", "ab"), rec("2", "cd"), rec("3", "e")];
        let out = run(&p, std::slice::from_ref(&f), &inv, &recs, "seed").await;
        let ok = |d: &[u8]| Outcome::Ok(d.to_vec(), vec![]);
        assert_eq!(out, [ok(b"AB"), ok(b"CD"), ok(b"E")]);
        let none = run(&p, &[], &inv, &recs, "seed").await;
        assert!(none.iter().all(|o| matches!(o, Outcome::Failed(c, _, _) if c == "Lambda.FunctionNotFound")));
        let failing = FunctionConfig { command: vec!["false".into()], ..f };
        let failed = run(&LambdaProcessor { retries: 1, ..p }, &[failing], &inv, &recs[..1], "seed").await;
        assert!(matches!(&failed[0], Outcome::Failed(c, _, 2) if c == "Lambda.FunctionError"), "{failed:?}");
    }
}
