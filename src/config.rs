//! Daemon configuration: one TOML file, then `SLUICE_*` environment variables and flags on top.
//!
//! Every section is `deny_unknown_fields` with defaults embedded, so an empty file (or none at all)
//! gives a working daemon, and a typo is refused at start with a message naming the key. Sizes take
//! human units ("64 MiB"), durations too ("30s", "200ms"). `sluice.example.toml` at the repository root
//! documents every key and is parsed by a test.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// How an append becomes durable before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Durability {
    /// fdatasync before every acknowledgement (group commit shares one sync between concurrent
    /// appends). Nothing acknowledged is lost on `kill -9` or power loss.
    #[serde(rename = "sync")]
    Sync,
    /// Acknowledge after the write reaches the page cache and sync every `sync_interval`. Survives
    /// `kill -9` of the daemon, but a power loss or kernel crash can lose the last interval.
    #[serde(rename = "lossy-interval")]
    LossyInterval,
}

/// Batch compression on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Region and account that appear in ARNs.
    pub region: String,
    pub account_id: String,
    /// Core worker threads that own shards; 0 means one per core.
    pub workers: usize,
    /// Pin each core worker to its own core.
    pub pin_workers: bool,
    pub storage: StorageConfig,
    pub streams: StreamsConfig,
    pub http: HttpConfig,
    pub fanout: FanoutConfig,
    pub limits: LimitsConfig,
    pub ondemand: OnDemandConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub encryption: EncryptionConfig,
    pub delivery: DeliveryConfig,
    pub analytics: AnalyticsConfig,
    pub queues: QueuesConfig,
    pub debug: DebugConfig,
}

/// `[queues]`: Kinesis queues' bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueuesConfig {
    /// Records one queue has in flight (received, neither acknowledged nor timed out), at most;
    /// a receive that would go past it answers ThrottlingException.
    pub in_flight_max: usize,
    /// Records one queue holds state for (in flight, dead letters, and those taken from the
    /// stream and not yet received), at most; past it the queue takes no more from the stream.
    pub records_max: usize,
    /// Tests and replays: a file holding the epoch milliseconds that visibility timeouts are
    /// measured by, instead of the wall clock.
    pub clock_file: Option<PathBuf>,
}

impl Default for QueuesConfig {
    fn default() -> Self {
        QueuesConfig { in_flight_max: 120_000, records_max: 1_000_000, clock_file: None }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Caps every delivery stream's buffering interval (for tests and demos); unset, each
    /// stream's own IntervalInSeconds holds.
    #[serde(deserialize_with = "de_opt_duration")]
    pub buffering_interval_cap: Option<Duration>,
    /// What runs the Lambda functions of delivery streams' ProcessingConfiguration.
    pub functions: Vec<FunctionConfig>,
    /// An S3-compatible server to deliver buckets to; unset, a bucket is the directory
    /// `<data_dir>/buckets/<bucket>`.
    pub s3: Option<S3Config>,
}

/// `[analytics]`: Kinesis Data Analytics SQL applications.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// Applications per account (AWS: 50).
    pub applications_max: usize,
    /// How often a quiet application's clock advances (closing windows whose end has passed).
    #[serde(deserialize_with = "de_duration")]
    pub tick: Duration,
    /// Rows one sliding window partition holds, at most.
    pub rows_per_window: usize,
    /// Groups one tumbling window or the open stagger windows hold, at most.
    pub groups_per_window: usize,
    /// Bytes of operator state per application, about; past it, rows that would add to it are
    /// refused (to error_stream and the log).
    #[serde(deserialize_with = "de_size")]
    pub state_bytes: u64,
    /// Tests and replays: a file holding the epoch milliseconds that ROWTIME is taken from,
    /// instead of the wall clock.
    pub clock_file: Option<PathBuf>,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            applications_max: 50,
            tick: Duration::from_secs(1),
            rows_per_window: 100_000,
            groups_per_window: 100_000,
            state_bytes: 256 << 20,
            clock_file: None,
        }
    }
}

/// `[delivery.s3]`: where S3 destinations really go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000`.
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Path-style requests (`endpoint/bucket/key`), as most S3-compatible servers want.
    #[serde(default = "yes")]
    pub path_style: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn yes() -> bool {
    true
}

/// A `[[delivery.functions]]` entry: the Lambda ARNs it serves (exact, or a glob where `*`
/// matches any run of characters) and how to run it, either a command (the invocation event as
/// JSON on stdin, the response JSON on stdout) or an HTTP endpoint taking the event as a POST
/// body (such as the Lambda Runtime Interface Emulator's invoke URL).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionConfig {
    pub arn: String,
    pub command: Vec<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanoutConfig {
    /// The binary push protocol's address; an empty string turns it off.
    pub push_listen: String,
    /// A SubscribeToShard subscription ends cleanly after this (AWS: 5 minutes).
    #[serde(deserialize_with = "de_duration")]
    pub subscription_duration: Duration,
    /// A second subscription for the same consumer and shard within this of the first gets
    /// ResourceInUseException; after it, it takes over (AWS: 5 seconds).
    #[serde(deserialize_with = "de_duration")]
    pub takeover_after: Duration,
    /// An idle subscription gets an empty event (or a push ping) this often.
    #[serde(deserialize_with = "de_duration")]
    pub heartbeat_interval: Duration,
    /// Registered consumers per stream (AWS: 20).
    pub consumers_per_stream: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Enforce AWS's per-shard and per-consumer throughput limits. Off by default: for a
    /// self-hosted daemon the disk is the limit.
    pub enforce: bool,
    /// Enhanced fan-out read rate per consumer per shard (AWS: 2 MiB/s).
    #[serde(deserialize_with = "de_size")]
    pub fanout_bytes_per_s: u64,
    /// Per shard writes (AWS: 1 MiB/s and 1,000 records/s).
    #[serde(deserialize_with = "de_size")]
    pub shard_write_bytes_per_s: u64,
    pub shard_write_records_per_s: u64,
    /// Per shard reads (AWS: 2 MiB/s and 5 GetRecords calls/s).
    #[serde(deserialize_with = "de_size")]
    pub shard_read_bytes_per_s: u64,
    pub shard_read_calls_per_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnDemandConfig {
    /// How often ON_DEMAND streams' shards are measured.
    #[serde(deserialize_with = "de_duration")]
    pub check_interval: Duration,
    /// A shard that writes more than this for `split_after_checks` checks in a row is split
    /// (AWS splits hot shards above about 500 KB/s).
    #[serde(deserialize_with = "de_size")]
    pub split_bytes_per_s: u64,
    pub split_after_checks: u32,
    /// Two adjacent shards that both write less than this for `merge_after_checks` checks in a
    /// row are merged, down to `min_shards`.
    #[serde(deserialize_with = "de_size")]
    pub merge_bytes_per_s: u64,
    pub merge_after_checks: u32,
    pub min_shards: u32,
}

impl Default for OnDemandConfig {
    fn default() -> Self {
        OnDemandConfig {
            check_interval: Duration::from_secs(10),
            split_bytes_per_s: 500_000,
            split_after_checks: 3,
            merge_bytes_per_s: 50_000,
            merge_after_checks: 30,
            min_shards: 4,
        }
    }
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            push_listen: "127.0.0.1:4568".into(),
            subscription_duration: Duration::from_secs(300),
            takeover_after: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(5),
            consumers_per_stream: 20,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            enforce: false,
            fanout_bytes_per_s: 2 << 20,
            shard_write_bytes_per_s: 1 << 20,
            shard_write_records_per_s: 1000,
            shard_read_bytes_per_s: 2 << 20,
            shard_read_calls_per_s: 5,
        }
    }
}

impl FanoutConfig {
    pub fn push_addr(&self) -> Option<SocketAddr> {
        self.push_listen.parse().ok()
    }
}

/// How requests must be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A request must carry a well-formed SigV4 signature (header or query string), as every AWS
    /// SDK sends; any credentials are accepted. Unsigned requests get AWS's
    /// MissingAuthenticationTokenException.
    #[default]
    Signed,
    /// Anything goes, signed or not.
    None,
    /// Every request's SigV4 signature is verified against `[[auth.keys]]`.
    Sigv4,
}

/// `[tls]`: the API port serves HTTPS and the push port TLS when both files are given (PEM).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Both files, when TLS is on.
    pub fn files(&self) -> Option<(PathBuf, PathBuf)> {
        Some((self.cert_file.clone()?, self.key_file.clone()?))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// The master key (32 bytes) that every stream encryption key derives from; default
    /// `<data_dir>/master.key`, created at first start with mode 0600.
    pub master_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// The access keys `sigv4` accepts.
    pub keys: Vec<KeyConfig>,
    /// Serve `signed` or `none` on an address other than loopback (refused otherwise).
    pub allow_unauthenticated: bool,
    /// `GET /metrics` wants `Authorization: Bearer <token>` with the token in this file (trimmed).
    pub metrics_token_file: Option<PathBuf>,
    /// In `sigv4` mode without a token, `GET /metrics` is refused unless this says it is public.
    pub metrics_public: bool,
    /// The token, once read.
    #[serde(skip)]
    pub metrics_token: Option<String>,
}

/// An `[[auth.keys]]` entry. The secret is given in the file, read from a file (its contents,
/// trimmed) or from an environment variable: exactly one of the three.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyConfig {
    pub access_key_id: String,
    pub secret_access_key: Option<String>,
    pub secret_access_key_file: Option<PathBuf>,
    pub secret_access_key_env: Option<String>,
    /// The key's account; the daemon's (`account_id`) when not given.
    pub account_id: Option<String>,
    /// The IAM user the key belongs to (its principal `arn:aws:iam::<account>:user/<user>`); the
    /// access key id when not given.
    pub user: Option<String>,
    /// IAM action patterns the key may perform (`kinesis:Get*`, `dynamodb:*`); all when not given.
    pub actions: Option<Vec<String>>,
    /// The secret, once resolved from one of the three sources.
    #[serde(skip)]
    pub secret: String,
}

impl KeyConfig {
    /// The key as the services authorize it (after the configuration is loaded).
    pub fn caller(&self) -> crate::http::iam::Caller {
        let account = self.account_id.clone().unwrap_or_default();
        let user = self.user.as_deref().unwrap_or(&self.access_key_id);
        crate::http::iam::Caller {
            arn: format!("arn:aws:iam::{account}:user/{user}"),
            account,
            actions: self.actions.clone(),
        }
    }
}

impl crate::http::sigv4::Secret for KeyConfig {
    fn access_key_id(&self) -> &str {
        &self.access_key_id
    }
    fn secret_access_key(&self) -> &str {
        &self.secret
    }
}

impl Config {
    /// Reads each key's secret from where it is given.
    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        let daemon_account = self.account_id.clone();
        for k in &mut self.auth.keys {
            let id = k.access_key_id.clone();
            if id.is_empty() {
                return Err(ConfigError("auth.keys: every key needs an access_key_id".into()));
            }
            k.secret = match (&k.secret_access_key, &k.secret_access_key_file, &k.secret_access_key_env) {
                (Some(s), None, None) => s.clone(),
                (None, Some(path), None) => std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("auth.keys {id}: reading {}: {e}", path.display())))?
                    .trim()
                    .to_owned(),
                (None, None, Some(var)) => std::env::var(var)
                    .map_err(|_| ConfigError(format!("auth.keys {id}: environment variable {var} is not set")))?,
                _ => {
                    return Err(ConfigError(format!(
                        "auth.keys {id}: give exactly one of secret_access_key, secret_access_key_file, \
                         secret_access_key_env"
                    )))
                }
            };
            if k.secret.is_empty() {
                return Err(ConfigError(format!("auth.keys {id}: the secret is empty")));
            }
            let account = k.account_id.get_or_insert_with(|| daemon_account.clone());
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError(format!("auth.keys {id}: account_id must be 12 digits")));
            }
            if let Some(user) = &k.user {
                if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c)) {
                    return Err(ConfigError(format!(
                        "auth.keys {id}: user must be an IAM user name (letters, digits and +=,.@_-/)"
                    )));
                }
            }
            for pattern in k.actions.iter().flatten() {
                let service_wide = pattern == "*";
                if !service_wide
                    && !pattern.split_once(':').is_some_and(|(svc, act)| !svc.is_empty() && !act.is_empty())
                {
                    return Err(ConfigError(format!(
                        "auth.keys {id}: action '{pattern}' is not of the form service:Action (wildcards allowed)"
                    )));
                }
            }
        }
        if let Some(path) = &self.auth.metrics_token_file {
            let token = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("auth.metrics_token_file: reading {}: {e}", path.display())))?;
            let token = token.trim();
            if token.len() < 16 {
                return Err(ConfigError("auth.metrics_token_file: the token must be at least 16 characters".into()));
            }
            self.auth.metrics_token = Some(token.to_owned());
        }
        if self.auth.mode == AuthMode::Sigv4 && self.auth.keys.is_empty() {
            return Err(ConfigError("auth.mode = \"sigv4\" needs at least one [[auth.keys]] entry".into()));
        }
        Ok(())
    }

    /// Refuses to serve without signature checks on an address other than loopback, unless
    /// `auth.allow_unauthenticated` says so (then it warns).
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        if self.auth.mode == AuthMode::Sigv4 {
            return Ok(());
        }
        let mut exposed: Vec<String> = Vec::new();
        if !self.listen.ip().is_loopback() {
            exposed.push(self.listen.to_string());
        }
        if let Some(push) = self.fanout.push_addr().filter(|a| !a.ip().is_loopback()) {
            exposed.push(push.to_string());
        }
        if exposed.is_empty() {
            return Ok(());
        }
        if self.auth.allow_unauthenticated {
            tracing::warn!(listen = %exposed.join(", "), "serving without signature verification on a non-loopback address (auth.allow_unauthenticated = true)");
            return Ok(());
        }
        Err(ConfigError(format!(
            "refusing to listen on {} without signature verification: set [auth] mode = \"sigv4\" with \
             [[auth.keys]], or auth.allow_unauthenticated = true to serve it unauthenticated on purpose",
            exposed.join(", ")
        )))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebugConfig {
    /// Serve `POST /debug/failpoints` (fault injection on the write path). Never in production.
    pub failpoints: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub durability: Durability,
    #[serde(deserialize_with = "de_duration")]
    pub sync_interval: Duration,
    #[serde(deserialize_with = "de_size")]
    pub segment_size: u64,
    pub compression: Compression,
    /// Records kept decoded in memory per shard for tail reads.
    #[serde(deserialize_with = "de_size")]
    pub hot_tail_size: u64,
    #[serde(deserialize_with = "de_duration")]
    pub retention_check_interval: Duration,
    /// In `sync` durability, a group commit that writes to at least this many segment files is
    /// made durable by one write-ahead log record (one fdatasync) instead of one fdatasync per
    /// file. 0 turns the write-ahead log off.
    pub wal_min_files: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsConfig {
    /// How long a new stream stays CREATING before it becomes ACTIVE.
    #[serde(deserialize_with = "de_duration")]
    pub create_delay: Duration,
    /// How long a deleted stream stays DELETING before it vanishes.
    #[serde(deserialize_with = "de_duration")]
    pub delete_delay: Duration,
    /// Open shards allowed across all streams (AWS's default account quota is 500).
    pub shard_limit: u32,
    /// On-demand streams allowed (AWS: 50).
    pub on_demand_stream_limit: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(deserialize_with = "de_size")]
    pub max_body_size: u64,
    pub max_connections: usize,
    /// Requests queued per core worker before new ones are throttled
    /// (ProvisionedThroughputExceededException).
    pub worker_queue_depth: usize,
    /// Request bodies being read or held at once, across all connections; beyond it requests get
    /// ServiceUnavailable without their body being read.
    #[serde(deserialize_with = "de_size")]
    pub max_inflight_body_size: u64,
    /// An HTTP/1.1 request's headers must arrive within this (slow clients are cut off).
    #[serde(deserialize_with = "de_duration")]
    pub header_read_timeout: Duration,
    /// A request body must arrive within this.
    #[serde(deserialize_with = "de_duration")]
    pub body_read_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./sluice-data"),
            listen: "127.0.0.1:4567".parse().expect("literal address"),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            workers: 0,
            pin_workers: true,
            storage: StorageConfig::default(),
            streams: StreamsConfig::default(),
            http: HttpConfig::default(),
            fanout: FanoutConfig::default(),
            limits: LimitsConfig::default(),
            ondemand: OnDemandConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            encryption: EncryptionConfig::default(),
            delivery: DeliveryConfig::default(),
            analytics: AnalyticsConfig::default(),
            queues: QueuesConfig::default(),
            debug: DebugConfig::default(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            durability: Durability::Sync,
            sync_interval: Duration::from_millis(200),
            segment_size: 64 << 20,
            compression: Compression::None,
            hot_tail_size: 4 << 20,
            retention_check_interval: Duration::from_secs(30),
            wal_min_files: 3,
        }
    }
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            create_delay: Duration::from_millis(100),
            delete_delay: Duration::from_millis(100),
            shard_limit: 500,
            on_demand_stream_limit: 50,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_size: 16 << 20,
            max_connections: 4096,
            worker_queue_depth: 4096,
            max_inflight_body_size: 256 << 20,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
        }
    }
}

/// A configuration that was refused, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Segment size bounds: a batch must fit in one segment, and a PutRecords request may be 5 MiB.
pub const SEGMENT_SIZE_MIN: u64 = 16 << 20;
pub const SEGMENT_SIZE_MAX: u64 = 1 << 30;

impl Config {
    /// Parses TOML text; unknown keys and bad values fail with the key's name.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.resolve_secrets()?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.storage;
        if !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&s.segment_size) {
            return Err(ConfigError(format!(
                "storage.segment_size must be between 16 MiB and 1 GiB, got {} bytes",
                s.segment_size
            )));
        }
        if s.sync_interval.is_zero() {
            return Err(ConfigError("storage.sync_interval must be greater than zero".into()));
        }
        if s.retention_check_interval.is_zero() {
            return Err(ConfigError("storage.retention_check_interval must be greater than zero".into()));
        }
        for f in &self.delivery.functions {
            if f.arn.is_empty() {
                return Err(ConfigError("delivery.functions: every entry needs an arn".into()));
            }
            if f.command.is_empty() == f.url.is_none() {
                return Err(ConfigError(format!(
                    "delivery.functions entry for {}: give either command (a list) or url",
                    f.arn
                )));
            }
            if f.url.as_deref().is_some_and(|u| !u.starts_with("http://")) {
                return Err(ConfigError(format!("delivery.functions entry for {}: url must be http://", f.arn)));
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(ConfigError("tls: give both cert_file and key_file, or neither".into()));
        }
        if self.streams.shard_limit == 0 {
            return Err(ConfigError("streams.shard_limit must be at least 1".into()));
        }
        if self.http.max_body_size < (6 << 20) {
            return Err(ConfigError("http.max_body_size must be at least 6 MiB (a full PutRecords request)".into()));
        }
        if self.http.max_connections == 0 || self.http.worker_queue_depth == 0 {
            return Err(ConfigError("http.max_connections and http.worker_queue_depth must be at least 1".into()));
        }
        if self.http.max_body_size > (1 << 30) || self.http.max_inflight_body_size > (16 << 30) {
            return Err(ConfigError(
                "http.max_body_size must be at most 1 GiB and http.max_inflight_body_size at most 16 GiB".into(),
            ));
        }
        if self.http.max_inflight_body_size < self.http.max_body_size {
            return Err(ConfigError("http.max_inflight_body_size must be at least http.max_body_size".into()));
        }
        if self.http.header_read_timeout.is_zero() || self.http.body_read_timeout.is_zero() {
            return Err(ConfigError(
                "http.header_read_timeout and http.body_read_timeout must be greater than zero".into(),
            ));
        }
        let f = &self.fanout;
        if !f.push_listen.is_empty() && f.push_addr().is_none() {
            return Err(ConfigError(format!(
                "fanout.push_listen '{}' is not an address such as 127.0.0.1:4568",
                f.push_listen
            )));
        }
        if f.subscription_duration.is_zero() || f.heartbeat_interval.is_zero() || f.consumers_per_stream == 0 {
            return Err(ConfigError(
                "fanout.subscription_duration, fanout.heartbeat_interval and fanout.consumers_per_stream must be greater than zero".into(),
            ));
        }
        let l = &self.limits;
        if [
            l.fanout_bytes_per_s,
            l.shard_write_bytes_per_s,
            l.shard_write_records_per_s,
            l.shard_read_bytes_per_s,
            l.shard_read_calls_per_s,
        ]
        .contains(&0)
        {
            return Err(ConfigError("every limits.* rate must be greater than zero".into()));
        }
        let o = &self.ondemand;
        if o.check_interval.is_zero() || o.split_after_checks == 0 || o.merge_after_checks == 0 || o.min_shards == 0 {
            return Err(ConfigError(
                "ondemand.check_interval, split_after_checks, merge_after_checks and min_shards must be greater than zero".into(),
            ));
        }
        if o.merge_bytes_per_s >= o.split_bytes_per_s {
            return Err(ConfigError("ondemand.merge_bytes_per_s must be below ondemand.split_bytes_per_s".into()));
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError("account_id must be 12 digits".into()));
        }
        if self.region.is_empty() {
            return Err(ConfigError("region must not be empty".into()));
        }
        Ok(())
    }

    pub fn worker_count(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            self.workers
        }
    }
}

/// Parses "64 MiB", "512KiB", "1 GB", "4096".
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("'{text}' is not a size such as \"64 MiB\""))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit '{other}' in '{text}'")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size '{text}' is too large"))
}

/// Parses "30s", "200ms", "5m", "1h".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("'{text}' is not a duration such as \"30s\""))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        other => return Err(format!("unknown duration unit '{other}' in '{text}' (ms, s, m, h)")),
    };
    ms.map(Duration::from_millis).ok_or_else(|| format!("duration '{text}' is too large"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeOrText {
    Num(u64),
    Text(String),
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match SizeOrText::deserialize(d)? {
        SizeOrText::Num(n) => Ok(n),
        SizeOrText::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let t = String::deserialize(d)?;
    parse_duration(&t).map_err(serde::de::Error::custom)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let t = String::deserialize(d)?;
    parse_duration(&t).map(Some).map_err(serde::de::Error::custom)
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::Sync => "sync",
            Durability::LossyInterval => "lossy-interval",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.listen.port(), 4567);
        assert_eq!(c.storage.durability, Durability::Sync);
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../sluice.example.toml");
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.storage.segment_size, 64 << 20);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[storage]\nsegmnt_size = \"1 MiB\"\n").unwrap_err();
        assert!(err.to_string().contains("segmnt_size"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::from_toml("[storage]\nsegment_size = \"1 MiB\"\n").unwrap_err();
        assert!(err.to_string().contains("storage.segment_size"), "{err}");
        let err = Config::from_toml("[storage]\ndurability = \"sometimes\"\n").unwrap_err();
        assert!(err.to_string().contains("durability"), "{err}");
        let err = Config::from_toml("[streams]\ncreate_delay = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("create_delay"), "{err}");
    }

    #[test]
    fn units() {
        assert_eq!(parse_size("64 MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2 fortnights").is_err());
    }
}
