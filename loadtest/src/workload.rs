//! A seeded Insights workload: what proxies in front of many databases report.
//!
//! Databases and query patterns are Zipf-distributed (a few hot databases and
//! patterns, a long tail), latencies log-normal, and every 15-second interval
//! each proxy reports one aggregate per pattern it saw. Queries above the slow
//! threshold also become `slow-queries` events. The same seed and start give
//! the same events, in the same order.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};
use topics::{LatencySketch, QueryStats, SlowQuery};

/// The proxies' reporting interval in production.
pub const INTERVAL_SECONDS: i64 = 15;
const SLOW_THRESHOLD_US: i64 = 200_000;
const TEMPLATES: &[&str] = &[
    "SELECT * FROM `{t}` WHERE `id` = ?",
    "SELECT `id`, `status` FROM `{t}` WHERE `account_id` = ? ORDER BY `created_at` DESC LIMIT ?",
    "UPDATE `{t}` SET `status` = ?, `updated_at` = NOW() WHERE `id` = ?",
    "INSERT INTO `{t}` (`account_id`, `payload`) VALUES (?, ?)",
    "SELECT COUNT(*) FROM `{t}` WHERE `created_at` > ?",
    "DELETE FROM `{t}` WHERE `expires_at` < ?",
    "SELECT `a`.`id` FROM `{t}` AS `a` JOIN `users` AS `u` ON `u`.`id` = `a`.`user_id` WHERE `u`.`email` = ?",
];
const TABLES: &[&str] = &["orders", "users", "sessions", "events", "invoices", "carts", "products", "audit_log"];

#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub seed: u64,
    /// First interval start, ms since the epoch (aligned down to 15 s).
    pub start_ms: i64,
    pub databases: u32,
    pub patterns_per_database: u32,
    pub proxies: u32,
    /// Aggregates each proxy reports per interval.
    pub aggregates_per_proxy: u32,
    /// Reporting interval (compressed-time rehearsals use 1 s).
    pub interval_seconds: i64,
    /// Release each event only once its time has come (wall clock), as live
    /// proxies do; otherwise as fast as the rate allows.
    pub realtime: bool,
    /// Window sizes the ground truth folds into (the clusters' `[time]`).
    pub minute_secs: i64,
    pub hour_secs: i64,
}

impl WorkloadConfig {
    pub fn new(seed: u64, start_ms: i64) -> Self {
        Self {
            seed,
            start_ms,
            databases: 300,
            patterns_per_database: 40,
            proxies: 3,
            aggregates_per_proxy: 120,
            interval_seconds: INTERVAL_SECONDS,
            realtime: false,
            minute_secs: 60,
            hour_secs: 3600,
        }
    }
}

/// An event with the fields the producer needs.
#[derive(Debug, Clone)]
pub enum Generated {
    Stats(QueryStats),
    Slow(SlowQuery),
}

impl Generated {
    /// Event time: when the proxy would have sent it.
    pub fn timestamp_ms(&self) -> i64 {
        match self {
            Generated::Stats(q) => q.interval_start + i64::from(q.interval_seconds) * 1000,
            Generated::Slow(s) => s.occurred_at / 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("workload parameters: {0}")]
pub struct WorkloadError(String);

pub struct Workload {
    config: WorkloadConfig,
    rng: StdRng,
    database_dist: Zipf<f64>,
    pattern_dist: Zipf<f64>,
    latency_ms: LogNormal<f64>,
    interval: i64,
    buffer: std::collections::VecDeque<Generated>,
}

impl Workload {
    pub fn new(config: WorkloadConfig) -> Result<Self, WorkloadError> {
        if config.interval_seconds <= 0 || config.interval_seconds > 3600 {
            return Err(WorkloadError(format!("interval_seconds must be 1..=3600, got {}", config.interval_seconds)));
        }
        let interval_ms = config.interval_seconds * 1000;
        let start = config.start_ms.div_euclid(interval_ms) * interval_ms;
        let zipf = |n: u32, s: f64| Zipf::new(f64::from(n.max(1)), s).map_err(|e| WorkloadError(e.to_string()));
        Ok(Self {
            rng: StdRng::seed_from_u64(config.seed),
            database_dist: zipf(config.databases, 1.1)?,
            pattern_dist: zipf(config.patterns_per_database, 1.2)?,
            latency_ms: LogNormal::new(3f64.ln(), 1.2).map_err(|e| WorkloadError(e.to_string()))?,
            interval: 0,
            buffer: Default::default(),
            config: WorkloadConfig { start_ms: start, ..config },
        })
    }

    fn fill_interval(&mut self) {
        let interval_start = self.config.start_ms + self.interval * self.config.interval_seconds * 1000;
        self.interval += 1;
        for proxy in 0..self.config.proxies {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..self.config.aggregates_per_proxy {
                let db = self.database_dist.sample(&mut self.rng) as u64;
                let pattern = self.pattern_dist.sample(&mut self.rng) as u32;
                if !seen.insert((db, pattern)) {
                    continue;
                }
                self.aggregate(interval_start, proxy, db, pattern);
            }
        }
    }

    fn aggregate(&mut self, interval_start: i64, proxy: u32, db: u64, pattern: u32) {
        // Database ids look like real ones: large and sparse.
        let database_id = db * 7919 + 100_000;
        let fingerprint = format!("{:016x}", xxhash_rust::xxh64::xxh64(&database_id.to_be_bytes(), u64::from(pattern)));
        let template = TEMPLATES[pattern as usize % TEMPLATES.len()];
        let table = TABLES[(pattern as usize / TEMPLATES.len() + db as usize) % TABLES.len()];
        let normalized_sql = template.replace("{t}", table);
        let mut tables = vec![table.to_string()];
        if normalized_sql.contains("`users`") && table != "users" {
            tables.push("users".to_string());
        }
        let proxy_id = format!("proxy-{proxy}");
        let count = 1 + (self.rng.random::<f64>().powi(3) * 200.0) as i64;
        let mut sketch = LatencySketch::new();
        let (mut total_us, mut max_us, mut errors) = (0i64, 0i64, 0i64);
        let mut slow: Option<(i64, i64)> = None;
        for _ in 0..count {
            let ms = self.latency_ms.sample(&mut self.rng).min(60_000.0);
            let us = (ms * 1000.0).round() as i64;
            sketch.add_ms(ms);
            total_us += us;
            max_us = max_us.max(us);
            if self.rng.random_bool(0.01) {
                errors += 1;
            }
            if us >= SLOW_THRESHOLD_US && slow.is_none() {
                let offset_us = self.rng.random_range(0..self.config.interval_seconds * 1_000_000);
                slow = Some((interval_start * 1000 + offset_us, us));
            }
        }
        let rows_read = count * self.rng.random_range(1..50);
        let rows_returned = count * self.rng.random_range(0..5);
        if let Some((occurred_at, duration_us)) = slow {
            self.buffer.push_back(Generated::Slow(SlowQuery {
                database_id: database_id as i64,
                fingerprint: fingerprint.clone(),
                proxy_id: proxy_id.clone(),
                occurred_at,
                duration_us,
                rows_read: rows_read / count,
                rows_returned: rows_returned / count,
                error: None,
                query_text: normalized_sql.replace('?', "'<redacted>'"),
                tables: tables.clone(),
            }));
        }
        self.buffer.push_back(Generated::Stats(QueryStats {
            database_id: database_id as i64,
            fingerprint,
            normalized_sql,
            tables,
            proxy_id,
            interval_start,
            interval_seconds: self.config.interval_seconds as i32,
            query_count: count,
            total_duration_us: total_us,
            max_duration_us: max_us,
            rows_read,
            rows_returned,
            error_count: errors,
            latency_sketch: sketch.encode(),
        }));
    }
}

impl Iterator for Workload {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        while self.buffer.is_empty() {
            self.fill_interval();
        }
        self.buffer.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events() {
        let a: Vec<i64> = Workload::new(WorkloadConfig::new(7, 1_700_000_000_000))
            .expect("workload")
            .take(2000)
            .map(|e| match e {
                Generated::Stats(q) => q.total_duration_us,
                Generated::Slow(s) => -s.duration_us,
            })
            .collect();
        let b: Vec<i64> = Workload::new(WorkloadConfig::new(7, 1_700_000_000_000))
            .expect("workload")
            .take(2000)
            .map(|e| match e {
                Generated::Stats(q) => q.total_duration_us,
                Generated::Slow(s) => -s.duration_us,
            })
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|v| *v < 0), "the workload produces slow queries");
    }

    #[test]
    fn hot_databases_dominate() {
        let mut counts = std::collections::HashMap::new();
        for e in Workload::new(WorkloadConfig::new(1, 0)).expect("workload").take(5000) {
            if let Generated::Stats(q) = e {
                *counts.entry(q.database_id).or_insert(0u32) += 1;
            }
        }
        let mut v: Vec<u32> = counts.values().copied().collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        assert!(v[0] > 10 * v[v.len() / 2], "zipf head {} vs median {}", v[0], v[v.len() / 2]);
    }
}
