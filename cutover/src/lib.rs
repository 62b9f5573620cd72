//! Cutover: the read routing state, the read router applications read the
//! store through, shadow reads, the gates, and switch / rollback / complete.
//!
//! See [`router`] for the protocol that lets a switch finish in well under
//! a second without failing a read.

pub mod api;
pub mod collect;
pub mod console;
pub mod console_page;
pub mod gates;
pub mod group;
pub mod guard;
pub mod metrics;
pub mod ops;
pub mod query;
pub mod router;
pub mod serve;
pub mod shadow;
pub mod state;

pub use group::{Role, TableGroup};
pub use router::{Router, RouterConfig};
