//! The SQLite backend: one file, the embedded default. One writer at a time: a write
//! transaction holds the database's write lock from its `BEGIN IMMEDIATE`.
//!
//! Checkpoints run off the committing thread. A connection never checkpoints on commit
//! (`wal_autocheckpoint = 0`); once it has committed a change, a background thread with a
//! connection of its own copies the WAL into the database after its commits, at most once per
//! [`CHECKPOINT_INTERVAL`] (a `PASSIVE` checkpoint, which never blocks the writer). The WAL starts over when a transaction
//! begins with the whole WAL copied, which a writer that never pauses would seldom see: so when
//! the WAL has grown past [`WAL_LIMIT_BYTES`], the writer waits, before its next transaction,
//! until the checkpointer has copied all of it. The WAL stays within about that limit plus two
//! transactions, and its file is cut back to [`WAL_KEEP_BYTES`] when it starts over.

use super::backend::{Backend, Row, RowFn, Value};
use anyhow::{bail, Context, Result};
use rusqlite::types::{Null, ToSqlOutput};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Prepared statements kept per connection: the store's constant statements and the bounded
/// set of bulk statement shapes (`bulk.rs`), with room to spare.
const STATEMENT_CACHE: usize = 128;

/// Page cache per connection, in KiB: enough for the pages one batch changes, so that a commit
/// does not spill dirty pages to the WAL before it ends. Allocated as pages are read, so a
/// connection that only reads offsets stays small.
///
/// Its size has a cost while the database is under 1 GiB. When SQLite reorders the pages of a
/// B-tree split (`balance_nonroot`), it renumbers one of them through the page of the 1 GiB lock
/// byte (page 262,145 at 4 KiB), which lies past the end of a smaller database; so at the end of
/// such a transaction it truncates the cache by walking its whole hash table
/// (`pcache1TruncateUnsafe`), a slot per page the cache ever held. In the `store_cpu` bench
/// (a fresh store) that walk was 12% of the commit thread's samples for 400-package commits after
/// full batches had filled the cache, and 2% with an 8 MiB cache; end to end, 8 and 16 MiB did
/// not change the commit's time per package beyond the runs' noise (BENCHMARKS.md §4); and once
/// the database passes 1 GiB that page lies inside it and the walk stops (read in SQLite 3.50's
/// code, not measured). So the size stays.
const CACHE_KIB: i64 = 64 * 1024;

/// WAL size past which a writer waits for the checkpointer before its next transaction.
const WAL_LIMIT_BYTES: i64 = 256 << 20;

/// What the WAL file is cut back to when it starts over (`journal_size_limit`).
const WAL_KEEP_BYTES: i64 = 64 << 20;

/// How long a writer waits for the checkpointer to copy the whole WAL before it goes on
/// regardless (another process's readers or writers may keep the WAL from being copied).
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// How soon the checkpointer tries again after a checkpoint that could not copy everything
/// (a reader held an older snapshot, or another connection was checkpointing).
const RETRY: Duration = Duration::from_millis(100);

/// Least time between two checkpoints, unless the WAL has reached its limit: a page that
/// several commits change in a row (a B-tree's upper levels, a carrier's totals) is copied into
/// the database once per interval instead of once per commit.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// How long a statement waits for another connection's lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Puts the database in WAL mode. On a new database the switch needs the exclusive lock, and
/// SQLite answers `SQLITE_BUSY` at once, without its busy handler, when another connection
/// (another process starting on the same new store) holds a lock meanwhile: so this retries
/// until [`BUSY_TIMEOUT`].
fn use_wal(conn: &Connection) -> Result<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => bail!("SQLite kept journal mode {mode:?} (a file system without shared memory?)"),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Who checkpoints this connection's commits.
enum Checkpoints {
    /// Nothing committed yet.
    NotYet,
    Background(Checkpointer),
    /// The checkpointer could not start: SQLite's own checkpoint at commit.
    OnCommit,
}

pub(crate) struct Sqlite {
    /// Declared first so that the checkpointer stops before `conn` closes: the writer's
    /// connection is then the last one, and its close copies what is left and removes the WAL.
    checkpoints: Checkpoints,
    conn: Connection,
    path: PathBuf,
    /// `total_changes` when the current write transaction began.
    changes_at_begin: u64,
    /// [`WAL_LIMIT_BYTES`], smaller in tests.
    wal_limit_bytes: i64,
    /// A pause before each of the checkpointer's checkpoints: zero, but tests make it fall behind.
    checkpointer_lag: Duration,
}

impl Sqlite {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).with_context(|| format!("cannot open the store {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        use_wal(&conn).with_context(|| format!("cannot put the store {} in WAL mode", path.display()))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // A multi-row INSERT keeps a statement journal (to undo only itself should it fail
        // half-way): in memory, not in a temporary file.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)?;
        // Checkpoints are the checkpointer's (see the module's documentation).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // After it: setting `wal_autocheckpoint` replaces the WAL hook.
        conn.wal_hook(Some(note_wal_frames));
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Sqlite {
            checkpoints: Checkpoints::NotYet,
            conn,
            path: path.to_path_buf(),
            changes_at_begin: 0,
            wal_limit_bytes: WAL_LIMIT_BYTES,
            checkpointer_lag: Duration::ZERO,
        })
    }

    /// Before a write transaction: when the WAL has grown past its limit, waits until the
    /// checkpointer has copied all of it, so that this transaction starts it over.
    fn wait_for_checkpoint(&self) {
        if let Checkpoints::Background(c) = &self.checkpoints {
            c.shared.wait_until_copied(c.limit_frames);
        }
    }

    /// After a commit: wakes the checkpointer, started on the first commit that changed
    /// anything (a connection that only reads, or finds its migrations applied, needs none).
    fn committed(&mut self) {
        let frames = WAL_FRAMES.with(|f| f.replace(None));
        if self.conn.total_changes() == self.changes_at_begin {
            return;
        }
        if matches!(self.checkpoints, Checkpoints::NotYet) {
            let started = Checkpointer::start(&self.path, &self.conn, self.wal_limit_bytes, self.checkpointer_lag);
            self.checkpoints = match started {
                Ok(c) => Checkpoints::Background(c),
                Err(e) => {
                    tracing::warn!(error = %e, store = %self.path.display(), "no background checkpointer; SQLite checkpoints at commit");
                    let _ = self.conn.pragma_update(None, "wal_autocheckpoint", 1000);
                    Checkpoints::OnCommit
                }
            };
        }
        if let Checkpoints::Background(c) = &self.checkpoints {
            let mut p = c.shared.lock();
            p.commits += 1;
            if let Some(frames) = frames {
                p.wal_frames = frames;
            }
            drop(p);
            c.shared.changed.notify_all();
        }
    }
}

thread_local! {
    /// Frames in the WAL after the last commit on this thread, from SQLite's WAL hook, which
    /// runs on the committing thread; taken by [`Sqlite::committed`] right after the commit.
    static WAL_FRAMES: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
}

/// SQLite's WAL hook: called after each commit that wrote frames, with the WAL's frame count.
fn note_wal_frames(_: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(Some(i64::from(frames))));
    Ok(())
}

/// What the writer and its checkpointer tell each other.
#[derive(Default)]
struct Progress {
    /// Commits that changed the database.
    commits: u64,
    /// Of those, how many the last checkpoint that copied the whole WAL covered.
    copied: u64,
    /// Frames in the WAL after the writer's last commit (SQLite's WAL hook, on the writer's
    /// own thread, so a checkpointer that falls behind cannot leave it stale); 0 once the writer
    /// has waited for it to be copied (its next transaction starts the WAL over).
    wal_frames: i64,
    /// Checkpoints run (each copies the commits before it).
    checkpoints: u64,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_until_copied(&self, limit_frames: i64) {
        let mut p = self.lock();
        if p.wal_frames < limit_frames {
            return;
        }
        let deadline = Instant::now() + CATCH_UP_WAIT;
        while p.copied < p.commits && !p.stop {
            let now = Instant::now();
            if now >= deadline {
                tracing::debug!(wal_frames = p.wal_frames, "the WAL is not copied yet; writing on");
                break;
            }
            p = self
                .changed
                .wait_timeout(p, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        p.wal_frames = 0;
    }
}

/// The background checkpointer of one writing connection: a thread with its own connection.
struct Checkpointer {
    shared: Arc<Shared>,
    /// The WAL's limit in frames (a page and its 24-byte header).
    limit_frames: i64,
    interrupt: rusqlite::InterruptHandle,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// `lag`: a pause before each checkpoint (zero but in tests).
    fn start(path: &Path, writer: &Connection, wal_limit_bytes: i64, lag: Duration) -> Result<Self> {
        let page_size: i64 = writer.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let conn = Connection::open(path).with_context(|| format!("cannot open the store {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(1))?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let shared = Arc::new(Shared::default());
        let interrupt = conn.get_interrupt_handle();
        let limit_frames = wal_limit_bytes / (page_size + 24);
        let thread = std::thread::Builder::new().name("dutyflow-checkpoint".into()).spawn({
            let shared = shared.clone();
            move || checkpoint_loop(&conn, &shared, lag, limit_frames)
        })?;
        Ok(Checkpointer {
            shared,
            limit_frames,
            interrupt,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        // Cuts a checkpoint short: what it copied stays copied, the rest waits for the close.
        self.interrupt.interrupt();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs a `PASSIVE` checkpoint after the writer's commits, at most once per
/// [`CHECKPOINT_INTERVAL`] unless the WAL has reached `limit_frames` (the writer then waits for
/// it), and again shortly after one that could not copy everything, until stopped.
fn checkpoint_loop(conn: &Connection, shared: &Shared, lag: Duration, limit_frames: i64) {
    let mut done = 0;
    // The first commit is checkpointed at once.
    let mut last = Instant::now()
        .checked_sub(CHECKPOINT_INTERVAL)
        .unwrap_or_else(Instant::now);
    loop {
        let target = {
            let mut p = shared.lock();
            loop {
                if p.stop {
                    return;
                }
                let since = last.elapsed();
                let urgent = p.wal_frames >= limit_frames;
                let new = p.commits != done;
                let behind = p.copied < p.commits && since >= RETRY;
                if (new && (urgent || since >= CHECKPOINT_INTERVAL)) || behind {
                    break p.commits;
                }
                let wait = if new {
                    CHECKPOINT_INTERVAL.saturating_sub(since)
                } else {
                    RETRY
                };
                p = shared
                    .changed
                    .wait_timeout(p, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        };
        if !lag.is_zero() {
            std::thread::sleep(lag);
        }
        last = Instant::now();
        done = target;
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match result {
            // Busy: another connection is checkpointing; try again later.
            Ok((busy, log, copied)) if busy == 0 && log >= 0 => {
                let mut p = shared.lock();
                p.checkpoints += 1;
                if copied == log {
                    p.copied = p.copied.max(target);
                }
                drop(p);
                shared.changed.notify_all();
            }
            Ok(_) => {}
            Err(e) => {
                if shared.lock().stop {
                    return;
                }
                tracing::warn!(error = %e, "store checkpoint failed; retrying");
            }
        }
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
    // Every INSERT rolls back the whole transaction on a constraint failure: the store only
    // ever rolls back whole batches. A multi-row INSERT that could fail half-way and be undone
    // alone would keep a statement journal, a copy of every page it changes.
    let mut bytes = match sql.strip_prefix("INSERT INTO ") {
        Some(rest) => ["INSERT OR ROLLBACK INTO ", rest].concat().into_bytes(),
        None => sql.as_bytes().to_vec(),
    };
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
        self.wait_for_checkpoint();
        self.execute_script("BEGIN IMMEDIATE")?;
        self.changes_at_begin = self.conn.total_changes();
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        self.execute_script("COMMIT")?;
        self.committed();
        Ok(())
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
    use crate::scratch;
    use crate::store::bulk::MAX_PARAMETERS;

    /// A store file in a fresh temporary directory, removed with the returned guard.
    fn temp_store(name: &str) -> (scratch::ScratchDir, PathBuf) {
        let dir = scratch::dir(&format!("sqlite-{name}"));
        let db = dir.join("store.db");
        (dir, db)
    }

    fn wal_len(db: &Path) -> u64 {
        std::fs::metadata(db.with_extension("db-wal")).map_or(0, |m| m.len())
    }

    /// One write transaction of about `bytes` bytes, as the store's commit runs one.
    fn write(store: &mut Sqlite, bytes: usize) {
        store.begin().unwrap();
        store
            .execute("INSERT INTO t (v) VALUES (randomblob($1))", &[Value::Int(bytes as i64)])
            .unwrap();
        store.commit().unwrap();
    }

    #[test]
    fn the_checkpointer_keeps_the_wal_near_its_limit_and_stops_with_the_store() {
        let (_dir, db) = temp_store("wal");
        let mut store = Sqlite::open(&db).unwrap();
        store.wal_limit_bytes = 1 << 20;
        store.execute_script("CREATE TABLE t (v BLOB)").unwrap();
        assert!(
            matches!(store.checkpoints, Checkpoints::NotYet),
            "no change, no checkpointer"
        );
        // 16 MiB in transactions of 128 KiB: without checkpoints the WAL would hold all of it.
        for _ in 0..128 {
            write(&mut store, 128 << 10);
        }
        assert!(matches!(store.checkpoints, Checkpoints::Background(_)));
        let wal = wal_len(&db);
        assert!(wal < 3 << 20, "the WAL grew to {wal} bytes");
        let rows: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 128);
        drop(store);
        // The last connection closed: everything copied and the WAL removed.
        assert_eq!(wal_len(&db), 0);
        let store = Sqlite::open(&db).unwrap();
        let rows: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 128);
        assert!(
            matches!(store.checkpoints, Checkpoints::NotYet),
            "reading starts no checkpointer"
        );
    }

    /// Small commits in quick succession are copied a group at a time, at most one checkpoint
    /// per interval, and every one of them is copied in the end.
    #[test]
    fn quick_small_commits_share_their_checkpoints() {
        let (_dir, db) = temp_store("wal-interval");
        let mut store = Sqlite::open(&db).unwrap();
        store.execute_script("CREATE TABLE t (v BLOB)").unwrap();
        let started = Instant::now();
        // A commit a millisecond or so, as a service's small batches come.
        let commits = 300;
        for _ in 0..commits {
            write(&mut store, 100);
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = started.elapsed();
        let Checkpoints::Background(c) = &store.checkpoints else {
            panic!("no checkpointer");
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let p = c.shared.lock();
            if p.copied == p.commits {
                // One checkpoint per interval the commits took, give or take the first and last.
                let most = took.as_millis() / CHECKPOINT_INTERVAL.as_millis() + 3;
                assert!(
                    u128::from(p.checkpoints) <= most,
                    "{} checkpoints for {} commits in {took:?}",
                    p.checkpoints,
                    p.commits
                );
                assert!(p.commits >= commits);
                break;
            }
            drop(p);
            assert!(Instant::now() < deadline, "the commits were never all copied");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The writer's wait does not depend on the checkpointer keeping up: with every checkpoint
    /// 40 ms late, the WAL still stays near its limit (without the WAL hook, the writer went
    /// by the last checkpoint's stale measurement, and the WAL grew to most of the 16 MiB).
    #[test]
    fn the_wal_stays_near_its_limit_when_the_checkpointer_falls_behind() {
        let (_dir, db) = temp_store("wal-lag");
        let mut store = Sqlite::open(&db).unwrap();
        store.wal_limit_bytes = 1 << 20;
        store.checkpointer_lag = Duration::from_millis(40);
        store.execute_script("CREATE TABLE t (v BLOB)").unwrap();
        let mut largest = 0;
        for _ in 0..128 {
            write(&mut store, 128 << 10);
            largest = largest.max(wal_len(&db));
        }
        assert!(largest < 3 << 20, "the WAL grew to {largest} bytes");
        drop(store);
        assert_eq!(wal_len(&db), 0);
    }

    #[test]
    fn dollar_parameters_become_numbered_ones() {
        assert_eq!(
            numbered("SELECT $2, $1 WHERE a = $10 AND b = '$'"),
            "SELECT ?2, ?1 WHERE a = ?10 AND b = '$'"
        );
    }

    #[test]
    fn a_failing_insert_rolls_back_the_whole_transaction() {
        let (_dir, db) = temp_store("rollback");
        let mut store = Sqlite::open(&db).unwrap();
        store
            .execute_script("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();
        let insert = "INSERT INTO t (k, v) VALUES ($1, 'a'), ($2, 'b')";
        store.begin().unwrap();
        store.execute(insert, &[Value::Int(1), Value::Int(2)]).unwrap();
        // The second row collides: the transaction ends at once, the first statement with it.
        assert!(store.execute(insert, &[Value::Int(3), Value::Int(1)]).is_err());
        assert!(store.conn.is_autocommit(), "the transaction is over");
        assert!(store.rollback().is_err(), "nothing left to roll back");
        let rows: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
        // The next transaction starts afresh.
        store.begin().unwrap();
        store.execute(insert, &[Value::Int(3), Value::Int(4)]).unwrap();
        store.commit().unwrap();
        let rows: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
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
