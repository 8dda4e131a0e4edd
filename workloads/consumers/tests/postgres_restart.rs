//! Postgres stopped under the consumers: they retry without committing, and every event is
//! stored once Postgres is back. (Its own test binary: it stops the shared Postgres.)

mod support;

use std::time::Duration;

use silo_pipeline_tests::services::ctl;
use silo_pipeline_tests::wait;
use support::{Setup, event_id, exception};

#[tokio::test]
async fn postgres_down_then_back_loses_nothing() {
    let s = Setup::new("pgdown").await;
    let consumers = s.start_consumers().await;
    s.send(&s.message(&event_id(0), exception("Before", "outage")))
        .await;
    s.wait_events(1, Duration::from_secs(60)).await;

    ctl("stop", "postgres");
    let restore = scopeguard(|| ctl("start", "postgres"));
    for i in 1..=30 {
        s.send(&s.message(&event_id(i), exception("During", "outage")))
            .await;
    }
    wait::until(
        "the consumers to hit the outage",
        Duration::from_secs(60),
        || async {
            let e = consumers.metric("silo_consumers_errors_total").await;
            if e >= 1.0 {
                Ok(())
            } else {
                Err(format!("{e} errors"))
            }
        },
    )
    .await;
    drop(restore);

    s.wait_events(31, Duration::from_secs(120)).await;
    assert_eq!(
        s.issues().await,
        vec![
            ("Before: outage".to_owned(), 1),
            ("During: outage".to_owned(), 30)
        ]
    );
    s.finish().await;
}

/// Runs `f` when dropped, so Postgres is started again even if the test fails midway.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
