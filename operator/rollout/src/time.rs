//! Millisecond arithmetic on API timestamps.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub fn millis(t: &Time) -> i64 {
    t.0.as_millisecond()
}

pub fn add(ms: i64, d: Duration) -> i64 {
    ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How long from `now` until `at` (zero when past).
pub fn until(now: &Time, at: i64) -> Duration {
    Duration::from_millis(u64::try_from(at.saturating_sub(millis(now))).unwrap_or(0))
}

#[cfg(test)]
pub fn at(ms: i64) -> Time {
    use k8s_openapi::jiff::Timestamp;
    Time(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
}
