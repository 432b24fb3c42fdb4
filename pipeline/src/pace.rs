//! When a batch that has waited closes: just in time to be assessed as the commit thread frees.
//!
//! The commit thread is the service's one serial stage. A batch closed while it is busy is
//! assessed (on the worker pool) and then waits for the commit thread. Closed the moment the
//! previous batch started committing, as it once was, a batch was ready long before the commit
//! thread was, and each of its messages waited that difference (about a commit less an
//! assessment, ~3–11 ms on average at 70,000 packages/s on a filled store) on top of its own
//! commit. Now it closes once the commit thread is expected to be free (the running commit
//! ended, and a whole commit for each batch queued or being assessed before it) within the time
//! this batch's assessment takes: it is assessed just as the thread frees, the messages that
//! arrive meanwhile go with it instead of with the next batch, a commit sooner, and the thread
//! commits as often as before.
//!
//! The expectations are running means of the seconds each stage took per input byte, measured
//! on the service's own batches. A mistaken expectation costs latency, never correctness: a
//! batch closes at the latest when the commits it would wait for are over (their expected time
//! runs out, or they end sooner), which is how a batch closed before this change with one
//! batch in flight allowed. A measurement counts at most 3× the mean it updates, and a
//! process's first commit is not measured (it builds the duplicate filters from the store, on
//! cold caches, and can take seconds): a stall does not hold the next batches back. (Means that
//! moved fast in the direction whose error costs latency, the commit's down and the
//! assessment's up, were tried: biased towards closing early, they left batches waiting 2.7–5.1
//! ms for the commit thread against 1.0–2.1 ms with these; BENCHMARKS.md §4, session 13.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Weight of a new measurement in a running mean.
const WEIGHT: f64 = 1.0 / 8.0;

/// A measurement counts at most this many times the mean it updates: one stalled commit (a
/// checkpoint, a broker retry) does not make the next batches wait for a stall.
const OUTLIER: f64 = 3.0;

/// Closing this much earlier than the expectation says: an assessment that runs a little longer
/// than its mean delays the commit thread (and so every later message), whereas one that ends
/// a little early only waits.
const MARGIN: f64 = 1.25;
const MARGIN_FIXED: Duration = Duration::from_millis(1);

/// What the consumer needs to know of the stages after it to close a batch on time.
#[derive(Debug, Default)]
pub struct Pace {
    /// The running commit: when it started, and its input bytes.
    running: Mutex<Option<(Instant, u64)>>,
    /// Input bytes handed to the assess stage and not in a commit yet.
    waiting: AtomicU64,
    /// Running means, seconds per input byte (`f64` bits; 0.0: nothing measured yet).
    assess_per_byte: AtomicU64,
    commit_per_byte: AtomicU64,
    /// Commits that reported how long they took.
    commits_measured: AtomicU64,
}

/// What lies ahead of a batch that would close now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ahead {
    /// How long the commit thread is expected to stay busy with the batches before this one.
    pub commit_busy: Duration,
    /// How long this batch's assessment is expected to take, with a margin.
    pub assess: Duration,
}

impl Ahead {
    /// Whether a batch closed now would be assessed no earlier than the commit thread frees.
    pub fn in_time(&self) -> bool {
        self.commit_busy <= self.assess
    }
}

impl Pace {
    fn running(&self) -> MutexGuard<'_, Option<(Instant, u64)>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The consumer handed a batch of `bytes` input bytes to the assess stage.
    pub fn handed(&self, bytes: u64) {
        self.waiting.fetch_add(bytes, Ordering::SeqCst);
    }

    /// The assess stage took `took` over a batch of `bytes`.
    pub fn assessed(&self, bytes: u64, took: Duration) {
        update(&self.assess_per_byte, bytes, took);
    }

    /// The commit thread starts on a group of `bytes` (committing it, or abandoning it).
    pub fn commit_starts(&self, bytes: u64) {
        let _ = self
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| Some(w.saturating_sub(bytes)));
        *self.running() = Some((Instant::now(), bytes));
    }

    /// The running commit ended; `took` is how long its committed attempt took (`None`: the group
    /// was abandoned, which says nothing about the next commit). The first commit that took a
    /// measurable time is not measured (see the module's documentation).
    pub fn commit_ends(&self, took: Option<Duration>) {
        let running = self.running().take();
        if let (Some(took), Some((_, bytes))) = (took, running) {
            if self.commits_measured.fetch_add(1, Ordering::SeqCst) > 0 {
                update(&self.commit_per_byte, bytes, took);
            }
        }
    }

    /// What lies ahead of a batch of `open_bytes` closed now.
    pub fn ahead(&self, open_bytes: u64) -> Ahead {
        let commit_rate = f64::from_bits(self.commit_per_byte.load(Ordering::SeqCst));
        let assess_rate = f64::from_bits(self.assess_per_byte.load(Ordering::SeqCst));
        let running = match *self.running() {
            None => Duration::ZERO,
            Some((started, bytes)) => seconds(commit_rate * bytes as f64).saturating_sub(started.elapsed()),
        };
        let queued = seconds(commit_rate * self.waiting.load(Ordering::SeqCst) as f64);
        Ahead {
            commit_busy: running.saturating_add(queued),
            assess: seconds(assess_rate * open_bytes as f64 * MARGIN).saturating_add(MARGIN_FIXED),
        }
    }
}

/// Folds `took` over `bytes` into the running mean `mean` (seconds per byte).
fn update(mean: &AtomicU64, bytes: u64, took: Duration) {
    if bytes == 0 {
        return;
    }
    let sample = took.as_secs_f64() / bytes as f64;
    let _ = mean.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |bits| {
        let old = f64::from_bits(bits);
        let new = if old > 0.0 {
            old + (sample.min(old * OUTLIER) - old) * WEIGHT
        } else {
            sample
        };
        Some(new.to_bits())
    });
}

/// `s` seconds as a duration: 0 for NaN or anything not positive, the longest duration for
/// anything too long for one (an expectation that large is "not soon").
fn seconds(s: f64) -> Duration {
    if s.is_nan() || s <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const US: Duration = Duration::from_micros(1);

    /// A pace past the process's first commit (which is not measured).
    fn started() -> Pace {
        let pace = Pace::default();
        pace.commit_starts(1_000);
        pace.commit_ends(Some(Duration::from_secs(5)));
        pace
    }

    #[test]
    fn a_process_s_first_commit_is_not_measured() {
        let pace = started();
        pace.handed(1_000);
        assert_eq!(pace.ahead(0).commit_busy, Duration::ZERO);
        pace.commit_starts(1_000);
        pace.commit_ends(Some(10 * MS));
        pace.handed(1_000);
        assert!(pace.ahead(0).commit_busy.abs_diff(10 * MS) < US);
    }

    #[test]
    fn with_nothing_measured_nothing_is_ahead() {
        let pace = Pace::default();
        pace.handed(1_000);
        pace.commit_starts(1_000);
        let a = pace.ahead(500);
        assert_eq!(a.commit_busy, Duration::ZERO);
        assert!(a.in_time());
    }

    #[test]
    fn a_batch_waits_while_the_running_commit_has_longer_left_than_its_assessment() {
        let pace = started();
        // 100 ms per 1,000 bytes to commit, 20 ms per 1,000 bytes to assess.
        pace.assessed(1_000, 20 * MS);
        pace.handed(1_000);
        pace.commit_starts(1_000);
        pace.commit_ends(Some(100 * MS));
        pace.handed(2_000);
        pace.commit_starts(2_000);
        let a = pace.ahead(2_000);
        // The commit of 2,000 bytes is expected to take 200 ms; little of it has passed (the
        // bound leaves this thread 100 ms to be descheduled on a busy machine).
        assert!(a.commit_busy > 100 * MS && a.commit_busy <= 200 * MS, "{a:?}");
        // 40 ms for 2,000 bytes, with the margin.
        assert!(a.assess.abs_diff(51 * MS) < US, "{a:?}");
        assert!(!a.in_time());
        std::thread::sleep(160 * MS);
        let a = pace.ahead(2_000);
        assert!(a.commit_busy <= 40 * MS, "{a:?}");
        assert!(a.in_time());
        // A commit that ends sooner than expected frees the batch at once.
        pace.commit_ends(Some(160 * MS));
        assert_eq!(pace.ahead(2_000).commit_busy, Duration::ZERO);
    }

    #[test]
    fn batches_assessed_but_not_committing_count_a_whole_commit_each() {
        let pace = started();
        pace.handed(1_000);
        pace.commit_starts(1_000);
        pace.commit_ends(Some(100 * MS));
        pace.handed(3_000);
        assert_eq!(pace.ahead(0).commit_busy, 300 * MS);
        pace.commit_starts(1_000);
        let busy = pace.ahead(0).commit_busy;
        assert!(busy > 200 * MS && busy <= 300 * MS, "{busy:?}");
        pace.commit_ends(None);
        assert_eq!(pace.ahead(0).commit_busy, 200 * MS);
        pace.commit_starts(2_000);
        pace.commit_ends(None);
        assert_eq!(pace.ahead(0).commit_busy, Duration::ZERO);
    }

    /// 20 commits of 1,000 bytes taking `ms` each: the commit's mean settles there.
    fn settled(ms: u32) -> Pace {
        let pace = started();
        for _ in 0..20 {
            pace.commit_starts(1_000);
            pace.commit_ends(Some(ms * MS));
        }
        pace
    }

    fn commit_busy_for_1000(pace: &Pace) -> Duration {
        pace.handed(1_000);
        let busy = pace.ahead(0).commit_busy;
        pace.commit_starts(1_000);
        pace.commit_ends(None);
        busy
    }

    #[test]
    fn one_stalled_commit_moves_the_mean_a_bounded_step() {
        let pace = settled(10);
        assert!(commit_busy_for_1000(&pace).abs_diff(10 * MS) < US);
        pace.commit_starts(1_000);
        pace.commit_ends(Some(Duration::from_secs(2)));
        // 10 ms + (30 − 10) / 8 = 12.5 ms, not the 2 s stall's share.
        let busy = commit_busy_for_1000(&pace);
        assert!(busy.abs_diff(12_500 * US) < US, "{busy:?}");
        // A commit that was not measured (abandoned) leaves the mean.
        assert_eq!(commit_busy_for_1000(&pace), busy);
        // A faster commit pulls it down an eighth of the way.
        pace.commit_starts(1_000);
        pace.commit_ends(Some(4 * MS));
        let busy = commit_busy_for_1000(&pace);
        assert!(busy.abs_diff(11_437_500 * Duration::from_nanos(1)) < US, "{busy:?}");
    }

    #[test]
    fn an_assessment_s_mean_moves_an_eighth_of_the_way() {
        let pace = Pace::default();
        pace.assessed(1_000, 10 * MS);
        pace.assessed(1_000, 20 * MS);
        // 10 + (20 − 10) / 8 = 11.25 ms, then the margin: × 1.25 + 1 ms.
        let rose = pace.ahead(1_000).assess;
        assert!(rose.abs_diff(15_062_500 * Duration::from_nanos(1)) < US, "{rose:?}");
        pace.assessed(1_000, 7 * MS);
        // 11.25 − (11.25 − 7) / 8 = 10.71875 ms, then the margin.
        let fell = pace.ahead(1_000).assess;
        assert!(fell.abs_diff(14_398_437 * Duration::from_nanos(1)) < US, "{fell:?}");
    }

    #[test]
    fn expectations_beyond_any_duration_are_the_longest_one_and_nonsense_is_zero() {
        assert_eq!(seconds(f64::INFINITY), Duration::MAX);
        assert_eq!(seconds(1e30), Duration::MAX);
        assert_eq!(seconds(f64::NAN), Duration::ZERO);
        assert_eq!(seconds(-1.0), Duration::ZERO);
        assert_eq!(seconds(0.25), Duration::from_millis(250));
        // The largest counts give a long wait, not a panic or a wrap to "now".
        let pace = settled(10);
        pace.commit_starts(u64::MAX);
        pace.handed(u64::MAX);
        let a = pace.ahead(0);
        assert!(a.commit_busy > Duration::from_secs(1 << 40), "{a:?}");
        assert!(!a.in_time());
    }
}
