//! The daemon speaks systemd's notification protocol: READY=1 once serving, WATCHDOG=1 while its
//! core workers answer, STOPPING=1 on SIGTERM.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::Daemon;

fn wait_for(sock: &UnixDatagram, want: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = msg == want;
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
    panic!("no {want} notification; saw {seen:?}");
}

#[test]
fn ready_watchdog_and_stopping_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut d = Daemon::start_with_env(
        common::FAST_CONFIG,
        &[("NOTIFY_SOCKET", path.to_str().unwrap()), ("WATCHDOG_USEC", "300000")],
    );
    wait_for(&sock, "READY=1");
    wait_for(&sock, "WATCHDOG=1");
    let status = d.terminate();
    wait_for(&sock, "STOPPING=1");
    assert!(status.success());
}
