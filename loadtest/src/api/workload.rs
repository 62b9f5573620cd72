//! Seeded API gateway telemetry: per tenant and route, 10-second aggregates
//! from several gateways, and one event per failed request.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use topics::LatencySketch;

/// `dualwrite.api.ApiRequests`: one gateway's 10-second aggregate of one tenant's route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiRequests {
    pub tenant_id: i64,
    pub route: String,
    pub method: String,
    pub gateway_id: String,
    pub interval_start: i64,
    pub request_count: i64,
    pub error_count: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub max_latency_us: i64,
    #[serde(with = "apache_avro::serde::bytes")]
    pub latency_sketch: Vec<u8>,
}

/// `dualwrite.api.ApiFailure`: one failed request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiFailure {
    pub tenant_id: i64,
    pub route: String,
    pub request_id: String,
    pub status: i32,
    pub occurred_at: i64,
    pub latency_us: i64,
    pub error: Option<String>,
    pub client_ip: String,
}

#[derive(Debug, Clone)]
pub enum ApiEvent {
    Requests(ApiRequests),
    Failure(ApiFailure),
}

impl ApiEvent {
    /// The message timestamp: when the gateway sent it (the interval's end, or the failure).
    pub fn timestamp_ms(&self) -> i64 {
        match self {
            ApiEvent::Requests(r) => r.interval_start + INTERVAL_MS,
            ApiEvent::Failure(f) => f.occurred_at.div_euclid(1000) + 50,
        }
    }
}

const INTERVAL_MS: i64 = 10_000;
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const ROUTES: [&str; 12] = [
    "/v1/orders",
    "/v1/orders/{id}",
    "/v1/orders/{id}/items",
    "/v1/customers/{id}",
    "/v1/customers",
    "/v1/invoices/{id}/pdf",
    "/v1/search",
    "/v2/events",
    "/v2/events/{id}",
    "/healthz",
    "/v1/ünïcode/{id}",
    "/v1/exports/{id}/status",
];

#[derive(Debug, Clone)]
pub struct ApiWorkloadConfig {
    pub seed: u64,
    pub tenants: u64,
    pub gateways: u32,
    /// First interval's start (ms since the epoch).
    pub start_ms: i64,
}

/// `messages` events in time order (several gateways per interval).
pub fn generate(config: &ApiWorkloadConfig, messages: usize) -> Vec<ApiEvent> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut out = Vec::with_capacity(messages);
    let mut interval = config.start_ms.div_euclid(INTERVAL_MS) * INTERVAL_MS;
    let mut failures = 0u64;
    while out.len() < messages {
        // A handful of busy (tenant, route) pairs per interval per gateway.
        for gateway in 0..config.gateways {
            for _ in 0..rng.random_range(1..6) {
                if out.len() >= messages {
                    break;
                }
                // Skewed: low tenant ids are the busy ones.
                let tenant = (rng.random_range(0.0f64..1.0).powi(3) * config.tenants as f64) as i64 + 1;
                let route_index = rng.random_range(0..ROUTES.len());
                let method = METHODS[(tenant as usize + route_index) % METHODS.len()];
                let route = format!("{method} {}", ROUTES[route_index]);
                let requests = rng.random_range(1..400i64);
                let errors = if rng.random_range(0..5) == 0 { rng.random_range(0..requests.min(4) + 1) } else { 0 };
                let mut sketch = LatencySketch::new();
                let mut max_us = 0i64;
                for _ in 0..requests.min(50) {
                    let us = (rng.random_range(0.2f64..3.0).exp() * 1000.0) as i64;
                    max_us = max_us.max(us);
                    sketch.add_ms(us as f64 / 1000.0);
                }
                let event = ApiRequests {
                    tenant_id: tenant,
                    route: route.clone(),
                    method: method.to_string(),
                    gateway_id: format!("gw-{gateway}"),
                    interval_start: interval,
                    request_count: requests,
                    error_count: errors,
                    bytes_in: requests * rng.random_range(100..2_000i64),
                    bytes_out: requests * rng.random_range(200..40_000i64),
                    max_latency_us: max_us,
                    latency_sketch: sketch.encode(),
                };
                out.push(ApiEvent::Requests(event));
                for _ in 0..errors.min(2) {
                    if out.len() >= messages {
                        break;
                    }
                    failures += 1;
                    out.push(ApiEvent::Failure(ApiFailure {
                        tenant_id: tenant,
                        route: route.clone(),
                        request_id: format!("req-{:016x}-{failures}", rng.random::<u64>()),
                        status: rng.random_range(500..505),
                        occurred_at: (interval + rng.random_range(0..INTERVAL_MS)) * 1000 + rng.random_range(0..1000),
                        latency_us: rng.random_range(1_000..30_000_000),
                        error: (rng.random_range(0..3) > 0)
                            .then(|| format!("upstream error {}", rng.random_range(0..9))),
                        client_ip: format!(
                            "10.{}.{}.{}",
                            rng.random_range(0..255),
                            rng.random_range(0..255),
                            rng.random_range(1..255)
                        ),
                    }));
                }
            }
        }
        interval += INTERVAL_MS;
    }
    out
}
