//! Regions whose cluster cannot be reached during a rollout: counted apart, never failed for
//! it, never listed upgraded while it lasts, and moved once their cluster answers again
//! (past `progressDeadline` they are deferred: `deferred.rs`).

use silo_api::RolloutPhase;

use super::{complete, fleet};

#[test]
fn an_unreachable_cluster_is_counted_apart_and_upgraded_once_it_answers() {
    let mut f = fleet(serde_json::json!({}));
    // r05's cluster stops answering before its group starts.
    f.set_reachable("r05", false);
    f.version = "2".into();
    f.run_until(|f| f.started.iter().any(|n| n == "r05"), 200);
    let early: Vec<&str> = f
        .started
        .iter()
        .map(String::as_str)
        .filter(|n| ("r01"..="r10").contains(n))
        .collect();
    assert_eq!(
        early.len(),
        10,
        "it starts last in its group, the reachable ones first: {early:?}"
    );
    assert_eq!(early.last(), Some(&"r05"));
    // Unreachable for less than progressDeadline (20 s): counted apart, not failed; it holds
    // its slot, its group does not finish, the next one does not start, the control silo
    // stays.
    for _ in 0..30 {
        f.tick();
    }
    let l = f.ledger.clone().expect("ledger");
    assert_eq!(l.phase, RolloutPhase::Progressing, "{l:?}");
    assert!(l.failed.is_empty(), "{:?}", l.failed);
    assert!(l.deferred.is_empty(), "{:?}", l.deferred);
    assert_eq!(l.groups[1].unreachable, 1, "{:?}", l.groups[1]);
    assert_eq!(l.groups[1].done, 9);
    assert_eq!(l.groups[2].pending, 9, "the next group waits");
    assert!(!l.upgraded.contains(&"r05".to_owned()));
    assert_eq!(f.control_running.as_deref(), Some("1"));
    // Back: it moves and soaks like any other, within a deadline counted from its return.
    f.set_reachable("r05", true);
    f.run_until(complete, 400);
    let l = f.ledger.as_ref().expect("ledger");
    assert!(l.failed.is_empty(), "{:?}", l.failed);
    assert_eq!((l.done, l.total), (20, 20));
    assert!(
        f.regions.iter().all(|r| r.history == ["1", "2"]),
        "every Region moved exactly once"
    );
}

#[test]
fn a_region_whose_cluster_goes_away_while_soaking_soaks_again_after_its_return() {
    let mut f = fleet(serde_json::json!({}));
    f.version = "2".into();
    f.run_until(
        |f| f.ledger.as_ref().is_some_and(|l| l.groups[0].soaking == 1),
        20,
    );
    f.set_reachable("r00", false);
    // 30 s: longer than the soak (5 s) and progressDeadline (20 s).
    for _ in 0..60 {
        f.tick();
    }
    let l = f.ledger.as_ref().expect("ledger");
    assert!(l.upgraded.is_empty() && l.failed.is_empty(), "{l:?}");
    assert_eq!(l.groups[0].unreachable, 1, "{:?}", l.groups[0]);
    assert_eq!(f.started, ["r00"], "the next group waits");
    f.set_reachable("r00", true);
    let back = f.now;
    f.run_until(
        |f| {
            f.ledger
                .as_ref()
                .is_some_and(|l| l.upgraded.iter().any(|n| n == "r00"))
        },
        40,
    );
    assert!(f.now - back >= 5000, "a whole soak after the return");
    f.run_until(complete, 400);
    assert_eq!(f.region("r00").history, ["1", "2"]);
}
