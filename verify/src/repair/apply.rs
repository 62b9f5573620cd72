//! One key's repair: the fences of the key's source and target shards held
//! `FOR UPDATE` in one transaction on each side, the rule of its table kind
//! checked on them ([`Rule`]), the source's rows read and the target's
//! rewritten (deleted, then the source's inserted) before the target commits;
//! copies on target shards that do not own the key deleted after.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{IsolationLevel, Row, TxOpts, Value};

use super::audit::{self, KeyState, KeyUpdate};
use super::fences::{audit_json, relevant, Fences, Rule};
use super::key::RepairKey;
use crate::digest::Side;
use crate::error::VerifyError;
use crate::spec::{Col, TableSpec};

/// How long a repair transaction waits for a row or fence lock: short, so a
/// consumer's shard transaction is never stalled long behind a repair (and
/// a repair behind a consumer just tries again).
const LOCK_WAIT_SECS: u32 = 5;
/// Between two looks at the fences while they do not line up.
const POLL: Duration = Duration::from_millis(50);

/// What the repair of one key needs from its run.
pub(crate) struct KeyContext<'a> {
    pub(crate) source: &'a Side,
    pub(crate) target: &'a Side,
    pub(crate) table: &'a TableSpec,
    /// The fence topic feeding the table (with the consumers' prefix).
    pub(crate) topic: &'a str,
    pub(crate) control: &'a mysql_async::Pool,
    pub(crate) run_id: u64,
    /// `old` or `new`: the authoritative cluster's name in the audit.
    pub(crate) source_name: &'a str,
    pub(crate) dry_run: bool,
    /// How long to wait for the fences to line up.
    pub(crate) wait: Duration,
}

/// Where a key's rows are, found before any lock is taken.
#[derive(Debug, Clone, Default)]
pub(crate) struct Located {
    /// Target shards holding a row of the key.
    pub(crate) target_shards: Vec<usize>,
    /// The keyspace id the key belongs to.
    pub(crate) keyspace_id: [u8; 8],
}

/// How one key ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyResult {
    pub(crate) state: KeyState,
    /// replaced, inserted, deleted, moved (or none).
    pub(crate) action: &'static str,
    /// The statements (run, or printed by a dry run).
    pub(crate) statements: Vec<String>,
}

/// Repairs one key (see the module docs); waits up to `ctx.wait` for its
/// shards' fences to satisfy `rule`.
pub(crate) async fn repair_key(
    ctx: &KeyContext<'_>,
    key_text: &str,
    key: &RepairKey,
    located: &Located,
    rule: Rule,
) -> Result<KeyResult, VerifyError> {
    let source_shard = ctx.source.config.shard_index_for(&located.keyspace_id);
    let target_shard = ctx.target.config.shard_index_for(&located.keyspace_id);
    let deadline = Instant::now() + ctx.wait;
    loop {
        let (s, t) = futures::try_join!(
            read_fences(ctx.source, source_shard, ctx.topic, rule),
            read_fences(ctx.target, target_shard, ctx.topic, rule)
        )?;
        if rule.holds(&s, &t) {
            match attempt(ctx, key_text, key, located, rule, (source_shard, target_shard)).await {
                Ok(Some(result)) => return Ok(result),
                Ok(None) => {}
                Err(Failure::Retry(e)) => {
                    tracing::debug!(table = %ctx.table.name, key = key_text, error = %e, "repair retried")
                }
                Err(Failure::Stop(e)) => return Err(e),
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                table = %ctx.table.name,
                key = key_text,
                source_fences = ?s,
                target_fences = ?t,
                "fences did not line up: key left waiting"
            );
            return Ok(KeyResult { state: KeyState::Waiting, action: "none", statements: Vec::new() });
        }
        tokio::time::sleep(POLL).await;
    }
}

enum Failure {
    /// A lock wait or deadlock: look at the fences again.
    Retry(mysql_async::Error),
    Stop(VerifyError),
}

/// The fences `rule` looks at on one shard, not locked.
async fn read_fences(side: &Side, shard: usize, topic: &str, rule: Rule) -> Result<Fences, VerifyError> {
    let mut conn = side.pools.shard(shard).get_conn().await.map_err(|e| side.shard_error(shard, e))?;
    let fences = cluster::fence::topic_fences(&mut conn, topic, false).await.map_err(|e| side.shard_error(shard, e))?;
    Ok(relevant(rule, fences))
}

async fn connect(side: &Side, shard: usize) -> Result<mysql_async::Conn, Failure> {
    let stop = |e| Failure::Stop(side.shard_error(shard, e));
    let mut conn = side.pools.shard(shard).get_conn().await.map_err(stop)?;
    conn.query_drop(format!("SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECS}")).await.map_err(stop)?;
    Ok(conn)
}

/// REPEATABLE READ: the fence read locks the gaps of the topic's range too,
/// so no group starts a partition of it on the shard while it is held.
fn tx_opts() -> TxOpts {
    let mut opts = TxOpts::new();
    opts.with_isolation_level(IsolationLevel::RepeatableRead);
    opts
}

fn classify(side: &Side, shard: usize) -> impl Fn(mysql_async::Error) -> Failure + '_ {
    move |e| {
        if cluster::retry::is_retryable(&e) {
            Failure::Retry(e)
        } else {
            Failure::Stop(side.shard_error(shard, e))
        }
    }
}

/// One try under both locks; `None` when the fences moved before they were locked.
async fn attempt(
    ctx: &KeyContext<'_>,
    key_text: &str,
    key: &RepairKey,
    located: &Located,
    rule: Rule,
    (source_shard, target_shard): (usize, usize),
) -> Result<Option<KeyResult>, Failure> {
    let table = ctx.table;
    let on_source = classify(ctx.source, source_shard);
    let on_target = classify(ctx.target, target_shard);
    // Source first, then target, always: two repairs lock in one order, and
    // the groups (each on its own cluster) never wait on each other.
    let mut src_conn = connect(ctx.source, source_shard).await?;
    let mut tgt_conn = connect(ctx.target, target_shard).await?;
    let mut src = src_conn.start_transaction(tx_opts()).await.map_err(&on_source)?;
    let s = relevant(rule, cluster::fence::topic_fences(&mut src, ctx.topic, true).await.map_err(&on_source)?);
    let mut tgt = tgt_conn.start_transaction(tx_opts()).await.map_err(&on_target)?;
    let t = relevant(rule, cluster::fence::topic_fences(&mut tgt, ctx.topic, true).await.map_err(&on_target)?);
    if !rule.holds(&s, &t) {
        // Moved between the look and the lock.
        let _ = tgt.rollback().await;
        let _ = src.rollback().await;
        return Ok(None);
    }
    // While both are held no group writes this key on either shard: the
    // source's rows are the ones its fences describe, and so are the target's.
    let hash = table.row_hash_sql();
    let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    let source_rows: Vec<Row> = src
        .exec(format!("SELECT {hash}, {} FROM {} WHERE {} ORDER BY 1", names.join(", "), table.name, key.where_sql), ())
        .await
        .map_err(&on_source)?;
    let mut source_hashes = Vec::with_capacity(source_rows.len());
    let mut images: Vec<Vec<Value>> = Vec::with_capacity(source_rows.len());
    for row in source_rows {
        let mut values = row.unwrap();
        let h = values.remove(0);
        source_hashes.push(text(&h));
        images.push(values);
    }
    let target_hashes: Vec<String> = tgt
        .query(format!("SELECT {hash} FROM {} WHERE {} ORDER BY 1 FOR UPDATE", table.name, key.where_sql))
        .await
        .map_err(&on_target)?;
    let copies: Vec<usize> = located.target_shards.iter().copied().filter(|&s| s != target_shard).collect();
    let fences = audit_json(
        ctx.topic,
        (&ctx.source.config.shards[source_shard].range.to_string(), &s),
        (&ctx.target.config.shards[target_shard].range.to_string(), &t),
    );
    if source_hashes == target_hashes && copies.is_empty() {
        let _ = tgt.rollback().await;
        let _ = src.rollback().await;
        return Ok(Some(KeyResult { state: KeyState::Equal, action: "none", statements: Vec::new() }));
    }
    let action = match (images.is_empty(), target_hashes.is_empty(), copies.is_empty()) {
        (false, _, false) => "moved",
        (true, _, _) => "deleted",
        (false, true, true) => "inserted",
        (false, false, true) => "replaced",
    };
    let delete = format!("DELETE FROM {} WHERE {}", table.name, key.where_sql);
    let insert =
        format!("INSERT INTO {} ({}) VALUES ({})", table.name, names.join(", "), vec!["?"; names.len()].join(", "));
    let shard_name = |side: &Side, i: usize| format!("{}/{}", side.name(), side.config.shards[i].range);
    let mut statements = Vec::new();
    if !target_hashes.is_empty() {
        statements.push(format!("-- {}\n{delete};", shard_name(ctx.target, target_shard)));
    }
    for image in &images {
        statements.push(format!(
            "-- {}\nINSERT INTO {} ({}) VALUES ({});",
            shard_name(ctx.target, target_shard),
            table.name,
            names.join(", "),
            render(table, image)
        ));
    }
    for &c in &copies {
        statements.push(format!("-- {}\n{delete};", shard_name(ctx.target, c)));
    }
    if ctx.dry_run {
        let _ = tgt.rollback().await;
        let _ = src.rollback().await;
        return Ok(Some(KeyResult { state: KeyState::Pending, action, statements }));
    }
    let before = target_hashes.join(",");
    let applying = KeyUpdate {
        state: Some(KeyState::Applying),
        action: Some(action.to_string()),
        before_digest: Some(before),
        fences: Some(fences),
        ..KeyUpdate::default()
    };
    audit::update(ctx.control, ctx.run_id, ctx.source_name, &table.name, key_text, &applying)
        .await
        .map_err(Failure::Stop)?;
    if !target_hashes.is_empty() {
        tgt.query_drop(&delete).await.map_err(&on_target)?;
    }
    for image in images {
        tgt.exec_drop(&insert, image).await.map_err(&on_target)?;
    }
    let after: Vec<String> = tgt
        .query(format!("SELECT {hash} FROM {} WHERE {} ORDER BY 1", table.name, key.where_sql))
        .await
        .map_err(&on_target)?;
    if after != source_hashes {
        return Err(Failure::Stop(VerifyError::Unexpected(format!(
            "table {}, key {key_text}: the target's rows digest {after:?} after the rewrite, the source's {source_hashes:?}",
            table.name
        ))));
    }
    tgt.commit().await.map_err(&on_target)?;
    let _ = src.rollback().await;
    // Copies on shards that do not own the key: no group ever writes the key
    // there (every group routes it to its owner), so no fence is needed.
    for c in copies {
        let mut conn =
            ctx.target.pools.shard(c).get_conn().await.map_err(|e| Failure::Stop(ctx.target.shard_error(c, e)))?;
        conn.query_drop(&delete).await.map_err(|e| Failure::Stop(ctx.target.shard_error(c, e)))?;
    }
    let done =
        KeyUpdate { state: Some(KeyState::Repaired), after_digest: Some(after.join(",")), ..KeyUpdate::default() };
    audit::update(ctx.control, ctx.run_id, ctx.source_name, &table.name, key_text, &done)
        .await
        .map_err(Failure::Stop)?;
    Ok(Some(KeyResult { state: KeyState::Repaired, action, statements }))
}

/// A digest column (text) as a string.
fn text(value: &Value) -> String {
    match value {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::NULL => String::new(),
        other => other.as_sql(true),
    }
}

/// A row image as SQL literals, for printed statements.
fn render(table: &TableSpec, image: &[Value]) -> String {
    image
        .iter()
        .zip(&table.columns)
        .map(|(v, c)| match (v, c.col) {
            (Value::Bytes(b), Col::Bytes) => cluster::sql::hex(b),
            (v, _) => v.as_sql(false),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
