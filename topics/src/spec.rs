//! The topics the product reads and how they are created.

/// Which record a topic carries; decides the reader schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    QueryStats,
    SlowQueries,
}

impl TopicKind {
    /// Every topic the product reads.
    pub const ALL: [TopicKind; 2] = [TopicKind::QueryStats, TopicKind::SlowQueries];

    /// The topic's name under a deployment's (or a test's) prefix.
    pub fn topic_name(self, prefix: &str) -> String {
        format!("{prefix}{}", self.as_str())
    }

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
    TopicKind::ALL
        .into_iter()
        .map(|kind| TopicSpec {
            name: kind.topic_name(prefix),
            kind,
            partitions,
            replication,
            retention_ms: DEFAULT_RETENTION_MS,
        })
        .collect()
}
