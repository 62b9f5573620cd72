//! A table's `CREATE TABLE`, for MariaDB 10.11 and MySQL 8 alike. The
//! partitioning clause of windowed tables is the cluster's (it depends on
//! `[time]` and the clock): `cluster::schema` appends it.

use crate::model::{Column, Table};

/// `CREATE TABLE IF NOT EXISTS` of `table`, without partitioning.
pub fn create_table(table: &Table) -> String {
    let mut lines: Vec<String> = Vec::new();
    for c in &table.columns {
        push_comment(&mut lines, c.comment.as_deref());
        lines.push(format!("  {},", column_definition(c)));
    }
    let pk = table.primary_key();
    if pk.len() > table.key.len() {
        if let Some(t) = &table.time_column {
            lines.push(format!(
                "  -- {t} is in the key only because MySQL requires the partitioning column in every unique key."
            ));
        }
    }
    let mut tail = vec![format!("  PRIMARY KEY ({})", pk.join(", "))];
    for i in &table.indexes {
        tail.push(format!("  KEY {} ({})", i.name, i.columns.join(", ")));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n{}\n{}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        table.name,
        lines.join("\n"),
        tail.join(",\n")
    )
}

/// `name TYPE [NOT] NULL`, as in `CREATE TABLE` and `ALTER TABLE ... ADD COLUMN`.
pub fn column_definition(c: &Column) -> String {
    format!("{} {} {}", c.name, c.sql_type, if c.nullable { "NULL" } else { "NOT NULL" })
}

fn push_comment(lines: &mut Vec<String>, comment: Option<&str>) {
    for line in comment.into_iter().flat_map(str::lines) {
        lines.push(format!("  -- {line}"));
    }
}
