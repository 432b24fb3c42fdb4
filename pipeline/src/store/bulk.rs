//! Statements over many rows at once: multi-row INSERTs and `IN (…)` lists, so that a batch
//! costs a few round trips per table instead of one per package. Portable SQL, like the rest
//! of the store.
//!
//! Both engines cap the parameters of one statement: SQLite at `SQLITE_MAX_VARIABLE_NUMBER`
//! (32,766 since SQLite 3.32; rusqlite bundles 3.50), PostgreSQL at 65,535. Rows go in chunks
//! under the lower cap. Chunks come in powers of two only, so a statement has a handful of
//! texts whatever the batch, and both backends keep each text prepared.

use super::backend::{Backend, RowFn, Value};
use anyhow::Result;
use std::fmt::Write;
use std::sync::OnceLock;

/// The most parameters of one statement, on both engines.
pub(crate) const MAX_PARAMETERS: usize = 32_766;

/// The most keys of one `IN (…)` list.
const MAX_KEYS: usize = 1024;
/// Shorter lists are padded (their last key repeated) to a power of two from here.
const MIN_KEYS: usize = 8;

/// A multi-row INSERT into one table.
pub(crate) struct Insert {
    /// `table (column, …)`
    into: &'static str,
    columns: usize,
    /// What follows the rows: an `ON CONFLICT …` clause, or nothing.
    on_conflict: &'static str,
    /// The statement's text for 2^k rows, made once.
    texts: [OnceLock<String>; 16],
}

impl Insert {
    pub(crate) const fn new(into: &'static str, columns: usize, on_conflict: &'static str) -> Self {
        Insert {
            into,
            columns,
            on_conflict,
            texts: [const { OnceLock::new() }; 16],
        }
    }

    /// The most rows of one statement: the largest power of two under the parameter cap.
    fn max_rows(&self) -> usize {
        1 << (MAX_PARAMETERS / self.columns).ilog2()
    }

    /// `INSERT INTO table (…) VALUES ($1, …), (…) [ON CONFLICT …]` for `rows` rows, a power of
    /// two.
    fn sql(&self, rows: usize) -> &str {
        debug_assert!(rows.is_power_of_two());
        self.texts[rows.trailing_zeros() as usize].get_or_init(|| {
            let mut sql = format!("INSERT INTO {} VALUES ", self.into);
            placeholders(&mut sql, 0, rows, self.columns);
            if !self.on_conflict.is_empty() {
                sql.push(' ');
                sql.push_str(self.on_conflict);
            }
            sql
        })
    }
}

/// `($first+1, …), (…)`: `rows` groups of `columns` parameters, numbered on from `first`.
fn placeholders(sql: &mut String, first: usize, rows: usize, columns: usize) {
    let mut n = first;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            n += 1;
            let _ = write!(sql, "{}${n}", if c == 0 { "" } else { ", " });
        }
        sql.push(')');
    }
}

/// Rows waiting for their INSERT into one table, in order.
pub(crate) struct Pending<'a> {
    insert: &'static Insert,
    values: Vec<Value<'a>>,
}

impl<'a> Pending<'a> {
    pub(crate) fn new(insert: &'static Insert) -> Self {
        Pending {
            insert,
            values: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: &[Value<'a>]) {
        debug_assert_eq!(row.len(), self.insert.columns, "a row of {}", self.insert.into);
        self.values.extend_from_slice(row);
    }

    /// Inserts the rows waiting, a chunk per statement, and forgets them.
    pub(crate) fn flush(&mut self, conn: &mut (dyn Backend + '_)) -> Result<()> {
        let columns = self.insert.columns;
        let mut rest = &self.values[..];
        for rows in chunk_sizes(rest.len() / columns, self.insert.max_rows()) {
            let (chunk, after) = rest.split_at(rows * columns);
            conn.execute(self.insert.sql(rows), chunk)?;
            rest = after;
        }
        self.values.clear();
        Ok(())
    }
}

/// `n` rows as chunks of `max` rows (a power of two), then the rest in decreasing powers of
/// two: with `max` 2048, 4133 rows go as 2048 + 2048 + 32 + 4 + 1.
fn chunk_sizes(n: usize, max: usize) -> impl Iterator<Item = usize> {
    debug_assert!(max.is_power_of_two());
    let rest = n % max;
    std::iter::repeat_n(max, n / max).chain(
        (0..max.trailing_zeros())
            .rev()
            .map(|bit| 1 << bit)
            .filter(move |size| rest & size != 0),
    )
}

/// Runs a query whose text holds `IN ($keys)` once per chunk of `keys`, and hands every row to
/// `row`. `params` are the query's other parameters (`$1` …); the keys are numbered after them.
/// Given distinct keys, no row comes twice.
pub(crate) fn query_in(
    conn: &mut (dyn Backend + '_),
    sql: &str,
    params: &[Value<'_>],
    keys: &[&str],
    row: &mut RowFn<'_>,
) -> Result<()> {
    let (before, after) = sql.split_once("$keys").expect("an IN ($keys) list");
    for chunk in keys.chunks(MAX_KEYS) {
        let size = chunk.len().next_power_of_two().max(MIN_KEYS);
        let mut list = String::new();
        placeholders(&mut list, params.len(), 1, size);
        // The list's own parentheses are the query's.
        let sql = format!("{before}{}{after}", &list[1..list.len() - 1]);
        let padding = std::iter::repeat_n(chunk[chunk.len() - 1], size - chunk.len());
        let values: Vec<Value<'_>> = params
            .iter()
            .copied()
            .chain(chunk.iter().copied().chain(padding).map(Value::Text))
            .collect();
        conn.query(&sql, &values, row)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_full_then_powers_of_two() {
        let sizes = |n, max| chunk_sizes(n, max).collect::<Vec<usize>>();
        assert_eq!(sizes(0, 2048), Vec::<usize>::new());
        assert_eq!(sizes(1, 2048), [1]);
        assert_eq!(sizes(2048, 2048), [2048]);
        assert_eq!(sizes(2049, 2048), [2048, 1]);
        assert_eq!(sizes(4133, 2048), [2048, 2048, 32, 4, 1]);
        assert_eq!(sizes(4095, 2048), [2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1]);
        for n in 0..5000 {
            assert_eq!(sizes(n, 256).iter().sum::<usize>(), n);
        }
    }

    #[test]
    fn every_table_stays_under_the_parameter_cap() {
        for columns in 1..=20 {
            let insert = Insert::new("t", columns, "");
            let rows = insert.max_rows();
            assert!(rows.is_power_of_two() && rows * columns <= MAX_PARAMETERS);
            assert!(rows * 2 * columns > MAX_PARAMETERS, "{columns} columns: {rows} rows");
        }
        const { assert!(MAX_KEYS + 16 <= MAX_PARAMETERS) };
        assert!(
            Insert::new("t", 1, "").max_rows().trailing_zeros() < 16,
            "a text per size"
        );
    }

    #[test]
    fn rows_are_numbered_in_order() {
        let insert = Insert::new("t (a, b)", 2, "ON CONFLICT (a) DO NOTHING");
        assert_eq!(
            insert.sql(4),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6), ($7, $8) ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(
            insert.sql(1),
            "INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT (a) DO NOTHING"
        );
    }
}
