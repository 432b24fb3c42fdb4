//! Accepted tracking numbers, for the 12-month duplicate check: per carrier, sorted runs of text
//! chunks, merged as they accumulate (a log-structured merge), instead of a B-tree row per
//! number (schema version 4, `migrations/0004_tracking_runs.sql`).
//!
//! - A batch writes one run per carrier it accepted numbers of, at level 0, in key order.
//! - Once a carrier has [`FAN_IN`] runs of one level, the batch that made them so merges them
//!   into one run of the next level, streaming a chunk at a time through each, so a merge holds
//!   [`FAN_IN`] chunks in memory whatever the runs' sizes. A number is rewritten once per level.
//! - Every run written bumps the carrier's `numbers_version`, and takes it as its id.
//! - Entries are never deleted one by one: an amendment or a replay that removes a package
//!   leaves its entry, and [`lookup`] keeps only the entries whose manifest still holds their
//!   package (`commit.rs`). A merge keeps them too; they are as many as the removed packages.
//!
//! Runs, chunks and lines are read back only by this module and `migrate.rs`.

use super::backend::{args, Tx};
use super::bulk::{Insert, Pending};
use anyhow::{bail, Context, Result};

/// Runs of one level a carrier holds before they merge into one of the next level. More means
/// fewer rewrites of each number (one per level) but more runs for a lookup to search.
pub(super) const FAN_IN: usize = 8;

/// Entries of a chunk, about: a chunk ends at the first new number past this many.
const CHUNK_ENTRIES: usize = 128;

/// Chunks written in one statement.
const CHUNKS_PER_INSERT: usize = 64;

static RUNS: Insert = Insert::new("tracking_runs (carrier, run_id, level, entries, newest_source)", 5, "");
static CHUNKS: Insert = Insert::new("tracking_run_chunks (carrier, run_id, first_number, entries)", 4, "");

/// One accepted package's tracking number. Ordered as its line is: by number, manifest and date
/// (TAB sorts before every character the three fields may hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Entry<'a> {
    pub tracking_number: &'a str,
    pub manifest_id: &'a str,
    pub arrival_date: &'a str,
}

impl<'a> Entry<'a> {
    /// An entry from its line (without the newline).
    fn parse(line: &'a str) -> Result<Self> {
        let mut fields = line.split('\t');
        match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some(tracking_number), Some(manifest_id), Some(arrival_date), None) if !tracking_number.is_empty() => {
                Ok(Entry {
                    tracking_number,
                    manifest_id,
                    arrival_date,
                })
            }
            _ => bail!("a tracking-number entry of the store is malformed: {line:?}"),
        }
    }

    /// Appends the entry's line, refusing fields that would break the format (the operators
    /// validate all three; this keeps a bug from corrupting the store).
    fn push_line(&self, out: &mut String) -> Result<()> {
        let fields = [self.tracking_number, self.manifest_id, self.arrival_date];
        if self.tracking_number.is_empty() || fields.iter().any(|f| f.contains(['\t', '\n'])) {
            bail!("tracking number entry {fields:?} cannot be stored: empty number, TAB or newline");
        }
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            out.push_str(f);
        }
        out.push('\n');
        Ok(())
    }
}

/// The entries of a chunk's text, in order.
fn entries(chunk: &str) -> impl Iterator<Item = Result<Entry<'_>>> {
    chunk.lines().map(Entry::parse)
}

/// Bumps `carrier`'s `numbers_version` and returns it: the id of the run about to be written.
fn next_version(tx: &mut Tx<'_>, carrier: &str) -> Result<i64> {
    tx.first(
        "INSERT INTO tracking_versions (carrier, numbers_version) VALUES ($1, 1)
         ON CONFLICT (carrier) DO UPDATE SET numbers_version = tracking_versions.numbers_version + 1
         RETURNING numbers_version",
        args![carrier],
        |r| r.int(0),
    )?
    .context("the carrier's numbers version returned no row")
}

/// A run being written: lines in key order, cut into chunks.
struct RunWriter<'c> {
    carrier: &'c str,
    run_id: i64,
    /// Finished chunks not written yet: first number, text.
    chunks: Vec<(String, String)>,
    chunk: String,
    first: String,
    in_chunk: usize,
    last: String,
    entries: i64,
}

impl<'c> RunWriter<'c> {
    fn new(carrier: &'c str, run_id: i64) -> Self {
        RunWriter {
            carrier,
            run_id,
            chunks: Vec::new(),
            chunk: String::new(),
            first: String::new(),
            in_chunk: 0,
            last: String::new(),
            entries: 0,
        }
    }

    /// Adds one line (with its newline) of `tracking_number`; lines come in key order.
    fn push_line(&mut self, tx: &mut Tx<'_>, tracking_number: &str, line: &str) -> Result<()> {
        if self.in_chunk >= CHUNK_ENTRIES && tracking_number != self.last {
            self.end_chunk(tx)?;
        }
        if self.in_chunk == 0 {
            self.first.clear();
            self.first.push_str(tracking_number);
        }
        self.chunk.push_str(line);
        self.in_chunk += 1;
        self.entries += 1;
        if tracking_number != self.last {
            self.last.clear();
            self.last.push_str(tracking_number);
        }
        Ok(())
    }

    fn end_chunk(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        if self.in_chunk > 0 {
            self.chunks
                .push((std::mem::take(&mut self.first), std::mem::take(&mut self.chunk)));
            self.in_chunk = 0;
        }
        if self.chunks.len() >= CHUNKS_PER_INSERT {
            self.write_chunks(tx)?;
        }
        Ok(())
    }

    fn write_chunks(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        let mut rows = Pending::new(&CHUNKS);
        for (first, text) in &self.chunks {
            rows.push(args![self.carrier, self.run_id, first, text]);
        }
        rows.flush(&mut **tx)?;
        self.chunks.clear();
        Ok(())
    }

    /// Writes what is left and the run's row; a run without entries leaves no row.
    fn finish(mut self, tx: &mut Tx<'_>, level: i64, newest_source: i64) -> Result<i64> {
        self.end_chunk(tx)?;
        self.write_chunks(tx)?;
        if self.entries > 0 {
            let mut run = Pending::new(&RUNS);
            run.push(args![self.carrier, self.run_id, level, self.entries, newest_source]);
            run.flush(&mut **tx)?;
        }
        Ok(self.entries)
    }
}

/// Writes `entries` (a batch's accepted numbers of `carrier`) as a new run, then merges the
/// carrier's runs if that made a level full. Returns the carrier's `numbers_version` after.
pub(super) fn add(tx: &mut Tx<'_>, carrier: &str, mut entries: Vec<Entry<'_>>, fan_in: usize) -> Result<i64> {
    entries.sort_unstable();
    entries.dedup();
    let id = next_version(tx, carrier)?;
    let mut run = RunWriter::new(carrier, id);
    let mut line = String::new();
    for e in &entries {
        line.clear();
        e.push_line(&mut line)?;
        run.push_line(tx, e.tracking_number, &line)?;
    }
    run.finish(tx, 0, id)?;
    match merge_due(tx, carrier, fan_in)? {
        Some((level, sources)) => merge(tx, carrier, level, &sources),
        None => Ok(id),
    }
}

/// A run's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub run_id: i64,
    pub level: i64,
    pub entries: i64,
    pub newest_source: i64,
}

/// `carrier`'s runs, by level and age.
pub(super) fn runs(tx: &mut Tx<'_>, carrier: &str) -> Result<Vec<RunInfo>> {
    tx.rows(
        "SELECT run_id, level, entries, newest_source FROM tracking_runs WHERE carrier = $1 ORDER BY level, run_id",
        args![carrier],
        |r| {
            Ok(RunInfo {
                run_id: r.int(0)?,
                level: r.int(1)?,
                entries: r.int(2)?,
                newest_source: r.int(3)?,
            })
        },
    )
}

/// The lowest level holding `fan_in` runs or more, with its `fan_in` oldest runs.
fn merge_due(tx: &mut Tx<'_>, carrier: &str, fan_in: usize) -> Result<Option<(i64, Vec<RunInfo>)>> {
    let runs = runs(tx, carrier)?;
    let mut start = 0;
    while start < runs.len() {
        let level = runs[start].level;
        let end = start + runs[start..].iter().take_while(|r| r.level == level).count();
        if end - start >= fan_in {
            return Ok(Some((level, runs[start..start + fan_in].to_vec())));
        }
        start = end;
    }
    Ok(None)
}

/// Reads one run a chunk at a time, in key order.
struct Cursor {
    run_id: i64,
    chunk: String,
    pos: usize,
    /// The first number of the chunk held (empty before the first: numbers are never empty).
    first: String,
    done: bool,
}

impl Cursor {
    fn open(tx: &mut Tx<'_>, carrier: &str, run_id: i64) -> Result<Self> {
        let mut c = Cursor {
            run_id,
            chunk: String::new(),
            pos: 0,
            first: String::new(),
            done: false,
        };
        c.next_chunk(tx, carrier)?;
        Ok(c)
    }

    fn next_chunk(&mut self, tx: &mut Tx<'_>, carrier: &str) -> Result<()> {
        let next = tx.first(
            "SELECT first_number, entries FROM tracking_run_chunks
             WHERE carrier = $1 AND run_id = $2 AND first_number > $3 ORDER BY first_number LIMIT 1",
            args![carrier, self.run_id, &self.first],
            |r| Ok((r.text(0)?, r.text(1)?)),
        )?;
        match next {
            Some((first, chunk)) if !chunk.is_empty() => {
                (self.first, self.chunk, self.pos) = (first, chunk, 0);
            }
            _ => self.done = true,
        }
        Ok(())
    }

    /// The current line, with its newline.
    fn line(&self) -> Option<&str> {
        if self.done {
            return None;
        }
        let rest = &self.chunk[self.pos..];
        Some(rest.find('\n').map_or(rest, |end| &rest[..=end]))
    }

    fn advance(&mut self, tx: &mut Tx<'_>, carrier: &str) -> Result<()> {
        self.pos += self.line().map_or(0, str::len);
        if self.pos >= self.chunk.len() {
            self.next_chunk(tx, carrier)?;
        }
        Ok(())
    }
}

/// Merges `sources` (runs of `level`) into one run of the next level and deletes them. Returns
/// the carrier's `numbers_version` after.
fn merge(tx: &mut Tx<'_>, carrier: &str, level: i64, sources: &[RunInfo]) -> Result<i64> {
    let id = next_version(tx, carrier)?;
    let newest_source = sources.iter().map(|r| r.newest_source).max().unwrap_or(id);
    let mut cursors = Vec::with_capacity(sources.len());
    for r in sources {
        cursors.push(Cursor::open(tx, carrier, r.run_id)?);
    }
    let mut run = RunWriter::new(carrier, id);
    let (mut line, mut previous) = (String::new(), String::new());
    // The smallest line at the cursors' heads, each time (lines order as their entries do).
    while let Some(next) = (0..cursors.len())
        .filter_map(|i| cursors[i].line().map(|l| (l, i)))
        .min()
        .map(|(_, i)| i)
    {
        line.clear();
        line.push_str(cursors[next].line().expect("a cursor with a line"));
        cursors[next].advance(tx, carrier)?;
        // An entry in two runs (a package written again by an amendment) is kept once.
        if line == previous {
            continue;
        }
        let entry = Entry::parse(line.trim_end_matches('\n'))?;
        run.push_line(tx, entry.tracking_number, &line)?;
        std::mem::swap(&mut line, &mut previous);
    }
    run.finish(tx, level + 1, newest_source)?;
    for r in sources {
        for sql in [
            "DELETE FROM tracking_run_chunks WHERE carrier = $1 AND run_id = $2",
            "DELETE FROM tracking_runs WHERE carrier = $1 AND run_id = $2",
        ] {
            tx.execute(sql, args![carrier, r.run_id])?;
        }
    }
    Ok(id)
}

/// Hands `found` every entry of `carrier`'s runs whose number is in `numbers` (sorted, without
/// repeats). An entry held by two runs comes twice. One search of each run per number.
pub(super) fn lookup(tx: &mut Tx<'_>, carrier: &str, numbers: &[&str], found: &mut dyn FnMut(Entry<'_>)) -> Result<()> {
    if numbers.is_empty() {
        return Ok(());
    }
    let run_ids: Vec<i64> = tx.rows(
        "SELECT run_id FROM tracking_runs WHERE carrier = $1",
        args![carrier],
        |r| r.int(0),
    )?;
    for run_id in run_ids {
        // The chunk last read, reused while the numbers fall inside it: its first number, text.
        let mut held: Option<(String, String)> = None;
        for &number in numbers {
            let inside = held.as_ref().is_some_and(|(first, chunk)| {
                first.as_str() <= number
                    && chunk
                        .lines()
                        .next_back()
                        .is_some_and(|l| l.split('\t').next() >= Some(number))
            });
            if !inside {
                held = tx.first(
                    "SELECT first_number, entries FROM tracking_run_chunks
                     WHERE carrier = $1 AND run_id = $2 AND first_number <= $3
                     ORDER BY first_number DESC LIMIT 1",
                    args![carrier, run_id, number],
                    |r| Ok((r.text(0)?, r.text(1)?)),
                )?;
            }
            let Some((_, chunk)) = &held else {
                continue;
            };
            for e in entries(chunk) {
                let e = e?;
                if e.tracking_number == number {
                    found(e);
                }
            }
        }
    }
    Ok(())
}

/// How many entries `carrier`'s runs hold.
pub(super) fn count(tx: &mut Tx<'_>, carrier: &str) -> Result<i64> {
    Ok(tx
        .first(
            "SELECT CAST(COALESCE(SUM(entries), 0) AS BIGINT) FROM tracking_runs WHERE carrier = $1",
            args![carrier],
            |r| r.int(0),
        )?
        .unwrap_or(0))
}

/// Hands `number` every tracking number of `carrier`'s runs that hold numbers of runs newer
/// than `since` (every run: -1), a chunk at a time.
pub(super) fn numbers(tx: &mut Tx<'_>, carrier: &str, since: i64, number: &mut dyn FnMut(&str)) -> Result<()> {
    tx.query(
        "SELECT c.entries FROM tracking_run_chunks c
         JOIN tracking_runs r ON r.carrier = c.carrier AND r.run_id = c.run_id
         WHERE c.carrier = $1 AND r.newest_source > $2",
        args![carrier, since],
        &mut |r| {
            for e in entries(&r.text(0)?) {
                number(e?.tracking_number);
            }
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_as_written_and_lines_order_as_entries() {
        let a = Entry {
            tracking_number: "RR000000001DE",
            manifest_id: "LH-1",
            arrival_date: "2026-03-02",
        };
        let mut line = String::new();
        a.push_line(&mut line).unwrap();
        assert_eq!(line, "RR000000001DE\tLH-1\t2026-03-02\n");
        assert_eq!(Entry::parse(line.trim_end()).unwrap(), a);
        // A shorter manifest id sorts first, as a tuple and as a line.
        let b = Entry {
            manifest_id: "LH-1a",
            ..a
        };
        let mut other = String::new();
        b.push_line(&mut other).unwrap();
        assert!(a < b && line < other);
        let c = Entry {
            manifest_id: "LH-",
            ..a
        };
        let mut third = String::new();
        c.push_line(&mut third).unwrap();
        assert!(c < a && third < line);
    }

    #[test]
    fn fields_that_would_break_a_line_are_refused() {
        let ok = Entry {
            tracking_number: "RR000000001DE",
            manifest_id: "LH-1",
            arrival_date: "2026-03-02",
        };
        for bad in [
            Entry {
                manifest_id: "LH\t1",
                ..ok
            },
            Entry {
                arrival_date: "2026\n",
                ..ok
            },
            Entry {
                tracking_number: "",
                ..ok
            },
        ] {
            assert!(bad.push_line(&mut String::new()).is_err(), "{bad:?}");
        }
        for bad in ["", "RR1\tLH-1", "RR1\tLH-1\t2026-03-02\tx", "\tLH-1\t2026-03-02"] {
            assert!(Entry::parse(bad).is_err(), "{bad:?}");
        }
    }
}
