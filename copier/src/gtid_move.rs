//! A stream that moves between servers of one old shard (its primary and a
//! replica, `--read-from`): fences hold binlog file/position pairs of the
//! server that wrote them, and the GTID of that point. File names and
//! offsets differ between a primary and its replica (each has its own
//! binlog; the replica's holds the primary's transactions with the
//! primary's GTIDs, `log_slave_updates`), so a fence read on another server
//! is translated through its GTID:
//!
//! 1. On the server read now, `BINLOG_GTID_POS(file, pos)` of the fence must
//!    give the fence's GTID. Then the position is this server's: kept.
//! 2. Otherwise (another server's file, or none such) the position where
//!    this server's binlog continues after that GTID is found by opening a
//!    binlog dump at the GTID (`@slave_connect_state`, MariaDB's GTID
//!    connect): the fake ROTATE names the file, and the first event of the
//!    next transaction starts at its header's `log_pos` minus its size (a
//!    heartbeat, when nothing follows yet, gives the end).
//!
//! A server that has not applied the GTID yet (a lagging replica) refuses
//! the dump (1236): the stream retries, so it waits for the replica. One
//! that refuses it although its binlog position is already past it (its
//! `@@gtid_binlog_pos` in the GTID's domain at or beyond the sequence
//! number) purged the binlog holding it: that stops the stream with the
//! purged-binlog remedy, as a purged file does. Only
//! single-domain GTIDs are translated (the fence keeps one GTID, the last
//! applied); a multi-domain state stops the stream with the remedy
//! (`dualwrite-copier reset`, or read the server the stream started on).
//!
//! MySQL 8 (not run here): `@@gtid_executed` sets and `COM_BINLOG_DUMP_GTID`
//! (`BinlogStreamRequest::with_gtid`) instead; see `source.rs`.

use std::time::Duration;

use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Opts};

use crate::binlog::{rotate_file_name, Position, HEARTBEAT_EVENT, MARIADB_GTID_EVENT};
use crate::error::CopierError;
use crate::sidecar::Fence;

/// How long the translating dump may take to show where the GTID leads.
const TRANSLATE_WAIT: Duration = Duration::from_secs(10);

/// Whether `gtid` is a single-domain MariaDB GTID (`domain-server-seq`).
fn single_domain(gtid: &str) -> bool {
    let parts: Vec<&str> = gtid.split('-').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Re-points every fence whose position is not the current server's (see
/// the module docs); returns how many moved. `conn` is a connection to the
/// server the stream reads now, `opts` its options for a binlog connection.
pub async fn translate(
    conn: &mut Conn,
    opts: &Opts,
    fences: &mut [Fence],
    table: &str,
    source_shard: &str,
) -> Result<usize, CopierError> {
    let mut moved = 0;
    let mut cache: Vec<(Position, Position)> = Vec::new();
    for fence in fences.iter_mut() {
        let Some(position) = fence.position.clone() else { continue };
        if fence.gtid.is_empty() {
            continue; // an old fence without a GTID: nothing to check against
        }
        // NULL when the file is not this server's.
        let here: Option<Option<String>> = conn
            .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (position.file.as_str(), position.pos))
            .await
            .unwrap_or(None);
        if here.flatten().as_deref() == Some(fence.gtid.as_str()) {
            continue;
        }
        if let Some((_, to)) = cache.iter().find(|(from, _)| from == &position) {
            fence.position = Some(to.clone());
            moved += 1;
            continue;
        }
        if !single_domain(&fence.gtid) {
            return Err(CopierError::SourceSetting {
                why: format!(
                    "stream {source_shard}: its position {position} (GTID {}) is not on this server and a \
                     multi-domain GTID cannot be translated; remedy: read the server the stream started on \
                     (--read-from), or dualwrite-copier reset",
                    fence.gtid
                ),
            });
        }
        let to = match position_after(opts, &fence.gtid, source_shard).await {
            Err(CopierError::GtidNotYet { why, .. }) if server_past(conn, &fence.gtid).await? => {
                return Err(CopierError::BinlogPurged {
                    table: table.to_owned(),
                    source_shard: source_shard.to_owned(),
                    position: format!("{position} (GTID {})", fence.gtid),
                    message: why,
                })
            }
            other => other?,
        };
        tracing::info!(
            source_shard,
            gtid = %fence.gtid,
            from = %position,
            to = %to,
            "stream moved to another server: position translated by GTID"
        );
        cache.push((position, to.clone()));
        fence.position = Some(to);
        moved += 1;
    }
    Ok(moved)
}

/// Whether the server's binlog has reached `gtid` (single-domain) already:
/// its `@@gtid_binlog_pos` holds the GTID's domain at or past its sequence number.
async fn server_past(conn: &mut Conn, gtid: &str) -> Result<bool, CopierError> {
    let pos: Option<String> = conn.query_first("SELECT @@gtid_binlog_pos").await?;
    Ok(past(pos.as_deref().unwrap_or(""), gtid))
}

/// [`server_past`] on the texts: `binlog_pos` a MariaDB GTID list.
fn past(binlog_pos: &str, gtid: &str) -> bool {
    let parse = |g: &str| -> Option<(u64, u64)> {
        let mut parts = g.trim().split('-');
        let (domain, _server, seq) = (parts.next()?, parts.next()?, parts.next()?);
        Some((domain.parse().ok()?, seq.parse().ok()?))
    };
    let Some((domain, seq)) = parse(gtid) else { return false };
    binlog_pos.split(',').filter_map(parse).any(|(d, s)| d == domain && s >= seq)
}

/// Where this server's binlog continues after GTID `gtid` (module docs, step 2).
async fn position_after(opts: &Opts, gtid: &str, source_shard: &str) -> Result<Position, CopierError> {
    let mut conn = Conn::new(opts.clone()).await?;
    conn.query_drop("SET @mariadb_slave_capability=4").await?;
    conn.query_drop("SET @master_heartbeat_period=200000000").await?;
    // single_domain() checked the text: digits and dashes only.
    conn.query_drop(format!("SET @slave_connect_state='{gtid}'")).await?;
    conn.query_drop("SET @slave_gtid_strict_mode=1").await?;
    let server_id = rand::random::<u32>() | 0x8000_0000;
    let request = BinlogStreamRequest::new(server_id).with_filename(b"").with_pos(4u64);
    let not_yet =
        |why: String| CopierError::GtidNotYet { source_shard: source_shard.to_owned(), gtid: gtid.to_owned(), why };
    let mut stream = conn.get_binlog_stream(request).await.map_err(|e| match e {
        mysql_async::Error::Server(e) if e.code == 1236 => not_yet(e.message),
        other => CopierError::Mysql(other),
    })?;
    let found = tokio::time::timeout(TRANSLATE_WAIT, async {
        let (mut file, mut before_format_description) = (String::new(), true);
        while let Some(event) = stream.next().await {
            let event = event?;
            let header = event.header();
            let (raw, log_pos) = (header.event_type_raw(), u64::from(header.log_pos()));
            if raw == mysql_async::binlog::EventType::FORMAT_DESCRIPTION_EVENT as u8 {
                before_format_description = false;
                continue;
            }
            if raw == mysql_async::binlog::EventType::ROTATE_EVENT as u8 {
                if let Ok(Some(mysql_async::binlog::events::EventData::RotateEvent(rotate))) = event.read_data() {
                    file = rotate_file_name(rotate.name_raw(), before_format_description);
                }
                continue;
            }
            if raw == HEARTBEAT_EVENT && !file.is_empty() {
                return Ok::<_, CopierError>(Some(Position { file, pos: log_pos }));
            }
            if raw == MARIADB_GTID_EVENT && log_pos != 0 && !file.is_empty() {
                let size = u64::from(header.event_size());
                return Ok(Some(Position { file, pos: log_pos.saturating_sub(size) }));
            }
        }
        Ok(None)
    })
    .await;
    drop(stream);
    match found {
        Ok(Ok(Some(position))) => Ok(position),
        Ok(Ok(None)) | Err(_) => Err(not_yet("its binlog showed no position after it".into())),
        Ok(Err(CopierError::Mysql(mysql_async::Error::Server(e)))) if e.code == 1236 => Err(not_yet(e.message)),
        Ok(Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::{past, single_domain};

    #[test]
    fn a_server_is_past_a_gtid_of_its_domain_at_or_beyond_its_sequence_number() {
        assert!(past("0-13301-11900", "0-13301-11812"), "purged: the server wrote past it");
        assert!(past("0-13301-11812", "0-13301-11812"));
        assert!(past("1-5-3,0-13301-12000", "0-13301-11812"));
        assert!(!past("0-13301-11000", "0-13301-11812"), "a replica behind: not yet");
        assert!(!past("1-5-99999", "0-13301-11812"), "another domain says nothing");
        assert!(!past("", "0-13301-11812"));
    }

    #[test]
    fn only_single_domain_gtids_translate() {
        assert!(single_domain("0-16451-45"));
        assert!(!single_domain("0-16451-45,1-7-3"));
        assert!(!single_domain("0-1"));
        assert!(!single_domain("0-1-x'"));
        assert!(!single_domain(""));
    }
}
