//! A stream's phase: a leaf type shared by the sidecar table, the operator
//! view and the metrics (none of which may import the others for it).

use std::fmt;

use serde::Serialize;

/// What a stream is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading a snapshot and writing its rows (interleaved with catch-up).
    #[default]
    Copying,
    /// Applying binlog events for the rows copied so far.
    CatchingUp,
    /// The copy is done; applying the binlog as it grows.
    Replicating,
    /// Stopped by the operator; `start` resumes it.
    Stopped,
    /// Stopped by an error; `error` says why and what to do.
    Failed,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 5] = [Phase::Copying, Phase::CatchingUp, Phase::Replicating, Phase::Stopped, Phase::Failed];

    /// The name stored in the sidecar table and shown by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Copying => "copying",
            Phase::CatchingUp => "catching_up",
            Phase::Replicating => "replicating",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
        }
    }

    /// The phase a stored name stands for.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_string(&p).expect("json"), format!("\"{p}\""));
        }
        assert_eq!(Phase::parse("running"), None);
    }
}
