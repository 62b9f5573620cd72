//! Table groups (what is switched together) and the two clusters' roles.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Tables whose reads are switched together: every table of a group is read
/// from the same cluster, so a page never mixes clusters within one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableGroup {
    /// `query_stats_minute`, `query_stats_hour`, `slow_queries`: retention-bounded,
    /// they "age in" on the new cluster through dual writes.
    Timeseries,
    /// `query_patterns`: unbounded, filled on the new cluster by the copier.
    QueryPatterns,
}

impl TableGroup {
    pub const ALL: [TableGroup; 2] = [TableGroup::Timeseries, TableGroup::QueryPatterns];

    pub fn as_str(self) -> &'static str {
        match self {
            TableGroup::Timeseries => "timeseries",
            TableGroup::QueryPatterns => "query_patterns",
        }
    }

    /// The store tables of the group.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            TableGroup::Timeseries => &["query_stats_minute", "query_stats_hour", "slow_queries"],
            TableGroup::QueryPatterns => &["query_patterns"],
        }
    }

    /// Whether the group's tables are copied (unbounded) rather than aged in.
    pub fn is_copied(self) -> bool {
        matches!(self, TableGroup::QueryPatterns)
    }

    /// Index into per-group arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            TableGroup::Timeseries => 0,
            TableGroup::QueryPatterns => 1,
        }
    }
}

impl fmt::Display for TableGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown table group {0:?} (expected timeseries or query_patterns)")]
pub struct UnknownGroup(pub String);

impl FromStr for TableGroup {
    type Err = UnknownGroup;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "timeseries" => Ok(TableGroup::Timeseries),
            "query_patterns" => Ok(TableGroup::QueryPatterns),
            _ => Err(UnknownGroup(s.to_owned())),
        }
    }
}

/// Which side of the move a cluster is on. The routing state stores cluster
/// names; a router maps them to roles through its two cluster files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Old,
    New,
}

impl Role {
    pub fn other(self) -> Role {
        match self {
            Role::Old => Role::New,
            Role::New => Role::Old,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Old => "old",
            Role::New => "new",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Role::Old => 0,
            Role::New => 1,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "old" => Ok(Role::Old),
            "new" => Ok(Role::New),
            _ => Err(format!("expected old or new, got {s:?}")),
        }
    }
}

#[cfg(test)]
mod tests;
