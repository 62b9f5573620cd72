//! Routing row images to the new shards and writing them, with each shard's
//! fence, in one transaction per shard.
//!
//! ## Why an UPDATE is an upsert of its after image
//!
//! Group A changes a source row only through the merge rule (the consumer's
//! upsert of the table's description), so an UPDATE's after image is
//! `merge(before image, new sightings)`.
//! The target row is `merge(everything copied so far, group B's writes)`,
//! which already includes the before image (it was copied or applied
//! earlier). Merging the after image in therefore gives exactly
//! `merge(after image, group B's writes)`: the before image adds nothing, and
//! because the merge is a join the result does not depend on whether group B
//! wrote before or after. An UPDATE that moves a row *against* the merge rule
//! (a manual fix) cannot be carried this way; it is counted
//! (`copier_non_merge_updates_total`) and logged. An UPDATE that changes the
//! key is a delete of the old key plus an upsert of the new one.
//!
//! Deletes are applied as deletes: they remove what group B wrote for the key
//! too, which is what the source did (the old cluster's group A data is gone
//! as well).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;
use mysql_async::{IsolationLevel, TxOpts};

use crate::binlog::{Position, RowOp};
use crate::error::CopierError;
use crate::phase::Phase;
use crate::row::{Image, Key};
use crate::sidecar::{write_fence, Fence};
use crate::table::{key_tuples, CopiedTable, CopyRow};

/// Times a shard transaction rolled back by a deadlock is run again before the stream restarts.
const LOCK_RETRIES: u32 = 5;

/// A binlog row operation and the end of the source transaction it belongs to.
#[derive(Debug, Clone)]
pub struct PositionedOp {
    /// The operation.
    pub op: RowOp,
    /// End position of its transaction: the fence compared against.
    pub txn_end: Position,
}

/// The new cluster: where rows go and how to reach it.
pub struct Target {
    /// The new cluster's shard map (routing by its vindex).
    pub config: ClusterConfig,
    /// One pool per new shard.
    pub pools: ShardPools,
    /// The copied table (its key, vindex and statements; shared with the binlog readers).
    pub table: std::sync::Arc<CopiedTable>,
}

impl Target {
    /// The new shard owning `key`'s row.
    pub fn route(&self, key: &Key) -> usize {
        self.config.shard_index_for(&self.table.keyspace_id(key))
    }

    /// The new shard owning the rows of keyspace id `keyspace_id`.
    pub fn route_keyspace_id(&self, keyspace_id: &[u8; 8]) -> usize {
        self.config.shard_index_for(keyspace_id)
    }
}

/// What one shard gets from a batch: deletes first, then merge upserts.
#[derive(Debug, Default, PartialEq)]
pub struct ShardWrite {
    /// Keys deleted by the batch (and possibly re-inserted by `upserts`).
    pub deletes: Vec<Key>,
    /// One merged image per key: the join of the key's images after its
    /// last delete (each with its keyspace id, computed once, for routing).
    pub upserts: Vec<Image>,
    /// Operations the batch applied to this shard (before coalescing).
    pub applied: u64,
}

/// Splits binlog operations by target shard, dropping what each shard's
/// fence says it must not apply (transactions it already applied, keys it
/// does not cover yet), and folds each key's operations in order: a key's
/// net effect is "delete if any delete, then upsert the merge of the images
/// after the last delete". Deletes run before upserts in the shard's
/// transaction, so that is exactly the sequential result.
pub fn plan_binlog(target: &Target, fences: &[Fence], ops: &[PositionedOp]) -> Vec<ShardWrite> {
    plan_with(&target.table, |keyspace_id| target.route_keyspace_id(keyspace_id), fences, ops)
}

fn plan_with(
    table: &CopiedTable,
    route: impl Fn(&[u8; 8]) -> usize,
    fences: &[Fence],
    ops: &[PositionedOp],
) -> Vec<ShardWrite> {
    struct Effect {
        delete: bool,
        upsert: Option<Image>,
    }
    let mut per_shard: Vec<BTreeMap<Key, Effect>> = (0..fences.len()).map(|_| BTreeMap::new()).collect();
    let mut applied = vec![0_u64; fences.len()];
    for positioned in ops {
        let key = positioned.op.key();
        let keyspace_id = match &positioned.op {
            RowOp::Upsert(image) => image.keyspace_id,
            RowOp::Delete(key) => table.keyspace_id(key),
        };
        let shard = route(&keyspace_id);
        let fence = &fences[shard];
        // A delete applies even above the copied key: the next snapshot (taken
        // after it) will not hold the key either, and group B's row for it
        // must go whenever the delete is seen, not only if it was copied first.
        let delete = matches!(positioned.op, RowOp::Delete(_));
        if fence.has_applied(&positioned.txn_end) || (!delete && !fence.covers(key)) {
            continue;
        }
        applied[shard] += 1;
        let effect = per_shard[shard].entry(key.clone()).or_insert(Effect { delete: false, upsert: None });
        match &positioned.op {
            RowOp::Delete(_) => {
                effect.delete = true;
                effect.upsert = None;
            }
            RowOp::Upsert(image) => match &mut effect.upsert {
                Some(merged) => merged.merge(image, &table.merge),
                None => effect.upsert = Some(image.clone()),
            },
        }
    }
    per_shard
        .into_iter()
        .zip(applied)
        .map(|(effects, applied)| {
            let mut write = ShardWrite { applied, ..ShardWrite::default() };
            for (key, effect) in effects {
                if effect.delete {
                    write.deletes.push(key);
                }
                if let Some(image) = effect.upsert {
                    write.upserts.push(image);
                }
            }
            write
        })
        .collect()
}

/// Splits snapshot rows by target shard, dropping rows a shard already covers
/// (after a crash a shard may be ahead of the others).
pub fn plan_copy(target: &Target, fences: &[Fence], rows: Vec<CopyRow>) -> Vec<Vec<CopyRow>> {
    let mut per_shard: Vec<Vec<CopyRow>> = (0..fences.len()).map(|_| Vec::new()).collect();
    for row in rows {
        let shard = target.route_keyspace_id(&row.keyspace_id);
        if fences[shard].covers(&row.key) {
            continue;
        }
        per_shard[shard].push(row);
    }
    per_shard
}

/// A shard's write as SQL tuples: keys to delete, then rows to upsert.
#[derive(Debug, Default)]
pub struct Tuples {
    pub deletes: Vec<String>,
    pub upserts: Vec<String>,
}

impl ShardWrite {
    fn tuples(&self, table: &CopiedTable) -> Tuples {
        Tuples {
            deletes: key_tuples(&self.deletes),
            upserts: self.upserts.iter().map(|image| table.values_tuple(image)).collect(),
        }
    }
}

/// Writes each shard's rows and its new fence in one transaction per shard,
/// all shards at once. On success `fences` is replaced by `new_fences`; on
/// error the caller reloads the fences from the shards (some committed).
/// Returns the slowest statement's latency over every shard, for the throttle.
pub async fn write_shards(
    target: &Target,
    table: &str,
    source_shard: &str,
    writes: Vec<ShardWrite>,
    fences: &mut [Fence],
    new_fences: Vec<Fence>,
    phase: Phase,
) -> Result<Duration, CopierError> {
    debug_assert_eq!(writes.len(), fences.len());
    let to = ShardTxn { target, table, source_shard, phase };
    let to = &to;
    let tasks = writes.into_iter().zip(new_fences.iter()).enumerate().map(|(shard, (write, fence))| async move {
        write_one(to, shard, &write.tuples(&to.target.table), fence).await
    });
    let mut slowest = Duration::ZERO;
    for result in futures::future::join_all(tasks).await {
        slowest = slowest.max(result?);
    }
    fences.clone_from_slice(&new_fences);
    Ok(slowest)
}

/// Where a stream's shard transactions go and how their fences are labelled.
pub struct ShardTxn<'a> {
    pub target: &'a Target,
    pub table: &'a str,
    pub source_shard: &'a str,
    pub phase: Phase,
}

/// One shard's rows and fence in one transaction, run again when a deadlock
/// or lock wait timeout with group B rolled it back (only this shard's
/// transaction is affected). Returns its slowest statement's latency: the
/// throttle's signal, which does not grow with the size of the batch.
pub async fn write_one(
    to: &ShardTxn<'_>,
    shard: usize,
    write: &Tuples,
    fence: &Fence,
) -> Result<Duration, mysql_async::Error> {
    let mut attempt = 0;
    loop {
        let shard_started = Instant::now();
        match write_shard(to, shard, write, fence).await {
            Err(e) if cluster::retry::is_lock_conflict(&e) && attempt < LOCK_RETRIES => {
                attempt += 1;
                tracing::debug!(shard, attempt, error = %e, "target transaction rolled back by a lock conflict, retrying");
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
            result => {
                crate::metrics::target_write(shard_started.elapsed());
                return result;
            }
        }
    }
}

/// One shard's rows and fence, in one transaction. Returns the slowest
/// statement's latency (the commit included).
async fn write_shard(
    to: &ShardTxn<'_>,
    shard: usize,
    write: &Tuples,
    fence: &Fence,
) -> Result<Duration, mysql_async::Error> {
    let mut conn = to.target.pools.shard(shard).get_conn().await?;
    let mut opts = TxOpts::default();
    opts.with_isolation_level(IsolationLevel::ReadCommitted);
    let mut tx = conn.start_transaction(opts).await?;
    let mut slowest = Duration::ZERO;
    // Statements capped in rows and bytes (`cluster::sql::chunks`,
    // `values_chunks`): a batch of large text values must never exceed
    // max_allowed_packet.
    let table = &to.target.table;
    for chunk in cluster::sql::chunks(&write.deletes) {
        let started = Instant::now();
        tx.query_drop(table.delete_sql(chunk)).await?;
        slowest = slowest.max(started.elapsed());
    }
    for chunk in cluster::sql::values_chunks(&write.upserts) {
        let started = Instant::now();
        tx.query_drop(table.upsert_sql(chunk)).await?;
        slowest = slowest.max(started.elapsed());
    }
    write_fence(&mut tx, to.table, to.source_shard, fence, to.phase).await?;
    let started = Instant::now();
    tx.commit().await?;
    Ok(slowest.max(started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Cell;

    fn table() -> CopiedTable {
        crate::table::tests::insights()
    }

    fn key(id: u64) -> Key {
        Key(vec![Cell::UInt(id), Cell::Text("f".into())])
    }

    fn image(id: u64, last: i64) -> Image {
        table().image_of_cells(vec![
            Cell::UInt(id),
            Cell::Text("f".into()),
            Cell::Bytes(Vec::new()),
            Cell::Text("select 1".into()),
            Cell::Text("[]".into()),
            Cell::DateTime(0),
            Cell::DateTime(last),
        ])
    }

    fn at(op: RowOp, pos: u64) -> PositionedOp {
        PositionedOp { op, txn_end: Position { file: "binlog.000001".into(), pos } }
    }

    fn fence(last: u64, pos: u64) -> Fence {
        Fence {
            last_key: Some(key(last)),
            position: Some(Position { file: "binlog.000001".into(), pos }),
            ..Fence::default()
        }
    }

    #[test]
    fn folds_each_key_in_binlog_order() {
        let ops = [
            at(RowOp::Upsert(image(1, 5)), 100),
            at(RowOp::Upsert(image(1, 9)), 200),
            at(RowOp::Upsert(image(2, 1)), 200),
            at(RowOp::Delete(key(2)), 300),
            at(RowOp::Delete(key(3)), 300),
            at(RowOp::Upsert(image(3, 4)), 400),
            at(RowOp::Upsert(image(3, 2)), 400),
        ];
        let t = table();
        let writes = plan_with(&t, |_| 0, &[fence(10, 0)], &ops);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].deletes, vec![key(2), key(3)]);
        let mut three = image(3, 4);
        three.merge(&image(3, 2), &t.merge);
        assert_eq!(writes[0].upserts, vec![image(1, 9), three]);
        assert!(writes[0].upserts.iter().all(|i| i.keyspace_id == t.keyspace_id(&i.key)));
        assert_eq!(writes[0].applied, 7);
    }

    #[test]
    fn each_shard_applies_only_past_its_fence_and_within_its_keys() {
        // Shard 0 already applied through 200 and covers keys <= 5; shard 1
        // is behind (through 100) and covers keys <= 2. Odd ids go to shard 1.
        let fences = [fence(5, 200), fence(2, 100)];
        let odd: Vec<[u8; 8]> = [1_u64, 3, 5].iter().map(|&id| cluster::vindex::keyspace_id(id)).collect();
        let route = |k: &[u8; 8]| usize::from(odd.contains(k));
        let ops = [
            at(RowOp::Upsert(image(2, 1)), 150), // shard 0, already applied
            at(RowOp::Upsert(image(4, 1)), 250), // shard 0, new
            at(RowOp::Upsert(image(6, 1)), 250), // shard 0, not copied yet
            at(RowOp::Upsert(image(1, 1)), 150), // shard 1, new for it
            at(RowOp::Delete(key(3)), 250),      // shard 1, not copied yet: still deleted (group B's row)
            at(RowOp::Delete(key(5)), 150),      // shard 1, past its fence
        ];
        let writes = plan_with(&table(), route, &fences, &ops);
        assert_eq!(writes[0].upserts, vec![image(4, 1)]);
        assert!(writes[0].deletes.is_empty());
        assert_eq!(writes[1].upserts, vec![image(1, 1)]);
        assert_eq!(writes[1].deletes, vec![key(3), key(5)]);
    }

    #[test]
    fn routes_by_the_new_clusters_vindex() {
        let text = r#"
name = "new"
[auth]
user = "u"
[[shards]]
range = "-80"
dsn = "mysql://127.0.0.1:1/db"
[[shards]]
range = "80-"
dsn = "mysql://127.0.0.1:2/db"
"#;
        let config = ClusterConfig::from_toml_str(text, std::path::Path::new("."), &|_| None).expect("config");
        let target = Target { pools: ShardPools::new(&config), config, table: std::sync::Arc::new(table()) };
        for id in [1_u64, 2, 3, 1000, u64::MAX] {
            let expected = usize::from(cluster::vindex::keyspace_id(id)[0] >= 0x80);
            assert_eq!(target.route(&key(id)), expected, "database_id {id}");
        }
        let fences = vec![Fence::default(), Fence { copy_done: true, ..Fence::default() }];
        let rows: Vec<CopyRow> = (1..50)
            .map(|id| CopyRow { key: key(id), keyspace_id: cluster::vindex::keyspace_id(id), tuple: String::new() })
            .collect();
        let writes = plan_copy(&target, &fences, rows);
        assert!(writes[1].is_empty(), "a shard that finished its copy gets no snapshot rows");
        assert!(!writes[0].is_empty());
        assert!(writes[0].iter().all(|r| target.route(&r.key) == 0));
    }
}
