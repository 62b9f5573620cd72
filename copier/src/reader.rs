//! The binlog reader: one task per binlog connection that receives, decodes
//! and assembles source transactions, so that reading the next ones overlaps
//! the target writes of the batch before (catch-up is then bounded by the
//! slower of the two, not their sum).
//!
//! Backpressure: the channel to the applier holds at most [`READ_AHEAD`]
//! items; when it is full the reader stops reading the socket and the source
//! holds the rest of the binlog. Heartbeats still arrive every second, so a
//! full channel never looks like a dead connection: silence is only counted
//! while the reader waits on the socket.

use std::time::{Duration, Instant};

use futures::StreamExt;
use mysql_async::binlog::events::Event;
use mysql_async::binlog::EventType;
use mysql_async::BinlogStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::assemble::{Assembled, Assembler, EventAt, Transaction};
use crate::binlog::{self, Position};
use crate::error::CopierError;
use crate::source;

/// Transactions (or boundary moves) read ahead of the applier at most. Each
/// holds at most one source transaction's rows.
pub const READ_AHEAD: usize = 256;

/// A binlog connection without any event (heartbeats included) for this long is dead.
const SILENT_LIMIT: Duration = Duration::from_secs(15);

/// How often a silent connection is checked.
const SILENCE_CHECK: Duration = Duration::from_secs(1);

/// What the reader hands the applier, in binlog order.
#[derive(Debug)]
pub enum Read {
    /// A whole transaction.
    Transaction(Transaction),
    /// The boundary moved without a transaction (other tables' events, a rotate).
    Boundary(Position),
    /// A statement changed the copied table: apply what came before and stop.
    Ddl {
        /// The statement as logged.
        statement: String,
        /// Where it is.
        position: Position,
    },
}

/// Which stream the reader serves (for decoding and error messages).
#[derive(Debug, Clone)]
pub struct Source {
    /// The old shard's database.
    pub database: String,
    /// The copied table.
    pub table: std::sync::Arc<crate::table::CopiedTable>,
    /// The stream's name.
    pub source_shard: String,
}

/// Reads until the assembler reaches its stop position, `stop` is
/// cancelled, the applier drops its receiver, or an error (sent last).
/// Closes the binlog connection before returning.
pub async fn read(
    source: Source,
    mut events: BinlogStream,
    mut assembler: Assembler,
    out: mpsc::Sender<Result<Read, CopierError>>,
    stop: CancellationToken,
) {
    let mut last_event = Instant::now();
    while !assembler.reached_until() {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            next = tokio::time::timeout(SILENCE_CHECK, events.next()) => next,
        };
        let read = match received(&source, next, &mut last_event, assembler.boundary()) {
            Ok(None) => continue,
            Ok(Some(event)) => {
                let before = assembler.boundary().clone();
                match assemble(&source, &events, &mut assembler, &event) {
                    Ok(Assembled::Nothing) if assembler.boundary() == &before => continue,
                    Ok(Assembled::Nothing) => Ok(Read::Boundary(assembler.boundary().clone())),
                    Ok(Assembled::Transaction(txn)) => Ok(Read::Transaction(txn)),
                    Ok(Assembled::Ddl { statement, position }) => Ok(Read::Ddl { statement, position }),
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error),
        };
        let last = !matches!(read, Ok(Read::Transaction(_) | Read::Boundary(_)));
        if out.send(read).await.is_err() || last {
            break;
        }
    }
    // The dump connection is not reusable; a failed close only leaks a socket the server times out.
    let _ = events.close().await;
}

/// One receive attempt: an event, nothing yet (idle), or why the stream is broken.
fn received(
    source: &Source,
    next: Result<Option<Result<Event, mysql_async::Error>>, tokio::time::error::Elapsed>,
    last_event: &mut Instant,
    boundary: &Position,
) -> Result<Option<Event>, CopierError> {
    match next {
        // Heartbeats come every second (see source::open_binlog); silence means a dead connection.
        Err(_idle) if last_event.elapsed() > SILENT_LIMIT => {
            Err(mysql_async::Error::Other(format!("no binlog event or heartbeat for {SILENT_LIMIT:?}").into()).into())
        }
        Err(_idle) => Ok(None),
        Ok(None) => Err(mysql_async::Error::Other("the source closed the binlog stream".into()).into()),
        Ok(Some(Err(e))) => Err(source::classify_binlog_error(e, boundary, &source.table.name, &source.source_shard)),
        Ok(Some(Ok(event))) => {
            *last_event = Instant::now();
            Ok(Some(event))
        }
    }
}

/// Decodes one event and hands it to the assembler.
fn assemble(
    source: &Source,
    events: &BinlogStream,
    assembler: &mut Assembler,
    event: &Event,
) -> Result<Assembled, CopierError> {
    let header = event.header();
    let log_pos = u64::from(header.log_pos());
    tracing::trace!(source_shard = %source.source_shard, event_type = header.event_type_raw(), log_pos, "binlog event");
    let decoded = binlog::decode(event, assembler.before_format_description(), &source.database, &source.table, |id| {
        events.get_tme(id)
    })
    .map_err(|why| CopierError::Decode { position: format!("{}:{log_pos}", assembler.file()), why })?;
    let at = EventAt {
        log_pos,
        timestamp: header.timestamp(),
        format_description: header.event_type_raw() == EventType::FORMAT_DESCRIPTION_EVENT as u8,
    };
    assembler.push(decoded, at)
}
