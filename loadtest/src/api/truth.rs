//! What a cluster fed the api workload must hold, computed from the events
//! with plain maps and integer arithmetic (the sketches with the sketch
//! library, in the order the events were produced, which is each key's
//! partition order).

use std::collections::BTreeMap;

use topics::LatencySketch;

use super::workload::{ApiFailure, ApiRequests};

/// `api_route_minute`: requests, errors, bytes in, bytes out, max latency.
pub type MinuteTruth = BTreeMap<(u64, String, i64), [u64; 5]>;

#[derive(Debug, Default)]
pub struct ApiTruth {
    pub minute: MinuteTruth,
    /// `api_route_latency_hour`: requests and the merged sketch's encoding.
    pub latency_hour: BTreeMap<(u64, String, i64), (u64, Vec<u8>)>,
    /// `api_failures` by (partition, offset).
    pub failures: BTreeMap<(i32, i64), ApiFailure>,
    /// `api_routes`: (method, gateway) of the last sighting, first and last seen (ms).
    pub routes: BTreeMap<(u64, String), RouteTruth>,
    /// Messages produced.
    pub messages: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteTruth {
    pub method: String,
    pub gateway_id: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

#[derive(Debug)]
pub struct ApiTruthBuilder {
    minute_secs: i64,
    hour_secs: i64,
    truth: ApiTruth,
    sketches: BTreeMap<(u64, String, i64), LatencySketch>,
}

impl ApiTruthBuilder {
    pub fn new(minute_secs: i64, hour_secs: i64) -> Self {
        Self { minute_secs, hour_secs, truth: ApiTruth::default(), sketches: BTreeMap::new() }
    }

    pub fn add_requests(&mut self, r: &ApiRequests) {
        self.truth.messages += 1;
        let tenant = r.tenant_id as u64;
        let secs = r.interval_start.div_euclid(1000);
        let minute = secs - secs.rem_euclid(self.minute_secs);
        let hour = secs - secs.rem_euclid(self.hour_secs);
        let m = self.truth.minute.entry((tenant, r.route.clone(), minute)).or_default();
        m[0] += r.request_count as u64;
        m[1] += r.error_count as u64;
        m[2] += r.bytes_in as u64;
        m[3] += r.bytes_out as u64;
        m[4] = m[4].max(r.max_latency_us as u64);
        let key = (tenant, r.route.clone(), hour);
        self.truth.latency_hour.entry(key.clone()).or_insert((0, Vec::new())).0 += r.request_count as u64;
        // Valid by construction (the generator encoded it).
        if let Ok(s) = LatencySketch::decode(&r.latency_sketch) {
            match self.sketches.get_mut(&key) {
                Some(merged) => {
                    let _ = merged.merge(&s);
                }
                None => {
                    self.sketches.insert(key, s);
                }
            }
        }
        let candidate = (r.interval_start, r.method.clone(), r.gateway_id.clone());
        let route = self.truth.routes.entry((tenant, r.route.clone())).or_insert(RouteTruth {
            method: r.method.clone(),
            gateway_id: r.gateway_id.clone(),
            first_seen_ms: r.interval_start,
            last_seen_ms: r.interval_start,
        });
        // The last sighting wins; at the same time, the larger (method, gateway).
        if candidate > (route.last_seen_ms, route.method.clone(), route.gateway_id.clone()) {
            route.method = candidate.1;
            route.gateway_id = candidate.2;
        }
        route.first_seen_ms = route.first_seen_ms.min(r.interval_start);
        route.last_seen_ms = route.last_seen_ms.max(r.interval_start);
    }

    pub fn add_failure(&mut self, f: &ApiFailure, partition: i32, offset: i64) {
        self.truth.messages += 1;
        self.truth.failures.insert((partition, offset), f.clone());
    }

    /// The truth, each hour's merged sketch encoded as stored.
    pub fn build(mut self) -> ApiTruth {
        for (key, sketch) in self.sketches {
            if let Some(entry) = self.truth.latency_hour.get_mut(&key) {
                entry.1 = sketch.encode();
            }
        }
        self.truth
    }
}
