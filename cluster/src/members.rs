//! Consumer group members' heartbeats (`dw_consumer_members`, control
//! database): which member of which group holds which partitions, as each
//! member last said it. Kafka's own view (DescribeGroups) is not available on
//! every broker the fleet meets (librdkafka's mock cluster has none), so each
//! `dualwrite-consumer run` writes its assignment here every few seconds and
//! `dualwrite-consumer status` derives a partition's owner from the members
//! heard from recently: a member that stopped heartbeating owns nothing.
//!
//! Ages are measured on the control server's clock (`NOW(6)` against the
//! stored time), so members' clocks never enter the comparison.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use serde::Serialize;

use crate::sql::lit;

/// Rows whose heartbeat is older than this are deleted by the next heartbeat
/// of any member of the cluster (dead members' rows do not pile up).
const FORGET_AFTER: &str = "INTERVAL 1 DAY";

/// A member not heard from for this long owns nothing: three of its
/// heartbeats (a member heartbeats every 5 s). Every reader of the owners
/// (`dualwrite-consumer status`, the migration console) judges with it.
pub const LIVE_WITHIN: Duration = Duration::from_secs(15);

/// One member as it last reported itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub consumer_group: String,
    /// `host:pid`, chosen by the member (Kafka's member id is not exposed).
    pub member: String,
    /// The partitions it held at its last heartbeat.
    pub partitions: Vec<(String, i32)>,
    /// Milliseconds since its last heartbeat, on the control server's clock.
    pub heartbeat_age_ms: i64,
}

fn encode(partitions: &[(String, i32)]) -> String {
    partitions.iter().map(|(t, p)| format!("{t}/{p}")).collect::<Vec<_>>().join(" ")
}

fn decode(text: &str) -> Vec<(String, i32)> {
    text.split_whitespace()
        .filter_map(|tp| {
            let (t, p) = tp.rsplit_once('/')?;
            Some((t.to_string(), p.parse().ok()?))
        })
        .collect()
}

/// Records that `member` of `group` holds `partitions` now.
pub async fn heartbeat(
    control: &Pool,
    cluster: &str,
    group: &str,
    member: &str,
    partitions: &[(String, i32)],
) -> Result<(), mysql_async::Error> {
    let mut conn = control.get_conn().await?;
    conn.query_drop(format!(
        "INSERT INTO dw_consumer_members (cluster, consumer_group, member, partitions, assigned, started_at, heartbeat_at) \
         VALUES ({c}, {g}, {m}, {p}, {n}, NOW(6), NOW(6)) ON DUPLICATE KEY UPDATE partitions = VALUES(partitions), \
         assigned = VALUES(assigned), heartbeat_at = VALUES(heartbeat_at); \
         DELETE FROM dw_consumer_members WHERE cluster = {c} AND heartbeat_at < NOW(6) - {FORGET_AFTER}",
        c = lit(cluster),
        g = lit(group),
        m = lit(member),
        p = lit(encode(partitions)),
        n = partitions.len(),
    ))
    .await
}

/// A member that stops cleanly says so: it owns nothing from now on.
pub async fn leave(control: &Pool, cluster: &str, group: &str, member: &str) -> Result<(), mysql_async::Error> {
    let mut conn = control.get_conn().await?;
    conn.query_drop(format!(
        "DELETE FROM dw_consumer_members WHERE cluster = {} AND consumer_group = {} AND member = {}",
        lit(cluster),
        lit(group),
        lit(member)
    ))
    .await
}

/// The members of every group feeding `cluster` heard from within `within`.
pub async fn live(control: &Pool, cluster: &str, within: Duration) -> Result<Vec<Member>, mysql_async::Error> {
    let mut conn = control.get_conn().await?;
    let rows: Vec<(String, String, String, i64)> = conn
        .query(format!(
            "SELECT consumer_group, member, partitions, TIMESTAMPDIFF(MICROSECOND, heartbeat_at, NOW(6)) DIV 1000 \
             FROM dw_consumer_members WHERE cluster = {} AND heartbeat_at >= NOW(6) - INTERVAL {} MICROSECOND \
             ORDER BY consumer_group, member",
            lit(cluster),
            within.as_micros()
        ))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(consumer_group, member, partitions, heartbeat_age_ms)| Member {
            consumer_group,
            member,
            partitions: decode(&partitions),
            heartbeat_age_ms,
        })
        .collect())
}

/// Partition -> the live member holding it (the most recent heartbeat wins
/// if two claim one across a rebalance).
pub fn owners(members: &[Member]) -> BTreeMap<(String, i32), &Member> {
    let mut out: BTreeMap<(String, i32), &Member> = BTreeMap::new();
    for m in members {
        for key in &m.partitions {
            let newer = out.get(key).is_none_or(|held| m.heartbeat_age_ms < held.heartbeat_age_ms);
            if newer {
                out.insert(key.clone(), m);
            }
        }
    }
    out
}

/// Partition -> the name of the live member holding it ([`owners`]).
pub fn owner_names(members: &[Member]) -> HashMap<(String, i32), String> {
    owners(members).into_iter().map(|(k, m)| (k, m.member.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, age: i64, parts: &[(&str, i32)]) -> Member {
        Member {
            consumer_group: "g".into(),
            member: name.into(),
            partitions: parts.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
            heartbeat_age_ms: age,
        }
    }

    #[test]
    fn partitions_round_trip_through_their_text_form() {
        let parts = vec![("query-stats".to_string(), 0), ("slow-queries".to_string(), 15)];
        assert_eq!(decode(&encode(&parts)), parts);
        assert_eq!(decode(""), Vec::<(String, i32)>::new());
        assert_eq!(decode("bad t/x t/3"), vec![("t".to_string(), 3)]);
    }

    #[test]
    fn the_freshest_claim_owns_a_partition_claimed_twice() {
        let members = [member("a", 4_000, &[("t", 0), ("t", 1)]), member("b", 1_000, &[("t", 1)])];
        let owners = owners(&members);
        assert_eq!(owners[&("t".to_string(), 0)].member, "a");
        assert_eq!(owners[&("t".to_string(), 1)].member, "b");
        assert!(!owners.contains_key(&("t".to_string(), 2)));
    }
}
