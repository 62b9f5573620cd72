//! The topics the product reads and how they are created.

/// Which record a topic carries; decides the reader schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    QueryStats,
    SlowQueries,
}

impl TopicKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::QueryStats => "query-stats",
            TopicKind::SlowQueries => "slow-queries",
        }
    }
}

/// A topic as the deployment creates it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    pub name: String,
    pub kind: TopicKind,
    /// Upper bound on how many consumers of one group can share the work.
    pub partitions: i32,
    pub replication: i32,
    /// How far back a new consumer group can replay (`retention.ms`).
    pub retention_ms: i64,
}

/// Seven days: long enough for group B to replay a useful part of the window.
const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// The default topic set; names can be prefixed so tests never share topics.
pub fn default_topics(prefix: &str, partitions: i32, replication: i32) -> Vec<TopicSpec> {
    [TopicKind::QueryStats, TopicKind::SlowQueries]
        .into_iter()
        .map(|kind| TopicSpec {
            name: format!("{prefix}{}", kind.as_str()),
            kind,
            partitions,
            replication,
            retention_ms: DEFAULT_RETENTION_MS,
        })
        .collect()
}
