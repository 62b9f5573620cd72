//! Binlog positions and event decoding: from `mysql_async` events to row
//! operations on the copied table, grouped into source transactions.
//!
//! Positions are file/offset pairs at transaction boundaries; the stream's
//! state only ever holds such boundaries, so a resumed stream starts at the
//! first event of a whole transaction. The GTID of the last applied
//! transaction is kept next to it for operators (and for a MySQL 8 source,
//! where `@@global.gtid_executed` would be the snapshot's position; see
//! `snapshot.rs`).
//!
//! MariaDB specifics (FIELD-NOTES.md): GTID events (type 162) are unknown to
//! mysql_common and decoded here; the first, fake ROTATE carries 4 checksum
//! bytes after its file name; row events are V1 (types 23-25) on MariaDB and
//! V2 (30-32) on MySQL 8, both handled by mysql_common's `RowsEventData`.

use std::cmp::Ordering;
use std::fmt;

use mysql_async::binlog::events::{Event, EventData, RowsEventData};
use mysql_async::binlog::EventType;
use serde::{Deserialize, Serialize};

use crate::row::{Image, Key, Kind};
use crate::table::{CopiedTable, KeyspaceIds};

/// MariaDB's GTID event (begins a transaction or a standalone statement).
pub const MARIADB_GTID_EVENT: u8 = 162;
/// MariaDB's GTID list event (at the start of every binlog file).
pub const MARIADB_GTID_LIST_EVENT: u8 = 163;
/// A heartbeat: sent by the source when it has nothing to send.
pub const HEARTBEAT_EVENT: u8 = 27;
/// MariaDB's compressed query and row events (`log_bin_compress=ON`), which
/// mysql_common cannot read: skipping them would lose rows silently.
pub const MARIADB_COMPRESSED_EVENTS: std::ops::RangeInclusive<u8> = 165..=171;
/// `FL_STANDALONE` in a MariaDB GTID event: the group is one statement with no COMMIT/XID.
const MARIADB_FL_STANDALONE: u8 = 1;

/// A place in the source's binlog: the offset just after a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Binlog file name, e.g. `binlog.000012`.
    pub file: String,
    /// Byte offset in that file.
    pub pos: u64,
}

impl Position {
    /// Parses `file:pos`, the form `Display` writes (and `status` shows).
    pub fn parse(s: &str) -> Option<Self> {
        let (file, pos) = s.rsplit_once(':')?;
        Some(Self { file: file.to_owned(), pos: pos.parse().ok()? })
    }

    /// The numeric suffix of the file name: files sort by it, not by name
    /// (`binlog.999999` is followed by `binlog.1000000`).
    fn file_seq(&self) -> u64 {
        self.file.rsplit('.').next().and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.file_seq(), &self.file, self.pos).cmp(&(other.file_seq(), &other.file, other.pos))
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// A MariaDB GTID `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariadbGtid {
    /// Replication domain.
    pub domain: u32,
    /// Originating server id (from the event header).
    pub server_id: u32,
    /// Sequence number within the domain.
    pub seq: u64,
    /// Whether the group is a single statement without COMMIT (DDL).
    pub standalone: bool,
}

impl fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

/// Decodes the body of a MariaDB GTID event: seq u64le, domain u32le, flags u8.
pub fn decode_mariadb_gtid(data: &[u8], server_id: u32) -> Option<MariadbGtid> {
    let seq = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    let flags = *data.get(12)?;
    Some(MariadbGtid { domain, server_id, seq, standalone: flags & MARIADB_FL_STANDALONE != 0 })
}

/// The file name a ROTATE event announces. The first (fake) ROTATE of a
/// stream arrives before the FORMAT_DESCRIPTION event that tells the reader
/// checksums are on, so its 4 checksum bytes are still on the name:
/// `before_format_description` strips them. (Guessing from the bytes does not
/// work: a checksum can be 4 printable characters.)
pub fn rotate_file_name(name: &[u8], before_format_description: bool) -> String {
    let name = if before_format_description && name.len() > 4 { &name[..name.len() - 4] } else { name };
    String::from_utf8_lossy(name).into_owned()
}

/// One row change on the copied table, in binlog order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOp {
    /// An insert, or the after image of an update (see `apply.rs` for why an
    /// update is an upsert of its after image).
    Upsert(Image),
    /// A delete, or the before key of an update that changed the key.
    Delete(Key),
}

impl RowOp {
    /// The key the operation is about.
    pub fn key(&self) -> &Key {
        match self {
            RowOp::Upsert(image) => &image.key,
            RowOp::Delete(key) => key,
        }
    }
}

/// What a statement in a QUERY event means to the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `BEGIN`: a transaction starts (non-GTID MariaDB, MySQL).
    Begin,
    /// `COMMIT`: a transaction ends (non-transactional engines).
    Commit,
    /// A statement that changes the copied table's definition or drops its rows wholesale.
    DdlOnCopiedTable,
    /// Anything else (DDL on other tables, other databases).
    Other,
}

/// Classifies a QUERY event's statement. `schema` is the event's default
/// database; a statement is about the copied table when it names
/// `database.table` or names `table` while `schema` is the copied database.
pub fn classify_statement(query: &str, schema: &str, database: &str, table: &str) -> Statement {
    let normalized: String = query.trim().to_ascii_lowercase().replace('`', "");
    if normalized == "begin" || normalized.starts_with("start transaction") {
        return Statement::Begin;
    }
    if normalized == "commit" {
        return Statement::Commit;
    }
    let first = normalized.split_whitespace().next().unwrap_or("");
    if !matches!(first, "alter" | "drop" | "truncate" | "rename" | "create") {
        return Statement::Other;
    }
    // The schema tool re-applies `CREATE TABLE IF NOT EXISTS` (logged even
    // when the table exists); the table being copied exists, so it is a no-op.
    if first == "create" && normalized.contains(" if not exists ") && !normalized.contains(" or replace ") {
        return Statement::Other;
    }
    let database = database.to_ascii_lowercase();
    let table = table.to_ascii_lowercase();
    let words: Vec<&str> = normalized
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$'))
        .filter(|w| !w.is_empty())
        .collect();
    let drops_database = first == "drop"
        && matches!(words.get(1), Some(&"database") | Some(&"schema"))
        && words.iter().skip(2).find(|w| !matches!(**w, "if" | "exists")) == Some(&database.as_str());
    let names_table = words.iter().any(|word| match word.split_once('.') {
        Some((db, t)) => db == database && t == table,
        None => *word == table && schema.eq_ignore_ascii_case(&database),
    });
    if drops_database || names_table {
        Statement::DdlOnCopiedTable
    } else {
        Statement::Other
    }
}

/// What one event means to the stream.
#[derive(Debug)]
pub enum Decoded {
    /// The stream moves to another binlog file.
    Rotate(String),
    /// A transaction starts; the GTID when the server sent one.
    Begin(Option<MariadbGtid>),
    /// Row changes on the copied table.
    Rows(Vec<RowOp>),
    /// A transaction ends at this event (XID, COMMIT).
    Commit,
    /// A standalone statement (DDL) that is not about the copied table.
    Standalone,
    /// A statement changing the copied table: the stream must stop.
    Ddl(String),
    /// The source is alive and has nothing to send.
    Heartbeat,
    /// Anything else (table maps, format descriptions, other tables' rows).
    Skip,
}

/// Decodes one event. `tme` looks up the table map of a rows event (the
/// stream's own map, `BinlogStream::get_tme`).
pub fn decode<'a>(
    event: &'a Event,
    before_format_description: bool,
    database: &str,
    copied: &CopiedTable,
    tme: impl Fn(u64) -> Option<&'a mysql_async::binlog::events::TableMapEvent<'static>>,
) -> Result<Decoded, String> {
    let table = copied.name.as_str();
    let header = event.header();
    let raw_type = header.event_type_raw();
    if raw_type == HEARTBEAT_EVENT {
        return Ok(Decoded::Heartbeat);
    }
    if MARIADB_COMPRESSED_EVENTS.contains(&raw_type) {
        return Err(format!(
            "compressed binlog event (type {raw_type}); remedy: SET GLOBAL log_bin_compress=OFF on the source \
             (and in its config), then start again"
        ));
    }
    if raw_type == MARIADB_GTID_EVENT {
        let gtid = decode_mariadb_gtid(event.data(), header.server_id())
            .ok_or_else(|| "short MariaDB GTID event".to_owned())?;
        return Ok(Decoded::Begin(Some(gtid)));
    }
    let data = match event.read_data() {
        Ok(Some(data)) => data,
        Ok(None) => return Ok(Decoded::Skip),
        Err(e) => return Err(format!("event type {raw_type}: {e}")),
    };
    match data {
        EventData::RotateEvent(rotate) => {
            Ok(Decoded::Rotate(rotate_file_name(rotate.name_raw(), before_format_description)))
        }
        EventData::XidEvent(_) => Ok(Decoded::Commit),
        EventData::GtidEvent(_) => Ok(Decoded::Begin(None)),
        EventData::QueryEvent(query) => match classify_statement(&query.query(), &query.schema(), database, table) {
            Statement::Begin => Ok(Decoded::Begin(None)),
            Statement::Commit => Ok(Decoded::Commit),
            Statement::DdlOnCopiedTable => Ok(Decoded::Ddl(query.query().into_owned())),
            Statement::Other => Ok(Decoded::Standalone),
        },
        EventData::RowsEvent(rows) => {
            let Some(map) = tme(rows.table_id()) else {
                return Err(format!("rows event for table id {} without a table map", rows.table_id()));
            };
            if map.database_name() != database || map.table_name() != table {
                return Ok(Decoded::Skip);
            }
            check_table_map(map, copied).map_err(|why| {
                format!(
                    "table map of {database}.{table}: {why} (a schema change the copier did not see); remedy: make \
                     the table on every old and new shard match the pipeline's description (`dualwrite-cluster \
                     schema --dry-run` prints it), then `dualwrite-copier reset` the stream and start again"
                )
            })?;
            decode_rows(&rows, map, copied).map(Decoded::Rows)
        }
        _ => Ok(Decoded::Skip),
    }
}

/// The binlog's column types against the description's: as many columns,
/// each of the binlog type its SQL type is written as (and a DATETIME's
/// fractional digits), since rows are decoded by position.
fn check_table_map(map: &mysql_async::binlog::events::TableMapEvent<'_>, copied: &CopiedTable) -> Result<(), String> {
    use mysql_async::consts::ColumnType as T;
    use pipeline::Base;
    if map.columns_count() != copied.columns.len() as u64 {
        return Err(format!("{} columns, expected {}", map.columns_count(), copied.columns.len()));
    }
    for (i, c) in copied.columns.iter().enumerate() {
        let found = map.get_column_type(i).ok().flatten();
        let expected: &[T] = match c.sql_type.base {
            Base::TinyInt => &[T::MYSQL_TYPE_TINY],
            Base::SmallInt => &[T::MYSQL_TYPE_SHORT],
            Base::Int => &[T::MYSQL_TYPE_LONG],
            Base::BigInt => &[T::MYSQL_TYPE_LONGLONG],
            Base::Varchar | Base::Varbinary => &[T::MYSQL_TYPE_VARCHAR, T::MYSQL_TYPE_VAR_STRING],
            Base::Binary => &[T::MYSQL_TYPE_STRING],
            Base::Text | Base::MediumText | Base::Blob | Base::MediumBlob => &[T::MYSQL_TYPE_BLOB],
            Base::DateTime => &[T::MYSQL_TYPE_DATETIME2],
            Base::Double | Base::Decimal => &[],
        };
        if !found.is_some_and(|f| expected.contains(&f)) {
            return Err(format!(
                "column {} ({}) is {found:?} in the binlog, expected {} ({expected:?})",
                i + 1,
                c.name,
                c.sql_type
            ));
        }
        if let Kind::DateTime { fsp } = c.kind {
            let digits = map.get_column_metadata(i).and_then(|m| m.first().copied());
            if digits != Some(fsp as u8) {
                return Err(format!("column {} ({}) has {digits:?} fractional digits, expected {fsp}", i + 1, c.name));
            }
        }
    }
    Ok(())
}

fn decode_rows(
    rows: &RowsEventData<'_>,
    map: &mysql_async::binlog::events::TableMapEvent<'_>,
    copied: &CopiedTable,
) -> Result<Vec<RowOp>, String> {
    let kind = match rows {
        RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => EventType::WRITE_ROWS_EVENT,
        RowsEventData::UpdateRowsEventV1(_) | RowsEventData::UpdateRowsEvent(_) => EventType::UPDATE_ROWS_EVENT,
        RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => EventType::DELETE_ROWS_EVENT,
        RowsEventData::PartialUpdateRowsEvent(_) => {
            return Err("partial JSON update rows event (binlog_row_value_options=PARTIAL_JSON) is not supported".into())
        }
    };
    let mut ops = Vec::new();
    let mut ids = KeyspaceIds::default();
    for row in rows.rows(map) {
        let (before, after) = row.map_err(|e| format!("row image: {e}"))?;
        let before = before.map(|r| image_of(r, copied, &mut ids)).transpose()?;
        let after = after.map(|r| image_of(r, copied, &mut ids)).transpose()?;
        match (kind, before, after) {
            (EventType::WRITE_ROWS_EVENT, _, Some(after)) => ops.push(RowOp::Upsert(after)),
            (EventType::DELETE_ROWS_EVENT, Some(before), _) => ops.push(RowOp::Delete(before.key)),
            (EventType::UPDATE_ROWS_EVENT, Some(before), Some(after)) => {
                if before.key != after.key {
                    ops.push(RowOp::Delete(before.key.clone()));
                }
                if before.key == after.key && !after.is_merge_successor_of(&before, &copied.merge) {
                    crate::metrics::non_merge_update();
                }
                ops.push(RowOp::Upsert(after));
            }
            _ => return Err("rows event without the image its type needs (binlog_row_image must be FULL)".into()),
        }
    }
    Ok(ops)
}

fn image_of(
    row: mysql_async::binlog::row::BinlogRow,
    copied: &CopiedTable,
    ids: &mut KeyspaceIds,
) -> Result<Image, String> {
    let values: Vec<mysql_async::Value> = row
        .unwrap()
        .into_iter()
        .map(|v| match v {
            mysql_async::binlog::value::BinlogValue::Value(v) => Ok(v),
            other => Err(format!("unexpected binlog value {other:?}")),
        })
        .collect::<Result<_, _>>()?;
    copied.image_with(values, ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(file: &str, pos: u64) -> Position {
        Position { file: file.into(), pos }
    }

    #[test]
    fn positions_order_by_file_number_then_offset() {
        assert!(pos("binlog.000002", 4) > pos("binlog.000001", 9_999));
        assert!(pos("binlog.999999", 9) < pos("binlog.1000000", 4));
        assert!(pos("binlog.000001", 5) > pos("binlog.000001", 4));
        assert_eq!(pos("binlog.000003", 77).to_string(), "binlog.000003:77");
    }

    #[test]
    fn decodes_mariadb_gtid_events() {
        let mut data = 1234_u64.to_le_bytes().to_vec();
        data.extend(0_u32.to_le_bytes());
        data.push(0x0d); // standalone + other flags
        let gtid = decode_mariadb_gtid(&data, 33301).expect("gtid");
        assert_eq!(gtid.to_string(), "0-33301-1234");
        assert!(gtid.standalone);
        data[12] = 0x0c;
        assert!(!decode_mariadb_gtid(&data, 1).expect("gtid").standalone);
        assert!(decode_mariadb_gtid(&data[..10], 1).is_none());
    }

    #[test]
    fn strips_checksum_bytes_from_the_fake_rotate() {
        let mut name = b"binlog.000007".to_vec();
        name.extend([0x9a, 0x01, 0xfe, 0x33]);
        assert_eq!(rotate_file_name(&name, true), "binlog.000007");
        // A checksum of printable bytes (the case that once stalled a stream).
        assert_eq!(rotate_file_name(b"binlog.000003Ab1)", true), "binlog.000003");
        assert_eq!(rotate_file_name(b"binlog.000008", false), "binlog.000008");
    }

    #[test]
    fn classifies_statements_on_the_copied_table() {
        let c = |q: &str, schema: &str| classify_statement(q, schema, "t_db", "routes");
        assert_eq!(c("BEGIN", ""), Statement::Begin);
        assert_eq!(c("COMMIT", "x"), Statement::Commit);
        assert_eq!(c("ALTER TABLE routes ADD COLUMN x INT", "t_db"), Statement::DdlOnCopiedTable);
        assert_eq!(c("ALTER TABLE `t_db`.`routes` DROP PRIMARY KEY", "other"), Statement::DdlOnCopiedTable);
        assert_eq!(c("TRUNCATE routes", "t_db"), Statement::DdlOnCopiedTable);
        assert_eq!(c("DROP TABLE IF EXISTS `routes` /* generated by server */", "t_db"), Statement::DdlOnCopiedTable);
        assert_eq!(c("RENAME TABLE routes TO routes_old", "t_db"), Statement::DdlOnCopiedTable);
        assert_eq!(c("DROP DATABASE t_db", ""), Statement::DdlOnCopiedTable);
        assert_eq!(c("drop database if exists `t_db`", ""), Statement::DdlOnCopiedTable);
        // Other databases, other tables, and longer names are not ours.
        assert_eq!(c("ALTER TABLE routes ADD COLUMN x INT", "t_other"), Statement::Other);
        assert_eq!(c("DROP TABLE routes_old", "t_db"), Statement::Other);
        assert_eq!(c("DROP DATABASE t_db2", ""), Statement::Other);
        assert_eq!(
            c("ALTER TABLE route_minute ADD PARTITION (PARTITION p1 VALUES LESS THAN (1))", "t_db"),
            Statement::Other
        );
        assert_eq!(c("INSERT INTO routes VALUES (1)", "t_db"), Statement::Other);
        // Re-applying the schema is harmless; replacing the table is not.
        assert_eq!(c("CREATE TABLE IF NOT EXISTS routes (a INT)", "t_db"), Statement::Other);
        assert_eq!(c("CREATE OR REPLACE TABLE routes (a INT)", "t_db"), Statement::DdlOnCopiedTable);
    }

    /// Hand-built binlog events for the Insights pipeline's latest table: a TABLE_MAP and rows
    /// events, fed through mysql_common's reader and [`decode`] the way the
    /// stream does it. MariaDB writes rows events V1 (23-25), MySQL 8 V2 (30-32).
    mod rows_events {
        use mysql_common::binlog::consts::BinlogVersion;
        use mysql_common::binlog::EventStreamReader;

        use super::super::*;
        use crate::row::Cell;

        fn event(kind: u8, body: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend(1_700_000_000_u32.to_le_bytes());
            out.push(kind);
            out.extend(33301_u32.to_le_bytes());
            out.extend((19 + body.len() as u32).to_le_bytes());
            out.extend(1000_u32.to_le_bytes());
            out.extend(0_u16.to_le_bytes());
            out.extend(body);
            out
        }

        fn copied() -> CopiedTable {
            crate::table::tests::insights()
        }

        fn table_map(table_id: u8, table: &str) -> Vec<u8> {
            table_map_with(table_id, table, 7)
        }

        /// A table map of the first `columns` columns of the table.
        fn table_map_with(table_id: u8, table: &str, columns: usize) -> Vec<u8> {
            table_map_typed(table_id, table, &[8, 15, 254, 252, 252, 18, 18][..columns])
        }

        /// A table map with these column types (their metadata as the table's).
        fn table_map_typed(table_id: u8, table: &str, types: &[u8]) -> Vec<u8> {
            let columns = types.len();
            let mut body = vec![table_id, 0, 0, 0, 0, 0, 1, 0];
            body.push(2);
            body.extend(b"db\0");
            body.push(table.len() as u8);
            body.extend(table.as_bytes());
            body.push(0);
            body.push(columns as u8);
            // LONGLONG, VARCHAR, STRING, BLOB, BLOB, DATETIME2, DATETIME2
            body.extend(types);
            let meta_len = [0, 2, 4, 5, 6, 7, 8][columns - 1];
            let meta = &[64, 0, 254, 8, 3, 2, 3, 3][..meta_len];
            body.push(meta.len() as u8);
            body.extend(meta);
            body.push(0); // null bitmap
            event(19, &body)
        }

        fn datetime2_ms(y: u64, mo: u64, d: u64, h: u64, mi: u64, s: u64, ms: u64) -> Vec<u8> {
            let packed = 0x80_0000_0000_u64 + (((y * 13 + mo) << 22) | (d << 17) | (h << 12) | (mi << 6) | s);
            let mut out = packed.to_be_bytes()[3..].to_vec();
            out.extend(((ms * 10) as u16).to_be_bytes());
            out
        }

        fn row(id: u64, fingerprint: &str, sql: &str, last_second: u64) -> Vec<u8> {
            let mut out = vec![0]; // null bitmap
            out.extend(id.to_le_bytes());
            out.push(fingerprint.len() as u8);
            out.extend(fingerprint.as_bytes());
            out.push(8);
            out.extend(cluster::vindex::keyspace_id(id));
            out.extend(&(sql.len() as u32).to_le_bytes()[..3]);
            out.extend(sql.as_bytes());
            out.extend((2_u16).to_le_bytes());
            out.extend(b"[]");
            out.extend(datetime2_ms(2026, 1, 2, 3, 4, 5, 123));
            out.extend(datetime2_ms(2026, 1, 2, 3, 4, last_second, 0));
            out
        }

        fn rows_event(kind: u8, v2: bool, table_id: u8, rows: &[Vec<u8>]) -> Vec<u8> {
            let mut body = vec![table_id, 0, 0, 0, 0, 0, 1, 0];
            if v2 {
                body.extend(2_u16.to_le_bytes());
            }
            body.push(7);
            body.push(0x7f);
            if matches!(kind, 24 | 31) {
                body.push(0x7f);
            }
            for r in rows {
                body.extend(r);
            }
            event(kind, &body)
        }

        fn decode_all(stream: Vec<Vec<u8>>) -> Vec<Decoded> {
            let mut reader = EventStreamReader::new(BinlogVersion::Version4);
            let bytes: Vec<u8> = stream.concat();
            let mut input = &bytes[..];
            let mut out = Vec::new();
            while let Some(ev) = reader.read(&mut input).expect("event") {
                out.push(decode(&ev, false, "db", &copied(), |id| reader.get_tme(id)).expect("decode"));
            }
            out
        }

        fn ops(decoded: &[Decoded]) -> Vec<RowOp> {
            decoded.iter().flat_map(|d| if let Decoded::Rows(ops) = d { ops.clone() } else { Vec::new() }).collect()
        }

        #[test]
        fn decodes_v1_and_v2_writes_updates_and_deletes() {
            for (write, update, delete, v2) in [(23, 24, 25, false), (30, 31, 32, true)] {
                let decoded = decode_all(vec![
                    table_map(9, &copied().name),
                    rows_event(write, v2, 9, &[row(7, "fa", "select 1", 6)]),
                    rows_event(update, v2, 9, &[row(7, "fa", "select 1", 6), row(7, "fa", "select 1", 9)]),
                    rows_event(update, v2, 9, &[row(7, "fa", "select 1", 9), row(7, "fb", "select 1", 9)]),
                    rows_event(delete, v2, 9, &[row(7, "fb", "select 1", 9)]),
                ]);
                let ops = ops(&decoded);
                let key = |fp: &str| Key(vec![Cell::UInt(7), Cell::Text(fp.into())]);
                let RowOp::Upsert(first) = &ops[0] else { panic!("insert: {ops:?}") };
                assert_eq!(first.key, key("fa"));
                assert_eq!(first.cells[3], Cell::Text("select 1".into()));
                assert_eq!(first.cells[4], Cell::Text("[]".into()));
                assert_eq!(first.keyspace_id, cluster::vindex::keyspace_id(7));
                let (Cell::DateTime(first_seen), Cell::DateTime(last_seen)) = (&first.cells[5], &first.cells[6]) else {
                    panic!("datetimes: {first:?}")
                };
                assert_eq!(first_seen % 1_000_000, 123_000);
                assert_eq!(last_seen - first_seen, 1_000_000 - 123_000);
                // An update is an upsert of its after image; a key change also deletes the old key.
                let later = Cell::DateTime(last_seen + 3_000_000);
                assert!(matches!(&ops[1], RowOp::Upsert(i) if i.cells[6] == later));
                assert_eq!(ops[2], RowOp::Delete(key("fa")));
                assert!(matches!(&ops[3], RowOp::Upsert(i) if i.key == key("fb")));
                assert_eq!(ops[4], RowOp::Delete(key("fb")));
                assert_eq!(ops.len(), 5, "v2={v2}");
            }
        }

        #[test]
        fn ignores_other_tables_and_refuses_a_changed_column_count() {
            let decoded = decode_all(vec![
                table_map(3, &format!("{}_old", copied().name)),
                rows_event(23, false, 3, &[row(1, "x", "select 2", 7)]),
            ]);
            assert!(ops(&decoded).is_empty());
            // 6 columns instead of 7: a schema change the copier did not see.
            let name = copied().name;
            let refused = |map: Vec<u8>| {
                let bytes = [map, rows_event(23, false, 4, &[])].concat();
                let mut reader = EventStreamReader::new(BinlogVersion::Version4);
                let mut input = &bytes[..];
                let map = reader.read(&mut input).expect("read").expect("table map");
                assert!(matches!(decode(&map, false, "db", &copied(), |id| reader.get_tme(id)), Ok(Decoded::Skip)));
                let rows = reader.read(&mut input).expect("read").expect("rows");
                decode(&rows, false, "db", &copied(), |id| reader.get_tme(id)).expect_err("refused")
            };
            let error = refused(table_map_with(4, &name, 6));
            assert!(error.contains(": 6 columns, expected 7") && error.contains("remedy"), "{error}");
            // A column of another type (INT where the description says BIGINT UNSIGNED).
            let error = refused(table_map_typed(4, &name, &[3, 15, 254, 252, 252, 18, 18]));
            assert!(error.contains("column 1 (database_id) is Some(MYSQL_TYPE_LONG) in the binlog"), "{error}");
        }
    }
}
