//! Wall-clock timestamps for records and run ids, in UTC, without a time-zone database.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds and nanoseconds since the Unix epoch.
fn now_parts() -> (i64, u32) {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(_) => (0, 0),
    }
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split(secs: i64) -> (i64, u32, u32, i64, i64, i64) {
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (y, mo, d, s / 3600, (s % 3600) / 60, s % 60)
}

/// The current time as RFC 3339 in UTC with milliseconds, e.g. `2026-11-21T23:05:01.123Z`.
pub fn now_rfc3339() -> String {
    let (secs, nanos) = now_parts();
    let (y, mo, d, h, mi, s) = split(secs);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        nanos / 1_000_000
    )
}

/// A fresh run id: UTC time plus a few random hex digits, sortable by start time.
pub fn new_run_id() -> String {
    let (secs, nanos) = now_parts();
    let (y, mo, d, h, mi, s) = split(secs);
    let salt = blake3::hash(format!("{secs}.{nanos}.{}", std::process::id()).as_bytes());
    format!(
        "{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{}",
        &salt.to_hex()[..6]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_413), (2025, 11, 21));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(split(951_827_696), (2000, 2, 29, 12, 34, 56));
    }

    #[test]
    fn run_ids_sort_by_time_and_differ() {
        let a = new_run_id();
        assert_eq!(a.len(), "20261121-230501-abcdef".len());
        assert_ne!(a, new_run_id());
    }
}
