//! One classification of database errors for every job: retry it, isolate
//! the data it was given, or stop.
//!
//! The consumer backs off and retries a batch on [`ErrorClass::Retryable`],
//! bisects it to dead-letter the offending messages on
//! [`ErrorClass::Rejected`], and stops on [`ErrorClass::Fatal`]; the copier,
//! retention and verify retry or stop on the same answer.

use std::time::Duration;

use rand::Rng;

/// What a failed statement says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The shard is unreachable, restarting, failing over or contended:
    /// the same statement will succeed later.
    Retryable,
    /// The server refused the data itself (too long, out of range, not valid
    /// in the column's type): the same rows will be refused again, whoever
    /// sends them, so the rows must be set aside rather than retried.
    Rejected,
    /// Anything else (bad SQL, privileges, a missing table, schema drift, a
    /// duplicate that means the fence was bypassed): retrying would only
    /// repeat it; an operator must act.
    Fatal,
}

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

/// Server errors about a value, under the strict sql_mode every pool sets:
/// the same value is refused on every shard of every cluster (the schema is
/// one), so both consumer groups isolate the same messages.
const REJECTED_SERVER_CODES: &[u16] = &[
    1048, // column cannot be null
    1264, // out of range value
    1265, // data truncated
    1292, // incorrect datetime (or other) value
    1300, // invalid character string
    1366, // incorrect string value
    1367, // illegal value during parsing
    1406, // data too long for column
    1690, // value is out of range (arithmetic on a BIGINT)
    3140, // MySQL 8: invalid JSON text
    3819, // MySQL 8: check constraint violated
    4025, // MariaDB: CONSTRAINT ... failed (JSON_VALID and other checks)
];

/// "Table doesn't exist" (MySQL and MariaDB): a reader of another job's
/// table meets it before that job first ran, and shows "nothing yet".
pub const ER_NO_SUCH_TABLE: u16 = 1146;

/// The class of `e`: see [`ErrorClass`].
pub fn classify(e: &mysql_async::Error) -> ErrorClass {
    match e {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => ErrorClass::Retryable,
        mysql_async::Error::Server(s) if RETRYABLE_SERVER_CODES.contains(&s.code) => ErrorClass::Retryable,
        mysql_async::Error::Server(s) if REJECTED_SERVER_CODES.contains(&s.code) => ErrorClass::Rejected,
        mysql_async::Error::Server(_) | mysql_async::Error::Other(_) | mysql_async::Error::Url(_) => ErrorClass::Fatal,
    }
}

/// Retryable: the shard is unreachable, restarting, failing over or contended.
pub fn is_retryable(e: &mysql_async::Error) -> bool {
    classify(e) == ErrorClass::Retryable
}

/// A deadlock or lock wait timeout: only this transaction was rolled back by a
/// conflict with another writer, and running it again at once is the remedy.
pub fn is_lock_conflict(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if matches!(s.code, 1205 | 1213))
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
    fn deadlocks_retry_bad_values_are_rejected_syntax_errors_are_fatal() {
        let server = |code| {
            mysql_async::Error::Server(mysql_async::ServerError { code, message: String::new(), state: String::new() })
        };
        assert_eq!(classify(&server(1213)), ErrorClass::Retryable);
        assert_eq!(classify(&server(2013)), ErrorClass::Retryable);
        assert!(is_lock_conflict(&server(1205)));
        assert!(!is_lock_conflict(&server(2013)));
        for code in [1406, 1264, 1366, 1292, 1048, 3140, 4025] {
            assert_eq!(classify(&server(code)), ErrorClass::Rejected, "code {code}");
        }
        assert_eq!(classify(&server(1064)), ErrorClass::Fatal);
        assert_eq!(classify(&server(1146)), ErrorClass::Fatal);
        // A duplicate key means the fence was bypassed: never isolated quietly.
        assert_eq!(classify(&server(1062)), ErrorClass::Fatal);
        assert_eq!(classify(&mysql_async::Error::Other("x".into())), ErrorClass::Fatal);
    }
}
