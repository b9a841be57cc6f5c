//! Time helpers: one representation (nanoseconds since the epoch) in the catalog,
//! RFC 3339 UTC at the edges.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ns() -> i64 {
    to_ns(SystemTime::now())
}

pub fn to_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

pub fn from_ns(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-24T10:00:00.123Z`.
pub fn rfc3339(ns: i64) -> String {
    humantime::format_rfc3339_millis(from_ns(ns)).to_string()
}
