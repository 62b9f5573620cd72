//! Compares a cluster holding the api pipeline with its truth: every row of
//! every table, on the shard the tenant's keyspace id belongs to.

use std::collections::BTreeMap;

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;

use super::truth::{ApiTruth, RouteTruth};
use super::workload::ApiFailure;
use crate::check::{CheckError, CheckReport};

type MinuteRow = (u64, String, i64, Vec<u8>, u64, u64, u64, u64, u64);
type FailureRow = (i32, i64, i64, u64, Vec<u8>, String, String, i32, u64, Option<String>, String);

pub async fn check(cluster: &ClusterConfig, truth: &ApiTruth) -> Result<CheckReport, CheckError> {
    let pools = ShardPools::new(cluster);
    let mut report = CheckReport::default();
    let mut minute = BTreeMap::new();
    let mut hour = BTreeMap::new();
    let mut failures = BTreeMap::new();
    let mut routes = BTreeMap::new();
    for (i, shard) in cluster.shards.iter().enumerate() {
        let name = shard.range.to_string();
        let err = |source| CheckError::Shard { shard: name.clone(), source };
        let mut conn = pools.shard(i).get_conn().await.map_err(err)?;
        let place = |tenant: u64, ksid: &[u8], table: &str, report: &mut CheckReport| {
            let want = cluster::vindex::keyspace_id(tenant);
            if ksid != want || cluster.shard_index_for(&want) != i {
                report.differences.push(format!("{table}: tenant {tenant} on shard {name} (keyspace id {ksid:02x?})"));
            }
        };
        let rows: Vec<MinuteRow> = conn
            .query(
                "SELECT tenant_id, route, TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', window_start), keyspace_id, \
                 request_count, error_count, bytes_in, bytes_out, max_latency_us FROM api_route_minute",
            )
            .await
            .map_err(err)?;
        for (tenant, route, window, ksid, a, b, c, d, e) in rows {
            place(tenant, &ksid, "api_route_minute", &mut report);
            minute.insert((tenant, route, window), [a, b, c, d, e]);
        }
        let rows: Vec<(u64, String, i64, Vec<u8>, u64, Vec<u8>)> = conn
            .query(
                "SELECT tenant_id, route, TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', window_start), keyspace_id, \
                 request_count, latency_sketch FROM api_route_latency_hour",
            )
            .await
            .map_err(err)?;
        for (tenant, route, window, ksid, n, sketch) in rows {
            place(tenant, &ksid, "api_route_latency_hour", &mut report);
            hour.insert((tenant, route, window), (n, sketch));
        }
        let rows: Vec<FailureRow> = conn
            .query(
                "SELECT src_partition, src_offset, TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', occurred_at), \
                 tenant_id, keyspace_id, route, request_id, status, latency_us, error_text, client_ip FROM api_failures",
            )
            .await
            .map_err(err)?;
        for (p, o, at, tenant, ksid, route, request_id, status, latency, error, ip) in rows {
            place(tenant, &ksid, "api_failures", &mut report);
            let f = ApiFailure {
                tenant_id: tenant as i64,
                route,
                request_id,
                status,
                occurred_at: at,
                latency_us: latency as i64,
                error,
                client_ip: ip,
            };
            if failures.insert((p, o), f).is_some() {
                report.differences.push(format!("api_failures: ({p}, {o}) stored twice"));
            }
        }
        let rows: Vec<(u64, String, Vec<u8>, String, String, i64, i64)> = conn
            .query(
                "SELECT tenant_id, route, keyspace_id, method, gateway_id, \
                 TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', first_seen) DIV 1000, \
                 TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', last_seen) DIV 1000 FROM api_routes",
            )
            .await
            .map_err(err)?;
        for (tenant, route, ksid, method, gateway_id, first, last) in rows {
            place(tenant, &ksid, "api_routes", &mut report);
            routes.insert((tenant, route), RouteTruth { method, gateway_id, first_seen_ms: first, last_seen_ms: last });
        }
    }
    pools.disconnect().await;
    report.rows_compared = (minute.len() + hour.len() + failures.len() + routes.len()) as u64;
    diff("api_route_minute", &truth.minute, &minute, &mut report);
    diff("api_route_latency_hour", &truth.latency_hour, &hour, &mut report);
    diff("api_failures", &truth.failures, &failures, &mut report);
    diff("api_routes", &truth.routes, &routes, &mut report);
    Ok(report)
}

fn diff<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    table: &str,
    want: &BTreeMap<K, V>,
    got: &BTreeMap<K, V>,
    report: &mut CheckReport,
) {
    for (k, v) in want {
        match got.get(k) {
            None => report.differences.push(format!("{table}: missing {k:?}")),
            Some(g) if g != v => report.differences.push(format!("{table}: {k:?}: stored {g:?}, expected {v:?}")),
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(k)) {
        report.differences.push(format!("{table}: extra {k:?}"));
    }
}
