//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Per stream and shard: incoming bytes/records, get bytes/records. Per stream: a put latency
//! histogram. Label sets are bounded by [`LABEL_SETS_MAX`]; beyond it, series are folded into
//! `stream="_other"` so a client creating many streams cannot grow memory without bound.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

pub const LABEL_SETS_MAX: usize = 2_000;
const OTHER: &str = "_other";
/// Upper bounds of the put latency buckets, in seconds.
const LATENCY_BUCKETS_S: [f64; 12] = [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default, Clone, Copy)]
struct ShardCounters {
    incoming_bytes: u64,
    incoming_records: u64,
    get_bytes: u64,
    get_records: u64,
    write_throttled: u64,
    read_throttled: u64,
    /// Milliseconds behind the tip of the last GetRecords.
    iterator_age_ms: u64,
}

#[derive(Default, Clone, Copy)]
struct FanoutCounters {
    records: u64,
    bytes: u64,
}

/// A counter family: name, help text, and the field it reads.
/// A per-shard series: its name, help, the enhanced-monitoring metric that enables it, whether it
/// is a gauge, and how to read it.
type Series = (&'static str, &'static str, &'static str, bool, fn(&ShardCounters) -> u64);

const SHARD_SERIES: [Series; 7] = [
    ("sluice_incoming_bytes_total", "Data bytes accepted by PutRecord(s).", "IncomingBytes", false, |c| {
        c.incoming_bytes
    }),
    ("sluice_incoming_records_total", "Records accepted by PutRecord(s).", "IncomingRecords", false, |c| {
        c.incoming_records
    }),
    ("sluice_get_records_bytes_total", "Data bytes returned by GetRecords.", "OutgoingBytes", false, |c| c.get_bytes),
    ("sluice_get_records_records_total", "Records returned by GetRecords.", "OutgoingRecords", false, |c| {
        c.get_records
    }),
    (
        "sluice_write_throttled_total",
        "Records refused with ProvisionedThroughputExceededException.",
        "WriteProvisionedThroughputExceeded",
        false,
        |c| c.write_throttled,
    ),
    (
        "sluice_read_throttled_total",
        "GetRecords calls refused with ProvisionedThroughputExceededException.",
        "ReadProvisionedThroughputExceeded",
        false,
        |c| c.read_throttled,
    ),
    (
        "sluice_iterator_age_milliseconds",
        "How far behind the shard's tip the last GetRecords read, in ms.",
        "IteratorAgeMilliseconds",
        true,
        |c| c.iterator_age_ms,
    ),
];

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

/// A Firehose delivery stream's counters and the two times its gauges derive from.
#[derive(Default, Clone, Copy)]
pub struct DeliveryCounters {
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_delivered: u64,
    pub bytes_delivered: u64,
    pub records_failed: u64,
    pub objects: u64,
    /// When the current buffer took its first record (epoch ms; 0: empty).
    pub buffer_started_ms: i64,
    /// The arrival time of the oldest record not yet delivered (epoch ms; 0: none).
    pub oldest_undelivered_ms: i64,
}

/// A Kinesis Analytics application's counters.
#[derive(Default, Clone, Copy)]
pub struct AnalyticsCounters {
    pub records_in: u64,
    pub records_out: u64,
    pub error_rows: u64,
    pub millis_behind: u64,
}

/// A Kinesis queue's gauges.
#[derive(Default, Clone, Copy)]
pub struct QueueGauges {
    pub visible: u64,
    pub in_flight: u64,
    pub dead_letters: u64,
    /// Arrival time of the oldest record the queue holds unacknowledged (epoch ms; 0: none).
    pub oldest_unacknowledged_ms: i64,
}

#[derive(Default)]
struct Inner {
    queues: BTreeMap<String, QueueGauges>,
    delivery: BTreeMap<String, DeliveryCounters>,
    analytics: BTreeMap<String, AnalyticsCounters>,
    shards: BTreeMap<(String, String), ShardCounters>,
    put_latency: BTreeMap<String, Histogram>,
    requests: BTreeMap<(String, String), u64>,
    fanout: BTreeMap<String, FanoutCounters>,
    scaling: BTreeMap<(String, String), u64>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    fn shard_entry<'a>(inner: &'a mut Inner, stream: &str, shard: &str) -> &'a mut ShardCounters {
        let key = (stream.to_owned(), shard.to_owned());
        if !inner.shards.contains_key(&key) && inner.shards.len() >= LABEL_SETS_MAX {
            return inner.shards.entry((OTHER.into(), OTHER.into())).or_default();
        }
        inner.shards.entry(key).or_default()
    }

    pub fn record_put(&self, stream: &str, shard: &str, records: u64, bytes: u64) {
        self.with(|i| {
            let c = Self::shard_entry(i, stream, shard);
            c.incoming_records += records;
            c.incoming_bytes += bytes;
        })
    }

    pub fn record_get(&self, stream: &str, shard: &str, records: u64, bytes: u64) {
        self.with(|i| {
            let c = Self::shard_entry(i, stream, shard);
            c.get_records += records;
            c.get_bytes += bytes;
        })
    }

    /// Data bytes accepted so far by one shard (what on-demand scaling measures).
    /// Records (or, for reads, calls) refused for throughput.
    pub fn record_throttled(&self, stream: &str, shard: &str, write: bool, n: u64) {
        self.with(|i| {
            let c = Self::shard_entry(i, stream, shard);
            if write {
                c.write_throttled += n;
            } else {
                c.read_throttled += n;
            }
        })
    }

    pub fn record_iterator_age(&self, stream: &str, shard: &str, ms: u64) {
        self.with(|i| Self::shard_entry(i, stream, shard).iterator_age_ms = ms)
    }

    pub fn incoming_bytes(&self, stream: &str, shard: &str) -> u64 {
        self.with(|i| i.shards.get(&(stream.to_owned(), shard.to_owned())).map_or(0, |c| c.incoming_bytes))
    }

    pub fn record_scaling(&self, stream: &str, action: &str) {
        self.with(|i| {
            let key = (stream.to_owned(), action.to_owned());
            if i.scaling.contains_key(&key) || i.scaling.len() < LABEL_SETS_MAX {
                *i.scaling.entry(key).or_default() += 1;
            }
        })
    }

    pub fn record_put_latency(&self, stream: &str, took: Duration) {
        let s = took.as_secs_f64();
        self.with(|i| {
            let key =
                if i.put_latency.contains_key(stream) || i.put_latency.len() < LABEL_SETS_MAX { stream } else { OTHER };
            let h = i.put_latency.entry(key.to_owned()).or_default();
            for (b, le) in h.buckets.iter_mut().zip(LATENCY_BUCKETS_S) {
                if s <= le {
                    *b += 1;
                }
            }
            h.count += 1;
            h.sum_s += s;
        })
    }

    pub fn record_fanout(&self, stream: &str, records: u64, bytes: u64) {
        self.with(|i| {
            let key = if i.fanout.contains_key(stream) || i.fanout.len() < LABEL_SETS_MAX { stream } else { OTHER };
            let c = i.fanout.entry(key.to_owned()).or_default();
            c.records += records;
            c.bytes += bytes;
        })
    }

    pub fn record_request(&self, operation: &str, outcome: &str) {
        self.with(|i| {
            let key = (operation.to_owned(), outcome.to_owned());
            if i.requests.contains_key(&key) || i.requests.len() < LABEL_SETS_MAX {
                *i.requests.entry(key).or_default() += 1;
            }
        })
    }

    /// Updates a delivery stream's counters.
    pub fn delivery(&self, name: &str, f: impl FnOnce(&mut DeliveryCounters)) {
        self.with(|i| {
            let key = if i.delivery.contains_key(name) || i.delivery.len() < LABEL_SETS_MAX { name } else { OTHER };
            f(i.delivery.entry(key.to_owned()).or_default())
        })
    }

    /// Updates an application's counters.
    pub fn analytics(&self, name: &str, f: impl FnOnce(&mut AnalyticsCounters)) {
        self.with(|i| {
            let key = if i.analytics.contains_key(name) || i.analytics.len() < LABEL_SETS_MAX { name } else { OTHER };
            f(i.analytics.entry(key.to_owned()).or_default())
        })
    }

    pub fn queue(&self, name: &str, f: impl FnOnce(&mut QueueGauges)) {
        self.with(|i| {
            let key = if i.queues.contains_key(name) || i.queues.len() < LABEL_SETS_MAX { name } else { OTHER };
            f(i.queues.entry(key.to_owned()).or_default())
        })
    }

    pub fn forget_queue(&self, name: &str) {
        self.with(|i| {
            i.queues.remove(name);
        })
    }

    pub fn forget_application(&self, name: &str) {
        self.with(|i| {
            i.analytics.remove(name);
        })
    }

    pub fn forget_delivery(&self, name: &str) {
        self.with(|i| {
            i.delivery.remove(name);
        })
    }

    pub fn forget_stream(&self, stream: &str) {
        self.with(|i| {
            i.shards.retain(|(s, _), _| s != stream);
            i.put_latency.remove(stream);
            i.fanout.remove(stream);
            i.scaling.retain(|(s, _), _| s != stream);
        })
    }

    /// The Prometheus text. Stream-level series are always there; per-shard series only for the
    /// metrics that enhanced monitoring enables on their stream (`shard_metrics` names them, in
    /// AWS's words, for a stream name).
    pub fn render(&self, shard_metrics: &dyn Fn(&str) -> Vec<String>) -> String {
        self.with(|i| {
            let mut out = String::new();
            let mut enabled: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for (stream, _) in i.shards.keys() {
                enabled.entry(stream.as_str()).or_insert_with(|| shard_metrics(stream));
            }
            for (name, help, metric, gauge, get) in SHARD_SERIES {
                let kind = if gauge { "gauge" } else { "counter" };
                let stream_name = name.replacen("sluice_", "sluice_stream_", 1);
                let _ = writeln!(out, "# HELP {stream_name} {help} (whole stream)\n# TYPE {stream_name} {kind}");
                let mut per_stream: BTreeMap<&str, u64> = BTreeMap::new();
                for ((stream, _), c) in &i.shards {
                    let v = per_stream.entry(stream.as_str()).or_default();
                    *v = if gauge { (*v).max(get(c)) } else { *v + get(c) };
                }
                for (stream, v) in per_stream {
                    let _ = writeln!(out, "{stream_name}{{stream=\"{}\"}} {v}", escape(stream));
                }
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for ((stream, shard), c) in &i.shards {
                    if !enabled.get(stream.as_str()).is_some_and(|m| m.iter().any(|m| m == metric)) {
                        continue;
                    }
                    let _ =
                        writeln!(out, "{name}{{stream=\"{}\",shard=\"{}\"}} {}", escape(stream), escape(shard), get(c));
                }
            }
            let name = "sluice_put_latency_seconds";
            let _ =
                writeln!(out, "# HELP {name} Time from request decoded to records durable.\n# TYPE {name} histogram");
            for (stream, h) in &i.put_latency {
                let s = escape(stream);
                for (b, le) in h.buckets.iter().zip(LATENCY_BUCKETS_S) {
                    let _ = writeln!(out, "{name}_bucket{{stream=\"{s}\",le=\"{le}\"}} {b}");
                }
                let _ = writeln!(out, "{name}_bucket{{stream=\"{s}\",le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum{{stream=\"{s}\"}} {}", h.sum_s);
                let _ = writeln!(out, "{name}_count{{stream=\"{s}\"}} {}", h.count);
            }
            for (name, help, field) in [
                ("sluice_fanout_records_total", "Records pushed to enhanced fan-out subscribers.", 0),
                ("sluice_fanout_bytes_total", "Data bytes pushed to enhanced fan-out subscribers.", 1),
            ] {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (stream, c) in &i.fanout {
                    let v = if field == 0 { c.records } else { c.bytes };
                    let _ = writeln!(out, "{name}{{stream=\"{}\"}} {v}", escape(stream));
                }
            }
            type DeliverySeries = (&'static str, &'static str, bool, fn(&DeliveryCounters, i64) -> f64);
            let delivery: [DeliverySeries; 8] = [
                ("sluice_delivery_incoming_records_total", "Records a delivery stream read from its source.", false, |c, _| {
                    c.records_in as f64
                }),
                ("sluice_delivery_incoming_bytes_total", "Data bytes a delivery stream read from its source.", false, |c, _| {
                    c.bytes_in as f64
                }),
                ("sluice_delivery_records_total", "Records delivered in objects (DeliveryToS3.Records).", false, |c, _| {
                    c.records_delivered as f64
                }),
                ("sluice_delivery_bytes_total", "Data bytes delivered, before compression (DeliveryToS3.Bytes).", false, |c, _| {
                    c.bytes_delivered as f64
                }),
                ("sluice_delivery_failed_records_total", "Records that failed processing (to the error prefix).", false, |c, _| {
                    c.records_failed as f64
                }),
                ("sluice_delivery_objects_total", "Objects written.", false, |c, _| c.objects as f64),
                ("sluice_delivery_buffer_age_seconds", "Age of the buffer being filled (0: empty).", true, |c, now| {
                    if c.buffer_started_ms > 0 { (now - c.buffer_started_ms).max(0) as f64 / 1e3 } else { 0.0 }
                }),
                (
                    "sluice_delivery_data_freshness_seconds",
                    "Age of the oldest record not yet delivered (DeliveryToS3.DataFreshness).",
                    true,
                    |c, now| if c.oldest_undelivered_ms > 0 { (now - c.oldest_undelivered_ms).max(0) as f64 / 1e3 } else { 0.0 },
                ),
            ];
            let now = crate::time::now_ms();
            for (name, help, gauge, get) in delivery {
                let kind = if gauge { "gauge" } else { "counter" };
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (ds, c) in &i.delivery {
                    let _ = writeln!(out, "{name}{{delivery_stream=\"{}\"}} {}", escape(ds), get(c, now));
                }
            }
            type AnalyticsSeries = (&'static str, &'static str, bool, fn(&AnalyticsCounters) -> u64);
            let analytics: [AnalyticsSeries; 4] = [
                ("sluice_analytics_input_records_total", "Records an application read from its input.", false, |c| c.records_in),
                ("sluice_analytics_output_records_total", "Records an application wrote to its outputs.", false, |c| c.records_out),
                ("sluice_analytics_error_rows_total", "Rows an application sent to error_stream.", false, |c| c.error_rows),
                ("sluice_analytics_millis_behind_source", "How far behind its input's tip an application read last, in ms.", true, |c| {
                    c.millis_behind
                }),
            ];
            for (name, help, gauge, get) in analytics {
                let kind = if gauge { "gauge" } else { "counter" };
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (app, c) in &i.analytics {
                    let _ = writeln!(out, "{name}{{application=\"{}\"}} {}", escape(app), get(c));
                }
            }
            type QueueSeries = (&'static str, &'static str, fn(&QueueGauges, i64) -> f64);
            let queues: [QueueSeries; 4] = [
                ("sluice_queue_visible_records", "Records a queue can deliver now (held, or not yet taken from the stream).", |g, _| g.visible as f64),
                ("sluice_queue_in_flight_records", "Records a queue has delivered and not yet had acknowledged, within their visibility timeout.", |g, _| g.in_flight as f64),
                ("sluice_queue_dead_letter_records", "A queue's dead-letter records.", |g, _| g.dead_letters as f64),
                ("sluice_queue_oldest_unacknowledged_age_seconds", "Age of the oldest record a queue holds unacknowledged.", |g, now| {
                    if g.oldest_unacknowledged_ms > 0 { (now - g.oldest_unacknowledged_ms).max(0) as f64 / 1e3 } else { 0.0 }
                }),
            ];
            for (name, help, get) in queues {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                for (q, g) in &i.queues {
                    let _ = writeln!(out, "{name}{{queue=\"{}\"}} {}", escape(q), get(g, now));
                }
            }
            let name = "sluice_ondemand_scaling_total";
            let _ =
                writeln!(out, "# HELP {name} Automatic splits and merges of ON_DEMAND streams.\n# TYPE {name} counter");
            for ((stream, action), n) in &i.scaling {
                let _ = writeln!(out, "{name}{{stream=\"{}\",action=\"{action}\"}} {n}", escape(stream));
            }
            let (cpu_s, rss_max) = process_usage();
            let _ = writeln!(out, "# HELP sluice_process_cpu_seconds_total User and system CPU time of the daemon.\n# TYPE sluice_process_cpu_seconds_total counter\nsluice_process_cpu_seconds_total {cpu_s}");
            let _ = writeln!(out, "# HELP sluice_process_max_resident_memory_bytes Peak resident memory of the daemon.\n# TYPE sluice_process_max_resident_memory_bytes gauge\nsluice_process_max_resident_memory_bytes {rss_max}");
            let name = "sluice_requests_total";
            let _ = writeln!(out, "# HELP {name} API requests by operation and outcome.\n# TYPE {name} counter");
            for ((op, outcome), n) in &i.requests {
                let _ = writeln!(out, "{name}{{operation=\"{}\",outcome=\"{}\"}} {n}", escape(op), escape(outcome));
            }
            out
        })
    }
}

/// CPU seconds (user + system) and peak resident bytes of this process.
pub(crate) fn process_usage() -> (f64, u64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return (0.0, 0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(u.ru_utime) + secs(u.ru_stime), u.ru_maxrss as u64 * 1024)
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_bounds_labels() {
        let m = Metrics::default();
        m.record_put("s", "shardId-000000000000", 3, 30);
        m.record_put("off", "shardId-000000000000", 2, 20);
        m.record_put_latency("s", Duration::from_micros(300));
        let enabled = |s: &str| if s == "s" { vec!["IncomingRecords".to_string()] } else { Vec::new() };
        let text = m.render(&enabled);
        assert!(
            text.contains("sluice_incoming_records_total{stream=\"s\",shard=\"shardId-000000000000\"} 3"),
            "{text}"
        );
        assert!(!text.contains("sluice_incoming_bytes_total{stream=\"s\""), "not enabled: {text}");
        assert!(!text.contains("shard=\"shardId-000000000000\"} 2"), "monitoring off: {text}");
        assert!(text.contains("sluice_stream_incoming_records_total{stream=\"off\"} 2"), "{text}");
        assert!(text.contains("sluice_put_latency_seconds_bucket{stream=\"s\",le=\"0.0005\"} 1"), "{text}");
        for n in 0..LABEL_SETS_MAX + 10 {
            m.record_put(&format!("s{n}"), "x", 1, 1);
        }
        assert!(m.render(&|_| vec!["IncomingRecords".to_string()]).contains("stream=\"_other\""));
    }
}
