//! Retrying a dependency with exponential backoff until it answers, gives up, or shutdown.

use std::future::Future;
use std::time::Duration;

use silo_runtime::{Backoff, Shutdown};

use crate::Interrupted;

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt<T> {
    Done(T),
    /// It can never succeed (already logged and counted): stop trying.
    GiveUp,
    /// A transient failure (already logged and counted): try again after the next delay.
    Again,
}

/// Run `attempt` until it is done or gives up (`Ok(None)`), waiting between tries with a
/// backoff doubling up to `max_backoff`; `Err(Interrupted)` when shutdown came first.
pub async fn retry<T, F, Fut>(
    max_backoff: Duration,
    shutdown: &Shutdown,
    mut attempt: F,
) -> Result<Option<T>, Interrupted>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut backoff = Backoff::new(max_backoff);
    loop {
        match attempt().await {
            Attempt::Done(value) => return Ok(Some(value)),
            Attempt::GiveUp => return Ok(None),
            Attempt::Again => {
                if !backoff.wait(shutdown).await {
                    return Err(Interrupted);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const FAST: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn retries_transient_failures_until_done() {
        let tries = AtomicU32::new(0);
        let result = retry(FAST, &Shutdown::new(), || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Attempt::Again,
                n => Attempt::Done(n),
            }
        })
        .await;
        assert_eq!(result, Ok(Some(2)));
    }

    #[tokio::test]
    async fn gives_up_without_waiting() {
        let result: Result<Option<()>, _> =
            retry(Duration::from_secs(60), &Shutdown::new(), || async {
                Attempt::GiveUp
            })
            .await;
        assert_eq!(result, Ok(None));
    }

    #[tokio::test]
    async fn shutdown_interrupts_the_wait() {
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let result: Result<Option<()>, _> = retry(Duration::from_secs(60), &shutdown, || async {
            Attempt::Again
        })
        .await;
        assert_eq!(result, Err(Interrupted));
    }
}
