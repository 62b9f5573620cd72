//! From a batch of fetched messages to what each shard must write.
//!
//! Pure and deterministic: the same messages give the same plan whatever the
//! batch boundaries, which is what lets both groups reach the same state.

use std::collections::HashMap;
use std::sync::Arc;

use cluster::config::ClusterConfig;
use topics::record::Value;
use topics::{Codec, DecodeError};

use crate::message::Fetched;
use crate::rows::{build, Context, Invalid, Row};
use crate::shape::Shape;
use cluster::time::{window_start, TimeConfig};

/// What a batch holds of one partition: a contiguous run of offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionRange {
    pub topic: Arc<str>,
    pub partition: i32,
    pub first_offset: i64,
    /// One past the last offset in the batch: the fence after this batch.
    pub next_offset: i64,
    pub first_message_ms: i64,
    pub max_message_ms: i64,
    pub messages: u64,
}

/// One decoded message bound for one shard.
#[derive(Debug, Clone)]
pub struct ShardItem {
    /// Index into [`BatchPlan::ranges`].
    pub range: usize,
    pub offset: i64,
    pub body: ItemBody,
    /// The message as fetched: what a `store_rejected` dead letter keeps
    /// (so it can be replayed) if the shard refuses this item.
    pub raw: RawMessage,
}

/// A message's key, value and timestamp, kept with its item.
#[derive(Debug, Clone, Default)]
pub struct RawMessage {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub message_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub enum ItemBody {
    /// One row for every table the message's topic feeds.
    Rows { rows: Vec<Row>, late: bool },
    /// Older than retention: counted on its shard, not written.
    Expired,
}

/// The rules that decide late and expired from the message alone (its
/// timestamp and its event time), identically in every group.
#[derive(Debug, Clone, Copy)]
pub struct TimeRules {
    pub allowed_lateness_ms: i64,
    pub retention_ms: i64,
    /// `[time] ahead`: an event dated further than this past its message
    /// timestamp is a dead letter (`future_event`), not a row in `p_future`.
    pub ahead_ms: i64,
}

impl From<&TimeConfig> for TimeRules {
    fn from(t: &TimeConfig) -> Self {
        Self {
            allowed_lateness_ms: t.allowed_lateness_ms(),
            retention_ms: t.retention_ms(),
            ahead_ms: i64::try_from(t.ahead.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

impl TimeRules {
    /// (late, expired) for an event starting at `event_start_ms`, sent at
    /// `message_ms`, whose smallest window is `window_secs`.
    ///
    /// Late is judged against the end of the window the event's rows land
    /// in, not the event's own end: a window counts as settled once its
    /// partition carries a timestamp past that end plus the lateness, so an
    /// aggregate reaching past its window (a 15 s interval starting at :50)
    /// writes a settled window, and the comparators must see it counted.
    fn judge(&self, event_start_ms: i64, window_secs: i64, message_ms: Option<i64>) -> (bool, bool) {
        let Some(sent) = message_ms else { return (false, false) };
        let window_end_ms = window_start(event_start_ms, window_secs).saturating_add(window_secs).saturating_mul(1000);
        // Saturating: a producer's timestamp can be any i64.
        (
            sent.saturating_sub(window_end_ms) > self.allowed_lateness_ms,
            sent.saturating_sub(event_start_ms) > self.retention_ms,
        )
    }

    /// An event dated more than `ahead` past the time it was sent: decided
    /// from the message alone, like lateness (no timestamp, no verdict).
    fn future(&self, event_start_ms: i64, message_ms: Option<i64>) -> Result<(), Rejected> {
        match message_ms {
            Some(sent) if event_start_ms.saturating_sub(sent) > self.ahead_ms => Err(Rejected::Future(format!(
                "event time {event_start_ms} ms is {} ms after its message timestamp {sent} ms, more than \
                 [time] ahead ({} ms)",
                event_start_ms - sent,
                self.ahead_ms
            ))),
            _ => Ok(()),
        }
    }
}

/// Longest dead-letter `detail` kept (the column is TEXT; server errors and
/// panic messages can quote whole values).
pub const MAX_DETAIL_BYTES: usize = 2_000;

/// `detail` cut to [`MAX_DETAIL_BYTES`] on a character boundary.
pub fn capped_detail(detail: &str) -> String {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail.to_string();
    }
    let mut end = MAX_DETAIL_BYTES;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &detail[..end], detail.len())
}

/// Why `route` refused a message.
#[derive(Debug)]
enum Rejected {
    Decode(DecodeError),
    Invalid(Invalid),
    Future(String),
}

impl From<DecodeError> for Rejected {
    fn from(e: DecodeError) -> Self {
        Rejected::Decode(e)
    }
}

impl From<Invalid> for Rejected {
    fn from(e: Invalid) -> Self {
        Rejected::Invalid(e)
    }
}

impl Rejected {
    fn reason(&self) -> &'static str {
        match self {
            Rejected::Decode(e) => e.reason(),
            Rejected::Invalid(_) => "invalid_field",
            Rejected::Future(_) => "future_event",
        }
    }

    fn detail(&self) -> String {
        match self {
            Rejected::Decode(e) => e.to_string(),
            Rejected::Invalid(e) => e.to_string(),
            Rejected::Future(why) => why.clone(),
        }
    }
}

/// A message no group can apply, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub reason: &'static str,
    pub detail: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub message_ms: Option<i64>,
}

#[derive(Debug, Default)]
pub struct BatchPlan {
    pub ranges: Vec<PartitionRange>,
    /// Per shard (index in the cluster's sorted shards), items in fetch order.
    pub shards: Vec<Vec<ShardItem>>,
    pub dead_letters: Vec<DeadLetter>,
}

impl BatchPlan {
    pub fn message_count(&self) -> u64 {
        self.ranges.iter().map(|r| r.messages).sum()
    }
}

/// Decodes and routes `messages` (in fetch order).
pub fn plan(
    messages: Vec<Fetched>,
    codec: &Codec,
    cluster: &ClusterConfig,
    shape: &Shape,
    rules: TimeRules,
) -> BatchPlan {
    let mut out = BatchPlan { shards: vec![Vec::new(); cluster.shards.len()], ..BatchPlan::default() };
    let mut range_index: HashMap<(Arc<str>, i32), usize> = HashMap::new();
    // A batch names few databases: each one's keyspace id (3DES) and shard once.
    let mut routes: HashMap<u64, ([u8; 8], usize)> = HashMap::new();
    // Fetches come in runs of one partition: the previous message's range
    // is tried before the map (which hashes the topic name).
    let mut previous: Option<usize> = None;
    for m in messages {
        let ts = m.timestamp_ms.unwrap_or(0);
        let same = previous.filter(|&r| out.ranges[r].partition == m.partition && *out.ranges[r].topic == *m.topic);
        let range = match same {
            Some(r) => r,
            None => *range_index.entry((m.topic.clone(), m.partition)).or_insert_with(|| {
                out.ranges.push(PartitionRange {
                    topic: m.topic.clone(),
                    partition: m.partition,
                    first_offset: m.offset,
                    next_offset: m.offset,
                    first_message_ms: ts,
                    max_message_ms: ts,
                    messages: 0,
                });
                out.ranges.len() - 1
            }),
        };
        previous = Some(range);
        let r = &mut out.ranges[range];
        // A message fetched twice into one batch (after a seek) counts once.
        if m.offset < r.next_offset {
            continue;
        }
        r.next_offset = m.offset + 1;
        r.max_message_ms = r.max_message_ms.max(ts);
        r.messages += 1;

        // The last line of defence: a panic in decoding or routing (a library
        // bug a crafted message reaches) costs this message, not the process.
        // Nothing outside `route` is mutated, so unwinding leaves no torn state.
        let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            route(&m, codec, cluster, shape, rules, &mut routes)
        }));
        let (reason, detail) = match routed {
            Ok(Ok((shard, body))) => {
                let raw = RawMessage { key: m.key, payload: m.payload, message_ms: m.timestamp_ms };
                out.shards[shard].push(ShardItem { range, offset: m.offset, body, raw });
                continue;
            }
            Ok(Err(e)) => (e.reason(), e.detail()),
            Err(panic) => ("decoder_panic", format!("panicked while decoding: {}", panic_message(&*panic))),
        };
        out.dead_letters.push(DeadLetter {
            topic: m.topic.clone(),
            partition: m.partition,
            offset: m.offset,
            reason,
            detail: capped_detail(&detail),
            key: m.key,
            payload: m.payload,
            message_ms: m.timestamp_ms,
        });
    }
    out
}

/// Test-only fault injection: a predicate on a message that makes decoding
/// it panic, standing in for a library bug a crafted message reaches (the
/// known ones are checked before the library sees them). Never set outside tests.
static PANIC_PROBE: std::sync::OnceLock<fn(&Fetched) -> bool> = std::sync::OnceLock::new();

/// Installs the probe once per process (later calls are ignored).
#[doc(hidden)]
pub fn set_panic_probe(probe: fn(&Fetched) -> bool) {
    let _ = PANIC_PROBE.set(probe);
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_string())
}

fn route(
    m: &Fetched,
    codec: &Codec,
    cluster: &ClusterConfig,
    shape: &Shape,
    rules: TimeRules,
    routes: &mut HashMap<u64, ([u8; 8], usize)>,
) -> Result<(usize, ItemBody), Rejected> {
    if PANIC_PROBE.get().is_some_and(|probe| probe(m)) {
        panic!("injected decoder panic at offset {}", m.offset);
    }
    let Some(&topic_index) = shape.by_name.get(&*m.topic) else {
        // Only the pipeline's topics are subscribed: a message of another is
        // a bug upstream of the plan, kept as a dead letter rather than guessed at.
        return Err(Rejected::Invalid(Invalid {
            field: "topic".into(),
            why: format!("{} is not a topic of the pipeline", m.topic),
        }));
    };
    let topic = &shape.topics[topic_index];
    let values = codec.decode_record(&topic.reader, m.payload.as_deref())?;
    let invalid = |field: &str, why: String| Rejected::Invalid(Invalid { field: field.to_string(), why });
    let shard_value = match values.get(topic.shard_position) {
        Some(Value::Long(v)) => *v,
        _ => return Err(invalid(&topic.shard_field, "missing".into())),
    };
    // The hash vindex takes an unsigned 64-bit integer.
    let Ok(shard_value) = u64::try_from(shard_value) else {
        return Err(invalid(&topic.shard_field, format!("{shard_value} is negative")));
    };
    let raw_time = match values.get(topic.time_position) {
        Some(Value::Long(v)) => *v,
        _ => return Err(invalid(&topic.time_field, "missing".into())),
    };
    let (event_ms, event_us) = if topic.time_is_micros {
        (raw_time.div_euclid(1000), raw_time)
    } else {
        (raw_time, raw_time.saturating_mul(1000))
    };
    if raw_time < 0 {
        return Err(invalid(&topic.time_field, format!("{raw_time} is negative")));
    }
    if event_us > MAX_TIME_US {
        return Err(invalid(&topic.time_field, format!("{raw_time} is past year 9999")));
    }
    let (keyspace_id, shard) = *routes.entry(shard_value).or_insert_with(|| {
        let keyspace_id = cluster::vindex::keyspace_id(shard_value);
        (keyspace_id, cluster.shard_index_for(&keyspace_id))
    });
    let cx = Context { partition: m.partition, offset: m.offset, event_ms, event_us, keyspace_id };
    // Malformed before old: a bad message is a dead letter whatever its age,
    // so every row is built (and checked) before the age is judged.
    let mut rows = Vec::with_capacity(topic.tables.len());
    let mut decoded = Vec::new();
    for &t in &topic.tables {
        rows.push(build(t as u16, &shape.tables[t], &values, &cx, &mut decoded)?);
    }
    rules.future(event_ms, m.timestamp_ms)?;
    let (late, expired) = rules.judge(event_ms, topic.late_window_secs, m.timestamp_ms);
    if expired {
        return Ok((shard, ItemBody::Expired));
    }
    Ok((shard, ItemBody::Rows { rows, late }))
}

/// 9999-12-31T23:59:59.999999Z: the last instant a DATETIME holds.
const MAX_TIME_US: i64 = 253_402_300_799_999_999;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_is_judged_against_the_end_of_the_window_the_rows_land_in() {
        let rules = TimeRules { allowed_lateness_ms: 2_000, retention_ms: 3_600_000, ahead_ms: 0 };
        // A 15 s interval at :45 ends with its window (60 s): sent at its end
        // plus the lateness it is on time, a millisecond later it is late.
        assert_eq!(rules.judge(45_000, 60, Some(62_000)), (false, false));
        assert_eq!(rules.judge(45_000, 60, Some(62_001)), (true, false));
        // One at :50 reaches past its window: sent at its own end (65 s) it
        // writes a window a partition may already count as settled.
        assert_eq!(rules.judge(50_000, 60, Some(65_000)), (true, false));
        // An early interval is judged by its window's end too, not its own.
        assert_eq!(rules.judge(0, 60, Some(61_000)), (false, false));
        assert_eq!(rules.judge(0, 60, Some(3_600_001)), (true, true));
        assert_eq!(rules.judge(0, 60, None), (false, false));
    }
}
