//! Table groups (what is switched together) and the two clusters' roles.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use cluster::config::ClusterConfig;
use pipeline::Pipeline;
use serde::{Deserialize, Serialize};

/// A read table group, named by the pipeline description: every table of
/// a group is read from the same cluster, so a page never mixes clusters
/// within one group.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableGroup(&'static str);

/// Group names seen in this process, each leaked once: groups are few and
/// named by validated descriptions, and a `Copy` handle keeps the routing
/// tables (per-group arrays, leases) as cheap as the old fixed groups.
static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

impl TableGroup {
    fn intern(name: &str) -> TableGroup {
        let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = names.get(name) {
            return TableGroup(known);
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        names.insert(leaked);
        TableGroup(leaked)
    }

    /// A group read back from the routing state (written by `ensure_initial`
    /// from a description; another pipeline's rows may share the table).
    pub(crate) fn named(name: &str) -> Result<TableGroup, String> {
        if pipeline::check_identifier(name).is_err() || name.len() > 32 {
            return Err(format!("table group {name:?} is not a plain identifier of at most 32 characters"));
        }
        Ok(TableGroup::intern(name))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for TableGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for TableGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl Serialize for TableGroup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// One group of the pipeline: its tables and how they reach the new cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupSpec {
    group: TableGroup,
    tables: Vec<String>,
    /// Its tables that never age out (`latest`): filled by the copier, so
    /// switching the group is gated on their streams and full diffs.
    copied: Vec<String>,
    /// Whether it holds windowed tables: they "age in" through dual writes,
    /// so switching the group is gated on retention readiness.
    aged: bool,
}

/// The read table groups of a pipeline, in the description's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups {
    specs: Vec<GroupSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown table group {name:?} (this pipeline's groups: {known})")]
pub struct UnknownGroup {
    pub name: String,
    pub known: String,
}

impl Groups {
    pub fn of(pipeline: &Pipeline) -> Groups {
        let specs = pipeline
            .groups()
            .into_iter()
            .map(|(name, tables)| GroupSpec {
                group: TableGroup::intern(name),
                tables: tables.iter().map(|t| t.name.clone()).collect(),
                copied: tables.iter().filter(|t| !t.is_windowed()).map(|t| t.name.clone()).collect(),
                aged: tables.iter().any(|t| t.is_windowed()),
            })
            .collect();
        Groups { specs }
    }

    /// The groups both clusters serve: their files must describe the same
    /// groups, or a switch could move a table one side does not have.
    pub fn of_clusters(old: &ClusterConfig, new: &ClusterConfig) -> Result<Groups, GroupsDiffer> {
        let (a, b) = (Groups::of(&old.pipeline), Groups::of(&new.pipeline));
        if a != b {
            return Err(GroupsDiffer { old: a.describe(), new: b.describe() });
        }
        Ok(b)
    }

    fn describe(&self) -> String {
        self.specs.iter().map(|s| format!("{} ({})", s.group, s.tables.join(", "))).collect::<Vec<_>>().join("; ")
    }

    pub fn all(&self) -> Vec<TableGroup> {
        self.specs.iter().map(|s| s.group).collect()
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// `name` as one of these groups.
    pub fn parse(&self, name: &str) -> Result<TableGroup, UnknownGroup> {
        self.specs.iter().map(|s| s.group).find(|g| g.as_str() == name).ok_or_else(|| UnknownGroup {
            name: name.to_owned(),
            known: self.specs.iter().map(|s| s.group.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Each of `names` parsed; none means every group.
    pub fn parse_or_all(&self, names: &[String]) -> Result<Vec<TableGroup>, UnknownGroup> {
        if names.is_empty() {
            return Ok(self.all());
        }
        names.iter().map(|n| self.parse(n)).collect()
    }

    /// The group holding `table`.
    pub fn holding(&self, table: &str) -> Option<TableGroup> {
        self.specs.iter().find(|s| s.tables.iter().any(|t| t == table)).map(|s| s.group)
    }

    /// Position of `group` (for per-group arrays); `None` for a group of another pipeline.
    pub(crate) fn index(&self, group: TableGroup) -> Option<usize> {
        self.specs.iter().position(|s| s.group == group)
    }

    fn selected<'a>(&'a self, groups: &'a [TableGroup]) -> impl Iterator<Item = &'a GroupSpec> + 'a {
        self.specs.iter().filter(move |s| groups.contains(&s.group))
    }

    /// Whether any of `groups` holds windowed tables.
    pub fn any_aged(&self, groups: &[TableGroup]) -> bool {
        self.selected(groups).any(|s| s.aged)
    }

    /// The copied tables of `groups`.
    pub fn copied_tables(&self, groups: &[TableGroup]) -> Vec<String> {
        self.selected(groups).flat_map(|s| s.copied.iter().cloned()).collect()
    }

    /// Every copied table of the pipeline.
    pub fn all_copied_tables(&self) -> Vec<String> {
        self.specs.iter().flat_map(|s| s.copied.iter().cloned()).collect()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("the two cluster files describe different table groups: old {old}; new {new}")]
pub struct GroupsDiffer {
    pub old: String,
    pub new: String,
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
