//! The SQLite backend: one file, the embedded default. One writer at a time: a write
//! transaction holds the database's write lock from its `BEGIN IMMEDIATE`.

use super::backend::{Backend, Row, RowFn, Value};
use anyhow::{bail, Context, Result};
use rusqlite::types::{Null, ToSqlOutput};
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

pub(crate) struct Sqlite {
    conn: Connection,
}

impl Sqlite {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).with_context(|| format!("cannot open the store {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
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

/// Names of the parameters `$1` … `$16`.
const PARAMETERS: [&str; 16] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16",
];

/// Binds `$1`, `$2`, … by name: SQLite reads `$N` as a named parameter and numbers named
/// parameters in the order they first appear, not by N.
fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[Value<'_>]) -> Result<()> {
    if stmt.parameter_count() != params.len() || params.len() > PARAMETERS.len() {
        bail!(
            "the statement takes {} parameters, not {}",
            stmt.parameter_count(),
            params.len()
        );
    }
    for (name, value) in PARAMETERS.iter().zip(params) {
        stmt.raw_bind_parameter(*name, value)?;
    }
    Ok(())
}

impl Backend for Sqlite {
    fn execute(&mut self, sql: &'static str, params: &[Value<'_>]) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        bind(&mut stmt, params)?;
        Ok(stmt.raw_execute()? as u64)
    }

    fn query(&mut self, sql: &'static str, params: &[Value<'_>], row: &mut RowFn<'_>) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        bind(&mut stmt, params)?;
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
