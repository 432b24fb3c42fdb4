//! The PostgreSQL backend (`postgres://…`), for several service processes sharing one store.
//!
//! Transactions run at READ COMMITTED. What keeps two writers from interleaving badly is
//! locking, taken in one global order so that no two transactions wait for each other in a
//! cycle: first the batch's offset rows (row locks, by topic and partition), then one advisory
//! lock per carrier of the batch (by key). Every other row a batch reads or writes (manifests,
//! packages, item lines, rejected packages, totals) belongs to one of its carriers, so within
//! its locks a batch sees every earlier commit and nobody else's partial work. Batches of
//! different carriers commit in parallel. A lost connection is re-opened before the next
//! transaction; any error (including a serialization failure or a deadlock, should the server
//! report one) rolls the transaction back and reaches the caller, which retries the batch.

use super::backend::{Backend, Row, RowFn, Value};
use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, Config, NoTls, Statement};
use std::collections::HashMap;
use std::time::Duration;

pub(crate) struct Postgres {
    config: Config,
    /// The URL without its password, for messages.
    target: String,
    client: Client,
    /// Prepared statements of this connection, by their SQL text.
    statements: HashMap<String, Statement>,
    in_transaction: bool,
    /// The session's planning, when known (a rollback undoes a `SET` made in its transaction).
    planning: Option<Planning>,
    /// The connection failed (not a statement): replace it before the next transaction, even
    /// if the client does not know yet that it is closed.
    broken: bool,
}

impl Postgres {
    pub(crate) fn connect(url: &str) -> Result<Self> {
        let target = redact(url);
        let mut config: Config = url
            .parse()
            .map_err(|e| describe(e).context(format!("store.url {target} is not a valid PostgreSQL URL")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("dutyflow");
        }
        let client = open_client(&config, &target)?;
        Ok(Postgres {
            config,
            target,
            client,
            statements: HashMap::new(),
            in_transaction: false,
            planning: None,
            broken: false,
        })
    }

    /// Re-opens a connection the server or the network closed, between transactions only: a
    /// transaction's statements never run on another connection than its `BEGIN`.
    fn ensure_connected(&mut self) -> Result<()> {
        if !self.broken && !self.client.is_closed() {
            return Ok(());
        }
        if self.in_transaction {
            bail!(
                "the connection to the PostgreSQL store {} was lost during a transaction",
                self.target
            );
        }
        tracing::warn!(store = %self.target, "the connection to the PostgreSQL store was lost; reconnecting");
        self.client = open_client(&self.config, &self.target)?;
        self.statements.clear();
        self.planning = None;
        self.broken = false;
        Ok(())
    }

    /// A client result as the store's. An error other than the server's answer to a statement
    /// (the network, a closed connection, a FATAL error that ends the session) marks the
    /// connection broken.
    fn checked<T>(&mut self, r: Result<T, postgres::Error>) -> Result<T> {
        r.map_err(|e| {
            let session_ended = e
                .as_db_error()
                .is_none_or(|db| matches!(db.severity(), "FATAL" | "PANIC"));
            if session_ended || e.is_closed() {
                self.broken = true;
            }
            describe(e)
        })
    }

    /// The statement `sql`, prepared, with the session planning as `planning`.
    fn prepared(&mut self, sql: &str, planning: Planning) -> Result<Statement> {
        self.ensure_connected()?;
        if self.planning != Some(planning) {
            let set = self.client.batch_execute(planning.setting());
            self.checked(set)?;
            self.planning = Some(planning);
        }
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let prepared = self.client.prepare(sql);
        let stmt = self.checked(prepared)?;
        self.statements.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }
}

fn open_client(config: &Config, target: &str) -> Result<Client> {
    config
        .connect(NoTls)
        .map_err(|e| describe(e).context(format!("cannot connect to the PostgreSQL store {target}")))
}

/// How the server plans the store's prepared statements.
///
/// Queries are planned for their parameters' values on every run. Left to itself, PostgreSQL
/// switches a statement to a generic plan after five runs and keeps it: one made while a table
/// is small or not yet analyzed outlives the table's growth (seen: the duplicate check's
/// `IN (…)` query scanning all of a carrier's packages, 100–500 ms per run, until autovacuum's
/// ANALYZE). Writes keep the server's choice: planning a multi-row INSERT for its values
/// costs tens of milliseconds, and its generic plan is the same plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Planning {
    ForValues,
    ServerChoice,
}

impl Planning {
    fn setting(self) -> &'static str {
        match self {
            Planning::ForValues => "SET plan_cache_mode = force_custom_plan",
            Planning::ServerChoice => "SET plan_cache_mode = auto",
        }
    }
}

/// A PostgreSQL error as one line of text: the server's message and SQLSTATE, or the client's
/// error and its cause (the client's own text for a server error is only "db error").
fn describe(e: postgres::Error) -> anyhow::Error {
    match (e.as_db_error(), std::error::Error::source(&e)) {
        (Some(db), _) => anyhow!("PostgreSQL {db} (SQLSTATE {})", db.code().code()),
        (None, Some(source)) => anyhow!("PostgreSQL: {e}: {source}"),
        (None, None) => anyhow!("PostgreSQL: {e}"),
    }
}

/// `url` with its password, if any, replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Integers are sent at the width of the parameter's column (`INTEGER` or `BIGINT`).
impl ToSql for Value<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT2 => i16::try_from(v)?.to_sql_checked(ty, out),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql_checked(ty, out),
            Value::Int(v) => v.to_sql_checked(ty, out),
            Value::Text(s) => s.to_sql_checked(ty, out),
            Value::Bool(b) => b.to_sql_checked(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl Row for postgres::Row {
    fn int(&self, col: usize) -> Result<i64> {
        let ty = self.columns().get(col).context("no such column")?.type_();
        Ok(if *ty == Type::INT2 {
            self.try_get::<_, i16>(col)?.into()
        } else if *ty == Type::INT4 {
            self.try_get::<_, i32>(col)?.into()
        } else {
            self.try_get::<_, i64>(col)?
        })
    }

    fn text(&self, col: usize) -> Result<String> {
        Ok(self.try_get(col)?)
    }
}

fn sql_params<'a>(params: &'a [Value<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Backend for Postgres {
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64> {
        let stmt = self.prepared(sql, Planning::ServerChoice)?;
        let changed = self.client.execute(&stmt, &sql_params(params));
        self.checked(changed)
    }

    fn query(&mut self, sql: &str, params: &[Value<'_>], row: &mut RowFn<'_>) -> Result<()> {
        let stmt = self.prepared(sql, Planning::ForValues)?;
        let rows = self.client.query(&stmt, &sql_params(params));
        for r in self.checked(rows)? {
            row(&r)?;
        }
        Ok(())
    }

    fn execute_script(&mut self, sql: &str) -> Result<()> {
        self.ensure_connected()?;
        let done = self.client.batch_execute(sql);
        self.checked(done)
    }

    fn begin(&mut self) -> Result<()> {
        self.execute_script("BEGIN ISOLATION LEVEL READ COMMITTED")?;
        self.in_transaction = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        self.in_transaction = false;
        let committed = self.client.batch_execute("COMMIT");
        self.checked(committed)
    }

    fn rollback(&mut self) -> Result<()> {
        self.in_transaction = false;
        self.planning = None;
        if self.broken || self.client.is_closed() {
            return Ok(());
        }
        let rolled_back = self.client.batch_execute("ROLLBACK");
        self.checked(rolled_back)
    }

    /// Transaction-scoped advisory locks, released by the commit or the rollback.
    fn lock(&mut self, keys: &[i64]) -> Result<()> {
        for &key in keys {
            self.execute("SELECT pg_advisory_xact_lock(CAST($1 AS BIGINT))", &[Value::Int(key)])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://dutyflow:s3cret@db:5432/dutyflow?sslmode=disable"),
            "postgres://dutyflow:***@db:5432/dutyflow?sslmode=disable"
        );
        assert_eq!(
            redact("postgresql://db/dutyflow?user=u&password=p"),
            "postgresql://db/dutyflow?user=u&password=***"
        );
        assert_eq!(redact("postgres://u@db/d"), "postgres://u@db/d");
    }
}
