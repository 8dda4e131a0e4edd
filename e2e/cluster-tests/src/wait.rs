//! Poll a condition against the API server until it holds or a deadline passes.

use std::future::Future;
use std::time::{Duration, Instant};

/// Interval between two probes.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Outcome of one probe.
pub enum Check<T> {
    /// The condition holds; the value is handed back to the caller.
    Done(T),
    /// Not yet; the text describes what was observed, for the timeout message.
    Pending(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("timed out after {timeout:?} waiting for {what}; last observed: {last}")]
    Timeout {
        what: String,
        timeout: Duration,
        last: String,
    },
    #[error("while waiting for {what}: {source}")]
    Probe {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// Run `probe` until it reports [`Check::Done`], failing after `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Check<T>, kube::Error>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(Check::Done(value)) => return Ok(value),
            Ok(Check::Pending(observed)) => observed,
            Err(source) => {
                return Err(Error::Probe {
                    what: what.to_owned(),
                    source,
                });
            }
        };
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
