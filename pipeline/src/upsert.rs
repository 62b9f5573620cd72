//! The blind write of a table whose every merge commutes in SQL: one
//! `INSERT ... ON DUPLICATE KEY UPDATE` whose assignments apply each
//! column's rule to the stored value and the new one.
//!
//! MySQL evaluates the assignments left to right, each seeing the columns
//! already assigned: the `min_by`/`max_by` columns go first (compared with
//! the stored `by` column before it moves), the longest tie-break tuple
//! first, then every other rule in column order. The consumer and the copier
//! both write through it, so their writes commute.

use crate::merge::Merge;
use crate::model::Table;

/// `INSERT INTO t (every column) VALUES ` (the tuples follow).
pub fn insert_head(table: &Table) -> String {
    let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    format!("INSERT INTO {} ({}) VALUES ", table.name, names.join(", "))
}

/// ` ON DUPLICATE KEY UPDATE ...` applying every merge rule; None for a
/// table written otherwise (append, or a fold).
pub fn on_duplicate(table: &Table) -> Option<String> {
    if table.write_path != crate::model::WritePath::Blind {
        return None;
    }
    let mut assignments = Vec::new();
    let name = |i: usize| table.columns[i].name.as_str();
    for g in table.by_groups() {
        let op = if g.min { "<" } else { ">" };
        for i in (0..g.members.len()).rev() {
            let tuple: Vec<&str> =
                std::iter::once(name(g.by)).chain(g.members[..=i].iter().map(|&m| name(m))).collect();
            let new: Vec<String> = tuple.iter().map(|c| format!("VALUES({c})")).collect();
            let c = name(g.members[i]);
            assignments.push(format!("{c} = IF(({}) {op} ({}), VALUES({c}), {c})", new.join(", "), tuple.join(", ")));
        }
    }
    for c in &table.columns {
        let n = &c.name;
        match &c.merge {
            Some(Merge::Sum) => assignments.push(format!("{n} = {n} + VALUES({n})")),
            Some(Merge::Min) => assignments.push(format!("{n} = LEAST({n}, VALUES({n}))")),
            Some(Merge::Max) => assignments.push(format!("{n} = GREATEST({n}, VALUES({n}))")),
            _ => {}
        }
    }
    Some(format!(" ON DUPLICATE KEY UPDATE {}", assignments.join(", ")))
}

/// The whole upsert of `values` (comma-separated tuples of every column, in order).
pub fn upsert(table: &Table, values: &str) -> Option<String> {
    on_duplicate(table).map(|tail| format!("{}{values}{tail}", insert_head(table)))
}
