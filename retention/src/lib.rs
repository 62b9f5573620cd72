//! Retention and cutover readiness: time partitions created ahead and dropped
//! behind on every shard of a cluster, and when the new cluster will hold
//! every window the old one retains.

pub mod error;
pub mod execute;
pub mod metrics;
pub mod plan;
pub mod readiness;
pub mod run;

pub use error::RetentionError;
pub use readiness::{assess, Readiness};
pub use run::{run, run_once, RetentionConfig, RunSummary};
