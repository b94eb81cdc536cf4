//! The Rust SDK against a daemon in production shape: HTTPS only, with a certificate the client
//! trusts through its own trust store, and every SigV4 signature verified against `[[auth.keys]]`.
//! A key limited to reads is refused a write with AWS's AccessDeniedException, and nothing is
//! written; the wrong secret is InvalidSignatureException; plain HTTP to the port gets nothing.

mod common;

use aws_sdk_kinesis::primitives::Blob;
use common::Daemon;

fn client(d: &Daemon, ca_pem: &str, key: (&str, &str)) -> aws_sdk_kinesis::Client {
    common::sdk_client(&format!("https://localhost:{}", d.addr.port()), key, Some(ca_pem))
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_sdk_over_tls_with_verified_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let config = format!(
        "[streams]\ncreate_delay = \"0ms\"\n[auth]\nmode = \"sigv4\"\n\
         [[auth.keys]]\naccess_key_id = \"AKIDRUSTADMIN\"\nsecret_access_key = \"admin-secret\"\n\
         [[auth.keys]]\naccess_key_id = \"AKIDRUSTREADER\"\nsecret_access_key = \"reader-secret\"\nuser = \"reader\"\n\
         actions = [\"kinesis:Get*\", \"kinesis:Describe*\", \"kinesis:List*\"]\n\
         [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert_path.display(),
        key_path.display()
    );
    let d = Daemon::start_with(&config);
    let pem = cert.cert.pem();
    let admin = client(&d, &pem, ("AKIDRUSTADMIN", "admin-secret"));
    admin.create_stream().stream_name("rust-tls").shard_count(1).send().await.unwrap();
    let put = admin
        .put_record()
        .stream_name("rust-tls")
        .data(Blob::new(b"over tls".to_vec()))
        .partition_key("p")
        .send()
        .await
        .unwrap();
    assert_eq!(put.shard_id(), "shardId-000000000000");

    let reader = client(&d, &pem, ("AKIDRUSTREADER", "reader-secret"));
    let it = reader
        .get_shard_iterator()
        .stream_name("rust-tls")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap();
    let got = reader.get_records().shard_iterator(it.shard_iterator().unwrap()).send().await.unwrap();
    assert_eq!(got.records().len(), 1);
    assert_eq!(got.records()[0].data().as_ref(), b"over tls");

    let refused = reader
        .put_record()
        .stream_name("rust-tls")
        .data(Blob::new(b"no".to_vec()))
        .partition_key("p")
        .send()
        .await
        .unwrap_err();
    let e = refused.into_service_error();
    assert_eq!(e.meta().code(), Some("AccessDeniedException"), "{e:?}");
    assert!(
        e.meta().message().unwrap_or("").starts_with(
            "User: arn:aws:iam::000000000000:user/reader is not authorized to perform: kinesis:PutRecord on resource: \
             arn:aws:kinesis:us-east-1:000000000000:stream/rust-tls"
        ),
        "{e:?}"
    );
    let wrong = client(&d, &pem, ("AKIDRUSTADMIN", "not-the-secret"));
    let e = wrong.list_streams().send().await.unwrap_err().into_service_error();
    assert_eq!(e.meta().code(), Some("InvalidSignatureException"), "{e:?}");
    let summary = admin.describe_stream_summary().stream_name("rust-tls").send().await.unwrap();
    assert_eq!(summary.stream_description_summary().unwrap().open_shard_count(), 1);
    let again = admin.get_records().shard_iterator(it.shard_iterator().unwrap()).send().await.unwrap();
    assert_eq!(again.records().len(), 1, "the refused write wrote nothing");
    // Plaintext HTTP to the TLS port: the 400 that says so.
    let (status, body) = common::http_get(d.addr, "/healthz").unwrap();
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("This port speaks HTTPS"));
}
