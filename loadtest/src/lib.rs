//! Load for rehearsals and tests: a realistic, seeded Insights workload, the
//! ground truth it implies, and a checker that compares a cluster with it.

pub mod api;
pub mod bench;
pub mod check;
pub mod metrics;
pub mod ports;
pub mod produce;
pub mod truth;
pub mod workload;
