//! The stream contract shared by every producer and consumer group.
//!
//! Both consumer groups must decide everything from message content alone, so
//! everything that gives a message its meaning lives here: the Avro schemas
//! (`schemas/*.avsc`), the Confluent wire framing, the Kafka key and the
//! latency sketch encoding.

pub mod admin;
pub mod codec;
mod config_file;
pub mod corpus;
mod decode_error;
pub mod dev_broker;
pub mod events;
pub mod kafka;
pub mod key;
pub mod metrics;
pub mod preflight;
pub mod record;
pub mod registry;
pub mod schemas;
pub mod sketch;
mod sketch_check;
mod sketch_contract;
pub mod spec;

pub use codec::{Codec, DecodeError};
pub use events::{Event, QueryStats, SlowQuery};
pub use key::message_key;
pub use sketch::LatencySketch;
pub use spec::{TopicKind, TopicSpec};
