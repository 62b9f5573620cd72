//! Rows as SQL: the literal of every cell, and the statements a shard
//! transaction sends per table (each at most [`MAX_STATEMENT_BYTES`] and
//! [`CHUNK_ROWS`] rows), written straight into one buffer per statement.

use std::borrow::Borrow;

use cluster::sql::{
    lit, push_datetime, push_datetime_ms, push_datetime_us, push_hex, push_i64, push_str_lit, push_u64, CHUNK_ROWS,
    MAX_STATEMENT_BYTES,
};
use mysql_async::Row as SqlRow;
use topics::LatencySketch;

use crate::coalesce::{compare_keys, fold, Coalesced, TableWrites};
use crate::rows::{Cell, Row};
use crate::shape::{ColumnSource, Render, Shape, TableShape};

/// The stored rows of every folded table's keys, locked (`FOR UPDATE`),
/// per table index, sorted by key.
pub type Stored = Vec<Vec<Row>>;

/// Appends `cell`'s literal.
pub fn push_cell(sql: &mut String, cell: &Cell, render: Render) {
    match cell {
        Cell::Null => sql.push_str("NULL"),
        Cell::Int(v) => push_i64(sql, *v),
        Cell::UInt(v) => push_u64(sql, *v),
        Cell::Float(v) => sql.push_str(&lit(*v)),
        Cell::Text(s) => push_str_lit(sql, s),
        Cell::Bytes(b) => push_hex(sql, b),
        Cell::Ksid(b) => push_hex(sql, b),
        Cell::Time(us) => match render {
            Render::Time(0) => push_datetime(sql, us.div_euclid(1_000_000)),
            Render::Time(3) => push_datetime_ms(sql, us.div_euclid(1_000)),
            _ => push_datetime_us(sql, *us),
        },
        Cell::Sketch(s) => push_hex(sql, &s.encode()),
    }
}

fn push_tuple(sql: &mut String, table: &TableShape, row: &Row) {
    sql.push('(');
    for (i, (cell, col)) in row.cells.iter().zip(&table.columns).enumerate() {
        if i > 0 {
            sql.push(',');
        }
        push_cell(sql, cell, col.render);
    }
    sql.push(')');
}

/// `head` + tuples + `tail` statements over `rows` (`count` of them),
/// split at [`CHUNK_ROWS`] rows or [`MAX_STATEMENT_BYTES`] (a single larger
/// row gets a statement of its own). Each statement's buffer is sized from
/// its first tuple, so it seldom grows by copying.
fn insert_statements<R: Borrow<Row>>(
    out: &mut Vec<String>,
    table: &TableShape,
    count: usize,
    rows: impl Iterator<Item = R>,
) {
    let mut sql = String::new();
    let (mut in_statement, mut left) = (0, count);
    for row in rows {
        let row = row.borrow();
        if in_statement >= CHUNK_ROWS {
            sql.push_str(&table.insert_tail);
            out.push(std::mem::take(&mut sql));
            in_statement = 0;
        }
        left = left.saturating_sub(1);
        if in_statement == 0 {
            sql.push_str(&table.insert_head);
            push_tuple(&mut sql, table, row);
            in_statement = 1;
            // Room for the rest of this statement's rows if they are about this one's size.
            let tuple = sql.len() - table.insert_head.len() + 1;
            let wanted = tuple.saturating_mul(left.min(CHUNK_ROWS - 1)) + tuple / 4 + table.insert_tail.len();
            sql.reserve(wanted.min(MAX_STATEMENT_BYTES));
            continue;
        }
        let row_start = sql.len();
        sql.push(',');
        push_tuple(&mut sql, table, row);
        if sql.len() + table.insert_tail.len() > MAX_STATEMENT_BYTES {
            // Too large with this row: the statement ends before it, and it starts the next.
            let tuple = sql.split_off(row_start + 1);
            sql.truncate(row_start);
            sql.push_str(&table.insert_tail);
            out.push(std::mem::replace(&mut sql, table.insert_head.clone()));
            sql.push_str(&tuple);
            in_statement = 1;
            continue;
        }
        in_statement += 1;
    }
    if in_statement > 0 {
        sql.push_str(&table.insert_tail);
        out.push(sql);
    }
}

/// Every row write of a shard transaction, in table order: folded rows
/// (onto `stored`), blind merges, appended rows. Pure (the no-sink benchmark times it).
pub fn row_statements(shape: &Shape, coalesced: &Coalesced<'_>, mut stored: Stored) -> Vec<String> {
    let mut out = Vec::new();
    for (t, writes) in coalesced.tables.iter().enumerate() {
        let table = &shape.tables[t];
        match writes {
            TableWrites::Fold(keys) => {
                // Both in key order: a merge join hands each key its stored
                // row; each folded row is rendered as it is made.
                let mut existing = stored.get_mut(t).map(std::mem::take).unwrap_or_default().into_iter().peekable();
                let rows = keys.iter().filter_map(|(key, contributions)| {
                    while existing.next_if(|r| compare_keys(r, key.row, &table.key).is_lt()).is_some() {}
                    let found = existing.next_if(|r| compare_keys(r, key.row, &table.key).is_eq());
                    fold(shape, found, contributions)
                });
                insert_statements(&mut out, table, keys.len(), rows);
            }
            TableWrites::Blind(rows) => insert_statements(&mut out, table, rows.len(), rows.values().map(|r| &**r)),
            TableWrites::Insert(rows) => insert_statements(&mut out, table, rows.len(), rows.iter().copied()),
        }
    }
    out
}

/// The SELECTs reading the stored rows of every folded table's keys (one
/// per chunk of keys), for one round trip.
pub fn stored_selects(shape: &Shape, coalesced: &Coalesced<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for (t, writes) in coalesced.tables.iter().enumerate() {
        let TableWrites::Fold(keys) = writes else { continue };
        let table = &shape.tables[t];
        let keys: Vec<_> = keys.keys().collect();
        for chunk in keys.chunks(CHUNK_ROWS) {
            let mut sql = table.select_head.clone();
            for (i, key) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                for (j, &c) in table.key.iter().enumerate() {
                    if j > 0 {
                        sql.push(',');
                    }
                    push_cell(&mut sql, &key.row.cells[c], table.columns[c].render);
                }
                sql.push(')');
            }
            sql.push_str(") FOR UPDATE");
            out.push(sql);
        }
    }
    out
}

/// A stored row as [`stored_selects`] reads it: the table index, then every column.
pub fn parse_stored(shape: &Shape, mut row: SqlRow) -> Result<Row, mysql_async::Error> {
    let bad = |what: String| mysql_async::Error::Other(what.into());
    let t: u16 = row.take_opt(0).and_then(Result::ok).ok_or_else(|| bad("stored row: no table index".into()))?;
    let table = shape.tables.get(usize::from(t)).ok_or_else(|| bad(format!("stored row of table {t}")))?;
    let mut cells = Vec::with_capacity(table.columns.len());
    for (i, col) in table.columns.iter().enumerate() {
        let at = i + 1;
        let what = || bad(format!("stored {} row: column {} missing or mistyped", table.name, col.name));
        let value: mysql_async::Value = row.take(at).ok_or_else(what)?;
        if value == mysql_async::Value::NULL {
            cells.push(Cell::Null);
            continue;
        }
        let take = |v: mysql_async::Value| v;
        cells.push(match col.render {
            Render::Signed | Render::Time(_) => {
                let v: i64 = mysql_async::from_value_opt(take(value)).map_err(|_| what())?;
                if matches!(col.render, Render::Time(_)) {
                    Cell::Time(v)
                } else {
                    Cell::Int(v)
                }
            }
            Render::Unsigned => Cell::UInt(mysql_async::from_value_opt(value).map_err(|_| what())?),
            Render::Float => Cell::Float(mysql_async::from_value_opt(value).map_err(|_| what())?),
            Render::Text => {
                let s: String = mysql_async::from_value_opt(value).map_err(|_| what())?;
                Cell::Text(s.into())
            }
            Render::Bytes => {
                let b: Vec<u8> = mysql_async::from_value_opt(value).map_err(|_| what())?;
                match (&col.source, <[u8; 8]>::try_from(b.as_slice())) {
                    (ColumnSource::KeyspaceId, Ok(id)) => Cell::Ksid(id),
                    _ => Cell::Bytes(b.into()),
                }
            }
            Render::Sketch => {
                let b: Vec<u8> = mysql_async::from_value_opt(value).map_err(|_| what())?;
                let sketch = LatencySketch::decode(&b)
                    .map_err(|e| bad(format!("stored {} row: {}: {e}", table.name, col.name)))?;
                Cell::Sketch(std::sync::Arc::new(sketch))
            }
        });
    }
    Ok(Row { table: t, cells })
}
