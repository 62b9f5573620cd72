//! Which failures are worth retrying, and how long to wait between tries.

use std::time::Duration;

use rand::Rng;

/// Server errors that say "try again later", not "this statement is wrong".
const RETRYABLE_SERVER_CODES: &[u16] = &[
    1040, // too many connections
    1053, // server shutdown in progress
    1205, // lock wait timeout
    1213, // deadlock, transaction rolled back
    1290, // running with --read-only (failover in progress)
    1317, // query interrupted
    1836, // read-only mode
    1927, // connection killed
    2006, // server has gone away
    2013, // lost connection during query
    4031, // disconnected by the server because of inactivity
];

/// Retryable: the shard is unreachable, restarting, failing over or
/// contended. Everything else (bad SQL, bad data, missing table) is fatal:
/// retrying would only repeat it, so the consumer stops with offsets unmoved.
pub fn is_retryable(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        mysql_async::Error::Server(s) => RETRYABLE_SERVER_CODES.contains(&s.code),
        mysql_async::Error::Other(_) | mysql_async::Error::Url(_) => false,
    }
}

/// Exponential backoff with full jitter, so a fleet retrying one recovering
/// shard does not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    base: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { attempt: 0, base, max }
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    pub fn next_delay(&mut self) -> Duration {
        let cap = self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[9] >= Duration::from_secs(1));
        assert_eq!(b.attempts(), 10);
    }

    #[test]
    fn deadlocks_retry_syntax_errors_do_not() {
        let server = |code| {
            mysql_async::Error::Server(mysql_async::ServerError { code, message: String::new(), state: String::new() })
        };
        assert!(is_retryable(&server(1213)));
        assert!(is_retryable(&server(2013)));
        assert!(!is_retryable(&server(1064)));
        assert!(!is_retryable(&server(1146)));
    }
}
