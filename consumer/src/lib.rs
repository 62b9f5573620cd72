//! The fleet member: one consumer group writing one cluster, exactly once.
//!
//! Pipeline: a librdkafka poll thread ([`source`]) feeds a bounded channel; the
//! batcher ([`run`]) cuts batches, [`plan`] decodes and routes them to shards
//! (dead-lettering what it cannot decode), [`apply`] commits each shard's rows
//! together with its offset fence in one transaction, and only when every shard
//! and the dead letters are durable are the offsets stored for Kafka to commit.

pub mod apply;
pub mod config;
pub mod coverage;
pub mod dead_letter;
pub mod metrics;
pub mod plan;
pub mod retry;
pub mod rows;
pub mod run;
pub mod source;
pub mod sql;
pub mod start;
pub mod status;

pub use config::ConsumerConfig;
pub use run::run;
