//! The MultiLangDaemon's properties file, read as the real daemon reads it: Java properties
//! syntax (`key = value`, `key: value` or `key value`; `#` and `!` comments; a trailing `\`
//! continues a line; `\t`, `\n`, `\uXXXX` escapes), keys bound case-sensitively to the settings
//! below with KCL's defaults, unknown keys reported so the caller logs and ignores them.

use std::collections::BTreeMap;

/// Where a new lease starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialPosition {
    TrimHorizon,
    Latest,
    /// Epoch milliseconds (`initialPositionInStreamExtended` is epoch seconds).
    AtTimestamp(i64),
}

/// How records are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrievalMode {
    /// Enhanced fan-out: RegisterStreamConsumer and SubscribeToShard.
    FanOut,
    /// GetRecords polling.
    Polling,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KclConfig {
    pub executable_name: String,
    pub application_name: String,
    /// The lease table (the application name unless `tableName` says otherwise).
    pub table_name: String,
    pub stream_name: Option<String>,
    pub stream_arn: Option<String>,
    pub region_name: String,
    pub kinesis_endpoint: Option<String>,
    pub dynamodb_endpoint: Option<String>,
    pub initial_position: InitialPosition,
    pub worker_id: Option<String>,
    pub failover_time_millis: u64,
    pub shard_sync_interval_millis: u64,
    pub max_leases_for_worker: Option<u32>,
    pub max_leases_to_steal_at_one_time: u32,
    pub parent_shard_poll_interval_millis: u64,
    pub retrieval_mode: RetrievalMode,
    pub max_records: u32,
    pub idle_time_between_reads_millis: u64,
    pub metrics_level: String,
    /// Keys this daemon does not use (the real one ignores unknown keys too).
    pub ignored: Vec<String>,
}

/// Parses Java properties text into key/value pairs, in file order (a later key wins).
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        // A line ending in an odd number of backslashes continues on the next.
        let trailing = line.len() - line.trim_end_matches('\\').len();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        let (k, v) = split_pair(&logical);
        out.insert(unescape(&k), unescape(v.trim_start()));
        logical.clear();
    }
    if !logical.is_empty() {
        let (k, v) = split_pair(&logical);
        out.insert(unescape(&k), unescape(v.trim_start()));
    }
    out
}

/// The key (up to the first unescaped `=`, `:` or whitespace) and the rest.
fn split_pair(line: &str) -> (String, &str) {
    let mut key = String::new();
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                key.push('\\');
                if let Some((_, n)) = chars.next() {
                    key.push(n);
                }
            }
            '=' | ':' => return (key, &line[i + 1..]),
            c if c.is_whitespace() => {
                let rest = line[i..].trim_start();
                let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest);
                return (key, rest);
            }
            c => key.push(c),
        }
    }
    (key, "")
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

const KNOWN: &[&str] = &[
    "executableName",
    "applicationName",
    "tableName",
    "streamName",
    "streamArn",
    "regionName",
    "kinesisEndpoint",
    "dynamoDBEndpoint",
    "initialPositionInStream",
    "initialPositionInStreamExtended",
    "workerId",
    "failoverTimeMillis",
    "shardSyncIntervalMillis",
    "maxLeasesForWorker",
    "maxLeasesToStealAtOneTime",
    "parentShardPollIntervalMillis",
    "retrievalMode",
    "maxRecords",
    "idleTimeBetweenReadsInMillis",
    "metricsLevel",
];

impl KclConfig {
    /// KCL's defaults for a library worker of `application_name` on the stream `stream_name`
    /// (no child process; the lease table is named after the application).
    pub fn new(application_name: &str, stream_name: &str) -> KclConfig {
        KclConfig {
            executable_name: String::new(),
            application_name: application_name.to_owned(),
            table_name: application_name.to_owned(),
            stream_name: Some(stream_name.to_owned()),
            stream_arn: None,
            region_name: "us-east-1".into(),
            kinesis_endpoint: None,
            dynamodb_endpoint: None,
            initial_position: InitialPosition::Latest,
            worker_id: None,
            failover_time_millis: 10_000,
            shard_sync_interval_millis: 60_000,
            max_leases_for_worker: None,
            max_leases_to_steal_at_one_time: 1,
            parent_shard_poll_interval_millis: 10_000,
            retrieval_mode: RetrievalMode::FanOut,
            max_records: 10_000,
            idle_time_between_reads_millis: 1_000,
            metrics_level: "DETAILED".into(),
            ignored: Vec::new(),
        }
    }

    /// The settings a properties file gives, or what is wrong with it.
    pub fn from_properties(text: &str) -> Result<KclConfig, String> {
        let p = parse(text);
        let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let num = |k: &str, default: u64| -> Result<u64, String> {
            match get(k) {
                Some(v) => v.parse().map_err(|_| format!("{k} = {v} is not a number")),
                None => Ok(default),
            }
        };
        let executable_name = get("executableName").ok_or("executableName is required")?.to_owned();
        let application_name = get("applicationName").ok_or("applicationName is required")?.to_owned();
        let stream_arn = get("streamArn").map(str::to_owned);
        let stream_name = get("streamName").map(str::to_owned);
        if stream_arn.is_none() && stream_name.is_none() {
            return Err("streamName or streamArn is required".into());
        }
        let initial_position = match (get("initialPositionInStream"), get("initialPositionInStreamExtended")) {
            (_, Some(ts)) => InitialPosition::AtTimestamp(
                ts.parse::<f64>()
                    .map(|s| (s * 1000.0) as i64)
                    .map_err(|_| format!("initialPositionInStreamExtended = {ts} is not epoch seconds"))?,
            ),
            (Some("TRIM_HORIZON"), None) => InitialPosition::TrimHorizon,
            (Some("LATEST") | None, None) => InitialPosition::Latest,
            (Some(other), None) => {
                return Err(format!("initialPositionInStream = {other}: expected TRIM_HORIZON or LATEST"))
            }
        };
        let polling_keys =
            ["maxRecords", "idleTimeBetweenReadsInMillis", "retryGetRecordsInSeconds", "maxGetRecordsThreadPool"];
        let retrieval_mode = match get("retrievalMode") {
            Some("FANOUT") => RetrievalMode::FanOut,
            Some("POLLING") => RetrievalMode::Polling,
            // DEFAULT: fan-out, unless a polling setting is given.
            Some("DEFAULT") | None if polling_keys.iter().any(|k| get(k).is_some()) => RetrievalMode::Polling,
            Some("DEFAULT") | None => RetrievalMode::FanOut,
            Some(other) => return Err(format!("retrievalMode = {other}: expected FANOUT, POLLING or DEFAULT")),
        };
        let mut ignored: Vec<String> = p
            .keys()
            .filter(|k| {
                !KNOWN.contains(&k.as_str()) && !k.starts_with("AwsCredentialsProvider") && *k != "processingLanguage"
            })
            .cloned()
            .collect();
        ignored.sort();
        let d = KclConfig::new(&application_name, "");
        Ok(KclConfig {
            table_name: get("tableName").unwrap_or(&application_name).to_owned(),
            executable_name,
            application_name,
            stream_name,
            stream_arn,
            region_name: get("regionName").unwrap_or(&d.region_name).to_owned(),
            kinesis_endpoint: get("kinesisEndpoint").map(str::to_owned),
            dynamodb_endpoint: get("dynamoDBEndpoint").map(str::to_owned),
            initial_position,
            worker_id: get("workerId").map(str::to_owned),
            failover_time_millis: num("failoverTimeMillis", d.failover_time_millis)?,
            shard_sync_interval_millis: num("shardSyncIntervalMillis", d.shard_sync_interval_millis)?,
            max_leases_for_worker: get("maxLeasesForWorker")
                .map(|v| v.parse().map_err(|_| format!("maxLeasesForWorker = {v} is not a number")))
                .transpose()?,
            max_leases_to_steal_at_one_time: num("maxLeasesToStealAtOneTime", d.max_leases_to_steal_at_one_time.into())?
                as u32,
            parent_shard_poll_interval_millis: num(
                "parentShardPollIntervalMillis",
                d.parent_shard_poll_interval_millis,
            )?,
            retrieval_mode,
            max_records: num("maxRecords", d.max_records.into())? as u32,
            idle_time_between_reads_millis: num("idleTimeBetweenReadsInMillis", d.idle_time_between_reads_millis)?,
            metrics_level: get("metricsLevel").unwrap_or(&d.metrics_level).to_owned(),
            ignored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_properties_syntax() {
        let p = parse(
            "# comment\n! also\n  a = 1\nb:2\nc 3\nlong = one \\\n    two\nesc = tab\\there \\u0041\nempty =\nkey\\=with = eq\n",
        );
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"], "2");
        assert_eq!(p["c"], "3");
        assert_eq!(p["long"], "one two");
        assert_eq!(p["esc"], "tab\there A");
        assert_eq!(p["empty"], "");
        assert_eq!(p["key=with"], "eq");
    }

    #[test]
    fn the_sample_properties_of_the_multilang_daemon() {
        let text = "executableName = python3 sample_kclpy_app.py\nstreamName = kclpysample\napplicationName = PythonKCLSample\n\
            AwsCredentialsProvider = DefaultCredentialsProvider\nprocessingLanguage = python/3.8\ninitialPositionInStream = TRIM_HORIZON\n\
            regionName = us-east-5\nkinesisEndpoint = http://127.0.0.1:4567\nmaxRecords = 500\nsomeFutureKey = x\n";
        let c = KclConfig::from_properties(text).unwrap();
        assert_eq!(c.executable_name, "python3 sample_kclpy_app.py");
        assert_eq!(c.table_name, "PythonKCLSample");
        assert_eq!(c.initial_position, InitialPosition::TrimHorizon);
        assert_eq!(c.retrieval_mode, RetrievalMode::Polling, "a polling key makes DEFAULT poll");
        assert_eq!(c.max_records, 500);
        assert_eq!(c.failover_time_millis, 10_000);
        assert_eq!(c.ignored, ["someFutureKey"]);
        let fanout = KclConfig::from_properties(
            "executableName=x\napplicationName=a\nstreamArn=arn:aws:kinesis:us-east-1:000000000000:stream/s\n",
        )
        .unwrap();
        assert_eq!(fanout.retrieval_mode, RetrievalMode::FanOut);
        assert_eq!(fanout.initial_position, InitialPosition::Latest);
        let ts = KclConfig::from_properties(
            "executableName=x\napplicationName=a\nstreamName=s\ninitialPositionInStreamExtended=1700000000\n",
        )
        .unwrap();
        assert_eq!(ts.initial_position, InitialPosition::AtTimestamp(1_700_000_000_000));
        assert!(KclConfig::from_properties("applicationName=a\nstreamName=s\n").is_err());
        assert!(KclConfig::from_properties("executableName=x\napplicationName=a\n").is_err());
        assert!(KclConfig::from_properties(
            "executableName=x\napplicationName=a\nstreamName=s\nfailoverTimeMillis=soon\n"
        )
        .is_err());
    }
}
