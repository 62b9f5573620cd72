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
    /// Upper bound on how many consumers of one group can share the work.
    pub partitions: i32,
    pub replication: i32,
    /// How far back a new consumer group can replay (`retention.ms`).
    pub retention_ms: i64,
}

/// Seven days: long enough for group B to replay a useful part of the window.
const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// The default (Insights) topic set; names can be prefixed so tests never share topics.
pub fn default_topics(prefix: &str, partitions: i32, replication: i32) -> Vec<TopicSpec> {
    pipeline_topics(&pipeline::Pipeline::insights(), prefix, partitions, replication)
}

/// The topics `pipeline` reads, under `prefix`.
pub fn pipeline_topics(
    pipeline: &pipeline::Pipeline,
    prefix: &str,
    partitions: i32,
    replication: i32,
) -> Vec<TopicSpec> {
    pipeline
        .topic_names(prefix)
        .into_iter()
        .map(|name| TopicSpec { name, partitions, replication, retention_ms: DEFAULT_RETENTION_MS })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_come_from_the_pipeline() {
        let names = |p: &pipeline::Pipeline| -> Vec<String> {
            pipeline_topics(p, "t.", 4, 1).into_iter().map(|s| s.name).collect()
        };
        assert_eq!(names(&pipeline::Pipeline::insights()), ["t.query-stats", "t.slow-queries"]);
        let api = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
        let api = pipeline::Pipeline::load(&api).expect("api pipeline");
        assert_eq!(names(&api), ["t.api-requests", "t.api-failures"]);
        let default: Vec<String> = default_topics("t.", 4, 1).into_iter().map(|s| s.name).collect();
        let kinds: Vec<String> = TopicKind::ALL.iter().map(|k| k.topic_name("t.")).collect();
        assert_eq!(default, kinds, "the default set is the Insights topics the producer writes");
    }
}
