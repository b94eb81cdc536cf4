//! Data-plane operations through the official Rust SDK, plus the wire edges the SDK cannot reach:
//! CBOR, h2c, malformed and oversized bodies.

mod common;

use std::collections::HashMap;

use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use common::{code, kinesis_json, kinesis_raw, runtime, Daemon, SIGNED};
use md5::{Digest, Md5};
use serde_json::{json, Value};

fn md5_hash(key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(key.as_bytes()).into())
}

async fn iterator(c: &aws_sdk_kinesis::Client, stream: &str, shard: &str, kind: ShardIteratorType) -> String {
    c.get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(kind)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned()
}

#[test]
fn put_routes_by_md5_and_get_reads_back_in_order() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("s").shard_count(4).send().await.unwrap();
        let shards = c.list_shards().stream_name("s").send().await.unwrap();
        let ranges: HashMap<String, (u128, u128)> = shards
            .shards()
            .iter()
            .map(|s| {
                let r = s.hash_key_range().unwrap();
                (
                    s.shard_id().to_owned(),
                    (r.starting_hash_key().parse().unwrap(), r.ending_hash_key().parse().unwrap()),
                )
            })
            .collect();
        let mut put: HashMap<String, Vec<(String, Vec<u8>, String)>> = HashMap::new();
        for i in 0..60 {
            let key = format!("key-{}", i % 7);
            let data = format!("record {i}").into_bytes();
            let out =
                c.put_record().stream_name("s").partition_key(&key).data(Blob::new(data.clone())).send().await.unwrap();
            let (lo, hi) = ranges[out.shard_id()];
            let h = md5_hash(&key);
            assert!(lo <= h && h <= hi, "{key} routed to {} outside its range", out.shard_id());
            assert_eq!(out.sequence_number().len(), 56);
            put.entry(out.shard_id().to_owned()).or_default().push((key, data, out.sequence_number().to_owned()));
        }
        for (shard, expected) in &put {
            let it = iterator(&c, "s", shard, ShardIteratorType::TrimHorizon).await;
            let got = c.get_records().shard_iterator(it).send().await.unwrap();
            assert_eq!(got.records().len(), expected.len());
            for (r, (key, data, seq)) in got.records().iter().zip(expected) {
                assert_eq!(r.partition_key(), Some(key.as_str()));
                assert_eq!(r.data().as_ref(), &data[..]);
                assert_eq!(r.sequence_number(), seq);
                assert!(r.approximate_arrival_timestamp().is_some());
            }
            // Fixed-width decimal strings: string order is numeric order.
            let seqs: Vec<&str> = got.records().iter().map(|r| r.sequence_number()).collect();
            assert!(
                seqs.windows(2).all(|w| w[0].len() == w[1].len() && w[0] < w[1]),
                "sequence numbers increase per shard"
            );
            assert_eq!(got.millis_behind_latest(), Some(0));
        }
    });
}

#[test]
fn put_records_keeps_request_order_and_explicit_hash_keys() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("s").shard_count(2).send().await.unwrap();
        let mut req = c.put_records().stream_name("s");
        for i in 0..500 {
            // Even records to shard 0, odd to shard 1, by explicit hash key.
            let ehk = if i % 2 == 0 { "0".to_owned() } else { u128::MAX.to_string() };
            req = req.records(
                PutRecordsRequestEntry::builder()
                    .partition_key("same")
                    .explicit_hash_key(ehk)
                    .data(Blob::new(vec![(i % 256) as u8; 1024]))
                    .build()
                    .unwrap(),
            );
        }
        let out = req.send().await.unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
        assert_eq!(out.records().len(), 500);
        for (i, r) in out.records().iter().enumerate() {
            let expected = if i % 2 == 0 { "shardId-000000000000" } else { "shardId-000000000001" };
            assert_eq!(r.shard_id(), Some(expected));
        }
        let it = iterator(&c, "s", "shardId-000000000001", ShardIteratorType::TrimHorizon).await;
        let got = c.get_records().shard_iterator(it).limit(100).send().await.unwrap();
        assert_eq!(got.records().len(), 100, "Limit is honoured");
        assert_eq!(got.records()[0].data().as_ref()[0], 1);
        assert_eq!(got.records()[1].data().as_ref()[0], 3);
        assert!(got.millis_behind_latest().is_some());
        let rest = c.get_records().shard_iterator(got.next_shard_iterator().unwrap()).send().await.unwrap();
        assert_eq!(rest.records().len(), 150);
        let empty = c.get_records().shard_iterator(rest.next_shard_iterator().unwrap()).send().await.unwrap();
        assert!(empty.records().is_empty());
        assert!(empty.next_shard_iterator().is_some(), "an open shard always has a next iterator");
    });
}

#[test]
fn every_iterator_type_starts_where_aws_says() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("s").shard_count(1).send().await.unwrap();
        let mut seqs = Vec::new();
        for i in 0..5 {
            let out = c.put_record().stream_name("s").partition_key("k").data(Blob::new(vec![i])).send().await.unwrap();
            seqs.push(out.sequence_number().to_owned());
        }
        let shard = "shardId-000000000000";
        let latest = iterator(&c, "s", shard, ShardIteratorType::Latest).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let mid = DateTime::from_millis(chrono_now_ms());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        c.put_record().stream_name("s").partition_key("k").data(Blob::new(vec![5])).send().await.unwrap();
        let got = c.get_records().shard_iterator(latest).send().await.unwrap();
        assert_eq!(got.records().iter().map(|r| r.data().as_ref()[0]).collect::<Vec<_>>(), [5]);

        let at = c
            .get_shard_iterator()
            .stream_name("s")
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(&seqs[2])
            .send()
            .await
            .unwrap();
        let got = c.get_records().shard_iterator(at.shard_iterator().unwrap()).send().await.unwrap();
        assert_eq!(got.records()[0].data().as_ref()[0], 2);
        assert_eq!(got.records().len(), 4);

        let after = c
            .get_shard_iterator()
            .stream_name("s")
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(&seqs[2])
            .send()
            .await
            .unwrap();
        let got = c.get_records().shard_iterator(after.shard_iterator().unwrap()).send().await.unwrap();
        assert_eq!(got.records()[0].data().as_ref()[0], 3);

        let ts = c
            .get_shard_iterator()
            .stream_name("s")
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(mid)
            .send()
            .await
            .unwrap();
        let got = c.get_records().shard_iterator(ts.shard_iterator().unwrap()).send().await.unwrap();
        assert_eq!(got.records().iter().map(|r| r.data().as_ref()[0]).collect::<Vec<_>>(), [5]);

        let early = c
            .get_shard_iterator()
            .stream_name("s")
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(DateTime::from_secs(0))
            .send()
            .await
            .unwrap();
        let got = c.get_records().shard_iterator(early.shard_iterator().unwrap()).send().await.unwrap();
        assert_eq!(got.records().len(), 6);
    });
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn data_plane_errors_are_aws_shaped_and_change_nothing() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("s").shard_count(2).send().await.unwrap();
        let e = c.put_record().stream_name("nope").partition_key("k").data(Blob::new("x")).send().await.unwrap_err();
        assert_eq!(code(&e), "ResourceNotFoundException");
        let e = c.put_record().stream_name("s").partition_key("").data(Blob::new("x")).send().await.unwrap_err();
        assert_eq!(code(&e), "ValidationException");
        let e = c
            .put_record()
            .stream_name("s")
            .partition_key("k".repeat(257))
            .data(Blob::new("x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ValidationException");
        let e = c
            .put_record()
            .stream_name("s")
            .partition_key("k")
            .data(Blob::new(vec![0; (1 << 20) + 1]))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ValidationException");
        let e = c
            .put_record()
            .stream_name("s")
            .partition_key("k")
            .explicit_hash_key("340282366920938463463374607431768211456")
            .data(Blob::new("x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        let e = c.put_records().stream_name("s").send().await.unwrap_err();
        assert_eq!(code(&e), "ValidationException");
        let mut big = c.put_records().stream_name("s");
        for _ in 0..501 {
            big =
                big.records(PutRecordsRequestEntry::builder().partition_key("k").data(Blob::new("x")).build().unwrap());
        }
        assert_eq!(code(&big.send().await.unwrap_err()), "ValidationException");
        let mut heavy = c.put_records().stream_name("s");
        for _ in 0..6 {
            heavy = heavy.records(
                PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .data(Blob::new(vec![1; (1 << 20) - 1]))
                    .build()
                    .unwrap(),
            );
        }
        assert_eq!(code(&heavy.send().await.unwrap_err()), "InvalidArgumentException");

        let e = c
            .get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000009")
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ResourceNotFoundException");
        let e = c
            .get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        let other = c
            .put_record()
            .stream_name("s")
            .partition_key("k")
            .explicit_hash_key(u128::MAX.to_string())
            .data(Blob::new("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(other.shard_id(), "shardId-000000000001");
        let e = c
            .get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(other.sequence_number())
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException", "a sequence number of another shard");
        let e = c
            .get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number("12345")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        let e = c.get_records().shard_iterator("AAAAAAAAAAAAAAAA").send().await.unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        let it = iterator(&c, "s", "shardId-000000000000", ShardIteratorType::TrimHorizon).await;
        let e = c.get_records().shard_iterator(&it).limit(0).send().await.unwrap_err();
        assert_eq!(code(&e), "ValidationException");
        let e = c.get_records().shard_iterator(&it).limit(10_001).send().await.unwrap_err();
        assert_eq!(code(&e), "ValidationException");
        // None of the refused puts landed.
        let got = c.get_records().shard_iterator(&it).send().await.unwrap();
        assert!(got.records().is_empty());
    });
}

#[test]
fn expired_iterators_are_refused() {
    // An iterator issued more than five minutes ago: forge one with the same layout the daemon
    // uses (version, stream id, shard, ordinal, issue ms, crc32c) is not possible from outside,
    // so take a real one and check that the daemon honours its issue time via the raw API.
    let d = Daemon::start();
    let (s, _) = kinesis_json(d.addr, "CreateStream", r#"{"StreamName":"s","ShardCount":1}"#);
    assert_eq!(s, 200);
    let (s, v) = kinesis_json(
        d.addr,
        "GetShardIterator",
        r#"{"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"LATEST"}"#,
    );
    assert_eq!(s, 200);
    let it = v["ShardIterator"].as_str().unwrap().to_owned();
    let (s, _) = kinesis_json(d.addr, "GetRecords", &format!(r#"{{"ShardIterator":"{it}"}}"#));
    assert_eq!(s, 200);
    let expired = sluice::stream::seqno::ShardIterator::decode(&it, 0).unwrap();
    let old = sluice::stream::seqno::ShardIterator { issued_ms: 1_000, ..expired }.encode();
    let (s, v) = kinesis_json(d.addr, "GetRecords", &format!(r#"{{"ShardIterator":"{old}"}}"#));
    assert_eq!((s, v["__type"].as_str()), (400, Some("ExpiredIteratorException")));
}

#[test]
fn malformed_and_oversized_bodies_get_clear_errors() {
    let d = Daemon::start();
    let json = "application/x-amz-json-1.1";
    let (s, b) = kinesis_raw(d.addr, "CreateStream", json, b"{not json");
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, v["__type"].as_str()), (400, Some("SerializationException")));
    let (s, v) = kinesis_json(d.addr, "CreateStream", r#"{"StreamName": 7, "ShardCount": 1}"#);
    assert_eq!((s, v["__type"].as_str()), (400, Some("SerializationException")));
    let (s, v) = kinesis_json(d.addr, "CreateStream", r#"{"ShardCount": 1}"#);
    assert_eq!((s, v["__type"].as_str()), (400, Some("ValidationException")));
    let (s, v) = kinesis_json(d.addr, "NoSuchOperation", "{}");
    assert_eq!((s, v["__type"].as_str()), (400, Some("UnknownOperationException")));
    let (s, _) = kinesis_json(d.addr, "CreateStream", r#"{"StreamName":"s","ShardCount":1}"#);
    assert_eq!(s, 200);
    let (s, v) = kinesis_json(d.addr, "PutRecord", r#"{"StreamName":"s","PartitionKey":"k","Data":"%%%"}"#);
    assert_eq!((s, v["__type"].as_str()), (400, Some("SerializationException")));
    // A declared length over the limit is refused before the body is read.
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {json}\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\n{SIGNED}Content-Length: {}\r\n\r\n",
        17 << 20
    );
    let (s, b) = common::http_request(d.addr, &head, b"").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, v["__type"].as_str()), (413, Some("ValidationException")));
    // Still serving, and nothing was written.
    let (s, v) = kinesis_json(
        d.addr,
        "GetShardIterator",
        r#"{"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"TRIM_HORIZON"}"#,
    );
    assert_eq!(s, 200);
    let it = v["ShardIterator"].as_str().unwrap();
    let (_, v) = kinesis_json(d.addr, "GetRecords", &format!(r#"{{"ShardIterator":"{it}"}}"#));
    assert_eq!(v["Records"].as_array().unwrap().len(), 0);
    let (s, body) = common::http_get(d.addr, "/metrics").unwrap();
    assert_eq!(s, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("sluice_requests_total{operation=\"PutRecord\",outcome=\"SerializationException\"} 1"),
        "{text}"
    );
}

#[test]
fn cbor_requests_get_cbor_answers() {
    use ciborium::value::Value as Cbor;
    let d = Daemon::start();
    let cbor = "application/x-amz-cbor-1.1";
    let enc = |v: Cbor| {
        let mut out = Vec::new();
        ciborium::ser::into_writer(&v, &mut out).unwrap();
        out
    };
    let map = |pairs: Vec<(&str, Cbor)>| Cbor::Map(pairs.into_iter().map(|(k, v)| (Cbor::Text(k.into()), v)).collect());
    let (s, _) = kinesis_raw(
        d.addr,
        "CreateStream",
        cbor,
        &enc(map(vec![("StreamName", Cbor::Text("c".into())), ("ShardCount", Cbor::Integer(1.into()))])),
    );
    assert_eq!(s, 200);
    let payload = vec![0u8, 159, 255, 1];
    let (s, b) = kinesis_raw(
        d.addr,
        "PutRecord",
        cbor,
        &enc(map(vec![
            ("StreamName", Cbor::Text("c".into())),
            ("PartitionKey", Cbor::Text("k".into())),
            ("Data", Cbor::Bytes(payload.clone())),
        ])),
    );
    assert_eq!(s, 200);
    let v: Cbor = ciborium::de::from_reader(&b[..]).unwrap();
    let get =
        |v: &Cbor, k: &str| v.as_map().unwrap().iter().find(|(kk, _)| kk.as_text() == Some(k)).map(|(_, v)| v.clone());
    assert!(get(&v, "SequenceNumber").unwrap().as_text().unwrap().starts_with("49"));
    let (_, b) = kinesis_raw(
        d.addr,
        "GetShardIterator",
        cbor,
        &enc(map(vec![
            ("StreamName", Cbor::Text("c".into())),
            ("ShardId", Cbor::Text("shardId-000000000000".into())),
            ("ShardIteratorType", Cbor::Text("TRIM_HORIZON".into())),
        ])),
    );
    let v: Cbor = ciborium::de::from_reader(&b[..]).unwrap();
    let it = get(&v, "ShardIterator").unwrap();
    let (s, b) = kinesis_raw(d.addr, "GetRecords", cbor, &enc(map(vec![("ShardIterator", it)])));
    assert_eq!(s, 200);
    let v: Cbor = ciborium::de::from_reader(&b[..]).unwrap();
    let recs = get(&v, "Records").unwrap();
    let rec = &recs.as_array().unwrap()[0];
    assert_eq!(get(rec, "Data").unwrap().as_bytes().unwrap(), &payload, "Data is a CBOR byte string");
    assert!(matches!(get(rec, "ApproximateArrivalTimestamp").unwrap(), Cbor::Tag(1, _)));
    let (s, b) =
        kinesis_raw(d.addr, "DescribeStream", cbor, &enc(map(vec![("StreamName", Cbor::Text("missing".into()))])));
    assert_eq!(s, 400);
    let v: Cbor = ciborium::de::from_reader(&b[..]).unwrap();
    assert_eq!(get(&v, "__type").unwrap().as_text(), Some("ResourceNotFoundException"));
}

#[test]
fn h2c_prior_knowledge_serves_the_api() {
    let d = Daemon::start();
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(d.addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let req = http::Request::post(format!("http://{}/", d.addr))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "Kinesis_20131202.CreateStream")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=x/20261201/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00")
            .header("x-amz-date", "20261201T000000Z")
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, false).unwrap();
        send.send_data(bytes::Bytes::from_static(br#"{"StreamName":"h2","ShardCount":1}"#), true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
    });
    let (s, v) = kinesis_json(d.addr, "DescribeStreamSummary", r#"{"StreamName":"h2"}"#);
    assert_eq!(s, 200);
    assert_eq!(v["StreamDescriptionSummary"]["OpenShardCount"], 1);
}

/// Puts in the form producers send (the Java SDK's indefinite-length CBOR, plain JSON) and in
/// forms the fast path leaves to the general one (escapes, a repeated member) store the same
/// records and get the same answers and errors.
#[test]
fn put_records_in_every_wire_form_store_the_same() {
    let d = Daemon::start();
    let json = "application/x-amz-json-1.1";
    let cbor = "application/x-amz-cbor-1.1";
    let (s, _) = kinesis_raw(d.addr, "CreateStream", json, br#"{"StreamName":"w","ShardCount":2}"#);
    assert_eq!(s, 200);
    let text = |out: &mut Vec<u8>, t: &str| {
        out.push(0x60 | t.len() as u8);
        out.extend_from_slice(t.as_bytes());
    };
    // {_ "StreamName": "w", "Records": [_ {"Data": h'00ff', "PartitionKey": "k1"}, ...] }
    let cbor_body = |keys: &[&str], payload: &[u8]| {
        let mut out = vec![0xbf];
        text(&mut out, "StreamName");
        text(&mut out, "w");
        text(&mut out, "Records");
        out.push(0x9f);
        for k in keys {
            out.push(0xa2);
            text(&mut out, "Data");
            out.push(0x40 | payload.len() as u8);
            out.extend_from_slice(payload);
            text(&mut out, "PartitionKey");
            text(&mut out, k);
        }
        out.extend_from_slice(&[0xff, 0xff]);
        out
    };
    let (s, b) = kinesis_raw(d.addr, "PutRecords", cbor, &cbor_body(&["k1", "k2"], &[0, 255]));
    assert_eq!(s, 200, "{b:?}");
    let v: ciborium::value::Value = ciborium::de::from_reader(&b[..]).unwrap();
    let answer = serde_json::to_value(&v).unwrap();
    assert_eq!(answer["FailedRecordCount"], 0, "{answer}");
    let cbor_shards: Vec<Value> = answer["Records"].as_array().unwrap().iter().map(|r| r["ShardId"].clone()).collect();
    // The same keys in JSON, plain (fast path) and escaped (general path).
    for body in [
        &br#"{"StreamName":"w","Records":[{"Data":"AP8=","PartitionKey":"k1"},{"Data":"AP8=","PartitionKey":"k2"}]}"#[..],
        br#"{"StreamName":"w","Records":[{"Data":"AP8=","PartitionKey":"\u006b1"},{"Data":"AP8=","PartitionKey":"k\u0032"}]}"#,
    ] {
        let (s, b) = kinesis_raw(d.addr, "PutRecords", json, body);
        assert_eq!(s, 200);
        let v: Value = serde_json::from_slice(&b).unwrap();
        let shards: Vec<Value> = v["Records"].as_array().unwrap().iter().map(|r| r["ShardId"].clone()).collect();
        assert_eq!(shards, cbor_shards, "{v}");
        assert_eq!(v["EncryptionType"], "NONE");
    }
    // Errors are the model's, whichever path the request took.
    let (s, b) = kinesis_raw(d.addr, "PutRecords", cbor, &cbor_body(&[], &[]));
    assert_eq!(s, 400);
    let v: ciborium::value::Value = ciborium::de::from_reader(&b[..]).unwrap();
    assert_eq!(serde_json::to_value(&v).unwrap()["__type"], "ValidationException");
    let (s, b) = kinesis_raw(d.addr, "PutRecords", json, br#"{"StreamName":"w","Records":[{"Data":"AP8="}]}"#);
    assert_eq!(s, 400);
    let fast: Value = serde_json::from_slice(&b).unwrap();
    let (s, b) =
        kinesis_raw(d.addr, "PutRecords", json, br#"{"StreamName":"w","StreamName":"w","Records":[{"Data":"AP8="}]}"#);
    assert_eq!(s, 400);
    let general: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(fast["__type"], "ValidationException", "{fast}");
    assert_eq!(fast, general);
    let (s, b) = kinesis_raw(
        d.addr,
        "PutRecords",
        json,
        br#"{"StreamName":"nope","Records":[{"Data":"AP8=","PartitionKey":"k"}]}"#,
    );
    assert_eq!(s, 400);
    assert_eq!(serde_json::from_slice::<Value>(&b).unwrap()["__type"], "ResourceNotFoundException");
    // Every record stored: two from CBOR, four from JSON.
    let mut total = 0;
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let body = format!(r#"{{"StreamName":"w","ShardId":"{shard}","ShardIteratorType":"TRIM_HORIZON"}}"#);
        let (_, b) = kinesis_raw(d.addr, "GetShardIterator", json, body.as_bytes());
        let it = serde_json::from_slice::<Value>(&b).unwrap()["ShardIterator"].clone();
        let (_, b) = kinesis_raw(d.addr, "GetRecords", json, json!({"ShardIterator": it}).to_string().as_bytes());
        let v: Value = serde_json::from_slice(&b).unwrap();
        for r in v["Records"].as_array().unwrap() {
            assert_eq!(r["Data"], "AP8=");
            total += 1;
        }
    }
    assert_eq!(total, 6);
}
