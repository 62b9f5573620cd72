//! What every dualwrite job shares about a cluster: the cluster file, key
//! ranges and the vindex that place a row on a shard, connection pools, the
//! store's DDL, and the process setup (logs, metrics, shutdown).

pub mod config;
pub mod error;
pub mod keyrange;
pub mod partitions;
pub mod pool;
pub mod process;
pub mod schema;
pub mod secret;
pub mod time;
pub mod tls;
pub mod vindex;
