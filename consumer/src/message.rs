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

impl Fetched {
    /// What the message costs in memory, for the byte caps: its key and
    /// value plus a fixed overhead for the rest.
    pub fn size(&self) -> usize {
        64 + self.key.as_ref().map_or(0, Vec::len) + self.payload.as_ref().map_or(0, Vec::len)
    }
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
    /// The poll channel's byte budget: the poll thread takes a message's
    /// [`Fetched::size`] before sending it, the batcher gives it back on receipt.
    pub bytes: ChannelBytes,
}

/// A byte budget shared by the poll thread and the batcher.
#[derive(Clone, Debug)]
pub struct ChannelBytes {
    budget: Arc<tokio::sync::Semaphore>,
    cap: usize,
}

impl ChannelBytes {
    pub fn new(cap: usize) -> Self {
        Self { budget: Arc::new(tokio::sync::Semaphore::new(cap)), cap }
    }

    /// Permits for one message: its size, at most the whole budget (a message
    /// larger than the cap passes alone).
    fn permits(&self, m: &Fetched) -> u32 {
        u32::try_from(m.size().min(self.cap)).unwrap_or(u32::MAX)
    }

    /// Waits until `m` fits the budget, and takes its share.
    pub async fn take(&self, m: &Fetched) {
        if let Ok(permit) = self.budget.acquire_many(self.permits(m)).await {
            permit.forget();
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn available(&self) -> usize {
        self.budget.available_permits()
    }

    /// Gives `m`'s share back once it left the channel.
    pub fn give_back(&self, m: &Fetched) {
        self.budget.add_permits(self.permits(m) as usize);
    }
}

/// End offsets (last stable offset) from librdkafka statistics, for lag and "reached the end".
pub type Watermarks = Arc<Mutex<HashMap<(String, i32), i64>>>;
