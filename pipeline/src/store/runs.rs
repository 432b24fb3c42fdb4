//! Accepted tracking numbers, for the 12-month duplicate check: per carrier, sorted runs of text
//! chunks, merged as they accumulate (a log-structured merge), instead of a B-tree row per
//! number (schema version 4, `migrations/0004_tracking_runs.sql`).
//!
//! - A batch writes one run per carrier it accepted numbers of, at level 0, in key order.
//! - Once a carrier has [`FAN_IN`] runs of one level, they merge into one run of the next level,
//!   streaming a chunk at a time through each ([`FAN_IN`] chunks in memory, whatever the runs'
//!   sizes). A merge goes a slice per batch of the carrier (`tracking_merges` keeps where it
//!   stands), so that no commit carries a whole merge: a slice writes [`SLICE_FACTOR`] times the
//!   entries the batch added, and at least [`MIN_SLICE`]. The merged runs count until the merge
//!   ends; the run it writes counts from then on. A number is rewritten once per level.
//! - Every run written bumps the carrier's `numbers_version`, and takes it as its id.
//! - Entries are never deleted one by one: an amendment or a replay that removes a package
//!   leaves its entry, and [`lookup`] keeps only the entries whose manifest still holds their
//!   package (`commit.rs`). A merge keeps them too; they are as many as the removed packages.
//!
//! Runs, chunks and lines are read and written by this module only (`migrate.rs` adds a run).
//!
//! SQL compares chunk keys (`first_number`): accepted tracking numbers, valid UPU S10 numbers
//! (13 characters of capital letters and digits in fixed places), which order the same in
//! byte order and in any database collation. Lines are ordered in Rust, by bytes.

use super::backend::{args, Tx};
use super::bulk::{Insert, Pending};
use anyhow::{bail, Context, Result};

/// Runs of one level a carrier holds before they merge into one of the next level. More means
/// fewer rewrites of each number (one per level) but more runs for a lookup to search.
pub(super) const FAN_IN: usize = 8;

/// A merge's slice per batch, in entries: this many times what the batch added to the carrier.
/// A merge of level L writes 8 runs of 8^L batches' entries, so it takes 8^(L+1)/4 batches, in
/// which the batches add 2 runs of level L: with batches of even size, a level holds at most
/// [`FAN_IN`] + 2 runs (a burst of large batches, then small ones, can leave more for a while).
const SLICE_FACTOR: usize = 4;

/// A merge's smallest slice, in entries (~0.2 ms, from the ~0.22 µs per entry of the merges timed
/// in BENCHMARKS.md §4, session 7): the merges of level 1 end in a batch or two.
/// Each of a carrier's merges under way takes a slice per batch of the carrier; at half rate on
/// this machine a batch adds ~300 numbers per carrier.
pub(super) const MIN_SLICE: usize = 1024;

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

/// Sorts `items` into their order (`Ord`), whose first key is the text `key` gives: by the
/// text's first 16 bytes as one integer first, so that nearly every comparison of tracking
/// numbers (13 bytes) is one integer comparison, not a call to `memcmp` (sorting a batch's
/// numbers twice was ~12% of the store's instructions).
pub(super) fn sort_by_text<T: Ord>(items: &mut [T], key: impl Fn(&T) -> &str) {
    items.sort_unstable_by(|a, b| prefix(key(a)).cmp(&prefix(key(b))).then_with(|| a.cmp(b)));
}

/// The first 16 bytes of `text`, zero-padded, as a big-endian integer: a smaller integer
/// means a smaller text (equal integers say nothing). Read as two words without copying: a
/// copy of variable length is a call to `memcpy` per comparison.
fn prefix(text: &str) -> u128 {
    let b = text.as_bytes();
    let word = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let (hi, lo) = match b.len() {
        16.. => (word(0), word(8)),
        // The last 8 bytes, shifted left past the ones the first word holds.
        n @ 9..=15 => (word(0), word(n - 8) << ((16 - n) * 8)),
        8 => (word(0), 0),
        _ => {
            let mut hi = 0u64;
            for (i, &byte) in b.iter().enumerate() {
                hi |= u64::from(byte) << ((7 - i) * 8);
            }
            (hi, 0)
        }
    };
    (u128::from(hi) << 64) | u128::from(lo)
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

    /// Writes every chunk begun (a slice of a merge ends with its chunk).
    fn flush(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        self.end_chunk(tx)?;
        self.write_chunks(tx)
    }

    /// Writes what is left and the run's row, of `entries` in all; a run without entries leaves
    /// no row.
    fn finish(mut self, tx: &mut Tx<'_>, level: i64, entries: i64, newest_source: i64) -> Result<()> {
        self.flush(tx)?;
        if entries > 0 {
            let mut run = Pending::new(&RUNS);
            run.push(args![self.carrier, self.run_id, level, entries, newest_source]);
            run.flush(&mut **tx)?;
        }
        Ok(())
    }
}

/// A new run of level 0 of a carrier, written from entries that come in key order without
/// repeats.
pub(super) struct SortedRun<'c> {
    writer: RunWriter<'c>,
    line: String,
}

impl<'c> SortedRun<'c> {
    /// Takes the run's id (the carrier's next `numbers_version`).
    pub(super) fn start(tx: &mut Tx<'_>, carrier: &'c str) -> Result<Self> {
        Ok(SortedRun {
            writer: RunWriter::new(carrier, next_version(tx, carrier)?),
            line: String::new(),
        })
    }

    pub(super) fn push(&mut self, tx: &mut Tx<'_>, e: Entry<'_>) -> Result<()> {
        self.line.clear();
        e.push_line(&mut self.line)?;
        self.writer.push_line(tx, e.tracking_number, &self.line)
    }

    /// Writes what is left and the run's row, at `level`; returns its id.
    pub(super) fn finish(self, tx: &mut Tx<'_>, level: i64) -> Result<i64> {
        let (id, entries) = (self.writer.run_id, self.writer.entries);
        self.writer.finish(tx, level, entries, id)?;
        Ok(id)
    }

    pub(super) fn entries(&self) -> i64 {
        self.writer.entries
    }
}

/// Writes `entries` (a batch's accepted numbers of `carrier`) as a new run, moves each merge
/// of the carrier's runs under way a slice on, and starts the merges that are due. Returns the
/// carrier's `numbers_version` after.
pub(super) fn add(
    tx: &mut Tx<'_>,
    carrier: &str,
    mut entries: Vec<Entry<'_>>,
    fan_in: usize,
    min_slice: usize,
) -> Result<i64> {
    sort_by_text(&mut entries, |e| e.tracking_number);
    entries.dedup();
    let mut run = SortedRun::start(tx, carrier)?;
    for e in &entries {
        run.push(tx, *e)?;
    }
    let mut version = run.finish(tx, 0)?;
    let slice = (SLICE_FACTOR * entries.len()).max(min_slice);
    let mut busy = Vec::new();
    for job in Merge::under_way(tx, carrier)? {
        busy.push(job.level);
        job.step(tx, slice)?;
    }
    for (level, sources) in merges_due(tx, carrier, fan_in, &busy)? {
        version = next_version(tx, carrier)?;
        Merge::start(carrier, level, version, &sources).step(tx, slice)?;
    }
    Ok(version)
}

/// The level a run of `entries` written at once (a migrated store's) belongs to: the level whose
/// runs are about that large when batches add [`MIN_SLICE`] numbers of the carrier, so that it
/// waits for peers of its size instead of joining (and holding up) a merge of small runs.
pub(super) fn level_of(entries: i64) -> i64 {
    let (mut level, mut size) = (0, MIN_SLICE as i64 * FAN_IN as i64);
    while entries >= size && size < i64::MAX {
        level += 1;
        size = size.saturating_mul(FAN_IN as i64);
    }
    level
}

/// How many entries the runs hold that hold numbers newer than version `since` (every run: -1).
pub(super) fn count_since(tx: &mut Tx<'_>, carrier: &str, since: i64) -> Result<i64> {
    Ok(tx
        .first(
            "SELECT CAST(COALESCE(SUM(entries), 0) AS BIGINT) FROM tracking_runs WHERE carrier = $1 AND newest_source > $2",
            args![carrier, since],
            |r| r.int(0),
        )?
        .unwrap_or(0))
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

/// The levels holding `fan_in` runs or more and no merge under way (`busy`), each with its
/// `fan_in` oldest runs.
fn merges_due(tx: &mut Tx<'_>, carrier: &str, fan_in: usize, busy: &[i64]) -> Result<Vec<(i64, Vec<RunInfo>)>> {
    let runs = runs(tx, carrier)?;
    let mut due = Vec::new();
    for level in runs.chunk_by(|a, b| a.level == b.level) {
        if level.len() >= fan_in && !busy.contains(&level[0].level) {
            due.push((level[0].level, level[..fan_in].to_vec()));
        }
    }
    Ok(due)
}

/// Reads one run a chunk at a time, in key order.
struct Cursor {
    run_id: i64,
    chunk: String,
    /// The current line: `chunk[pos..end]`, with its newline.
    pos: usize,
    end: usize,
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
            end: 0,
            first: String::new(),
            done: false,
        };
        c.next_chunk(tx, carrier)?;
        Ok(c)
    }

    /// A cursor where [`Cursor::position`] left it.
    fn resume(tx: &mut Tx<'_>, carrier: &str, run_id: i64, position: &str) -> Result<Self> {
        let (first, pos) = match position {
            "^" => return Self::open(tx, carrier, run_id),
            "$" => (String::new(), None),
            _ => match position.rsplit_once(':').map(|(f, p)| (f, p.parse::<usize>())) {
                Some((first, Ok(pos))) if !first.is_empty() => (first.to_string(), Some(pos)),
                _ => bail!("a merge of tracking numbers has a malformed position: {position:?}"),
            },
        };
        let mut c = Cursor {
            run_id,
            chunk: String::new(),
            pos: 0,
            end: 0,
            first,
            done: pos.is_none(),
        };
        if let Some(pos) = pos {
            let chunk = tx
                .first(
                    "SELECT entries FROM tracking_run_chunks WHERE carrier = $1 AND run_id = $2 AND first_number = $3",
                    args![carrier, run_id, &c.first],
                    |r| r.text(0),
                )?
                .with_context(|| format!("run {run_id} of {carrier} lost the chunk a merge stands in"))?;
            if pos > chunk.len() || !chunk.is_char_boundary(pos) {
                bail!("a merge of tracking numbers stands past its chunk: {position:?}");
            }
            (c.chunk, c.pos) = (chunk, pos);
            if c.pos >= c.chunk.len() {
                c.next_chunk(tx, carrier)?;
            } else {
                c.find_end();
            }
        }
        Ok(c)
    }

    /// Where the cursor stands: `^` before its run, `$` past it, else `FIRST:POS` (the first
    /// number of the chunk it holds, and the offset of its line there).
    fn position(&self) -> String {
        if self.done {
            "$".to_string()
        } else {
            format!("{}:{}", self.first, self.pos)
        }
    }

    fn next_chunk(&mut self, tx: &mut Tx<'_>, carrier: &str) -> Result<()> {
        let next = tx.first(
            "SELECT first_number, entries FROM tracking_run_chunks
             WHERE carrier = $1 AND run_id = $2 AND first_number > $3 ORDER BY first_number LIMIT 1",
            args![carrier, self.run_id, &self.first],
            |r| Ok((r.text(0)?, r.text(1)?)),
        )?;
        match next {
            Some((_, chunk)) if chunk.is_empty() => {
                bail!("run {} of {carrier} has an empty chunk", self.run_id)
            }
            Some((first, chunk)) => {
                (self.first, self.chunk, self.pos) = (first, chunk, 0);
                self.find_end();
            }
            None => self.done = true,
        }
        Ok(())
    }

    fn find_end(&mut self) {
        let rest = &self.chunk.as_bytes()[self.pos..];
        self.end = self.pos + memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
    }

    /// The current line, with its newline.
    fn line(&self) -> Option<&str> {
        (!self.done).then(|| &self.chunk[self.pos..self.end])
    }

    fn advance(&mut self, tx: &mut Tx<'_>, carrier: &str) -> Result<()> {
        self.pos = self.end;
        if self.pos >= self.chunk.len() {
            self.next_chunk(tx, carrier)?;
        } else {
            self.find_end();
        }
        Ok(())
    }
}

static MERGES: Insert = Insert::new(
    "tracking_merges (carrier, level, run_id, sources, newest_source, positions, previous, entries)",
    8,
    "",
);

/// A merge of `FAN_IN` runs of one level into one of the next, under way (a row of
/// `tracking_merges`, one per carrier and level at most).
struct Merge<'c> {
    carrier: &'c str,
    /// The merged runs' level.
    level: i64,
    /// The run it writes.
    run_id: i64,
    sources: Vec<i64>,
    newest_source: i64,
    /// Where each source's cursor stands ([`Cursor::position`]), space-separated.
    positions: String,
    /// The last line written (an entry in two runs is written once).
    previous: String,
    /// Entries written so far.
    entries: i64,
    /// Not in `tracking_merges` yet.
    new: bool,
}

impl<'c> Merge<'c> {
    fn start(carrier: &'c str, level: i64, run_id: i64, sources: &[RunInfo]) -> Self {
        Merge {
            carrier,
            level,
            run_id,
            sources: sources.iter().map(|r| r.run_id).collect(),
            newest_source: sources.iter().map(|r| r.newest_source).max().unwrap_or(run_id),
            positions: vec!["^"; sources.len()].join(" "),
            previous: String::new(),
            entries: 0,
            new: true,
        }
    }

    /// The carrier's merges under way, by level.
    fn under_way(tx: &mut Tx<'_>, carrier: &'c str) -> Result<Vec<Self>> {
        tx.rows(
            "SELECT level, run_id, sources, newest_source, positions, previous, entries
             FROM tracking_merges WHERE carrier = $1 ORDER BY level",
            args![carrier],
            |r| {
                let sources = r.text(2)?;
                let sources = sources
                    .split(' ')
                    .map(|id| id.parse::<i64>())
                    .collect::<Result<Vec<_>, _>>()
                    .context("a merge of tracking numbers has malformed sources")?;
                Ok(Merge {
                    carrier,
                    level: r.int(0)?,
                    run_id: r.int(1)?,
                    sources,
                    newest_source: r.int(3)?,
                    positions: r.text(4)?,
                    previous: r.text(5)?,
                    entries: r.int(6)?,
                    new: false,
                })
            },
        )
    }

    /// Writes the next `slice` entries or so (up to the end of a number), then saves where the
    /// merge stands, or ends it: the run it wrote counts from then on, the merged runs go.
    fn step(mut self, tx: &mut Tx<'_>, slice: usize) -> Result<()> {
        let started = std::time::Instant::now();
        let carrier = self.carrier;
        let positions: Vec<&str> = self.positions.split(' ').collect();
        if positions.len() != self.sources.len() {
            bail!(
                "a merge of tracking numbers of {carrier} has {} positions for {} runs",
                positions.len(),
                self.sources.len()
            );
        }
        let mut cursors = Vec::with_capacity(self.sources.len());
        for (&run_id, position) in self.sources.iter().zip(positions) {
            cursors.push(Cursor::resume(tx, carrier, run_id, position)?);
        }
        let mut run = RunWriter::new(carrier, self.run_id);
        let mut written = 0;
        // The smallest line at the cursors' heads, each time (lines order as their entries do).
        while let Some(next) = (0..cursors.len())
            .filter_map(|i| cursors[i].line().map(|l| (l, i)))
            .min()
            .map(|(_, i)| i)
        {
            let line = cursors[next].line().expect("a cursor with a line");
            let tracking_number = match line.split_once('\t') {
                Some((number, _)) if !number.is_empty() => number,
                _ => bail!("a tracking-number entry of the store is malformed: {line:?}"),
            };
            // A slice ends with a number, so that a number's entries share a chunk.
            if written >= slice && tracking_number != run.last {
                break;
            }
            if line != self.previous {
                run.push_line(tx, tracking_number, line)?;
                self.previous.clear();
                self.previous.push_str(line);
                written += 1;
            }
            cursors[next].advance(tx, carrier)?;
        }
        self.entries += written as i64;
        let done = cursors.iter().all(|c| c.done);
        if done {
            run.finish(tx, self.level + 1, self.entries, self.newest_source)?;
            for &run_id in &self.sources {
                for sql in [
                    "DELETE FROM tracking_run_chunks WHERE carrier = $1 AND run_id = $2",
                    "DELETE FROM tracking_runs WHERE carrier = $1 AND run_id = $2",
                ] {
                    tx.execute(sql, args![carrier, run_id])?;
                }
            }
            if !self.new {
                tx.execute(
                    "DELETE FROM tracking_merges WHERE carrier = $1 AND level = $2",
                    args![carrier, self.level],
                )?;
            }
        } else {
            run.flush(tx)?;
            self.positions = cursors.iter().map(Cursor::position).collect::<Vec<_>>().join(" ");
            if self.new {
                let sources = self.sources.iter().map(i64::to_string).collect::<Vec<_>>().join(" ");
                let mut row = Pending::new(&MERGES);
                row.push(args![
                    carrier,
                    self.level,
                    self.run_id,
                    &sources,
                    self.newest_source,
                    &self.positions,
                    &self.previous,
                    self.entries
                ]);
                row.flush(&mut **tx)?;
            } else {
                tx.execute(
                    "UPDATE tracking_merges SET positions = $3, previous = $4, entries = $5 WHERE carrier = $1 AND level = $2",
                    args![carrier, self.level, &self.positions, &self.previous, self.entries],
                )?;
            }
        }
        tracing::debug!(
            carrier,
            level = self.level + 1,
            written,
            entries = self.entries,
            done,
            ms = started.elapsed().as_millis() as u64,
            "tracking numbers merged"
        );
        Ok(())
    }
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
        // The chunk last read, reused while the numbers fall inside it.
        let mut held: Option<ReadChunk> = None;
        for &number in numbers {
            if !held.as_ref().is_some_and(|c| c.covers(number)) {
                held = tx
                    .first(
                        "SELECT entries FROM tracking_run_chunks
                         WHERE carrier = $1 AND run_id = $2 AND first_number <= $3
                         ORDER BY first_number DESC LIMIT 1",
                        args![carrier, run_id, number],
                        |r| r.text(0),
                    )?
                    .map(ReadChunk::new);
            }
            if let Some(chunk) = &held {
                for line in chunk.lines_of(number) {
                    found(Entry::parse(line)?);
                }
            }
        }
    }
    Ok(())
}

/// A chunk read for lookups, with where each of its lines starts, so that a number's lines are
/// found by binary search (lines are in key order, a number's lines together).
struct ReadChunk {
    text: String,
    /// Where each line starts, and where the text ends.
    bounds: Vec<usize>,
}

impl ReadChunk {
    fn new(text: String) -> Self {
        let mut bounds = Vec::with_capacity(CHUNK_ENTRIES + 2);
        bounds.push(0);
        // `memchr_iter`: vectorized; a byte-by-byte scan was a third of the lookups' time, and
        // `str::match_indices` ~200 instructions a line.
        bounds.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        if bounds.last() != Some(&text.len()) {
            bounds.push(text.len());
        }
        ReadChunk { text, bounds }
    }

    fn len(&self) -> usize {
        self.bounds.len() - 1
    }

    /// Line `i`, without its newline.
    fn line(&self, i: usize) -> &str {
        self.text[self.bounds[i]..self.bounds[i + 1]].trim_end_matches('\n')
    }

    /// The tracking number of the line that starts at `start`.
    fn number_from(&self, start: usize) -> &str {
        let rest = &self.text[start..];
        rest.find(['\t', '\n']).map_or(rest, |end| &rest[..end])
    }

    /// Whether `number`'s lines, if the run holds any, are in this chunk (a chunk is keyed by
    /// its first line's number, and the next chunk starts with a greater one).
    fn covers(&self, number: &str) -> bool {
        self.len() > 0 && self.number_from(0) <= number && self.number_from(self.bounds[self.len() - 1]) >= number
    }

    /// The lines of `number`.
    fn lines_of<'c>(&'c self, number: &'c str) -> impl Iterator<Item = &'c str> + 'c {
        let starts = &self.bounds[..self.len()];
        let from = starts.partition_point(|&start| self.number_from(start) < number);
        (from..self.len())
            .take_while(move |&i| self.number_from(self.bounds[i]) == number)
            .map(move |i| self.line(i))
    }
}

/// Hands `number` every tracking number of `carrier`'s runs that hold numbers of runs newer
/// than `since` (every run: -1), a chunk at a time.
pub(super) fn numbers(tx: &mut Tx<'_>, carrier: &str, since: i64, number: &mut dyn FnMut(&str)) -> Result<()> {
    tx.query(
        "SELECT c.entries FROM tracking_run_chunks c
         JOIN tracking_runs r ON r.carrier = c.carrier AND r.run_id = c.run_id
         WHERE c.carrier = $1 AND r.newest_source > $2",
        args![carrier, since],
        &mut |r| chunk_numbers(&r.text(0)?, number),
    )
}

/// Where a carrier's filter being built again stands in the carrier's runs (`filter.rs`): the
/// numbers before `from` are in it, read from whichever runs held them when it read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Scan {
    /// The next slice starts at this number (`None`: at the first).
    pub from: Option<String>,
    /// The runs the last slice read: each was read up to `from`, its chunk starting at `from`
    /// excepted. A run not among them (a merge's, which ended since) is read from its chunk
    /// holding `from`.
    pub runs: Vec<i64>,
}

/// Hands `number` the numbers of the next slice of `carrier`'s runs, about `entries` of them, in
/// key order across all runs, and returns where the scan stands after it (`None` once every
/// run is read to its end). Level-0 runs written after version `since` are skipped: their
/// batches added their numbers themselves.
///
/// A merge moves numbers from its runs to a new one, which counts from its end on: every number
/// the scan has not reached is read from whichever run holds it when the scan reaches it, and a
/// run new to the scan is read from its chunk that holds the scan's position. So a number that
/// the carrier held when the scan began is handed over once at least, merges or not.
pub(super) fn scan_numbers(
    tx: &mut Tx<'_>,
    carrier: &str,
    since: i64,
    scan: &Scan,
    entries: usize,
    number: &mut dyn FnMut(&str),
) -> Result<Option<Scan>> {
    let listed: Vec<(i64, i64)> = tx.rows(
        "SELECT run_id, entries FROM tracking_runs WHERE carrier = $1 AND (level > 0 OR run_id <= $2) ORDER BY run_id",
        args![carrier, since],
        |r| Ok((r.int(0)?, r.int(1)?)),
    )?;
    let Some(&(largest, largest_entries)) = listed.iter().max_by_key(|(_, entries)| *entries) else {
        return Ok(None);
    };
    let from = scan.from.as_deref().unwrap_or("");
    let chunk = |r: &dyn super::backend::Row| Ok((r.text(0)?, r.text(1)?));
    // The slice ends at a chunk of the largest run, whose chunks are the narrowest (numbers
    // spread over the same key range in every run): its share of the slice's entries, in
    // chunks, and then the first chunk it does not read.
    let total: i64 = listed.iter().map(|(_, entries)| entries).sum();
    let share = (entries as u64).saturating_mul(largest_entries.max(0) as u64) / total.max(1) as u64;
    let take = share.div_ceil(CHUNK_ENTRIES as u64).max(1) as i64;
    let mut chunks: Vec<(String, String)> = tx.rows(
        "SELECT first_number, entries FROM tracking_run_chunks
         WHERE carrier = $1 AND run_id = $2 AND first_number >= $3
         ORDER BY first_number LIMIT $4",
        args![carrier, largest, from, take + 1],
        chunk,
    )?;
    let end = (chunks.len() as i64 > take).then(|| chunks.pop().expect("a chunk").0);
    let runs: Vec<i64> = listed.iter().map(|(run_id, _)| *run_id).collect();
    for &run_id in &runs {
        if scan.from.is_some() && !scan.runs.contains(&run_id) {
            // New to the scan (a merge's run): its chunk holding `from` as well.
            chunks.extend(tx.first(
                "SELECT first_number, entries FROM tracking_run_chunks
                 WHERE carrier = $1 AND run_id = $2 AND first_number < $3
                 ORDER BY first_number DESC LIMIT 1",
                args![carrier, run_id, from],
                chunk,
            )?);
        }
        if run_id == largest {
            continue;
        }
        match &end {
            Some(end) => chunks.extend(tx.rows(
                "SELECT first_number, entries FROM tracking_run_chunks
                 WHERE carrier = $1 AND run_id = $2 AND first_number >= $3 AND first_number < $4",
                args![carrier, run_id, from, end.as_str()],
                chunk,
            )?),
            None => chunks.extend(tx.rows(
                "SELECT first_number, entries FROM tracking_run_chunks
                 WHERE carrier = $1 AND run_id = $2 AND first_number >= $3",
                args![carrier, run_id, from],
                chunk,
            )?),
        }
    }
    for (_, text) in &chunks {
        chunk_numbers(text, number)?;
    }
    Ok(end.map(|from| Scan { from: Some(from), runs }))
}

/// Hands `number` the tracking number of each line of a chunk: the text up to the line's first
/// TAB, without parsing the rest (building a filter from ~0.5 M entries took 55–95 ms with each
/// line parsed whole).
fn chunk_numbers(text: &str, number: &mut dyn FnMut(&str)) -> Result<()> {
    for line in text.split_terminator('\n') {
        match memchr::memchr(b'\t', line.as_bytes()) {
            Some(at) if at > 0 => number(&line[..at]),
            _ => bail!("a tracking-number entry of the store is malformed: {line:?}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_as_written_and_lines_order_as_entries() {
        let line_of = |e: &Entry<'_>| {
            let mut line = String::new();
            e.push_line(&mut line).unwrap();
            line
        };
        let a = Entry {
            tracking_number: "RR000000001DE",
            manifest_id: "LH-1",
            arrival_date: "2026-03-02",
        };
        let line = line_of(&a);
        assert_eq!(line, "RR000000001DE\tLH-1\t2026-03-02\n");
        assert_eq!(Entry::parse(line.trim_end()).unwrap(), a);
        // A shorter manifest id sorts first, as a tuple and as a line.
        for (shorter, longer) in [("LH-1", "LH-1a"), ("LH-", "LH-1")] {
            let (x, y) = (
                Entry {
                    manifest_id: shorter,
                    ..a
                },
                Entry {
                    manifest_id: longer,
                    ..a
                },
            );
            assert!(x < y && line_of(&x) < line_of(&y), "{shorter} {longer}");
        }
    }

    #[test]
    fn a_large_run_belongs_to_the_level_of_its_size() {
        let slice = MIN_SLICE as i64;
        assert_eq!(level_of(0), 0);
        assert_eq!(level_of(8 * slice - 1), 0);
        assert_eq!(level_of(8 * slice), 1);
        assert_eq!(level_of(64 * slice), 2);
        assert_eq!(level_of(10_000_000), 4);
        assert!(level_of(i64::MAX) < 64);
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

    #[test]
    fn a_chunk_finds_a_number_s_lines_as_a_scan_does() {
        // Numbers with one, two or three lines, as a run's chunk holds them (sorted lines).
        let mut lines: Vec<String> = Vec::new();
        for n in 0..97u32 {
            for m in 0..(1 + n % 3) {
                lines.push(format!("RR{:09}DE\tLH-{m}\t2026-03-0{}", n * 2, 1 + m));
            }
        }
        lines.sort();
        for ending in ["\n", ""] {
            let text = lines.join("\n") + ending;
            let chunk = ReadChunk::new(text.clone());
            for n in 0..200u32 {
                let number = format!("RR{n:09}DE");
                let scan: Vec<&str> = text.lines().filter(|l| l.split('\t').next() == Some(&number)).collect();
                let found: Vec<&str> = chunk.lines_of(&number).collect();
                assert_eq!(found, scan, "{number}, text ending {ending:?}");
                assert_eq!(chunk.covers(&number), n <= 192, "{number}");
            }
        }
        let empty = ReadChunk::new(String::new());
        assert!(!empty.covers("RR000000000DE"));
        assert_eq!(empty.lines_of("RR000000000DE").count(), 0);
    }

    #[test]
    fn sorting_by_prefix_gives_the_order_of_the_texts() {
        // Texts that share the first 16 bytes, that are prefixes of one another, that hold a
        // NUL, and ordinary tracking numbers.
        let mut texts: Vec<String> = vec![
            "".into(),
            "\0".into(),
            "RR".into(),
            "RR\0".into(),
            "RR000000001DE".into(),
            "RR000000001DEX".into(),
            "RR000000001DEXYZ1".into(),
            "RR000000001DEXYZ0".into(),
            "RR000000001DEXYZ".into(),
            "RR000000001DE\u{e9}".into(),
            "ZZ".into(),
        ];
        texts.extend((0..500u64).map(|i| format!("RR{:09}DE", (i * 7_919) % 1_000)));
        // Every length from 0 to 20, over a small alphabet so that long shared prefixes come
        // up (a fixed pseudo-random sequence).
        let mut seed = 2026u64;
        for _ in 0..2_000 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = (seed >> 33) as usize % 21;
            let text: String = (0..len)
                .map(|i| ['A', 'B', '0', '\t'][((seed >> (i % 30)) & 3) as usize])
                .collect();
            texts.push(text);
        }
        let mut by_prefix: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut expected = by_prefix.clone();
        expected.sort_unstable();
        sort_by_text(&mut by_prefix, |t| t);
        assert_eq!(by_prefix, expected);
        // Entries: the number first, then the manifest and the date.
        let mut entries: Vec<Entry<'_>> = expected
            .iter()
            .rev()
            .map(|t| Entry {
                tracking_number: t,
                manifest_id: if t.len() % 2 == 0 { "LH-2" } else { "LH-1" },
                arrival_date: "2026-03-02",
            })
            .collect();
        let mut sorted = entries.clone();
        sorted.sort_unstable();
        sort_by_text(&mut entries, |e| e.tracking_number);
        assert_eq!(entries, sorted);
    }
}
