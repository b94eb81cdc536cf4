//! The binary push protocol end to end: delivery as records commit, resume across a daemon
//! restart with no gap and no duplicate, takeover, and clear errors.

mod common;

use std::time::Duration;

use common::{kinesis_json, runtime, Daemon};
use sluice::push::client::{Event, PushClient};
use sluice::push::frame::Start;

fn put(d: &Daemon, stream: &str, data: &str) -> String {
    let b64 = base64_encode(data.as_bytes());
    let (s, v) =
        kinesis_json(d.addr, "PutRecord", &format!(r#"{{"StreamName":"{stream}","PartitionKey":"k","Data":"{b64}"}}"#));
    assert_eq!(s, 200, "{v}");
    v["SequenceNumber"].as_str().unwrap().to_owned()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn collect(c: &mut PushClient, want: usize) -> (Vec<(String, String)>, String) {
    let mut got = Vec::new();
    let mut continuation = String::new();
    while got.len() < want {
        match tokio::time::timeout(Duration::from_secs(20), c.next_event()).await.expect("records arrive").unwrap() {
            Event::Records { records, continuation: k, .. } => {
                got.extend(records.into_iter().map(|r| (r.sequence_number, String::from_utf8(r.data).unwrap())));
                continuation = k;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (got, continuation)
}

#[test]
fn push_delivers_and_resumes_after_a_restart_without_gap_or_duplicate() {
    let mut d = Daemon::start();
    let (s, _) = kinesis_json(d.addr, "CreateStream", r#"{"StreamName":"p","ShardCount":1}"#);
    assert_eq!(s, 200);
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push((put(&d, "p", &format!("r{i}")), format!("r{i}")));
    }
    let push = d.push_addr.to_string();
    let continuation = runtime().block_on(async {
        let mut c = PushClient::connect(&push, "test").await.unwrap();
        c.subscribe("p", "", "shardId-000000000000", Start::TrimHorizon).await.unwrap();
        let (got, _) = collect(&mut c, 5).await;
        assert_eq!(got, sent, "records put before subscribing, in order");
        // Records put while subscribed arrive as they commit.
        let addr = d.addr;
        let writer = std::thread::spawn(move || {
            (5..8)
                .map(|i| {
                    let b64 = base64_encode(format!("r{i}").as_bytes());
                    let (_, v) = kinesis_json(
                        addr,
                        "PutRecord",
                        &format!(r#"{{"StreamName":"p","PartitionKey":"k","Data":"{b64}"}}"#),
                    );
                    (v["SequenceNumber"].as_str().unwrap().to_owned(), format!("r{i}"))
                })
                .collect::<Vec<_>>()
        });
        let (got, continuation) = collect(&mut c, 3).await;
        assert_eq!(got, writer.join().unwrap());
        continuation
    });
    // Records put while no one listens, then a crash and a restart.
    let later: Vec<(String, String)> = (8..12).map(|i| (put(&d, "p", &format!("r{i}")), format!("r{i}"))).collect();
    d.kill9();
    d.restart();
    let push = d.push_addr.to_string();
    runtime().block_on(async {
        let mut c = PushClient::connect(&push, "test").await.unwrap();
        c.subscribe("p", "", "shardId-000000000000", Start::AfterSequenceNumber(continuation)).await.unwrap();
        let (got, _) = collect(&mut c, 4).await;
        assert_eq!(got, later, "resumed exactly after the last record received");
    });
}

#[test]
fn registered_consumers_take_over_and_errors_are_clear() {
    let d = Daemon::start_with(&format!("{}[fanout]\ntakeover_after = \"300ms\"\n", common::FAST_CONFIG));
    let (s, v) = kinesis_json(d.addr, "CreateStream", r#"{"StreamName":"t","ShardCount":1}"#);
    assert_eq!(s, 200, "{v}");
    let (_, v) = kinesis_json(d.addr, "DescribeStreamSummary", r#"{"StreamName":"t"}"#);
    let arn = v["StreamDescriptionSummary"]["StreamARN"].as_str().unwrap().to_owned();
    let (s, v) =
        kinesis_json(d.addr, "RegisterStreamConsumer", &format!(r#"{{"StreamARN":"{arn}","ConsumerName":"c"}}"#));
    assert_eq!(s, 200, "{v}");
    let push = d.push_addr.to_string();
    runtime().block_on(async {
        let mut first = PushClient::connect(&push, "first").await.unwrap();
        let sub = first.subscribe("t", "c", "shardId-000000000000", Start::Latest).await.unwrap();
        let mut second = PushClient::connect(&push, "second").await.unwrap();
        // Within the takeover window the consumer's shard is in use.
        let err = second.subscribe("t", "c", "shardId-000000000000", Start::Latest).await.unwrap_err();
        assert!(err.to_string().contains("server error 5"), "{err}");
        let err = second.subscribe("nope", "", "shardId-000000000000", Start::Latest).await.unwrap_err();
        assert!(err.to_string().contains("server error 3"), "{err}");
        let err = second.subscribe("t", "", "shardId-000000000007", Start::Latest).await.unwrap_err();
        assert!(err.to_string().contains("server error 3"), "{err}");
        let err =
            second.subscribe("t", "", "shardId-000000000000", Start::AtSequenceNumber("12".into())).await.unwrap_err();
        assert!(err.to_string().contains("server error 4"), "{err}");
        let err = second.subscribe("t", "ghost", "shardId-000000000000", Start::Latest).await.unwrap_err();
        assert!(err.to_string().contains("server error 3"), "{err}");
        // After the window, a new subscription takes over and the old one is ended.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut third = PushClient::connect(&push, "third").await.unwrap();
        let taken = third.subscribe("t", "c", "shardId-000000000000", Start::Latest).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(10), first.next_event()).await.unwrap().unwrap() {
            Event::End { subscription_id, reason, .. } => {
                assert_eq!((subscription_id, reason), (sub.id, sluice::push::frame::EndReason::TakenOver))
            }
            other => panic!("expected END, got {other:?}"),
        }
        third.unsubscribe(taken.id).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(10), third.next_event()).await.unwrap().unwrap() {
            Event::End { subscription_id, reason, .. } => {
                assert_eq!((subscription_id, reason), (taken.id, sluice::push::frame::EndReason::Unsubscribed))
            }
            other => panic!("expected END, got {other:?}"),
        }
    });
}

#[test]
fn a_bad_handshake_is_refused_with_an_error_frame() {
    use std::io::{Read, Write};
    let d = Daemon::start();
    let mut s = std::net::TcpStream::connect(d.push_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = Vec::new();
    sluice::push::frame::encode(&sluice::push::frame::Frame::Hello { version: 99, client: "x".into() }, &mut hello);
    s.write_all(&hello).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    match sluice::push::frame::decode(&buf).unwrap().unwrap().0 {
        sluice::push::frame::Frame::Error { code, .. } => {
            assert_eq!(code, sluice::push::server::CODE_UNSUPPORTED_VERSION)
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    let mut s = std::net::TcpStream::connect(d.push_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        matches!(sluice::push::frame::decode(&buf), Ok(Some((sluice::push::frame::Frame::Error { .. }, _)))),
        "{buf:?}"
    );
}
