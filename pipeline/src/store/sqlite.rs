//! The SQLite backend: one file, the embedded default. One writer at a time: a write
//! transaction holds the database's write lock from its `BEGIN IMMEDIATE`.

use super::backend::{Backend, Row, RowFn, Value};
use anyhow::{bail, Context, Result};
use rusqlite::types::{Null, ToSqlOutput};
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

/// Prepared statements kept per connection: the store's constant statements and the bounded
/// set of bulk statement shapes (`bulk.rs`), with room to spare.
const STATEMENT_CACHE: usize = 128;

pub(crate) struct Sqlite {
    conn: Connection,
}

impl Sqlite {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).with_context(|| format!("cannot open the store {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // A multi-row INSERT keeps a statement journal (to undo only itself should it fail
        // half-way): in memory, not in a temporary file.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Sqlite { conn })
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Value::Null => Null.into(),
            Value::Int(v) => v.into(),
            Value::Text(s) => s.into(),
            Value::Bool(b) => b.into(),
        })
    }
}

impl Row for rusqlite::Row<'_> {
    fn int(&self, col: usize) -> Result<i64> {
        Ok(self.get(col)?)
    }

    fn text(&self, col: usize) -> Result<String> {
        Ok(self.get(col)?)
    }
}

/// SQLite reads `$N` as a *named* parameter, numbered in the order names first appear, but
/// `?N` as parameter number N, which is what `$N` means to PostgreSQL. The store's SQL holds
/// no `$` but in parameters.
fn numbered(sql: &str) -> String {
    let mut bytes = sql.as_bytes().to_vec();
    for i in 1..bytes.len() {
        if bytes[i - 1] == b'$' && bytes[i].is_ascii_digit() {
            bytes[i - 1] = b'?';
        }
    }
    String::from_utf8(bytes).expect("ASCII for ASCII keeps UTF-8")
}

/// Prepares (or finds prepared) `sql` with its parameters bound, by number.
fn bound<'c>(conn: &'c Connection, sql: &str, params: &[Value<'_>]) -> Result<rusqlite::CachedStatement<'c>> {
    let mut stmt = conn.prepare_cached(&numbered(sql))?;
    if stmt.parameter_count() != params.len() {
        bail!(
            "the statement takes {} parameters, not {}",
            stmt.parameter_count(),
            params.len()
        );
    }
    for (i, value) in params.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, value)?;
    }
    Ok(stmt)
}

impl Backend for Sqlite {
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64> {
        Ok(bound(&self.conn, sql, params)?.raw_execute()? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value<'_>], row: &mut RowFn<'_>) -> Result<()> {
        let mut stmt = bound(&self.conn, sql, params)?;
        let mut rows = stmt.raw_query();
        while let Some(r) = rows.next()? {
            row(r)?;
        }
        Ok(())
    }

    fn execute_script(&mut self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn begin(&mut self) -> Result<()> {
        self.execute_script("BEGIN IMMEDIATE")
    }

    fn commit(&mut self) -> Result<()> {
        self.execute_script("COMMIT")
    }

    fn rollback(&mut self) -> Result<()> {
        self.execute_script("ROLLBACK")
    }

    /// Nothing to do: the transaction already holds the only write lock there is.
    fn lock(&mut self, _keys: &[i64]) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::bulk::MAX_PARAMETERS;

    #[test]
    fn dollar_parameters_become_numbered_ones() {
        assert_eq!(
            numbered("SELECT $2, $1 WHERE a = $10 AND b = '$'"),
            "SELECT ?2, ?1 WHERE a = ?10 AND b = '$'"
        );
    }

    #[test]
    fn the_bundled_sqlite_takes_the_bulk_statements_parameters() {
        let conn = Connection::open_in_memory().unwrap();
        let sql = format!("SELECT ${MAX_PARAMETERS}, $2, $1");
        let params: Vec<Value<'_>> = (0..MAX_PARAMETERS as i64).map(Value::Int).collect();
        let mut stmt = bound(&conn, &sql, &params).unwrap();
        let mut rows = stmt.raw_query();
        let row = rows.next().unwrap().unwrap();
        let got: Vec<i64> = (0..3).map(|c| row.int(c).unwrap()).collect();
        assert_eq!(got, [MAX_PARAMETERS as i64 - 1, 1, 0]);
        assert!(conn.prepare(&format!("SELECT ?{}", MAX_PARAMETERS + 1)).is_err());
    }
}
