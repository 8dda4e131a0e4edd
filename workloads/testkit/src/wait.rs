//! Waiting on conditions with a deadline (never a fixed sleep).

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked.
pub const POLL: Duration = Duration::from_millis(50);

/// Poll `check` every [`POLL`] until it returns `Ok`, or panic after `timeout` naming `what`
/// and the last observation (the `Err`).
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(observed) => observed,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`until`] for a check with nothing to report: `None` means not yet.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    until(what, timeout, || {
        let checked = check();
        async move { checked.await.ok_or_else(|| "not yet".to_owned()) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn returns_the_first_success() {
        let calls = AtomicU32::new(0);
        let value = until("the third call", Duration::from_secs(5), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                n @ 2.. => Ok(n),
                n => Err(format!("call {n}")),
            }
        })
        .await;
        assert_eq!(value, 2);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for never; last seen: not yet")]
    async fn panics_at_the_deadline_with_the_last_observation() {
        eventually("never", Duration::from_millis(120), || async { None::<()> }).await;
    }
}
