//! What the librdkafka poll thread ([`crate::source`]) hands the batcher
//! ([`crate::batcher`]): fetched messages, group membership changes, and the
//! end offsets it learns from librdkafka's statistics. A leaf module, so
//! neither side imports the other for its types.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// One fetched message, copied out of librdkafka's buffers.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Message timestamp (create time), milliseconds.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// Group membership changes the batcher must act on.
#[derive(Debug)]
pub enum Control {
    /// Partitions are about to be taken away: finish (or abandon) what was
    /// fetched before this point, then reply.
    Revoke { partitions: Vec<(String, i32)>, done: std::sync::mpsc::SyncSender<()> },
}

/// What the batcher reads.
pub struct Receivers {
    pub data: mpsc::Receiver<Fetched>,
    pub control: mpsc::Receiver<Control>,
}

/// End offsets (last stable offset) from librdkafka statistics, for lag and "reached the end".
pub type Watermarks = Arc<Mutex<HashMap<(String, i32), i64>>>;
