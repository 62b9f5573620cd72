//! The fleet member: one consumer group writing one cluster, exactly once.
//!
//! Pipeline: a librdkafka poll thread ([`source`]) feeds a bounded channel; the
//! batcher ([`batcher`]) cuts batches, [`plan`] decodes and routes them to shards
//! (dead-lettering what it cannot decode), [`apply`] commits each shard's rows
//! together with its offset fence in one transaction, and only when every shard
//! and the dead letters are durable are the offsets stored for Kafka to commit.

pub mod apply;
pub mod batcher;
pub mod coalesce;
pub mod config;
pub mod dead_letter;
pub mod dry_run;
pub mod error;
pub mod isolate;
pub mod liveness;
mod log_limit;
pub mod message;
pub mod metrics;
pub mod plan;
pub mod replay;
pub mod rows;
mod schemas;
pub mod shape;
pub mod source;
pub mod start;
pub mod status;
pub mod write;

pub use batcher::run;
pub use config::ConsumerConfig;
pub use error::ConsumerError;
