//! Regions in flight whose cluster does not answer for longer than `progressDeadline` are
//! deferred: they free their slot, their group finishes past them once another of its
//! Regions upgraded, the control silo waits for them, and they upgrade (or fail) once their
//! cluster answers again.

use std::time::Duration;

use silo_api::RolloutPhase;

use super::{Fleet, complete, fleet};
use crate::plan::{Event, RegionView, Snapshot, step};
use crate::strategy::Strategy;
use crate::time;

/// The usual three groups, the early one at most one Region at a time.
fn one_at_a_time() -> Fleet {
    fleet(serde_json::json!({
        "groups": [
            {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}, "maxConcurrency": 1, "minSuccessTime": "5s"},
            {"name": "early", "selector": {"matchLabels": {"tier": "early"}}, "maxConcurrency": 1, "minSuccessTime": "5s"},
        ],
    }))
}

fn started(f: &Fleet, name: &str) -> bool {
    f.started.iter().any(|n| n == name)
}

/// r05's cluster stops answering before the rollout of 2 starts; the rest of the fleet
/// upgrades.
fn r05_down_the_rest_upgraded() -> Fleet {
    let mut f = fleet(serde_json::json!({}));
    f.set_reachable("r05", false);
    f.version = "2".into();
    f.run_until(
        |f| {
            f.ledger
                .as_ref()
                .is_some_and(|l| l.groups.get(2).is_some_and(|g| g.done == 9))
        },
        400,
    );
    f
}

#[test]
fn a_deferred_region_frees_its_slot() {
    let mut f = one_at_a_time();
    f.version = "2".into();
    f.run_until(|f| started(f, "r01"), 100);
    // The first of the early group loses its cluster right after its move.
    f.set_reachable("r01", false);
    let down = f.now;
    f.run_until(|f| f.now >= down + 19_000, 100);
    let l = f.ledger.clone().expect("ledger");
    assert_eq!(f.started, ["r00", "r01"], "it holds its slot until then");
    assert!(l.deferred.is_empty(), "{l:?}");
    assert_eq!(l.groups[1].unreachable, 1, "{:?}", l.groups[1]);
    // Unreachable for longer than progressDeadline (20 s): deferred, the next one starts.
    f.run_until(|f| f.started.len() == 3, 10);
    assert!(f.now - down >= 20_000, "deferred {} ms after", f.now - down);
    assert_eq!(f.started[2], "r02");
    let l = f.ledger.clone().expect("ledger");
    assert_eq!(l.deferred, ["r01"]);
    let flying: Vec<&str> = l.in_flight.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(flying, ["r01", "r02"], "it keeps its move");
    assert!(l.failed.is_empty(), "never failed for it: {:?}", l.failed);
    let early = &l.groups[1];
    assert_eq!((early.unreachable, early.upgrading), (1, 1), "{early:?}");
    assert!(
        l.message.contains("deferred") && l.message.contains("r01"),
        "{}",
        l.message
    );
    assert!(f.events.iter().any(|e| matches!(
        e,
        Event::RegionDeferred { region, group, .. } if region == "r01" && group == "early"
    )));
    // Back: it upgrades at the version it was moved to, once, and the rollout completes.
    f.set_reachable("r01", true);
    f.run_until(complete, 400);
    let l = f.ledger.as_ref().expect("ledger");
    assert_eq!((l.done, l.total), (20, 20));
    assert!(l.deferred.is_empty() && l.failed.is_empty(), "{l:?}");
    assert_eq!(f.region("r01").history, ["1", "2"]);
}

#[test]
fn a_group_finishes_past_a_deferred_region_and_the_next_group_starts() {
    let f = r05_down_the_rest_upgraded();
    let l = f.ledger.as_ref().expect("ledger");
    let early = &l.groups[1];
    assert_eq!(
        (early.done, early.unreachable, early.failed),
        (9, 1, 0),
        "{early:?}"
    );
    assert_eq!(l.deferred, ["r05"]);
    assert!(l.failed.is_empty(), "{:?}", l.failed);
    assert!(
        f.events
            .iter()
            .any(|e| matches!(e, Event::GroupFinished { group } if group == "early"))
    );
    let default = f.started.iter().position(|n| n.as_str() > "r10");
    let r05 = f.started.iter().position(|n| n == "r05");
    assert!(r05 < default, "r05 started in its group's turn");
}

#[test]
fn the_control_silo_waits_for_a_deferred_region_and_the_rollout_completes_on_its_return() {
    let mut f = r05_down_the_rest_upgraded();
    for _ in 0..60 {
        f.tick();
    }
    let l = f.ledger.clone().expect("ledger");
    assert_eq!(l.phase, RolloutPhase::Progressing, "{l:?}");
    assert_eq!((l.done, l.total), (19, 20));
    assert_eq!(
        f.control_running.as_deref(),
        Some("1"),
        "control never runs ahead of a region"
    );
    assert!(
        l.message.contains("control silo stays at 1") && l.message.contains("r05"),
        "{}",
        l.message
    );
    assert!(!f.events.iter().any(|e| matches!(e, Event::Complete { .. })));
    f.set_reachable("r05", true);
    f.run_until(complete, 100);
    let l = f.ledger.as_ref().expect("ledger");
    assert_eq!((l.done, l.total), (20, 20));
    assert!(l.deferred.is_empty() && l.failed.is_empty(), "{l:?}");
    assert_eq!(f.control_running.as_deref(), Some("2"));
    assert!(
        f.regions.iter().all(|r| r.history == ["1", "2"]),
        "every Region moved exactly once"
    );
}

#[test]
fn a_group_whose_only_region_is_deferred_keeps_waiting() {
    let mut f = fleet(serde_json::json!({}));
    f.version = "2".into();
    f.run_until(|f| started(f, "r00"), 5);
    f.set_reachable("r00", false);
    // 60 s: three times progressDeadline.
    for _ in 0..120 {
        f.tick();
    }
    let l = f.ledger.clone().expect("ledger");
    assert_eq!(l.deferred, ["r00"]);
    assert_eq!(l.phase, RolloutPhase::Progressing, "{l:?}");
    assert_eq!(
        f.started,
        ["r00"],
        "no group goes on before the version proved itself"
    );
    assert_eq!(l.groups[0].unreachable, 1, "{:?}", l.groups[0]);
    assert_eq!(l.groups[1].pending, 10, "{:?}", l.groups[1]);
    assert!(
        l.message.contains("group canary waits") && l.message.contains("r00"),
        "{}",
        l.message
    );
    assert_eq!(f.control_running.as_deref(), Some("1"));
    f.set_reachable("r00", true);
    f.run_until(complete, 400);
    assert_eq!(f.region("r00").history, ["1", "2"]);
}

#[test]
fn a_deferred_region_that_fails_after_its_return_counts_against_max_failures() {
    let mut f = r05_down_the_rest_upgraded();
    f.broken = Some("2".into());
    f.set_reachable("r05", true);
    let back = f.now;
    f.run_until(|f| f.phase() == RolloutPhase::Failed, 100);
    assert!(
        f.now - back >= 20_000,
        "its progressDeadline runs from its return"
    );
    let l = f.ledger.as_ref().expect("ledger");
    let failed: Vec<(&str, &str)> = l
        .failed
        .iter()
        .map(|r| (r.name.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(failed, [("r05", "ProgressDeadlineExceeded")]);
    assert!(l.deferred.is_empty(), "{l:?}");
    assert_eq!(f.control_running.as_deref(), Some("1"));
    assert!(f.events.iter().any(|e| matches!(
        e,
        Event::Stopped {
            failed: 1,
            budget: 0
        }
    )));
}

#[test]
fn deferral_is_decided_from_status_alone_and_the_same_snapshot_gives_the_same_plan() {
    let mut f = one_at_a_time();
    f.version = "2".into();
    f.run_until(|f| started(f, "r01"), 100);
    f.set_reachable("r01", false);
    let down = f.now;
    f.tick();
    let written = f.ledger.clone().expect("ledger");
    assert!(written.deferred.is_empty());
    let strategy = Strategy::from_spec(&f.spec).expect("strategy");
    let views: Vec<RegionView> = f.regions.iter().map(|r| r.view.clone()).collect();
    let at = |ms: i64, ledger| Snapshot {
        now: time::at(ms),
        version: "2",
        strategy: &strategy,
        ledger: Some(ledger),
        control_running: Some("1"),
        regions: &views,
    };
    // Before the deadline a step asks to be run again when the Region is deferred.
    let early = step(&at(down + 5_000, &written));
    assert_eq!(early.recheck, Some(Duration::from_secs(15)));
    assert!(early.ledger.deferred.is_empty());
    // An operator that was down meanwhile starts 25 s after the cluster stopped answering:
    // the ledger and the Regions' status say the Region is deferred.
    let snapshot = at(down + 25_000, &written);
    let first = step(&snapshot);
    let again = step(&snapshot);
    assert_eq!(first, again);
    assert_eq!(first.ledger.deferred, ["r01"]);
    let flying: Vec<&str> = first
        .ledger
        .in_flight
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(flying, ["r01", "r02"]);
    assert!(
        first
            .events
            .iter()
            .any(|e| matches!(e, Event::RegionDeferred { region, .. } if region == "r01"))
    );
    // Once that ledger is written, stepping from it again decides nothing new.
    let next = step(&at(down + 25_000, &first.ledger));
    assert_eq!(next.ledger, first.ledger);
    assert!(next.events.is_empty(), "{:?}", next.events);
}
