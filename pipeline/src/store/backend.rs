//! What the store needs from a database: run a statement on one connection, and the two things
//! SQL cannot say portably (how a write transaction starts, how it locks a named resource).
//!
//! Everything else (the schema, the queries, the exactly-once logic) is written once, in
//! portable SQL, against [`Backend`].

use anyhow::Result;
use std::ops::{Deref, DerefMut};

/// A statement parameter. Each backend converts it to the type the column has (PostgreSQL
/// checks `INTEGER` against `BIGINT`; SQLite does not care).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Bool(bool),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().into()
    }
}

impl<'a> From<&'a Option<smol_str::SmolStr>> for Value<'a> {
    fn from(v: &'a Option<smol_str::SmolStr>) -> Self {
        v.as_deref().into()
    }
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value<'_> {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}

impl From<u32> for Value<'_> {
    fn from(v: u32) -> Self {
        Value::Int(v.into())
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

/// The parameters of a statement: `args![a, b, …]` is `&[Value]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::store::backend::Value::from($v)),*] as &[$crate::store::backend::Value<'_>]
    };
}
pub(crate) use args;

/// One result row, read by column index. Integer columns of any width read as `i64`.
pub(crate) trait Row {
    fn int(&self, col: usize) -> Result<i64>;
    fn text(&self, col: usize) -> Result<String>;
}

/// What a query does with each row.
pub(crate) type RowFn<'f> = dyn FnMut(&dyn Row) -> Result<()> + 'f;

/// One connection to a store database.
///
/// Backends keep every statement prepared, by its text: a statement's text must come from a
/// bounded set (constants, or the few shapes `bulk.rs` generates). Parameters are numbered
/// (`$1`), which both SQLite and PostgreSQL accept.
pub(crate) trait Backend: Send {
    /// Runs one statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64>;
    /// Runs one query and hands each row to `row`.
    fn query(&mut self, sql: &str, params: &[Value<'_>], row: &mut RowFn<'_>) -> Result<()>;
    /// Runs a script of statements without parameters (a migration).
    fn execute_script(&mut self, sql: &str) -> Result<()>;
    /// Starts a write transaction. SQLite takes the database's write lock here (`BEGIN
    /// IMMEDIATE`); PostgreSQL starts a READ COMMITTED transaction and relies on [`lock`] and
    /// row locks for what the transaction reads and writes.
    ///
    /// [`lock`]: Backend::lock
    fn begin(&mut self) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self) -> Result<()>;
    /// Locks named resources exclusively until the transaction ends. `keys` must be in
    /// ascending order, so that two transactions never wait for each other in a cycle.
    fn lock(&mut self, keys: &[i64]) -> Result<()>;
}

impl dyn Backend + '_ {
    /// Every row of a query, mapped by `f`.
    pub(crate) fn rows<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        f: impl Fn(&dyn Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.query(sql, params, &mut |r| {
            out.push(f(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row of a query, mapped by `f`, if there is one (for queries of one row).
    pub(crate) fn first<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        f: impl Fn(&dyn Row) -> Result<T>,
    ) -> Result<Option<T>> {
        Ok(self.rows(sql, params, f)?.into_iter().next())
    }
}

/// An open write transaction: rolled back when dropped without [`Tx::commit`], so every early
/// return and every error leaves the store as it was.
pub(crate) struct Tx<'c> {
    conn: &'c mut dyn Backend,
    open: bool,
}

impl<'c> Tx<'c> {
    pub(crate) fn begin(conn: &'c mut dyn Backend) -> Result<Self> {
        conn.begin()?;
        Ok(Tx { conn, open: true })
    }

    pub(crate) fn commit(mut self) -> Result<()> {
        self.open = false;
        let committed = self.conn.commit();
        if committed.is_err() {
            // A failed COMMIT may leave SQLite's transaction open; PostgreSQL ends it anyway.
            let _ = self.conn.rollback();
        }
        committed
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.rollback();
        }
    }
}

impl<'c> Deref for Tx<'c> {
    type Target = dyn Backend + 'c;
    fn deref(&self) -> &Self::Target {
        &*self.conn
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.conn
    }
}

/// A lock key for a named resource: FNV-1a (64 bits) of its name, stable across processes,
/// builds and versions (PostgreSQL advisory locks are keyed by one `bigint`).
pub(crate) fn lock_key(name: &str) -> i64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        // FNV-1a of the empty string is the offset basis; of "a" a published test vector.
        assert_eq!(lock_key("") as u64, 0xcbf2_9ce4_8422_2325);
        assert_eq!(lock_key("a") as u64, 0xaf63_dc4c_8601_ec8c);
        assert_ne!(lock_key("dutyflow:carrier:LH"), lock_key("dutyflow:carrier:AF"));
    }
}
