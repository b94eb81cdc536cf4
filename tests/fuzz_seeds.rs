//! The fuzzers' seed corpus (`fuzz/seeds/<target>/`): real request bodies, real batches and real
//! iterators, made by the daemon's own encoders. With `SLUICE_WRITE_FUZZ_SEEDS=1` this test
//! rewrites them; otherwise it checks that every seed is still a valid input for its decoder, so
//! the corpus does not rot as the formats change.

use std::path::{Path, PathBuf};

use ciborium::value::Value as Cbor;
use sluice::config::Compression;
use sluice::http::iam::Effect;
use sluice::log::segment::{decode_batch_header, encode_batch, verify_batch, SegmentHeader, FORMAT_VERSION};
use sluice::protocol::codec::{decode_request, Protocol};
use sluice::protocol::eventstream;
use sluice::push::frame::{self, EndReason, Frame, PushRecord, Start};
use sluice::stream::seqno::{SeqNo, ShardIterator};

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target)
}

fn json_seeds() -> Seeds {
    vec![
        ("create_stream", br#"{"StreamName":"sensor-data-stream","ShardCount":4,"StreamModeDetails":{"StreamMode":"PROVISIONED"}}"#.to_vec()),
        ("put_record", br#"{"StreamName":"s","Data":"eyJ0ZW1wIjogMjEuNX0=","PartitionKey":"sensor-1","ExplicitHashKey":"170141183460469231731687303715884105728"}"#.to_vec()),
        ("put_records", br#"{"StreamName":"s","Records":[{"Data":"eyJzZW5zb3JfaWQiOiAiczEifQ==","PartitionKey":"s1"},{"Data":"","PartitionKey":"s2"}]}"#.to_vec()),
        ("get_shard_iterator", br#"{"StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/s","ShardId":"shardId-000000000000","ShardIteratorType":"AT_TIMESTAMP","Timestamp":1700000000.5}"#.to_vec()),
        ("list_shards", br#"{"StreamName":"s","MaxResults":2,"ShardFilter":{"Type":"AFTER_SHARD_ID","ShardId":"shardId-000000000001"}}"#.to_vec()),
    ]
}

fn cbor_seeds() -> Seeds {
    let text = |s: &str| Cbor::Text(s.into());
    let map = |pairs: Vec<(&str, Cbor)>| Cbor::Map(pairs.into_iter().map(|(k, v)| (text(k), v)).collect());
    let reqs = vec![
        (
            "put_record",
            map(vec![
                ("StreamName", text("s")),
                ("PartitionKey", text("k")),
                ("Data", Cbor::Bytes(vec![0, 1, 2, 255])),
            ]),
        ),
        (
            "get_shard_iterator",
            map(vec![
                ("StreamName", text("s")),
                ("ShardId", text("shardId-000000000000")),
                ("ShardIteratorType", text("AT_TIMESTAMP")),
                ("Timestamp", Cbor::Tag(1, Box::new(Cbor::Float(1_700_000_000.25)))),
            ]),
        ),
        (
            "put_records",
            map(vec![
                ("StreamName", text("s")),
                (
                    "Records",
                    Cbor::Array(vec![map(vec![("PartitionKey", text("a")), ("Data", Cbor::Bytes(b"x".to_vec()))])]),
                ),
            ]),
        ),
    ];
    reqs.into_iter()
        .map(|(name, v)| {
            let mut out = Vec::new();
            ciborium::ser::into_writer(&v, &mut out).unwrap();
            (name, out)
        })
        .collect()
}

fn segment_seeds() -> Seeds {
    let mut out = Vec::new();
    for (name, codec) in
        [("segment_none", Compression::None), ("segment_lz4", Compression::Lz4), ("segment_zstd", Compression::Zstd)]
    {
        // Two batches back to back, as the log lays them out after the segment header (the
        // fuzz target reads batches from offset 0).
        let mut bytes = Vec::new();
        encode_batch(
            0,
            1_700_000_000_000,
            &[("sensor-1", br#"{"temp":21.5}"#), ("sensor-2", b"")],
            codec,
            None,
            &mut bytes,
        );
        encode_batch(2, 1_700_000_000_001, &[("sensor-1", &[7u8; 300][..])], codec, None, &mut bytes);
        out.push((name, bytes));
    }
    let header = SegmentHeader {
        version: FORMAT_VERSION,
        stream_id: 1,
        shard_index: 0,
        base_ordinal: 0,
        created_ms: 1,
        key: None,
    };
    out.push(("segment_header", header.encode()[..64].to_vec()));
    out
}

fn iterator_seeds() -> Seeds {
    let seq = SeqNo::record(3, 1, 42);
    let it = ShardIterator { stream_id: 3, shard_index: 1, ordinal: 42, issued_ms: 1_700_000_000_000 };
    vec![("sequence_number", seq.encode().into_bytes()), ("shard_iterator", it.encode().into_bytes())]
}

/// Named seed files of one target.
type Seeds = Vec<(&'static str, Vec<u8>)>;

fn recovery_seeds() -> Seeds {
    // The target puts its own segment header in front when the first byte is even.
    segment_seeds().into_iter().filter(|(n, _)| *n != "segment_header").collect()
}

fn eventstream_seeds() -> Seeds {
    vec![
        ("initial_response", eventstream::event("initial-response", b"{}").to_vec()),
        ("event", eventstream::event("SubscribeToShardEvent", br#"{"Records":[],"MillisBehindLatest":0}"#).to_vec()),
        ("exception", eventstream::exception("ResourceInUseException", "busy").to_vec()),
    ]
}

fn push_seeds() -> Seeds {
    let frames = [
        ("hello", Frame::Hello { version: 1, client: "seed".into() }),
        (
            "subscribe",
            Frame::Subscribe {
                request_id: 1,
                stream: "s".into(),
                consumer: "c".into(),
                shard: "shardId-000000000000".into(),
                start: Start::AfterSequenceNumber(SeqNo::record(1, 0, 5).encode()),
                credit_bytes: 1 << 20,
            },
        ),
        (
            "records",
            Frame::Records {
                subscription_id: 1,
                millis_behind: 3,
                continuation: SeqNo::record(1, 0, 6).encode(),
                records: vec![PushRecord {
                    sequence_number: SeqNo::record(1, 0, 5).encode(),
                    arrival_ms: 1,
                    partition_key: "k".into(),
                    data: b"v".to_vec(),
                }],
            },
        ),
        ("credit", Frame::Credit { subscription_id: 1, bytes: 4096 }),
        ("end", Frame::End { subscription_id: 1, reason: EndReason::TakenOver, continuation: "x".into() }),
        ("challenge", Frame::Challenge { nonce: vec![7; 32] }),
        (
            "auth",
            Frame::Auth { access_key_id: "AKIDEXAMPLE".into(), date_ms: 1_764_633_600_000, signature: vec![1; 32] },
        ),
    ];
    frames
        .into_iter()
        .map(|(n, f)| {
            let mut b = Vec::new();
            frame::encode(&f, &mut b);
            (n, b)
        })
        .collect()
}

/// `<Operation>\n<body>`: requests AWS accepts and ones it refuses, for the validator.
fn validate_seeds() -> Seeds {
    vec![
        ("create_stream", b"CreateStream\n{\"StreamName\":\"s\",\"ShardCount\":1}".to_vec()),
        ("create_stream_bad", b"CreateStream\n{\"StreamName\":\"\",\"ShardCount\":0}".to_vec()),
        (
            "put_records",
            b"PutRecords\n{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"aGk=\",\"PartitionKey\":\"k\"},{}]}".to_vec(),
        ),
        ("add_tags", b"AddTagsToStream\n{\"StreamName\":\"s\",\"Tags\":{\"a\":\"b\",\"\":\"c\"}}".to_vec()),
        ("types", b"ListShards\n{\"MaxResults\":\"x\",\"StreamCreationTimestamp\":true}".to_vec()),
    ]
}

/// `[D]<Authorization value>\n<query>` for the signature check.
fn auth_seeds() -> Seeds {
    vec![
        (
            "signed",
            b"DAWS4-HMAC-SHA256 Credential=x/20261201/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00\n"
                .to_vec(),
        ),
        ("incomplete", b"AWS4- Signature=b, Credential=a\n".to_vec()),
        ("query", b"\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x&X-Amz-Date=y".to_vec()),
    ]
}

/// `<principal account>\n<action>\n<resource>\n<policy JSON>` for the policy evaluator.
fn iam_seeds() -> Seeds {
    let grant = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":["kinesis:Get*","kinesis:DescribeStreamSummary"],"Resource":"arn:aws:kinesis:us-east-1:000000000000:stream/s","Condition":{"StringEquals":{"aws:PrincipalAccount":"210987654321"}}}]}"#;
    let deny = r#"{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":["000000000000"]},"NotAction":"kinesis:Describe*","Condition":{"ArnNotLikeIfExists":{"aws:PrincipalArn":"arn:aws:iam::*:user/ad?min"},"Null":{"aws:SourceAccount":"false"}}}}"#;
    let resource = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
    vec![
        ("grant", format!("210987654321\nkinesis:GetRecords\n{resource}\n{grant}").into_bytes()),
        ("deny", format!("210987654321\nkinesis:PutRecords\n{resource}\n{deny}").into_bytes()),
    ]
}

/// `<condition>\n<update>` as the KCL and the lock client write them.
fn ddb_expr_seeds() -> Seeds {
    vec![
        ("lease", b"attribute_exists(leaseKey) AND leaseCounter = :n\nSET #n = :v ADD leaseCounter :n".to_vec()),
        ("leader", b"(attribute_not_exists(#n) OR #n = :v) AND NOT size(leaseKey) < :n\nREMOVE m.a[0], s".to_vec()),
        (
            "between",
            b"leaseCounter BETWEEN :n AND :n OR leaseCounter IN (:n)\nSET m.a = list_append(m.a, :l) DELETE s :s"
                .to_vec(),
        ),
    ]
}

/// KPL aggregates as the KPL writes them, and one plain record.
fn kpl_seeds() -> Seeds {
    use sluice::kcl::kpl::aggregate;
    vec![
        ("aggregate", aggregate(&[("sensor-1", None, b"{\"t\":1}"), ("sensor-2", Some("42"), b"")])),
        ("single", aggregate(&[("k", None, &[7u8; 100][..])])),
        ("plain", b"not an aggregate".to_vec()),
    ]
}

/// Prefixes as users write them (the seed's, AWS's documented examples), some with an instant.
fn firehose_prefix_seeds() -> Seeds {
    vec![
        ("seed", b"sensor-data/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/".to_vec()),
        ("errors", b"errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/".to_vec()),
        ("partitions", b"1767323045678\ncustomers/!{partitionKeyFromQuery:id}/!{firehose:random-string}/".to_vec()),
        ("patterns", b"-1\n!{timestamp:EEE, d MMM yyyy HH:mm:ss.SSS 'at' h a ''}".to_vec()),
    ]
}

fn all() -> Vec<(&'static str, Seeds)> {
    vec![
        ("api_json", json_seeds()),
        ("api_cbor", cbor_seeds()),
        ("segment_batch", segment_seeds()),
        ("seqno_iterator", iterator_seeds()),
        ("recovery_scan", recovery_seeds()),
        ("eventstream", eventstream_seeds()),
        ("push_frame", push_seeds()),
        ("validate", validate_seeds()),
        ("auth_header", auth_seeds()),
        ("ddb_expr", ddb_expr_seeds()),
        ("kpl", kpl_seeds()),
        ("firehose_prefix", firehose_prefix_seeds()),
        ("iam", iam_seeds()),
    ]
}

#[test]
fn fuzz_seeds_are_valid_inputs() {
    if std::env::var_os("SLUICE_WRITE_FUZZ_SEEDS").is_some() {
        for (target, seeds) in all() {
            let dir = seeds_dir(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in seeds {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
    for (target, seeds) in all() {
        for (name, _) in seeds {
            let bytes = std::fs::read(seeds_dir(target).join(name)).unwrap_or_else(|e| {
                panic!("seed {target}/{name} is missing ({e}); run with SLUICE_WRITE_FUZZ_SEEDS=1")
            });
            match target {
                "api_json" => {
                    assert!(decode_request(Protocol::Json, &bytes, &sluice::kinesis::MEMBER_KINDS).is_ok(), "{name}")
                }
                "api_cbor" => {
                    assert!(decode_request(Protocol::Cbor, &bytes, &sluice::kinesis::MEMBER_KINDS).is_ok(), "{name}")
                }
                "segment_batch" if name == "segment_header" => assert!(SegmentHeader::decode(&bytes).is_ok()),
                "segment_batch" | "recovery_scan" => {
                    let h = decode_batch_header(&bytes, 0).unwrap().unwrap();
                    verify_batch(&bytes, 0, &h).unwrap();
                }
                "eventstream" => assert!(matches!(eventstream::decode(&bytes), Ok(Some(_))), "{name}"),
                "push_frame" => assert!(matches!(frame::decode(&bytes), Ok(Some(_))), "{name}"),
                "validate" => {
                    let (op, body) = bytes.split_at(bytes.iter().position(|&b| b == b'\n').unwrap());
                    let mut v = decode_request(Protocol::Json, &body[1..], &sluice::kinesis::MEMBER_KINDS).unwrap();
                    let op = std::str::from_utf8(op).unwrap();
                    assert!(sluice::kinesis::MODEL.has_operation(op), "{name}");
                    let _ = sluice::kinesis::MODEL.check(op, &mut v);
                }
                "auth_header" => assert!(std::str::from_utf8(&bytes).is_ok(), "{name}"),
                "iam" => {
                    let text = std::str::from_utf8(&bytes).unwrap();
                    let parts: Vec<&str> = text.splitn(4, '\n').collect();
                    let policy: serde_json::Value = serde_json::from_str(parts[3]).unwrap();
                    let req = sluice::http::iam::Request {
                        principal: sluice::http::iam::Principal { account: parts[0], arn: "arn:aws:iam::x:user/u" },
                        action: parts[1],
                        resource: parts[2],
                        resource_account: "000000000000",
                    };
                    let want = if name == "grant" { Effect::Allow } else { Effect::Deny };
                    assert_eq!(sluice::http::iam::evaluate(&policy, &req), want, "{name}");
                }
                "firehose_prefix" => {
                    let text = std::str::from_utf8(&bytes).unwrap();
                    let text = text.split_once('\n').map_or(text, |(_, t)| t);
                    assert!(sluice::firehose::prefix::Prefix::parse(text).is_ok(), "{name}");
                }
                "kpl" => {
                    let out = sluice::kcl::kpl::deaggregate("k", &bytes, None);
                    assert_eq!(out.iter().all(|r| r.aggregated), name != "plain", "{name}");
                }
                "ddb_expr" => {
                    use sluice::dynamodb::expr::{parse_condition, parse_update, Placeholders};
                    let names = serde_json::json!({"#n": "leaseOwner"});
                    let values =
                        serde_json::json!({":v": {"S": "w1"}, ":n": {"N": "1"}, ":l": {"L": []}, ":s": {"SS": ["a"]}});
                    let ph = Placeholders { names: names.as_object(), values: values.as_object() };
                    let text = std::str::from_utf8(&bytes).unwrap();
                    let (c, u) = text.split_once('\n').unwrap();
                    assert!(parse_condition(c, &ph).is_ok(), "{name}: condition");
                    assert!(parse_update(u, &ph).is_ok(), "{name}: update");
                }
                _ => {
                    let text = std::str::from_utf8(&bytes).unwrap();
                    assert!(
                        SeqNo::parse(text).is_ok() || ShardIterator::decode(text, 1_700_000_000_000).is_ok(),
                        "{name}"
                    );
                }
            }
        }
    }
}
