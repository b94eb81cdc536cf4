//! AWS's per-shard throughput limits, as token buckets, for people who want AWS's behaviour in
//! their tests. Off by default (`[limits] enforce = false`): for a self-hosted daemon the disk is
//! the limit.
//!
//! Per shard: writes 1 MiB/s and 1,000 records/s; reads 2 MiB/s and 5 GetRecords calls/s. Each
//! bucket holds one second's worth. Read bytes are charged after a read and may run into debt, as
//! on AWS: a GetRecords that returned 10 MiB throttles the calls of the next seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::LimitsConfig;
use crate::runtime::ShardKey;

struct Bucket {
    tokens: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket { tokens: rate, rate, last: Instant::now() }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
    }
}

struct ShardBuckets {
    write_bytes: Bucket,
    write_records: Bucket,
    read_bytes: Bucket,
    read_calls: Bucket,
}

/// Shards tracked at most; beyond it every shard's state is dropped and starts again from full
/// buckets (a bound on memory, at the price of a moment's extra allowance).
const SHARDS_TRACKED_MAX: usize = 100_000;

pub struct ShardLimits {
    cfg: LimitsConfig,
    shards: Mutex<HashMap<ShardKey, ShardBuckets>>,
}

impl ShardLimits {
    pub fn new(cfg: LimitsConfig) -> ShardLimits {
        ShardLimits { cfg, shards: Mutex::new(HashMap::new()) }
    }

    fn with<R>(&self, key: ShardKey, f: impl FnOnce(&mut ShardBuckets) -> R) -> R {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        if shards.len() >= SHARDS_TRACKED_MAX && !shards.contains_key(&key) {
            shards.clear();
        }
        let c = &self.cfg;
        let b = shards.entry(key).or_insert_with(|| ShardBuckets {
            write_bytes: Bucket::new(c.shard_write_bytes_per_s as f64),
            write_records: Bucket::new(c.shard_write_records_per_s as f64),
            read_bytes: Bucket::new(c.shard_read_bytes_per_s as f64),
            read_calls: Bucket::new(c.shard_read_calls_per_s as f64),
        });
        f(b)
    }

    /// Takes one record of `bytes` from the shard's write budget, if it has room.
    pub fn allow_put(&self, key: ShardKey, bytes: u64) -> bool {
        self.with(key, |b| {
            b.write_bytes.refill();
            b.write_records.refill();
            if b.write_records.tokens >= 1.0 && b.write_bytes.tokens >= bytes as f64 {
                b.write_records.tokens -= 1.0;
                b.write_bytes.tokens -= bytes as f64;
                true
            } else {
                false
            }
        })
    }

    /// Takes one GetRecords call, if the shard's read budget (calls, and bytes not in debt) allows.
    pub fn allow_get(&self, key: ShardKey) -> bool {
        self.with(key, |b| {
            b.read_calls.refill();
            b.read_bytes.refill();
            if b.read_calls.tokens >= 1.0 && b.read_bytes.tokens > 0.0 {
                b.read_calls.tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// Charges bytes a GetRecords returned (possibly into debt).
    pub fn charge_read(&self, key: ShardKey, bytes: u64) {
        self.with(key, |b| {
            b.read_bytes.refill();
            b.read_bytes.tokens -= bytes as f64;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            enforce: true,
            shard_write_records_per_s: 10,
            shard_write_bytes_per_s: 1000,
            shard_read_calls_per_s: 5,
            shard_read_bytes_per_s: 100,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn buckets_hold_one_second_and_refuse_beyond() {
        let l = ShardLimits::new(cfg());
        let k = ShardKey { stream_id: 1, shard_index: 0 };
        let allowed = (0..50).filter(|_| l.allow_put(k, 10)).count();
        assert!((10..=12).contains(&allowed), "{allowed}");
        let other = ShardKey { stream_id: 1, shard_index: 1 };
        assert!(l.allow_put(other, 10), "shards have their own budgets");
        assert!(!l.allow_put(ShardKey { stream_id: 2, shard_index: 0 }, 5000), "a record larger than the byte budget");
        let calls = (0..10).filter(|_| l.allow_get(k)).count();
        assert!((5..=6).contains(&calls), "{calls}");
        let k2 = ShardKey { stream_id: 3, shard_index: 0 };
        assert!(l.allow_get(k2));
        l.charge_read(k2, 10_000);
        assert!(!l.allow_get(k2), "read bytes in debt throttle the next call");
    }
}
