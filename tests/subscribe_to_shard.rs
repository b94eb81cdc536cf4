//! SubscribeToShard on the wire: the event stream starts with `initial-response`, carries records
//! as they commit, and ends cleanly when the subscription's time is up.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{kinesis_json, Daemon, SIGNED};
use sluice::protocol::eventstream;

#[test]
fn the_event_stream_is_framed_as_aws_frames_it_and_ends_on_time() {
    let d = Daemon::start_with(&format!("{}[fanout]\nsubscription_duration = \"1s\"\n", common::FAST_CONFIG));
    let (s, _) = kinesis_json(d.addr, "CreateStream", r#"{"StreamName":"e","ShardCount":1}"#);
    assert_eq!(s, 200);
    let (_, v) = kinesis_json(d.addr, "DescribeStreamSummary", r#"{"StreamName":"e"}"#);
    let arn = v["StreamDescriptionSummary"]["StreamARN"].as_str().unwrap().to_owned();
    let (s, v) =
        kinesis_json(d.addr, "RegisterStreamConsumer", &format!(r#"{{"StreamARN":"{arn}","ConsumerName":"c"}}"#));
    assert_eq!(s, 200, "{v}");
    let consumer = v["Consumer"]["ConsumerARN"].as_str().unwrap().to_owned();
    let (s, _) = kinesis_json(d.addr, "PutRecord", r#"{"StreamName":"e","PartitionKey":"k","Data":"aGVsbG8="}"#);
    assert_eq!(s, 200);

    let body = format!(
        r#"{{"ConsumerARN":"{consumer}","ShardId":"shardId-000000000000","StartingPosition":{{"Type":"TRIM_HORIZON"}}}}"#
    );
    let mut sock = std::net::TcpStream::connect(d.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        sock,
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: Kinesis_20131202.SubscribeToShard\r\n{SIGNED}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The daemon ends the subscription after 1 s, so the whole response can be read to its end.
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).unwrap();
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..head_end]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/vnd.amazon.eventstream"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let bytes = dechunk(&raw[head_end + 4..]);
    let mut events = Vec::new();
    let mut rest = &bytes[..];
    while let Some((m, used)) = eventstream::decode(rest).expect("every frame's crcs check out") {
        events.push(m);
        rest = &rest[used..];
    }
    assert!(rest.is_empty(), "no trailing partial frame");
    assert_eq!(events[0].header(":event-type"), Some("initial-response"));
    assert_eq!(events[0].payload, b"{}");
    let first: serde_json::Value = serde_json::from_slice(&events[1].payload).unwrap();
    assert_eq!(events[1].header(":event-type"), Some("SubscribeToShardEvent"));
    assert_eq!(first["Records"][0]["Data"], "aGVsbG8=");
    // The continuation is the position after the last record delivered: above its sequence
    // number, not equal to it (AT and AFTER it both resume at the next record).
    // (56 digits each, so they compare as strings.)
    let cont = first["ContinuationSequenceNumber"].as_str().unwrap();
    let last = first["Records"][0]["SequenceNumber"].as_str().unwrap();
    assert!(cont.len() == last.len() && cont > last, "{cont} > {last}");
    assert!(events.iter().all(|e| e.header(":message-type") == Some("event")));
}

/// Undoes HTTP/1.1 chunked transfer encoding.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        b = &b[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}
