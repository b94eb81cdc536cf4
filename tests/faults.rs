//! Disk faults injected on the write path of the real daemon: EIO and ENOSPC on write and on
//! fdatasync. Requests fail with AWS-shaped errors, nothing acknowledged is lost, reads keep
//! working, writes resume when the fault clears, and nothing that failed shows up later.

mod common;

use common::{http_request, kinesis_json, Daemon};
use serde_json::Value;

const CONFIG: &str = "[streams]\ncreate_delay = \"0ms\"\ndelete_delay = \"0ms\"\n[debug]\nfailpoints = true\n";

fn set_faults(d: &Daemon, spec: &str) {
    let head = format!(
        "POST /debug/failpoints HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        spec.len()
    );
    let (status, body) = http_request(d.addr, &head, spec.as_bytes()).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

fn put(d: &Daemon, data_b64: &str) -> (u16, Value) {
    kinesis_json(d.addr, "PutRecord", &format!(r#"{{"StreamName":"f","PartitionKey":"k","Data":"{data_b64}"}}"#))
}

fn put_records(d: &Daemon, n: usize) -> (u16, Value) {
    let recs: Vec<String> = (0..n).map(|i| format!(r#"{{"PartitionKey":"k{i}","Data":"eA=="}}"#)).collect();
    kinesis_json(d.addr, "PutRecords", &format!(r#"{{"StreamName":"f","Records":[{}]}}"#, recs.join(",")))
}

fn ack(acked: &mut Vec<(String, String)>, v: &Value, data: &str) {
    acked.push((v["SequenceNumber"].as_str().unwrap().to_owned(), data.to_owned()));
}

fn read_all(d: &Daemon) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let (s, v) = kinesis_json(
            d.addr,
            "GetShardIterator",
            &format!(r#"{{"StreamName":"f","ShardId":"{shard}","ShardIteratorType":"TRIM_HORIZON"}}"#),
        );
        assert_eq!(s, 200, "{v}");
        let it = v["ShardIterator"].as_str().unwrap().to_owned();
        let (s, v) = kinesis_json(d.addr, "GetRecords", &format!(r#"{{"ShardIterator":"{it}"}}"#));
        assert_eq!(s, 200, "reads keep working: {v}");
        for r in v["Records"].as_array().unwrap() {
            out.push((r["SequenceNumber"].as_str().unwrap().to_owned(), r["Data"].as_str().unwrap().to_owned()));
        }
    }
    out.sort();
    out
}

#[test]
fn disk_faults_fail_requests_cleanly_and_lose_nothing() {
    let mut d = Daemon::start_with(CONFIG);
    let (s, _) = kinesis_json(d.addr, "CreateStream", r#"{"StreamName":"f","ShardCount":2}"#);
    assert_eq!(s, 200);
    let mut acked: Vec<(String, String)> = Vec::new();
    for i in 0..5 {
        let data = format!("b2s{i}");
        let (s, v) = put(&d, &data);
        assert_eq!(s, 200);
        ack(&mut acked, &v, &data);
    }

    for (spec, status, error) in [
        ("write=EIO", 500, "InternalFailure"),
        ("sync=EIO", 500, "InternalFailure"),
        ("write=ENOSPC", 503, "ServiceUnavailable"),
        ("sync=ENOSPC", 503, "ServiceUnavailable"),
    ] {
        set_faults(&d, spec);
        for _ in 0..3 {
            let (s, v) = put(&d, "ZmFpbA==");
            assert_eq!((s, v["__type"].as_str()), (status, Some(error)), "{spec}: {v}");
        }
        let (s, v) = put_records(&d, 10);
        assert_eq!(s, 200, "{spec}: PutRecords reports per record");
        assert_eq!(v["FailedRecordCount"], 10, "{spec}: {v}");
        assert_eq!(v["Records"][0]["ErrorCode"], "InternalFailure", "{spec}: {v}");
        assert_eq!(read_all(&d).len(), acked.len(), "{spec}: reads work and show only acknowledged records");
        set_faults(&d, "off");
        // Writes resume once the fault clears.
        let data = format!("b2s{}", acked.len());
        let (s, v) = put(&d, &data);
        assert_eq!(s, 200, "{spec}: writes resume: {v}");
        ack(&mut acked, &v, &data);
    }
    acked.sort();
    assert_eq!(read_all(&d), acked);

    // After a crash, exactly the acknowledged records are there: what failed never surfaces.
    d.kill9();
    d.restart();
    assert_eq!(read_all(&d), acked);
    let (s, _) = put(&d, "YWZ0ZXI=");
    assert_eq!(s, 200);
}

#[test]
fn failpoints_are_off_unless_configured() {
    let d = Daemon::start();
    let head = "POST /debug/failpoints HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 9\r\n\r\n";
    let (status, _) = http_request(d.addr, head, b"write=EIO").unwrap();
    assert_ne!(status, 200);
    let (s, _) = kinesis_json(d.addr, "CreateStream", r#"{"StreamName":"f","ShardCount":1}"#);
    assert_eq!(s, 200, "no fault was set");
}
