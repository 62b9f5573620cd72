//! The gate a read-only job (verify, the copier) passes before it uses a
//! shard: it probes the server's health ([`crate::throttle::probe`]) at most
//! once per `check_every` while healthy, and while a threshold is passed it
//! waits, probing again every `check_every`, and says why three ways:
//!
//! - a log line when a pause starts and when it ends (`job`, `cluster`,
//!   `shard`, `server`, `reason`, `detail`; `paused_s` at the end);
//! - Prometheus: `dualwrite_<job>_throttled{cluster,shard,server,reason}`
//!   (1 while paused) and `dualwrite_<job>_throttle_paused_seconds_total`
//!   (the same labels);
//! - [`paused_now`]: every shard paused in this process right now, which a
//!   job's `status` (the copier's) and the tests read.
//!
//! One gate per shard and server: a paused shard never holds up another.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::{ClusterConfig, Endpoint};
use crate::throttle::{probe, Health, Pause, ThrottleConfig};

/// A shard paused right now, as [`paused_now`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedShard {
    /// `verify` or `copier`.
    pub job: &'static str,
    pub cluster: String,
    /// The shard's range (`-80`).
    pub shard: String,
    /// `primary` or `replica`.
    pub server: &'static str,
    /// The server (`mysql://user@host:port/db`, no password).
    pub endpoint: String,
    /// Why (`Pause::reason`) and the reading (`Pause`'s text).
    pub reason: &'static str,
    pub detail: String,
    /// When the pause started (this process's clock).
    pub since: Instant,
}

/// Pauses of every gate of this process, keyed by job and endpoint.
static PAUSED: Mutex<BTreeMap<(&'static str, String), PausedShard>> = Mutex::new(BTreeMap::new());

/// Every shard paused in this process right now.
pub fn paused_now() -> Vec<PausedShard> {
    PAUSED.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
}

/// Why a gate could not be passed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("stopped while paused on {0}")]
    Cancelled(String),
    #[error("{endpoint}: {source}")]
    Mysql { endpoint: String, source: mysql_async::Error },
}

/// The gate of one shard's server.
#[derive(Debug)]
pub struct ShardGate {
    limits: ThrottleConfig,
    job: &'static str,
    cluster: String,
    shard: String,
    server: &'static str,
    endpoint: String,
    /// When the last probe found the server healthy: within `check_every`
    /// of it the gate opens without probing.
    healthy_at: tokio::sync::Mutex<Option<Instant>>,
    /// Unreadable values already reported (once per gate).
    warned: Mutex<bool>,
}

impl ShardGate {
    /// The gates of every shard of `config` (as [`ClusterConfig::reading_from`]
    /// left it: a shard reading a replica is labelled so), in shard order.
    pub fn for_cluster(config: &ClusterConfig, job: &'static str) -> Vec<ShardGate> {
        config
            .shards
            .iter()
            .map(|s| ShardGate::new(config, job, &s.range.to_string(), &s.endpoint, s.reads_replica))
            .collect()
    }

    pub fn new(config: &ClusterConfig, job: &'static str, shard: &str, endpoint: &Endpoint, replica: bool) -> Self {
        let server = if replica { "replica" } else { "primary" };
        describe(job);
        Self {
            limits: config.throttle,
            job,
            cluster: config.name.clone(),
            shard: shard.to_owned(),
            server,
            endpoint: endpoint.to_string(),
            healthy_at: tokio::sync::Mutex::new(None),
            warned: Mutex::new(false),
        }
    }

    /// Returns once the server is under every threshold (at once when a
    /// probe within `check_every` found it so); waits while it is not.
    pub async fn pass(&self, pool: &mysql_async::Pool, shutdown: &CancellationToken) -> Result<(), GateError> {
        // One probe at a time per gate; the others wait for its verdict.
        let mut healthy_at = self.healthy_at.lock().await;
        if healthy_at.is_some_and(|at| at.elapsed() < self.limits.check_every) {
            return Ok(());
        }
        let mut paused: Option<(Instant, Pause)> = None;
        // Paused time not yet counted (the counter counts whole seconds).
        let mut uncounted = Duration::ZERO;
        loop {
            let health = self.probe(pool).await?;
            let Some(pause) = health.pause(&self.limits) else {
                if let Some((since, pause)) = paused {
                    self.resume(since, &pause);
                }
                *healthy_at = Some(Instant::now());
                return Ok(());
            };
            match &paused {
                Some((_, previous)) if previous.reason() == pause.reason() => {}
                _ => {
                    if let Some((since, previous)) = paused.take() {
                        self.resume(since, &previous);
                    }
                    paused = Some((Instant::now(), self.pause(&pause)));
                }
            }
            let step = Instant::now();
            tokio::select! {
                () = shutdown.cancelled() => {
                    if let Some((since, pause)) = paused {
                        self.resume(since, &pause);
                    }
                    return Err(GateError::Cancelled(self.endpoint.clone()));
                }
                () = tokio::time::sleep(self.limits.check_every) => {}
            }
            uncounted += step.elapsed();
            metrics::counter!(
                format!("dualwrite_{}_throttle_paused_seconds_total", self.job),
                &self.labels(pause.reason())
            )
            .increment(uncounted.as_secs());
            uncounted -= Duration::from_secs(uncounted.as_secs());
        }
    }

    async fn probe(&self, pool: &mysql_async::Pool) -> Result<Health, GateError> {
        let mysql = |source| GateError::Mysql { endpoint: self.endpoint.clone(), source };
        let mut conn = pool.get_conn().await.map_err(mysql)?;
        let health = probe(&mut conn).await.map_err(mysql)?;
        if !health.unreadable.is_empty() {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            if !*warned {
                *warned = true;
                tracing::warn!(
                    job = self.job,
                    cluster = %self.cluster,
                    shard = %self.shard,
                    server = self.server,
                    unreadable = %health.unreadable.join("; "),
                    "throttle cannot read some health values: they do not pause the job (grant PROCESS and, \
                     on MariaDB, SLAVE MONITOR / on MySQL 8, REPLICATION CLIENT)"
                );
            }
        }
        Ok(health)
    }

    fn labels(&self, reason: &'static str) -> [(&'static str, String); 4] {
        [
            ("cluster", self.cluster.clone()),
            ("shard", self.shard.clone()),
            ("server", self.server.to_owned()),
            ("reason", reason.to_owned()),
        ]
    }

    fn pause(&self, pause: &Pause) -> Pause {
        tracing::info!(
            job = self.job,
            cluster = %self.cluster,
            shard = %self.shard,
            server = self.server,
            endpoint = %self.endpoint,
            reason = pause.reason(),
            detail = %pause,
            "throttled: pausing on this shard"
        );
        metrics::gauge!(format!("dualwrite_{}_throttled", self.job), &self.labels(pause.reason())).set(1.0);
        if let Ok(mut map) = PAUSED.lock() {
            map.insert(
                (self.job, self.endpoint.clone()),
                PausedShard {
                    job: self.job,
                    cluster: self.cluster.clone(),
                    shard: self.shard.clone(),
                    server: self.server,
                    endpoint: self.endpoint.clone(),
                    reason: pause.reason(),
                    detail: pause.to_string(),
                    since: Instant::now(),
                },
            );
        }
        pause.clone()
    }

    fn resume(&self, since: Instant, pause: &Pause) {
        tracing::info!(
            job = self.job,
            cluster = %self.cluster,
            shard = %self.shard,
            server = self.server,
            reason = pause.reason(),
            paused_s = since.elapsed().as_secs_f64(),
            "throttle released: resuming on this shard"
        );
        metrics::gauge!(format!("dualwrite_{}_throttled", self.job), &self.labels(pause.reason())).set(0.0);
        if let Ok(mut map) = PAUSED.lock() {
            map.remove(&(self.job, self.endpoint.clone()));
        }
    }

    /// How often the gate probes while paused.
    pub fn check_every(&self) -> Duration {
        self.limits.check_every
    }
}

/// HELP text of the job's two families (idempotent).
fn describe(job: &'static str) {
    metrics::describe_gauge!(
        format!("dualwrite_{job}_throttled"),
        "1 while the job pauses on a shard's server past a [throttle] threshold (reason: replication_stopped, \
         replica_lag, threads_running, history_list_length)."
    );
    metrics::describe_counter!(
        format!("dualwrite_{job}_throttle_paused_seconds_total"),
        metrics::Unit::Seconds,
        "Seconds the job paused on a shard's server, by reason."
    );
}
