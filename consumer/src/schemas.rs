//! Writer schemas from the registry, fetched the first time a batch carries
//! their id, before the batch is planned: decoding stays a map lookup, and
//! the registry is asked once per id per process.
//!
//! An id the registry does not know becomes a verdict on its messages (a
//! dead letter `unknown_schema_id` saying so, through the codec), once the
//! registry has said so three times over a few seconds: a registry replica
//! that has not yet read a schema just registered on the leader must not
//! make one group dead-letter what the other applies. An unavailable
//! registry is no verdict at all: the batch waits, backing off, and nothing
//! is acknowledged meanwhile.

use std::collections::BTreeSet;
use std::time::Duration;

use cluster::retry::Backoff;
use tokio_util::sync::CancellationToken;
use topics::registry::{add_to_codec, describe, fetch_writer, Registry, WriterSchema};
use topics::Codec;

use crate::error::ConsumerError;
use crate::message::Fetched;
use crate::metrics;

const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Waits before asking again about an id the registry said it does not
/// know; after the last, the answer stands for the life of the process.
const CONFIRM_UNKNOWN: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];

/// Why no codec came back.
pub(crate) enum ResolveError {
    /// Shutdown while the registry was unavailable: the batch is redelivered.
    Abandoned,
    /// The registry refused this consumer (credentials): stop.
    Fatal(ConsumerError),
}

/// `codec` extended with the writer schemas of the ids in `messages` it does
/// not know yet; `None` when it knows them all (the usual case: no lookup, no copy).
pub(crate) async fn resolve(
    registry: &Registry,
    codec: &Codec,
    messages: &[Fetched],
    shutdown: &CancellationToken,
) -> Result<Option<Codec>, ResolveError> {
    let missing: BTreeSet<u32> = messages
        .iter()
        .filter_map(|m| topics::codec::schema_id(m.payload.as_deref()))
        .filter(|id| !codec.knows(*id))
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let mut extended = codec.clone();
    for id in missing {
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
        let mut confirmations = CONFIRM_UNKNOWN.iter();
        let schema = loop {
            match fetch_writer(registry, id).await {
                Ok(WriterSchema::Unknown(why)) => match confirmations.next() {
                    Some(delay) => {
                        tracing::info!(
                            schema_id = id,
                            delay_ms = delay.as_millis() as u64,
                            "schema id unknown to the registry, asking again before dead-lettering"
                        );
                        tokio::select! {
                            _ = tokio::time::sleep(*delay) => {}
                            _ = shutdown.cancelled() => return Err(ResolveError::Abandoned),
                        }
                    }
                    None => break WriterSchema::Unknown(why),
                },
                Ok(schema) => break schema,
                Err(e) if e.is_retryable() => {
                    metrics::registry_lookup("unavailable");
                    let delay = backoff.next_delay();
                    if backoff.attempts() == 1 || backoff.attempts().is_multiple_of(10) {
                        tracing::warn!(schema_id = id, attempt = backoff.attempts(), error = %e, delay_ms = delay.as_millis() as u64, "schema registry unavailable, backing off");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return Err(ResolveError::Abandoned),
                    }
                }
                Err(e) => return Err(ResolveError::Fatal(e.into())),
            }
        };
        let found = matches!(schema, WriterSchema::Avro(_));
        metrics::registry_lookup(if found { "found" } else { "unknown" });
        tracing::info!(schema_id = id, found, schema = %describe(&schema), "schema id resolved through the registry");
        add_to_codec(&mut extended, id, schema);
    }
    Ok(Some(extended))
}
