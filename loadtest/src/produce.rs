//! Produces the workload to Kafka and records the ground truth as it goes.

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;
use topics::{message_key, Codec, TopicKind};

use crate::truth::{Truth, TruthBuilder};
use crate::workload::{Generated, Workload, WorkloadConfig, WorkloadError};

#[derive(Debug, Clone)]
pub struct ProduceConfig {
    pub brokers: String,
    pub topic_prefix: String,
    /// Messages to produce, both topics together.
    pub messages: u64,
    /// Target messages per second; `None` as fast as the broker takes them.
    pub rate: Option<u64>,
    pub workload: WorkloadConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("encoding: {0}")]
    Encode(String),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("stopped after {0} messages")]
    Interrupted(u64),
}

/// Bounds memory and keeps the broker's queue from growing without limit.
const MAX_IN_FLIGHT: usize = 20_000;
/// Sends of one message the broker refused before the run gives up: a
/// broker's transient storage error (Nisshi's sqlite "database is locked",
/// UNKNOWN_SERVER_ERROR) fails a message the idempotent producer may not retry.
const MAX_ATTEMPTS: u32 = 5;
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub fn producer_config(brokers: &str) -> ClientConfig {
    producer_config_for(&topics::kafka::KafkaConfig::plaintext(brokers))
}

/// [`producer_config`] for a full Kafka configuration (TLS, SASL).
pub fn producer_config_for(kafka: &topics::kafka::KafkaConfig) -> ClientConfig {
    let mut c = kafka.client();
    c
        // Idempotence keeps per-partition order through retries: the truth and
        // the consumer fold each pattern's events in the same order.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // The Java client's partitioner, so every client maps a key to the same partition.
        .set("partitioner", "murmur2_random")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "60000");
    c
}

/// Produces `config.messages` events; returns the truth once all are acknowledged.
pub async fn produce(config: &ProduceConfig, shutdown: &CancellationToken) -> Result<Truth, ProduceError> {
    produce_with(config, &topics::kafka::KafkaConfig::plaintext(config.brokers.clone()), shutdown).await
}

/// [`produce`] through `kafka` (its bootstrap replaces `config.brokers`).
pub async fn produce_with(
    config: &ProduceConfig,
    kafka: &topics::kafka::KafkaConfig,
    shutdown: &CancellationToken,
) -> Result<Truth, ProduceError> {
    let codec = Codec::embedded().map_err(|e| ProduceError::Encode(e.to_string()))?;
    produce_with_codec(config, kafka, &codec, shutdown).await
}

/// [`produce_with`], writing the schema ids of `codec` (a registry's:
/// `topics::registry::producer_codec`).
pub async fn produce_with_codec(
    config: &ProduceConfig,
    kafka: &topics::kafka::KafkaConfig,
    codec: &Codec,
    shutdown: &CancellationToken,
) -> Result<Truth, ProduceError> {
    let producer: FutureProducer = producer_config_for(kafka).create()?;
    let stats_topic = TopicKind::QueryStats.topic_name(&config.topic_prefix);
    let slow_topic = TopicKind::SlowQueries.topic_name(&config.topic_prefix);
    let mut truth = TruthBuilder::new(config.workload.minute_secs, config.workload.hour_secs);
    let mut in_flight: InFlight<'_> = FuturesUnordered::new();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut sent = 0u64;

    for event in Workload::new(config.workload.clone())?.take(config.messages as usize) {
        if shutdown.is_cancelled() {
            return Err(ProduceError::Interrupted(sent));
        }
        if config.workload.realtime {
            let wait = event.timestamp_ms() - chrono::Utc::now().timestamp_millis();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
        }
        if let Some(rate) = config.rate.filter(|r| *r > 0) {
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let (topic, key, payload, slow, kind) = match &event {
            Generated::Stats(q) => {
                truth.add_stats(q);
                let payload = codec.encode_query_stats(q).map_err(|e| ProduceError::Encode(e.to_string()))?;
                (&stats_topic, message_key(q.database_id, &q.fingerprint), payload, None, TopicKind::QueryStats)
            }
            Generated::Slow(s) => {
                let payload = codec.encode_slow_query(s).map_err(|e| ProduceError::Encode(e.to_string()))?;
                (
                    &slow_topic,
                    message_key(s.database_id, &s.fingerprint),
                    payload,
                    Some(s.clone()),
                    TopicKind::SlowQueries,
                )
            }
        };
        let pending = Pending { topic, key, payload, timestamp_ms: event.timestamp_ms(), slow, kind, attempt: 1 };
        let delivery = loop {
            match pending.send(&producer) {
                Ok(delivery) => break delivery,
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    // librdkafka's queue is full: wait for some deliveries, then retry.
                    crate::metrics::error(kind, "queue_full");
                    match in_flight.next().await {
                        Some(done) => settle(done, &mut truth, &producer, &mut in_flight).await?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err(e) => {
                    crate::metrics::error(kind, "enqueue");
                    return Err(ProduceError::Kafka(e));
                }
            }
        };
        in_flight.push(awaited(delivery, pending));
        sent += 1;
        // Settle what is already acknowledged, so the truth and the delivery
        // metrics follow the broker rather than the in-flight bound.
        while let Some(Some(done)) = in_flight.next().now_or_never() {
            settle(done, &mut truth, &producer, &mut in_flight).await?;
        }
        while in_flight.len() >= MAX_IN_FLIGHT {
            if let Some(done) = in_flight.next().await {
                settle(done, &mut truth, &producer, &mut in_flight).await?;
            }
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            let rate = sent as f64 / started.elapsed().as_secs_f64();
            let eta = (config.messages - sent) as f64 / rate.max(1.0);
            tracing::info!(sent, total = config.messages, rate = rate as u64, eta_s = eta as u64, "producing");
        }
    }
    while let Some(done) = in_flight.next().await {
        settle(done, &mut truth, &producer, &mut in_flight).await?;
    }
    producer.flush(Timeout::After(Duration::from_secs(60)))?;
    let rate = sent as f64 / started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(sent, rate = rate as u64, "produced");
    Ok(truth.build())
}

/// The malformed values [`malformed`] sends in turn, with the dead-letter
/// reason each must get: not Confluent-framed, and too short for a header.
pub const MALFORMED: [(&[u8], &str); 2] = [(b"\x07not avro", "bad_magic"), (b"\x00\x00", "truncated_header")];

/// A broken proxy for rehearsals: `count` messages to `topic` whose values
/// are not messages of the topic (see [`MALFORMED`], in turn), so both
/// groups dead-letter them with known reasons and the console has letters
/// to show. No row comes from them: the ground truth is untouched.
pub async fn malformed(kafka: &topics::kafka::KafkaConfig, topic: &str, count: u64) -> Result<(), ProduceError> {
    let producer: FutureProducer = producer_config_for(kafka).create()?;
    for i in 0..count {
        let (value, reason) = MALFORMED[usize::from(i % 2 == 1)];
        let key = format!("malformed-{i}");
        let record =
            FutureRecord::to(topic).key(key.as_bytes()).payload(value).timestamp(chrono::Utc::now().timestamp_millis());
        let delivery = producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e)?;
        tracing::info!(
            topic,
            partition = delivery.partition,
            offset = delivery.offset,
            reason,
            "malformed message sent"
        );
    }
    Ok(())
}

/// One message until the broker acknowledges it: what a re-send needs.
struct Pending<'a> {
    topic: &'a str,
    key: [u8; 8],
    payload: Vec<u8>,
    timestamp_ms: i64,
    slow: Option<topics::SlowQuery>,
    kind: TopicKind,
    attempt: u32,
}

impl Pending<'_> {
    fn send(&self, producer: &FutureProducer) -> Result<DeliveryFuture, KafkaError> {
        let record =
            FutureRecord::to(self.topic).key(&self.key[..]).payload(&self.payload).timestamp(self.timestamp_ms);
        producer.send_result(record).map_err(|(e, _)| e)
    }
}

type Settled<'a> = (Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>, Pending<'a>);
type InFlight<'a> = FuturesUnordered<Awaited<'a>>;

/// A message's delivery with the message kept for a re-send: a named future,
/// so the in-flight set holds it without a box per message.
struct Awaited<'a> {
    delivery: DeliveryFuture,
    pending: Option<Pending<'a>>,
}

fn awaited(delivery: DeliveryFuture, pending: Pending<'_>) -> Awaited<'_> {
    Awaited { delivery, pending: Some(pending) }
}

impl<'a> std::future::Future for Awaited<'a> {
    type Output = Settled<'a>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Settled<'a>> {
        let result = std::task::ready!(std::pin::Pin::new(&mut self.delivery).poll(cx));
        let pending = self.pending.take().expect("an Awaited is not polled after it completed");
        std::task::Poll::Ready((result, pending))
    }
}

/// Records an acknowledged message in the truth; sends a refused one again
/// (after a backoff, longer each attempt) while it has attempts left. A
/// re-send is sound for the oracle: a refused message the broker stored after
/// all would sit at an offset the truth never saw, and the check reports it
/// extra; and it lands after later messages of its key, which only merges
/// that commute (every rollup and latest merge) leave unchanged: one that did
/// not would show as a difference, never hide one.
async fn settle<'a>(
    (result, pending): Settled<'a>,
    truth: &mut TruthBuilder,
    producer: &FutureProducer,
    in_flight: &mut InFlight<'a>,
) -> Result<(), ProduceError> {
    let delivery = match result {
        Ok(Ok(delivery)) => delivery,
        Ok(Err((e, _))) if pending.attempt < MAX_ATTEMPTS && resendable(&e) => {
            crate::metrics::error(pending.kind, "resent");
            tracing::warn!(error = %e, topic = pending.topic, attempt = pending.attempt, "the broker refused a message; sending it again");
            tokio::time::sleep(Duration::from_millis(100 << pending.attempt)).await;
            let again = Pending { attempt: pending.attempt + 1, ..pending };
            let delivery = loop {
                match again.send(producer) {
                    Ok(delivery) => break delivery,
                    // librdkafka delivers on its own threads: the queue drains
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                        tokio::time::sleep(Duration::from_millis(10)).await
                    }
                    Err(e) => return Err(ProduceError::Kafka(e)),
                }
            };
            in_flight.push(awaited(delivery, again));
            return Ok(());
        }
        Ok(Err((e, _))) => {
            crate::metrics::error(pending.kind, "delivery");
            return Err(ProduceError::Kafka(e));
        }
        Err(_) => {
            crate::metrics::error(pending.kind, "delivery");
            return Err(ProduceError::Kafka(KafkaError::Canceled));
        }
    };
    crate::metrics::delivered(pending.kind);
    if let Some(s) = &pending.slow {
        truth.add_slow(s, delivery.partition, delivery.offset);
    }
    Ok(())
}

/// Broker-side refusals a later send may get past; never a message the
/// broker can never take (too large, corrupt, not authorised).
fn resendable(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::Unknown
                | C::MessageTimedOut
                | C::RequestTimedOut
                | C::NotEnoughReplicas
                | C::NotEnoughReplicasAfterAppend
                | C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::NetworkException
                | C::KafkaStorageError
                | C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::OutOfOrderSequenceNumber
                | C::InvalidProducerEpoch
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_refusal_is_sent_again_a_message_it_can_never_take_is_not() {
        let refused = |code| KafkaError::MessageProduction(code);
        assert!(resendable(&refused(RDKafkaErrorCode::Unknown)), "Nisshi's UNKNOWN_SERVER_ERROR (database is locked)");
        assert!(resendable(&refused(RDKafkaErrorCode::MessageTimedOut)));
        assert!(!resendable(&refused(RDKafkaErrorCode::MessageSizeTooLarge)));
        assert!(!resendable(&refused(RDKafkaErrorCode::TopicAuthorizationFailed)));
        assert!(!resendable(&KafkaError::Canceled));
    }
}
