//! The binlog transaction assembler: decoded events in, whole source
//! transactions out. Pure (no I/O, no clock), so every rule about where a
//! transaction ends and where a resume may start is tested on hand-built
//! event sequences.
//!
//! Rules:
//! - A transaction is `Begin .. Commit` (XID or `COMMIT`); a MariaDB GTID
//!   group flagged standalone, or a statement outside any transaction, is a
//!   transaction of its own that ends at that statement.
//! - The boundary (where a resumed stream may start) only ever sits between
//!   transactions: at a transaction's last event, after an event outside any
//!   transaction, or at the start of a file the stream rotated to between
//!   transactions. It never goes backwards.
//! - With a stop position (a snapshot's), the boundary must land on it
//!   exactly; passing it would fence rows copied as of the snapshot past
//!   changes they did not get.
//! - Artificial events (`log_pos` 0) move nothing but the file name; the
//!   first fake ROTATE must name the file that was asked for.

use crate::binlog::{Decoded, Position, RowOp};
use crate::error::CopierError;

/// What the assembler needs from an event's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventAt {
    /// End offset of the event in its file (0 for artificial events).
    pub log_pos: u64,
    /// The event's timestamp (seconds since the epoch, source clock).
    pub timestamp: u32,
    /// Whether it is the FORMAT_DESCRIPTION event (checksums are known after it).
    pub format_description: bool,
}

/// One source transaction on the copied table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Its row changes, in binlog order (possibly none: other tables only).
    pub ops: Vec<RowOp>,
    /// The position just after it: what a fence records once it is applied.
    pub end: Position,
    /// Its MariaDB GTID, when the source sent one.
    pub gtid: Option<String>,
    /// Its commit event's timestamp (for the lag in seconds).
    pub timestamp: u32,
}

/// What one event completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    /// Nothing to apply yet.
    Nothing,
    /// A whole transaction.
    Transaction(Transaction),
    /// A statement changed the copied table at `position`: the stream must
    /// apply what it holds and stop.
    Ddl {
        /// The statement as logged.
        statement: String,
        /// Where it is in the binlog.
        position: Position,
    },
}

/// Folds one binlog stream's events into transactions.
#[derive(Debug)]
pub struct Assembler {
    /// The file the stream was asked to start in.
    requested_file: String,
    /// The file the events come from now.
    file: String,
    /// The last transaction boundary seen.
    boundary: Position,
    /// Exactly where to stop (a snapshot's position), if anywhere.
    until: Option<Position>,
    /// Inside `Begin .. Commit`.
    in_txn: bool,
    /// The open group is a MariaDB standalone one (ends at its statement).
    standalone: bool,
    /// Row changes of the open transaction.
    ops: Vec<RowOp>,
    /// GTID of the open transaction.
    gtid: Option<String>,
    /// No FORMAT_DESCRIPTION seen yet (the fake ROTATE still carries checksum bytes).
    before_format_description: bool,
}

impl Assembler {
    /// An assembler for a stream opened at `from` (a transaction boundary).
    pub fn new(from: &Position, until: Option<Position>) -> Self {
        Self {
            requested_file: from.file.clone(),
            file: from.file.clone(),
            boundary: from.clone(),
            until,
            in_txn: false,
            standalone: false,
            ops: Vec::new(),
            gtid: None,
            before_format_description: true,
        }
    }

    /// What `binlog::decode` needs to read the next ROTATE right.
    pub fn before_format_description(&self) -> bool {
        self.before_format_description
    }

    /// The last transaction boundary: every transaction before it was handed out.
    pub fn boundary(&self) -> &Position {
        &self.boundary
    }

    /// Whether the stop position is reached.
    pub fn reached_until(&self) -> bool {
        self.until.as_ref().is_some_and(|u| &self.boundary >= u)
    }

    /// The file events come from now (for error positions).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Takes one decoded event.
    pub fn push(&mut self, decoded: Decoded, at: EventAt) -> Result<Assembled, CopierError> {
        if at.format_description {
            self.before_format_description = false;
        }
        if at.log_pos == 0 {
            return self.artificial(decoded).map(|()| Assembled::Nothing);
        }
        let here = Position { file: self.file.clone(), pos: at.log_pos };
        let assembled = match decoded {
            Decoded::Rotate(name) => {
                self.file = name;
                if !self.in_txn {
                    self.advance(Position { file: self.file.clone(), pos: 4 });
                }
                Assembled::Nothing
            }
            Decoded::Begin(gtid) => {
                self.in_txn = true;
                self.standalone = gtid.is_some_and(|g| g.standalone);
                self.gtid = gtid.map(|g| g.to_string());
                self.ops.clear();
                Assembled::Nothing
            }
            Decoded::Rows(ops) => {
                self.ops.extend(ops);
                Assembled::Nothing
            }
            Decoded::Commit => self.commit(here, at.timestamp),
            Decoded::Standalone if !self.in_txn || self.standalone => self.commit(here, at.timestamp),
            // A statement inside a transaction (a non-transactional table's, say) does not end it.
            Decoded::Standalone | Decoded::Heartbeat => Assembled::Nothing,
            Decoded::Ddl(statement) => return Ok(Assembled::Ddl { statement, position: here }),
            Decoded::Skip => {
                if !self.in_txn {
                    self.advance(here);
                }
                Assembled::Nothing
            }
        };
        self.check_until()?;
        Ok(assembled)
    }

    /// Artificial events at the start of a stream: the fake ROTATE names the file.
    fn artificial(&mut self, decoded: Decoded) -> Result<(), CopierError> {
        let Decoded::Rotate(name) = decoded else { return Ok(()) };
        if self.before_format_description && name != self.requested_file {
            return Err(CopierError::Decode {
                position: self.boundary.to_string(),
                why: format!("the source streams file {name:?}, not the requested {:?}", self.requested_file),
            });
        }
        self.file = name;
        Ok(())
    }

    fn commit(&mut self, here: Position, timestamp: u32) -> Assembled {
        self.in_txn = false;
        self.standalone = false;
        self.advance(here);
        Assembled::Transaction(Transaction {
            ops: std::mem::take(&mut self.ops),
            end: self.boundary.clone(),
            gtid: self.gtid.take(),
            timestamp,
        })
    }

    fn advance(&mut self, to: Position) {
        if to > self.boundary {
            self.boundary = to;
        }
    }

    fn check_until(&self) -> Result<(), CopierError> {
        match &self.until {
            Some(until) if &self.boundary > until => Err(CopierError::Decode {
                position: self.boundary.to_string(),
                why: format!("passed the snapshot position {until} without stopping on it"),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::MariadbGtid;
    use crate::row::{Cell, Image, Key};

    const FILE: &str = "binlog.000003";

    fn pos(file: &str, pos: u64) -> Position {
        Position { file: file.into(), pos }
    }

    fn at(log_pos: u64) -> EventAt {
        EventAt { log_pos, timestamp: 1_700_000_000 + log_pos as u32, format_description: false }
    }

    fn gtid(seq: u64, standalone: bool) -> Decoded {
        Decoded::Begin(Some(MariadbGtid { domain: 0, server_id: 7, seq, standalone }))
    }

    fn upsert(id: u64) -> RowOp {
        let key = Key(vec![Cell::UInt(id)]);
        RowOp::Upsert(Image { cells: key.0.clone(), key, keyspace_id: [0; 8] })
    }

    /// The start of every stream: fake ROTATE, FORMAT_DESCRIPTION, GTID list.
    fn opened(from: u64, until: Option<u64>) -> Assembler {
        let mut a = Assembler::new(&pos(FILE, from), until.map(|u| pos(FILE, u)));
        assert_eq!(a.push(Decoded::Rotate(FILE.into()), at(0)).expect("rotate"), Assembled::Nothing);
        let fd = EventAt { format_description: true, ..at(0) };
        assert_eq!(a.push(Decoded::Skip, fd).expect("format description"), Assembled::Nothing);
        assert!(!a.before_format_description());
        a
    }

    fn txn(assembled: Assembled) -> Transaction {
        match assembled {
            Assembled::Transaction(t) => t,
            other => panic!("expected a transaction, got {other:?}"),
        }
    }

    #[test]
    fn a_transaction_is_its_rows_between_gtid_and_xid() {
        let mut a = opened(100, None);
        assert_eq!(a.push(gtid(5, false), at(150)).expect("gtid"), Assembled::Nothing);
        assert_eq!(a.push(Decoded::Skip, at(200)).expect("table map"), Assembled::Nothing);
        assert_eq!(a.boundary(), &pos(FILE, 100), "inside a transaction the boundary stays");
        a.push(Decoded::Rows(vec![upsert(1), upsert(2)]), at(300)).expect("rows");
        a.push(Decoded::Rows(vec![upsert(3)]), at(400)).expect("rows");
        let t = txn(a.push(Decoded::Commit, at(450)).expect("xid"));
        assert_eq!(t.ops, vec![upsert(1), upsert(2), upsert(3)]);
        assert_eq!(t.end, pos(FILE, 450));
        assert_eq!(t.gtid.as_deref(), Some("0-7-5"));
        assert_eq!(t.timestamp, 1_700_000_450);
        assert_eq!(a.boundary(), &pos(FILE, 450));
        // The next transaction starts empty.
        a.push(gtid(6, false), at(500)).expect("gtid");
        let t = txn(a.push(Decoded::Commit, at(550)).expect("xid"));
        assert!(t.ops.is_empty());
    }

    #[test]
    fn standalone_groups_and_statements_outside_transactions_end_at_themselves() {
        let mut a = opened(4, None);
        a.push(gtid(9, true), at(50)).expect("gtid");
        let t = txn(a.push(Decoded::Standalone, at(90)).expect("ddl on another table"));
        assert_eq!((t.end, t.gtid.as_deref()), (pos(FILE, 90), Some("0-7-9")));
        // A statement inside a normal transaction does not end it.
        a.push(gtid(10, false), at(120)).expect("gtid");
        assert_eq!(a.push(Decoded::Standalone, at(130)).expect("statement"), Assembled::Nothing);
        a.push(Decoded::Rows(vec![upsert(4)]), at(140)).expect("rows");
        assert_eq!(txn(a.push(Decoded::Commit, at(160)).expect("commit")).ops, vec![upsert(4)]);
        // Outside any transaction (no GTID: MySQL or an old MariaDB) a statement is its own group.
        assert_eq!(txn(a.push(Decoded::Standalone, at(200)).expect("statement")).end, pos(FILE, 200));
    }

    #[test]
    fn the_boundary_moves_between_transactions_only_and_never_back() {
        let mut a = opened(1000, None);
        a.push(Decoded::Skip, at(1100)).expect("gtid list");
        assert_eq!(a.boundary(), &pos(FILE, 1100));
        a.push(Decoded::Heartbeat, at(900)).expect("heartbeat");
        a.push(Decoded::Skip, at(900)).expect("an older offset");
        assert_eq!(a.boundary(), &pos(FILE, 1100), "never backwards");
        // Rotating between transactions starts the next file at 4; inside one, the end does it.
        a.push(Decoded::Rotate("binlog.000004".into()), at(1200)).expect("rotate");
        assert_eq!(a.boundary(), &pos("binlog.000004", 4));
        a.push(gtid(1, false), at(300)).expect("gtid");
        a.push(Decoded::Rotate("binlog.000005".into()), at(350)).expect("rotate inside");
        assert_eq!(a.boundary(), &pos("binlog.000004", 4));
        assert_eq!(txn(a.push(Decoded::Commit, at(80)).expect("commit")).end, pos("binlog.000005", 80));
    }

    #[test]
    fn stops_exactly_on_the_snapshot_position_and_refuses_to_pass_it() {
        let mut a = opened(100, Some(300));
        a.push(gtid(1, false), at(200)).expect("gtid");
        a.push(Decoded::Commit, at(300)).expect("commit");
        assert!(a.reached_until());
        let mut b = opened(100, Some(250));
        b.push(gtid(1, false), at(200)).expect("gtid");
        let error = b.push(Decoded::Commit, at(300)).expect_err("passed the snapshot");
        assert!(error.to_string().contains("passed the snapshot position binlog.000003:250"), "{error}");
    }

    #[test]
    fn ddl_on_the_copied_table_is_handed_back_with_its_position() {
        let mut a = opened(100, None);
        let assembled = a.push(Decoded::Ddl("ALTER TABLE routes ADD x INT".into()), at(180)).expect("ddl");
        assert_eq!(
            assembled,
            Assembled::Ddl { statement: "ALTER TABLE routes ADD x INT".into(), position: pos(FILE, 180) }
        );
    }

    #[test]
    fn the_first_fake_rotate_must_name_the_requested_file() {
        let mut a = Assembler::new(&pos(FILE, 4), None);
        let error = a.push(Decoded::Rotate("binlog.000009".into()), at(0)).expect_err("other file");
        assert!(error.to_string().contains("not the requested \"binlog.000003\""), "{error}");
        // After the format description, artificial rotates just follow the file.
        let mut b = opened(4, None);
        b.push(Decoded::Rotate("binlog.000009".into()), at(0)).expect("rotate");
        assert_eq!(b.file(), "binlog.000009");
    }
}
