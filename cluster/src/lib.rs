//! What every dualwrite job shares about a cluster: the cluster file, key
//! ranges and the vindex that place a row on a shard, connection pools, the
//! store's DDL.

pub mod config;
pub mod dead_letters;
pub mod error;
pub mod fence;
pub mod job_tables;
pub mod keyrange;
pub mod layout;
pub mod members;
pub mod partitions;
pub mod pool;
pub mod retry;
pub mod roles;
pub mod schema;
pub mod secret;
pub mod sql;
pub mod throttle;
pub mod throttle_gate;
pub mod time;
pub mod tls;
pub mod vindex;
