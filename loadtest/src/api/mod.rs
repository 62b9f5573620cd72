//! The second pipeline's load (`pipelines/api.toml`, API request telemetry):
//! seeded gateway aggregates and failed requests, the ground truth they
//! imply, and a checker of a cluster against it.
//!
//! The truth is written for this pipeline by hand, sharing nothing with the
//! consumer's generic rows and merges: a generic merge checked by itself
//! would prove nothing.

pub mod check;
pub mod produce;
pub mod truth;
pub mod workload;
