//! Overload and hostile clients: memory stays bounded under a flood of the largest bodies, slow
//! clients are cut off, and one data directory takes one daemon.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{kinesis_json, Daemon, SIGNED};

#[test]
fn a_flood_of_16_mib_bodies_keeps_memory_bounded() {
    let d = Daemon::start_with("[streams]\ncreate_delay = \"0ms\"\n[http]\nmax_inflight_body_size = \"64 MiB\"\n");
    let (s, _) = kinesis_json(d.addr, "CreateStream", r#"{"StreamName":"f","ShardCount":1}"#);
    assert_eq!(s, 200);
    let baseline = d.rss_bytes();
    let body_len = 16usize << 20;
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let addr = d.addr;
            std::thread::spawn(move || -> u16 {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let head = format!(
                    "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\n{SIGNED}Content-Length: {body_len}\r\n\r\n"
                );
                s.write_all(head.as_bytes()).unwrap();
                let chunk = vec![b' '; 1 << 20];
                for _ in 0..16 {
                    if s.write_all(&chunk).is_err() {
                        break; // answered early and closed
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let mut resp = Vec::new();
                let _ = s.read_to_end(&mut resp);
                let text = String::from_utf8_lossy(&resp);
                text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
            })
        })
        .collect();
    let mut peak = 0;
    while clients.iter().any(|c| !c.is_finished()) {
        peak = peak.max(d.rss_bytes());
        std::thread::sleep(Duration::from_millis(10));
    }
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    let read = statuses.iter().filter(|&&s| s == 400).count();
    eprintln!(
        "flood: 32 x 16 MiB bodies, {read} read and answered, {refused} refused with 503; RSS baseline {} MiB, peak {} MiB",
        baseline >> 20,
        peak >> 20
    );
    assert!(refused > 0, "beyond the in-flight budget requests are refused: {statuses:?}");
    assert!(read > 0, "within the budget requests are served: {statuses:?}");
    // 32 x 16 MiB = 512 MiB offered; the budget is 64 MiB (bodies can be held twice while decoded).
    assert!(peak < baseline + (200 << 20), "peak RSS {} MiB over baseline {} MiB", peak >> 20, baseline >> 20);
    let (s, _) = kinesis_json(d.addr, "DescribeStreamSummary", r#"{"StreamName":"f"}"#);
    assert_eq!(s, 200, "still serving");
}

fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => closed_by_server(s),
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
    }
}

#[test]
fn slow_clients_cannot_hold_the_daemon() {
    let d = Daemon::start_with(
        "[streams]\ncreate_delay = \"0ms\"\n[http]\nheader_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\nmax_connections = 300\n",
    );
    // 200 clients that never finish their headers, and 20 that never finish their bodies.
    let mut slow_heads: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).unwrap();
            s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Tar").unwrap();
            s
        })
        .collect();
    let mut slow_bodies: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).unwrap();
            s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Length: 1000\r\n\r\n{\"Lim").unwrap();
            s
        })
        .collect();
    // Meanwhile, a normal client is served.
    let (s, _) = kinesis_json(d.addr, "ListStreams", "{}");
    assert_eq!(s, 200);
    std::thread::sleep(Duration::from_millis(2500));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut open_heads = slow_heads.len();
    while open_heads > 0 && Instant::now() < deadline {
        open_heads = 0;
        for s in slow_heads.iter_mut() {
            if !closed_by_server(s) {
                open_heads += 1;
            }
        }
    }
    assert_eq!(open_heads, 0, "clients that never finish their headers are cut off");
    for s in &mut slow_bodies {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let text = String::from_utf8_lossy(&resp);
        assert!(text.starts_with("HTTP/1.1 408"), "a body that never arrives gets 408: {text}");
    }
    let (s, _) = kinesis_json(d.addr, "ListStreams", "{}");
    assert_eq!(s, 200);
}

#[test]
fn one_data_directory_takes_one_daemon() {
    let d = Daemon::start();
    let status =
        d.try_start_exit(Duration::from_secs(20)).expect("a second daemon on the same data dir stops by itself");
    assert!(!status.success());
    let (s, _) = kinesis_json(d.addr, "ListStreams", "{}");
    assert_eq!(s, 200, "the first daemon is unaffected");
}

#[test]
fn full_worker_queues_answer_with_throttling() {
    let d = Daemon::start_with("[streams]\ncreate_delay = \"0ms\"\n[http]\nworker_queue_depth = 1\n");
    let (s, _) = kinesis_json(d.addr, "CreateStream", r#"{"StreamName":"q","ShardCount":1}"#);
    assert_eq!(s, 200);
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let addr = d.addr;
            std::thread::spawn(move || {
                let mut codes = Vec::new();
                for _ in 0..20 {
                    let recs: Vec<String> =
                        (0..100).map(|i| format!(r#"{{"PartitionKey":"k{i}","Data":"eHh4eA=="}}"#)).collect();
                    let (s, v) = kinesis_json(
                        addr,
                        "PutRecords",
                        &format!(r#"{{"StreamName":"q","Records":[{}]}}"#, recs.join(",")),
                    );
                    assert_eq!(s, 200, "{v}");
                    for r in v["Records"].as_array().unwrap() {
                        codes.push(r["ErrorCode"].as_str().unwrap_or("ok").to_owned());
                    }
                }
                codes
            })
        })
        .collect();
    let codes: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert!(
        codes.iter().all(|c| c == "ok" || c == "ProvisionedThroughputExceededException"),
        "only throttling: {codes:?}"
    );
    assert!(codes.iter().any(|c| c == "ok"));
}
