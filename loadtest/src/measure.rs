//! What the load test measures besides counts: a latency histogram and per-process samples
//! (resident memory and CPU time) read from `/proc`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (the unit of Kafka timestamps).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A latency histogram in whole milliseconds (Kafka timestamps have no finer resolution):
/// one exact bucket per millisecond up to `LIMIT_MS`, and one overflow bucket.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    overflow: u64,
    total: u64,
    max: i64,
    sum: i64,
}

const LIMIT_MS: usize = 120_000;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; LIMIT_MS],
            overflow: 0,
            total: 0,
            max: 0,
            sum: 0,
        }
    }
}

impl Histogram {
    /// Records one latency; negative values (clock steps) count as 0.
    pub fn record(&mut self, ms: i64) {
        let ms = ms.max(0);
        match self.counts.get_mut(ms as usize) {
            Some(c) => *c += 1,
            None => self.overflow += 1,
        }
        self.total += 1;
        self.max = self.max.max(ms);
        self.sum += ms;
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The smallest latency that `q` (0..=1) of the samples do not exceed.
    pub fn quantile(&self, q: f64) -> i64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (ms, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return ms as i64;
            }
        }
        self.max
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.total,
            "p50_ms": self.quantile(0.50),
            "p95_ms": self.quantile(0.95),
            "p99_ms": self.quantile(0.99),
            "p999_ms": self.quantile(0.999),
            "max_ms": self.max,
            "mean_ms": (self.mean() * 10.0).round() / 10.0,
        })
    }
}

/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ; 100 on every Linux we run on).
const TICKS_PER_S: f64 = 100.0;

/// Resident memory in KiB (`VmRSS` of `/proc/PID/status`), or `None` once the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds the process used so far (`/proc/PID/stat` fields 14 and 15).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields we want follow its closing ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state), so utime (14) is the 12th of it.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_exact_to_the_millisecond() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(ms);
        }
        assert_eq!(h.quantile(0.5), 50);
        assert_eq!(h.quantile(0.99), 99);
        assert_eq!(h.quantile(1.0), 100);
        h.record(1_000_000);
        assert_eq!(h.quantile(1.0), 1_000_000);
    }

    #[test]
    fn reads_our_own_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_seconds(pid).is_some());
    }
}
