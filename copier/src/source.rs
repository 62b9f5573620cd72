//! The old shard side of a stream: settings checks, consistent snapshots,
//! the binlog's end, and binlog connections.
//!
//! ## Snapshot position
//!
//! MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` and then
//! `SHOW SESSION STATUS LIKE 'binlog_snapshot_%'` give the exact binlog
//! file/position the snapshot sees, without any lock; `BINLOG_GTID_POS`
//! turns it into a GTID for display.
//!
//! MySQL 8 (not installable here, so not implemented): those status variables
//! do not exist; the usual way is `FLUSH TABLES WITH READ LOCK` (or `LOCK
//! TABLES ... READ` from a second connection), `START TRANSACTION WITH
//! CONSISTENT SNAPSHOT`, read `@@global.gtid_executed`, unlock; the stream
//! then resumes with `COM_BINLOG_DUMP_GTID` (`BinlogStreamRequest::with_gtid`)
//! from that GTID set, and row events arrive as V2, which `binlog.rs` decodes.

use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts, Pool};

use crate::binlog::Position;
use crate::error::CopierError;

/// Refuses a source whose binlog cannot carry exact row images.
pub async fn check_settings(conn: &mut Conn) -> Result<(), CopierError> {
    let row: Option<(u8, String, String)> =
        conn.query_first("SELECT @@log_bin, @@binlog_format, @@binlog_row_image").await?;
    let Some((log_bin, format, image)) = row else {
        return Err(CopierError::SourceSetting { why: "cannot read binlog settings".into() });
    };
    if log_bin == 0 {
        return Err(CopierError::SourceSetting { why: "log_bin is off; remedy: enable the binary log".into() });
    }
    if !format.eq_ignore_ascii_case("ROW") || !image.eq_ignore_ascii_case("FULL") {
        return Err(CopierError::SourceSetting {
            why: format!(
                "binlog_format={format}, binlog_row_image={image}; remedy: SET GLOBAL binlog_format=ROW, \
                 binlog_row_image=FULL (and in the server config), then start again"
            ),
        });
    }
    Ok(())
}

/// The end of the source's binlog now.
pub async fn binlog_end(conn: &mut Conn) -> Result<Position, CopierError> {
    let row: Option<mysql_async::Row> = conn.query_first("SHOW MASTER STATUS").await?;
    let mut row = row.ok_or_else(|| CopierError::SourceSetting { why: "SHOW MASTER STATUS is empty".into() })?;
    let file: String = row.take(0).unwrap_or_default();
    let pos: u64 = row.take(1).unwrap_or_default();
    Ok(Position { file, pos })
}

/// Binlog events from `from` to the end (capped at `cap`): the lag in events.
pub async fn events_after(conn: &mut Conn, from: &Position, end: &Position, cap: u64) -> Result<u64, CopierError> {
    if from >= end {
        return Ok(0);
    }
    let files: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
    let mut count = 0;
    for mut row in files {
        let name: String = row.take(0).unwrap_or_default();
        let here = Position { file: name.clone(), pos: 0 };
        let first = Position { file: from.file.clone(), pos: 0 };
        let last = Position { file: end.file.clone(), pos: 0 };
        if here < first || here > last {
            continue;
        }
        let start = if name == from.file { from.pos } else { 4 };
        let limit = cap.saturating_sub(count);
        if limit == 0 {
            break;
        }
        let n: Vec<mysql_async::Row> = conn
            .query(format!("SHOW BINLOG EVENTS IN '{}' FROM {start} LIMIT {limit}", name.replace('\'', "")))
            .await?;
        count += n.len() as u64;
    }
    Ok(count)
}

/// An open consistent snapshot and the binlog position it sees.
pub struct Snapshot {
    /// The connection holding the snapshot transaction.
    pub conn: Conn,
    /// Binlog position of the snapshot: every transaction before it is visible, none after.
    pub position: Position,
    /// The same position as a MariaDB GTID (display only).
    pub gtid: String,
}

/// The GTID state at `position` (display only). `BINLOG_GTID_POS` reads the
/// binlog file from its start up to the position: ~0.3-0.6 s at the end of a
/// 1 GiB file here, before the stream copied a row. When the source has
/// written nothing since the snapshot, `@@gtid_binlog_pos` is the same state
/// and costs nothing: it is read between two `SHOW MASTER STATUS` that both
/// equal the snapshot's position (no commit in between).
async fn snapshot_gtid(conn: &mut Conn, position: &Position) -> String {
    let quiet = async {
        let before = binlog_end(conn).await.ok()?;
        let gtid: Option<String> = conn.query_first("SELECT @@gtid_binlog_pos").await.ok()?;
        let after = binlog_end(conn).await.ok()?;
        (&before == position && &after == position).then_some(gtid).flatten()
    };
    if let Some(gtid) = quiet.await {
        return gtid;
    }
    let gtid: Option<String> =
        conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (position.file.as_str(), position.pos)).await.unwrap_or(None);
    gtid.unwrap_or_default()
}

impl Snapshot {
    /// Opens a snapshot on a connection from `pool` (MariaDB path, see the module docs).
    pub async fn open(pool: &Pool) -> Result<Self, CopierError> {
        let mut conn = pool.get_conn().await?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await?;
        let status: Vec<(String, String)> = conn.query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'").await?;
        let value = |name: &str| status.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let (Some(file), Some(pos)) = (value("binlog_snapshot_file"), value("binlog_snapshot_position")) else {
            return Err(CopierError::SourceSetting {
                why: "binlog_snapshot_file/position missing (not MariaDB?); the MySQL 8 path is not implemented".into(),
            });
        };
        let pos: u64 = pos.parse().map_err(|_| CopierError::SourceSetting {
            why: format!("binlog_snapshot_position {pos:?} is not a number"),
        })?;
        let position = Position { file, pos };
        let gtid = snapshot_gtid(&mut conn, &position).await;
        Ok(Self { conn, position, gtid })
    }

    /// Ends the snapshot transaction.
    pub async fn close(mut self) -> Result<(), CopierError> {
        self.conn.query_drop("COMMIT").await?;
        Ok(())
    }
}

/// Opens a binlog stream at `from` on its own connection (a binlog
/// connection cannot go back to a pool). `server_id` must be unique among the
/// source's replicas: MariaDB drops an older dump connection with the same id.
pub async fn open_binlog(
    opts: Opts,
    from: &Position,
    server_id: u32,
    table: &str,
    source_shard: &str,
) -> Result<BinlogStream, CopierError> {
    let mut conn = Conn::new(opts).await?;
    // Without it MariaDB rewrites its GTID events into dummy queries.
    conn.query_drop("SET @mariadb_slave_capability=4").await?;
    // A heartbeat every second when the source is idle (nanoseconds): a
    // silent connection can then be told from an idle source.
    conn.query_drop("SET @master_heartbeat_period=1000000000").await?;
    let request = BinlogStreamRequest::new(server_id).with_filename(from.file.as_bytes()).with_pos(from.pos);
    conn.get_binlog_stream(request).await.map_err(|e| classify_binlog_error(e, from, table, source_shard))
}

/// Every binlog error arrives as 1236 (file gone, position bad, GTID not in
/// the binlog): name it as the purged-binlog case with the server's words.
pub fn classify_binlog_error(
    error: mysql_async::Error,
    from: &Position,
    table: &str,
    source_shard: &str,
) -> CopierError {
    match error {
        mysql_async::Error::Server(e) if e.code == 1236 => CopierError::BinlogPurged {
            table: table.to_owned(),
            source_shard: source_shard.to_owned(),
            position: from.to_string(),
            message: e.message,
        },
        other => CopierError::Mysql(other),
    }
}
