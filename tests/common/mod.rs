//! Test harness: starts the real `sluice` binary on a temp dir and a free port, and gives a real
//! AWS SDK client for it.
//!
//! With `SLUICE_SECURE=1`, a daemon whose config sets neither `[auth]` nor `[tls]` serves HTTPS
//! with a certificate made for it and verifies every signature against one key, which
//! [`Daemon::client`] signs with and whose certificate it trusts: the SDK-driven suites run
//! against daemons in production shape (`make test`).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};

/// Fast status changes so tests do not wait on CREATING/DELETING.
pub const FAST_CONFIG: &str = "[streams]\ncreate_delay = \"0ms\"\ndelete_delay = \"0ms\"\n";

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    /// The push protocol's address.
    pub push_addr: SocketAddr,
    config: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// The certificate served in secure mode (PEM), which clients trust.
    tls_pem: Option<String>,
    /// Length of the log when the running process started: its own lines follow.
    log_from: usize,
}

/// The key daemons verify in secure mode.
const SECURE_KEY: (&str, &str) = ("AKIDSLUICERUST", "sluice-rust/secret");

/// In secure mode, `config` with sigv4 and TLS (files written to `dir`) and the certificate.
fn secured(config: &str, dir: &Path) -> (String, Option<String>) {
    let secure = std::env::var("SLUICE_SECURE").is_ok_and(|v| v == "1");
    if !secure || config.contains("[auth]") || config.contains("[tls]") {
        return (config.to_owned(), None);
    }
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let config = format!(
        "{config}\n[auth]\nmode = \"sigv4\"\n[[auth.keys]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\
         [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        SECURE_KEY.0,
        SECURE_KEY.1,
        cert_path.display(),
        key_path.display()
    );
    (config, Some(cert.cert.pem()))
}

/// A Kinesis client of `endpoint` with these credentials, trusting `ca_pem` for https.
pub fn sdk_client(endpoint: &str, key: (&str, &str), ca_pem: Option<&str>) -> aws_sdk_kinesis::Client {
    let mut conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(key.0, key.1, None, None, "test"));
    if let Some(pem) = ca_pem {
        use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
        let trust = tls::TrustStore::empty().with_native_roots(false).with_pem_certificate(pem.as_bytes());
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(tls::TlsContext::builder().with_trust_store(trust).build().unwrap())
            .build_https();
        conf = conf.http_client(http);
    }
    aws_sdk_kinesis::Client::from_conf(conf.build())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Two distinct free ports (both held open while they are chosen, so they differ).
fn two_free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(FAST_CONFIG)
    }

    pub fn start_with(config: &str) -> Daemon {
        Daemon::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (api, push) = two_free_ports();
        let addr: SocketAddr = format!("127.0.0.1:{api}").parse().unwrap();
        let push_addr: SocketAddr = format!("127.0.0.1:{push}").parse().unwrap();
        let (config, tls_pem) = secured(config, dir.path());
        let mut d = Daemon { dir, addr, push_addr, config, env, child: None, tls_pem, log_from: 0 };
        // Another test may take a chosen port before the daemon binds it: choose again.
        for _ in 0..5 {
            if d.try_spawn() {
                return d;
            }
            let (api, push) = two_free_ports();
            d.addr = format!("127.0.0.1:{api}").parse().unwrap();
            d.push_addr = format!("127.0.0.1:{push}").parse().unwrap();
        }
        d.spawn();
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the daemon, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the daemon; false if it exited at start because a port was taken.
    fn try_spawn(&mut self) -> bool {
        self.start_child();
        match self.wait_ready() {
            Ok(()) => true,
            Err(log) if log.contains("Address already in use") => false,
            Err(log) => panic!("sluice exited at start; log:\n{log}"),
        }
    }

    fn spawn(&mut self) {
        self.start_child();
        if let Err(log) = self.wait_ready() {
            panic!("sluice did not start; log:\n{log}");
        }
    }

    fn start_child(&mut self) {
        let cfg_path = self.dir.path().join("sluice.toml");
        std::fs::write(&cfg_path, &self.config).unwrap();
        self.log_from = self.log().len();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("serve")
            .arg("--config")
            .arg(&cfg_path)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--push-listen")
            .arg(self.push_addr.to_string())
            .env("SLUICE_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting sluice");
        self.child = Some(child);
    }

    /// Waits for /healthz; on failure, the log (and the process is gone).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exited with {status}\n{}", self.log()));
            }
            if http_get(self.addr, "/healthz").is_some_and(|(s, _)| s == 200) {
                return Ok(());
            }
            // A TLS port answers plaintext with a 400: this process's own log lines say when it
            // is ready (after a restart, the earlier process's lines come first).
            if self.config.contains("[tls]")
                && self.log().get(self.log_from..).is_some_and(|l| l.contains(" ready listen="))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("not ready after 30 s\n{}", self.log()))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sluice.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        match self.tls_pem {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    pub fn client(&self) -> aws_sdk_kinesis::Client {
        let key = if self.tls_pem.is_some() { SECURE_KEY } else { ("test", "test") };
        sdk_client(&self.endpoint(), key, self.tls_pem.as_deref())
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "sluice did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
        self.spawn();
    }

    /// Starts a daemon process on this data dir and returns its exit status if it stops by itself
    /// within `wait` (None if it is still running, in which case it is killed).
    pub fn try_start_exit(&self, wait: Duration) -> Option<ExitStatus> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--data-dir"])
            .arg(self.data_dir())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--push-listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A minimal HTTP/1.1 request; returns (status, body).
pub fn http_request(addr: SocketAddr, head: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..text_end]).to_string();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, buf[text_end + 4..].to_vec()))
}

pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, Vec<u8>)> {
    http_request(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), b"")
}

/// Header lines of a SigV4-signed request (the daemon's default `[auth] mode = "signed"` wants
/// the signature's parts; it does not verify them).
pub const SIGNED: &str = "Authorization: AWS4-HMAC-SHA256 Credential=x/20261201/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\nX-Amz-Date: 20261201T000000Z\r\n";

/// POSTs a Kinesis operation with the given content type; returns (status, body).
pub fn kinesis_raw(addr: SocketAddr, op: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nX-Amz-Target: Kinesis_20131202.{op}\r\n{SIGNED}Content-Length: {}\r\n\r\n",
        body.len()
    );
    http_request(addr, &head, body).expect("request")
}

/// POSTs JSON; returns (status, parsed body).
pub fn kinesis_json(addr: SocketAddr, op: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, b) = kinesis_raw(addr, op, "application/x-amz-json-1.1", body.as_bytes());
    (status, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null))
}

pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "seg") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The ClientError code of an SDK error, e.g. "ResourceNotFoundException".
pub fn code<E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: &aws_sdk_kinesis::error::SdkError<E, R>,
) -> String {
    match e.as_service_error() {
        Some(se) => se.code().unwrap_or("").to_owned(),
        None => format!("not a service error: {e:?}"),
    }
}

/// splitmix64: small, seedable, good enough to pick sizes and moments.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
