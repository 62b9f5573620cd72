//! Produces the api workload and records its truth as deliveries are acknowledged.

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use topics::message_key;

use super::truth::{ApiTruth, ApiTruthBuilder};
use super::workload::{generate, ApiEvent, ApiWorkloadConfig};
use crate::produce::{producer_config_for, ProduceError};

/// Encodes one event as the Confluent wire format under the topic's schema id.
pub fn encode(topic: &pipeline::Topic, value: &impl serde::Serialize) -> Result<Vec<u8>, ProduceError> {
    let err = |e: apache_avro::Error| ProduceError::Encode(e.to_string());
    let resolved = apache_avro::schema::ResolvedSchema::try_from(&topic.schema).map_err(err)?;
    let mut out = vec![0u8];
    out.extend_from_slice(&topic.schema_id.to_be_bytes());
    apache_avro::write_avro_datum_ref(&topic.schema, resolved.get_names(), value, &mut out).map_err(err)?;
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct ApiProduceConfig {
    pub topic_prefix: String,
    pub messages: u64,
    pub workload: ApiWorkloadConfig,
    /// The clusters' `[time]` windows the truth folds into.
    pub minute_secs: i64,
    pub hour_secs: i64,
}

/// Produces the workload to the api pipeline's topics (`pipeline` is the
/// `api` description); returns the truth once every message is acknowledged.
pub async fn produce(
    config: &ApiProduceConfig,
    kafka: &topics::kafka::KafkaConfig,
    pipeline: &pipeline::Pipeline,
) -> Result<ApiTruth, ProduceError> {
    let topic = |name: &str| {
        pipeline
            .topic(name)
            .ok_or_else(|| ProduceError::Encode(format!("pipeline {} has no topic {name}", pipeline.name)))
    };
    let (requests_topic, failures_topic) = (topic("api-requests")?, topic("api-failures")?);
    let requests_name = format!("{}{}", config.topic_prefix, requests_topic.name);
    let failures_name = format!("{}{}", config.topic_prefix, failures_topic.name);
    let producer: FutureProducer = producer_config_for(kafka).create()?;
    let mut truth = ApiTruthBuilder::new(config.minute_secs, config.hour_secs);
    let mut in_flight = FuturesUnordered::new();
    for event in generate(&config.workload, config.messages as usize) {
        let (name, key, payload, failure) = match &event {
            ApiEvent::Requests(r) => {
                truth.add_requests(r);
                (&requests_name, message_key(r.tenant_id, &r.route), encode(requests_topic, r)?, None)
            }
            ApiEvent::Failure(f) => {
                (&failures_name, message_key(f.tenant_id, &f.route), encode(failures_topic, f)?, Some(f.clone()))
            }
        };
        let record = FutureRecord::to(name).key(&key[..]).payload(&payload).timestamp(event.timestamp_ms());
        let delivery = producer.send_result(record).map_err(|(e, _)| ProduceError::Kafka(e))?;
        in_flight.push(async move { (delivery.await, failure) });
        // Bounded: at most this many unacknowledged messages.
        while in_flight.len() >= 5_000 {
            if let Some(done) = in_flight.next().await {
                settle(done, &mut truth)?;
            }
        }
    }
    while let Some(done) = in_flight.next().await {
        settle(done, &mut truth)?;
    }
    producer.flush(Timeout::After(Duration::from_secs(60)))?;
    Ok(truth.build())
}

type Delivered = (
    Result<rdkafka::producer::future_producer::OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
    Option<super::workload::ApiFailure>,
);

fn settle((result, failure): Delivered, truth: &mut ApiTruthBuilder) -> Result<(), ProduceError> {
    let delivery = result
        .map_err(|_| ProduceError::Kafka(rdkafka::error::KafkaError::Canceled))?
        .map_err(|(e, _)| ProduceError::Kafka(e))?;
    if let Some(f) = failure {
        truth.add_failure(&f, delivery.partition, delivery.offset);
    }
    Ok(())
}
