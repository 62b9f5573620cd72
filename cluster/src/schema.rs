//! The store's DDL, applied identically to every shard of every cluster.
//!
//! Written for MariaDB 10.11 and MySQL 8 alike. Where they differ:
//! `INSERT ... ON DUPLICATE KEY UPDATE c = VALUES(c)` is deprecated (still
//! accepted) on MySQL 8.0.20+, which prefers a row alias that MariaDB lacks;
//! we use `VALUES()` everywhere.
//!
//! Time-partitioned tables are laid out by [`crate::partitions`]: partitions
//! of `[time] partition` width between two catch-alls, so no insert ever fails
//! for a missing partition; the retention job splits and drops them.

use pipeline::Pipeline;

use crate::time::TimeConfig;

/// Tables whose rows age out with their time partition: (table, time column).
pub fn partitioned_tables(pipeline: &Pipeline) -> Vec<(&str, &str)> {
    pipeline.windowed().filter_map(|t| Some((t.name.as_str(), t.time_column.as_deref()?))).collect()
}

/// One row per (topic, partition): the exactly-once fence and what coverage and
/// settlement are computed from.
const OFFSET_FENCE: &str = "CREATE TABLE IF NOT EXISTS dw_offset_fence (
  topic VARCHAR(249) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  kafka_partition INT NOT NULL,
  -- Every message below this offset has been applied to this shard (or was not for it).
  next_offset BIGINT NOT NULL,
  -- Where this cluster started on the partition, and that message's timestamp.
  first_offset BIGINT NOT NULL,
  first_message_ms BIGINT NOT NULL,
  -- Coverage: from this message time on, the cluster holds every message of the
  -- partition (0 when it started at offset 0; the lookup time for a time-based start).
  covered_from_ms BIGINT NOT NULL,
  -- Highest message timestamp applied, and whether the batch ended at the partition's end: settlement.
  max_message_ms BIGINT NOT NULL,
  reached_end TINYINT NOT NULL DEFAULT 0,
  high_watermark BIGINT NOT NULL DEFAULT -1,
  consumer_group VARCHAR(255) NOT NULL,
  messages_applied BIGINT UNSIGNED NOT NULL DEFAULT 0,
  -- Applied although later than the allowed lateness; and not written because older than retention.
  late_messages BIGINT UNSIGNED NOT NULL DEFAULT 0,
  expired_messages BIGINT UNSIGNED NOT NULL DEFAULT 0,
  -- Last batch, or last time the consumer confirmed an idle partition was fully applied.
  updated_at DATETIME(6) NOT NULL,
  PRIMARY KEY (topic, kafka_partition)
) ENGINE=InnoDB";

/// Control database: messages no group could apply, with the reason. Keyed by
/// the message's position so both a retry and the other group's copy of the
/// same decision are idempotent.
pub const DEAD_LETTERS: &str = "CREATE TABLE IF NOT EXISTS dw_dead_letters (
  cluster VARCHAR(64) NOT NULL,
  topic VARCHAR(249) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  kafka_partition INT NOT NULL,
  kafka_offset BIGINT NOT NULL,
  consumer_group VARCHAR(255) NOT NULL,
  reason VARCHAR(64) NOT NULL,
  detail TEXT NOT NULL,
  message_key BLOB NULL,
  payload MEDIUMBLOB NULL,
  message_ms BIGINT NULL,
  recorded_at DATETIME(6) NOT NULL,
  PRIMARY KEY (cluster, topic, kafka_partition, kafka_offset),
  KEY by_reason (cluster, reason)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// The statements that create every shard table, in order: the pipeline's
/// tables (windowed ones partitioned by their time column), the fences, the
/// jobs' shard tables.
pub fn shard_ddl(pipeline: &Pipeline, time: &TimeConfig, now_secs: i64) -> Vec<String> {
    let mut out = Vec::new();
    for table in &pipeline.tables {
        let create = pipeline::create_table(table);
        match &table.time_column {
            Some(column) if table.is_windowed() => {
                out.push(format!("{create}\n{}", crate::partitions::clause(column, time, now_secs)));
            }
            _ => out.push(create),
        }
    }
    out.push(OFFSET_FENCE.to_string());
    out.extend(crate::job_tables::SHARD_TABLES.iter().map(|(_, ddl)| ddl.to_string()));
    out
}

/// The fence table's name, beside the pipeline's tables on every shard.
pub const FENCE_TABLE: &str = "dw_offset_fence";

/// The store's tables on every shard (the consumer writes them, everyone else
/// reads them): the pipeline's tables and the fences.
pub fn store_tables(pipeline: &Pipeline) -> Vec<&str> {
    pipeline.tables.iter().map(|t| t.name.as_str()).chain([FENCE_TABLE]).collect()
}

/// Control database: dead letters re-produced to their topic after their
/// cause was fixed (`dualwrite-consumer dead-letters replay`). A row is
/// written before the message is produced, so a letter is replayed at most
/// once; a row left `pending` (crash mid-replay) needs an operator's look.
pub const DEAD_LETTER_REPLAYS: &str = "CREATE TABLE IF NOT EXISTS dw_dead_letter_replays (
  cluster VARCHAR(64) NOT NULL,
  topic VARCHAR(249) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  kafka_partition INT NOT NULL,
  kafka_offset BIGINT NOT NULL,
  state VARCHAR(16) NOT NULL,
  -- Where the replayed copy landed (set when state = 'done').
  new_partition INT NULL,
  new_offset BIGINT NULL,
  started_at DATETIME(6) NOT NULL,
  PRIMARY KEY (cluster, topic, kafka_partition, kafka_offset)
) ENGINE=InnoDB";

/// The dead letters and their replays.
pub const DEAD_LETTER_TABLES: [(&str, &str); 2] =
    [("dw_dead_letters", DEAD_LETTERS), ("dw_dead_letter_replays", DEAD_LETTER_REPLAYS)];

/// Control database: every consumer group member's last heartbeat and the
/// partitions it held then (`crate::members`): who owns a partition, and
/// whether a member sits idle while its group lags.
pub const CONSUMER_MEMBERS: &str = "CREATE TABLE IF NOT EXISTS dw_consumer_members (
  cluster VARCHAR(64) NOT NULL,
  consumer_group VARCHAR(255) NOT NULL,
  member VARCHAR(255) NOT NULL,
  -- 'topic/partition' separated by spaces
  partitions TEXT NOT NULL,
  assigned INT NOT NULL,
  started_at DATETIME(6) NOT NULL,
  heartbeat_at DATETIME(6) NOT NULL,
  PRIMARY KEY (cluster, consumer_group, member)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// The consumer's tables in the control database.
pub const CONSUMER_TABLES: [(&str, &str); 3] = [
    ("dw_dead_letters", DEAD_LETTERS),
    ("dw_dead_letter_replays", DEAD_LETTER_REPLAYS),
    ("dw_consumer_members", CONSUMER_MEMBERS),
];

/// The statements for the control database: every job's control tables.
pub fn control_ddl() -> Vec<String> {
    use crate::job_tables::{ROUTING_TABLES, VERIFY_TABLES};
    CONSUMER_TABLES.iter().chain(&ROUTING_TABLES).chain(&VERIFY_TABLES).map(|(_, ddl)| ddl.to_string()).collect()
}

/// Creates those of `tables` (name, DDL) missing from the connection's
/// database and adds the [`crate::job_tables::ADDED_COLUMNS`] they lack. No
/// DDL runs when everything is there, so a job's login needs no DDL
/// privilege once `dualwrite-cluster schema` has run (`crate::roles`).
pub async fn create_missing(conn: &mut mysql_async::Conn, tables: &[(&str, &str)]) -> Result<(), mysql_async::Error> {
    use mysql_async::prelude::Queryable;

    // information_schema lists only tables the login holds some privilege
    // on: a table it cannot see is one it could not use either.
    let present: Vec<String> =
        conn.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()").await?;
    for (name, ddl) in tables {
        if !present.iter().any(|p| p == name) {
            if let Err(error) = conn.query_drop(*ddl).await {
                // A job's login has no DDL privilege: a table a newer
                // version added needs the operator's schema and grant runs.
                tracing::error!(table = *name, %error, "a table is missing and this login may not create it: \
                     run `dualwrite-cluster schema` and `dualwrite-cluster grant` as the operator");
                return Err(error);
            }
        }
    }
    let names: Vec<&str> = tables.iter().map(|(name, _)| *name).collect();
    add_missing_columns(conn, &names).await
}

/// Runs the ALTER of every [`crate::job_tables::ADDED_COLUMNS`] entry of
/// `tables` whose table exists without the column.
async fn add_missing_columns(conn: &mut mysql_async::Conn, tables: &[&str]) -> Result<(), mysql_async::Error> {
    use mysql_async::prelude::Queryable;

    for (table, column, alter) in crate::job_tables::ADDED_COLUMNS {
        if !tables.contains(&table) {
            continue;
        }
        let columns: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                (table,),
            )
            .await?;
        if !columns.is_empty() && !columns.iter().any(|c| c == column) {
            conn.query_drop(alter).await?;
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{target}: {source}")]
    Sql { target: String, source: mysql_async::Error },
    #[error("{target}: database name: {source}")]
    Name { target: String, source: crate::config::IdentifierError },
}

/// Creates each endpoint's database if missing, then runs `statements` in it.
async fn apply_to(
    endpoint: &crate::config::Endpoint,
    auth: &crate::config::Auth,
    statements: &[String],
    target: String,
) -> Result<(), ApplyError> {
    use mysql_async::prelude::Queryable;

    crate::config::validate_identifier(&endpoint.database)
        .map_err(|source| ApplyError::Name { target: target.clone(), source })?;
    let sql_err = |source| ApplyError::Sql { target: target.clone(), source };
    let server_opts =
        mysql_async::OptsBuilder::from_opts(crate::pool::opts_for(endpoint, auth)).db_name(None::<String>);
    let mut conn = mysql_async::Conn::new(server_opts).await.map_err(sql_err)?;
    // Validated above, so the name can be quoted as an identifier.
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{}`", endpoint.database)).await.map_err(sql_err)?;
    conn.query_drop(format!("USE `{}`", endpoint.database)).await.map_err(sql_err)?;
    for stmt in statements {
        conn.query_drop(stmt).await.map_err(sql_err)?;
    }
    let tables: Vec<&str> = crate::job_tables::ADDED_COLUMNS.iter().map(|(table, _, _)| *table).collect();
    add_missing_columns(&mut conn, &tables).await.map_err(sql_err)?;
    conn.disconnect().await.map_err(sql_err)?;
    Ok(())
}

/// Drops the cluster's database on every shard, and its control database
/// with `control`. Each server is reached without a default database, so a
/// database already gone is no error (a pool would fail to connect to it).
pub async fn drop(config: &crate::config::ClusterConfig, control: bool) -> Result<(), ApplyError> {
    use mysql_async::prelude::Queryable;

    let mut endpoints: Vec<(&crate::config::Endpoint, String)> =
        config.shards.iter().map(|s| (&s.endpoint, format!("cluster {} shard {}", config.name, s.range))).collect();
    if control {
        endpoints.extend(config.control.iter().map(|c| (c, format!("cluster {} control", config.name))));
    }
    for (endpoint, target) in endpoints {
        crate::config::validate_identifier(&endpoint.database)
            .map_err(|source| ApplyError::Name { target: target.clone(), source })?;
        let sql_err = |source| ApplyError::Sql { target: target.clone(), source };
        let opts =
            mysql_async::OptsBuilder::from_opts(crate::pool::opts_for(endpoint, &config.auth)).db_name(None::<String>);
        let mut conn = mysql_async::Conn::new(opts).await.map_err(sql_err)?;
        // Validated above, so the name can be quoted as an identifier.
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", endpoint.database)).await.map_err(sql_err)?;
        conn.disconnect().await.map_err(sql_err)?;
    }
    Ok(())
}

/// Applies the store's schema to every shard and the control database, with
/// the partitions the cluster's `[time]` wants at `now_secs`.
/// Idempotent: existing tables are left as they are.
pub async fn apply(config: &crate::config::ClusterConfig, now_secs: i64) -> Result<(), ApplyError> {
    let shard_statements = shard_ddl(&config.pipeline, &config.time, now_secs);
    let shards = config.shards.iter().map(|s| {
        apply_to(&s.endpoint, &config.auth, &shard_statements, format!("cluster {} shard {}", config.name, s.range))
    });
    for result in futures::future::join_all(shards).await {
        result?;
    }
    if let Some(control) = &config.control {
        apply_to(control, &config.auth, &control_ddl(), format!("cluster {} control", config.name)).await?;
    }
    tracing::info!(cluster = %config.name, shards = config.shards.len(), "schema applied");
    Ok(())
}
