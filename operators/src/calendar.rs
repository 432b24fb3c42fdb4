//! Dates: the US Eastern arrival date of a manifest, and the monthly payment due date.

use crate::rates::Month;
use crate::table::{parse_date, DataError, DataFile};
use ahash::AHashSet;
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Weekday};
use serde::Deserialize;
use std::path::Path;

/// Parses an RFC 3339 timestamp with an offset (`2026-03-02T13:05:00-05:00`, `...Z`).
pub fn parse_rfc3339(s: &str) -> Option<DateTime<FixedOffset>> {
    // RFC 3339 requires the `T` (or space) separator and an explicit offset; chrono checks both.
    DateTime::parse_from_rfc3339(s).ok()
}

/// The calendar date in US Eastern time (America/New_York, with its DST rules).
pub fn eastern_date(t: DateTime<FixedOffset>) -> NaiveDate {
    t.with_timezone(&chrono_tz::America::New_York).date_naive()
}

/// The payment calendar: which days count as business days.
pub struct PaymentCalendar {
    pub business_day: u32,
    holidays: AHashSet<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentDoc {
    business_day: u32,
    exclude_federal_holidays: bool,
    holidays: String,
}

impl PaymentCalendar {
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let file = DataFile::read(&dir.join("payment.toml"))?;
        let doc: PaymentDoc = file.toml()?;
        if !(1..=20).contains(&doc.business_day) {
            return Err(DataError::file(&file.path, "business_day must be between 1 and 20"));
        }
        let mut holidays = AHashSet::new();
        if doc.exclude_federal_holidays {
            let hfile = DataFile::read(&dir.join(&doc.holidays))?;
            for row in hfile.csv(&["date", "name"])? {
                holidays.insert(parse_date(&hfile, row.line, row.fields[0])?);
            }
        }
        Ok(PaymentCalendar {
            business_day: doc.business_day,
            holidays,
        })
    }

    pub fn is_business_day(&self, d: NaiveDate) -> bool {
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !self.holidays.contains(&d)
    }

    /// The due date for the duty on arrivals in `month`.
    pub fn due_date(&self, month: Month) -> NaiveDate {
        let next = month.next();
        let mut d = NaiveDate::from_ymd_opt(next.year, next.month, 1).expect("valid first of month");
        let mut count = 0;
        loop {
            if self.is_business_day(d) {
                count += 1;
                if count == self.business_day {
                    return d;
                }
            }
            d = d.succ_opt().expect("date in range");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn eastern_date_across_midnight_and_dst() {
        // 03:30 UTC on 24 Feb is still 23 Feb in New York (EST, UTC−5).
        assert_eq!(
            eastern_date(parse_rfc3339("2026-02-24T03:30:00Z").unwrap()),
            d("2026-02-23")
        );
        assert_eq!(
            eastern_date(parse_rfc3339("2026-02-24T05:00:00Z").unwrap()),
            d("2026-02-24")
        );
        // DST starts 8 March 2026: after it New York is UTC−4, so 03:59Z on 9 March is 8 March.
        assert_eq!(
            eastern_date(parse_rfc3339("2026-03-09T03:59:00Z").unwrap()),
            d("2026-03-08")
        );
        assert_eq!(
            eastern_date(parse_rfc3339("2026-03-09T04:00:00Z").unwrap()),
            d("2026-03-09")
        );
        // Summer: 24 July 2026 starts at 04:00Z.
        assert_eq!(
            eastern_date(parse_rfc3339("2026-07-24T03:59:59Z").unwrap()),
            d("2026-07-23")
        );
        assert_eq!(
            eastern_date(parse_rfc3339("2026-07-24T04:00:00Z").unwrap()),
            d("2026-07-24")
        );
        // DST ends 2 Nov 2025: 04:30Z on 3 Nov is 23:30 EST on 2 Nov.
        assert_eq!(
            eastern_date(parse_rfc3339("2025-11-03T04:30:00Z").unwrap()),
            d("2025-11-02")
        );
        // An offset far from New York: 09:00+09:00 on 29 Aug 2025 is 20:00 EDT on 28 Aug.
        assert_eq!(
            eastern_date(parse_rfc3339("2025-08-29T09:00:00+09:00").unwrap()),
            d("2025-08-28")
        );
    }

    #[test]
    fn rfc3339_requires_an_offset() {
        assert!(parse_rfc3339("2026-03-02T13:05:00").is_none());
        assert!(parse_rfc3339("2026-03-02").is_none());
        assert!(parse_rfc3339("2026-02-30T10:00:00Z").is_none());
        assert!(parse_rfc3339("2026-03-02T13:05:00+01:00").is_some());
    }

    #[test]
    fn due_on_the_seventh_business_day_of_the_next_month() {
        let cal = PaymentCalendar::load(&crate::config_dir_for_tests()).unwrap();
        // The brief's example: September 2025 arrivals were due 9 October 2025.
        assert_eq!(cal.due_date(Month { year: 2025, month: 9 }), d("2025-10-09"));
        // January 2026 has New Year's Day... February 2026: 2 Mar (Mon) is day 1 → 10 Mar.
        assert_eq!(cal.due_date(Month { year: 2026, month: 2 }), d("2026-03-10"));
        // December 2025 → January 2026: 1 Jan is a holiday; 2 Jan (Fri) is day 1 → 12 Jan.
        assert_eq!(cal.due_date(Month { year: 2025, month: 12 }), d("2026-01-12"));
        // June 2026 → July 2026: 3 July is Independence Day observed; day 7 is 10 July.
        assert_eq!(cal.due_date(Month { year: 2026, month: 6 }), d("2026-07-10"));
    }
}
