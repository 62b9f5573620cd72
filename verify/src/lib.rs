//! Comparators between an old and a new cluster of different shard counts.
//! Every table they compare, and how its rows are encoded, comes from the
//! clusters' pipeline description ([`spec`]); both must name the same one.
//!
//! - [`windows`]: per-window equivalence of the retention-bounded tables,
//!   pushed down to the shards: a cheap [`first_pass`] per window and
//!   keyspace-id bucket, then the SHA-256 [`digest`] of differing buckets,
//!   narrowed to keys by [`drill`] once a second read shows both sides
//!   holding still (`confirm`).
//! - [`table`]: resumable full diff of an unbounded (`latest`) table.
//! - [`history`]: runs, window states and differences in the control
//!   database; what the next run and cutover read.
//! - [`report`]: the nightly JSON / Markdown / HTML report; [`metrics`].
//! - [`nightly`]: the daemon running all of them on a schedule into dated reports.
//! - [`bench`]: comparator throughput against `CHECKSUM TABLE`.

pub mod bench;
mod confirm;
pub mod diff;
pub mod digest;
pub mod drill;
pub mod error;
pub mod first_pass;
pub mod history;
pub mod metrics;
pub mod nightly;
pub mod repair;
pub mod report;
pub mod spec;
pub mod table;
pub mod windows;

pub use error::VerifyError;
