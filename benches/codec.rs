//! Micro-benchmarks of the pure codecs on the hot path. Run: `cargo bench --bench codec`.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice::config::Compression;
use sluice::log::segment::{decode_batch_header, decode_records, encode_batch, verify_batch};
use sluice::stream::hashing::hash_partition_key;
use sluice::stream::seqno::SeqNo;

fn records(n: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..n).map(|i| (format!("sensor-{}", i % 100), (0..size).map(|j| ((i + j) % 251) as u8).collect())).collect()
}

fn batch_codec(c: &mut Criterion) {
    let recs = records(500, 1024);
    let fields: Vec<(&str, &[u8])> = recs.iter().map(|(k, d)| (k.as_str(), &d[..])).collect();
    let mut g = c.benchmark_group("batch_500x1KiB");
    g.throughput(Throughput::Bytes((500 * 1024) as u64));
    // Encryption at rest: the same batch sealed (AES-256-GCM) under a segment's data key, so
    // the cost of sealing and opening reads against the plain rows of the same run.
    let key = sluice::keys::DataKey::from_bytes(&[5; 32]);
    let cases = [
        ("none", Compression::None, None),
        ("lz4", Compression::Lz4, None),
        ("zstd", Compression::Zstd, None),
        ("none_sealed", Compression::None, Some(&key)),
        ("lz4_sealed", Compression::Lz4, Some(&key)),
    ];
    for (name, codec, seal) in cases {
        g.bench_function(format!("encode_{name}"), |b| {
            b.iter_batched(
                || Vec::with_capacity(600 << 10),
                |mut out| {
                    encode_batch(0, 1, black_box(&fields), codec, seal, &mut out);
                    out
                },
                BatchSize::SmallInput,
            )
        });
        let mut buf = Vec::new();
        encode_batch(0, 1, &fields, codec, seal, &mut buf);
        g.bench_function(format!("verify_and_decode_{name}"), |b| {
            b.iter(|| {
                let h = decode_batch_header(&buf, 0).unwrap().unwrap();
                verify_batch(&buf, 0, &h).unwrap();
                let mut out = Vec::with_capacity(500);
                decode_records(&buf, 0, &h, 0, seal, &mut out).unwrap();
                out
            })
        });
    }
    g.finish();
}

fn crc(c: &mut Criterion) {
    let data = vec![7u8; 1 << 20];
    let mut g = c.benchmark_group("crc32c");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("crc32c_1MiB", |b| b.iter(|| crc32c::crc32c(black_box(&data))));
    g.finish();
}

fn routing(c: &mut Criterion) {
    let keys: Vec<String> = (0..1000).map(|i| format!("sensor-{i}")).collect();
    c.bench_function("md5_route_1000_keys", |b| {
        b.iter(|| keys.iter().map(|k| hash_partition_key(k) >> 120).sum::<u128>())
    });
    let seq = SeqNo::record(42, 3, 123_456_789);
    c.bench_function("seqno_encode", |b| b.iter(|| black_box(seq).encode()));
    let text = seq.encode();
    c.bench_function("seqno_parse", |b| b.iter(|| SeqNo::parse(black_box(&text)).unwrap()));
}

fn put_records_decode(c: &mut Criterion) {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(vec![1u8; 1024]);
    let records: Vec<serde_json::Value> =
        (0..500).map(|i| serde_json::json!({"Data": data, "PartitionKey": format!("k{i}")})).collect();
    let body = serde_json::json!({"StreamName": "s", "Records": records}).to_string().into_bytes();
    let mut g = c.benchmark_group("put_records_json");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("decode_500x1KiB_with_base64", |b| {
        b.iter(|| {
            let v = sluice::protocol::codec::decode_request(
                sluice::protocol::codec::Protocol::Json,
                black_box(&body),
                &sluice::kinesis::MEMBER_KINDS,
            )
            .unwrap();
            let recs = v["Records"].as_array().unwrap();
            recs.iter()
                .map(|r| base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str().unwrap()).unwrap().len())
                .sum::<usize>()
        })
    });
    g.finish();
}

/// SigV4 verification of one request: a small botocore-signed body (the signature matches), and
/// a 512 KiB PutRecords-sized body (the signature does not match, after the same work: the body's
/// SHA-256, the canonical request, the key derivation and the compare).
fn sigv4_verify(c: &mut Criterion) {
    use sluice::http::sigv4::{verify, Request, StaticKey};
    let mut h = http::HeaderMap::new();
    for (k, v) in [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "Kinesis_20131202.DescribeStreamSummary"),
        ("host", "127.0.0.1:4567"),
        ("x-amz-date", "20150830T123600Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
             Signature=1a35a6f1c68b97c4572f9deeb6782e898d0365655554da163abc4f8c00e64f29",
        ),
    ] {
        h.insert(k, v.parse().expect("a header value"));
    }
    let now = 1_440_938_160_000;
    let mut g = c.benchmark_group("sigv4_verify");
    let small = br#"{"StreamName":"s1"}"#.to_vec();
    let large = vec![b'x'; 512 << 10];
    for (name, body) in [("small_body", &small), ("512KiB_body", &large)] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let req = Request { method: "POST", path: "/", query: None, headers: &h, authority: None, body };
                black_box(verify(black_box(&req), &[StaticKey::EXAMPLE], "us-east-1", "kinesis", now))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, batch_codec, crc, routing, put_records_decode, sigv4_verify);
criterion_main!(benches);
