use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use silo_api::conditions::reason;
use silo_api::{CredentialRotationRequest, RotationPhase, Store};

use super::*;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
}

fn request(token: &str, stores: &[&str]) -> CredentialRotationRequest {
    CredentialRotationRequest {
        token: token.to_owned(),
        stores: stores.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn view(store: Store, secret: SecretView, jobs: &[(&str, JobState)]) -> StoreView {
    StoreView {
        store,
        provision: Provision::Managed,
        secret: Some(secret),
        jobs: jobs
            .iter()
            .map(|(n, s)| ((*n).to_owned(), s.clone()))
            .collect(),
    }
}

fn fresh_postgres() -> SecretView {
    SecretView {
        username: Some("silo".into()),
        ..SecretView::default()
    }
}

fn decide_one(
    request: Option<&CredentialRotationRequest>,
    stores: Vec<StoreView>,
    stale: &[&str],
) -> Decision {
    decide(&Snapshot {
        request,
        stores,
        previous: &[],
        stale_pods: stale.iter().map(|s| (*s).to_owned()).collect(),
        now: now(),
    })
}

#[test]
fn postgres_walks_every_phase_from_the_original_login() {
    let ask = request("t1", &["postgres"]);
    let set = job_name(Store::Postgres, JobKind::Set, "t1");
    let retire = job_name(Store::Postgres, JobKind::Retire, "t1");

    // Requested: a new password is generated first.
    let d = decide_one(
        Some(&ask),
        vec![view(Store::Postgres, fresh_postgres(), &[])],
        &[],
    );
    assert_eq!(
        d.steps,
        [SecretStep::PrepareNext {
            store: Store::Postgres
        }]
    );
    assert!(d.jobs.is_empty());
    assert_eq!(d.status[0].phase, RotationPhase::Requested);
    assert!(d.in_flight);

    // Then the Job sets it on the second login while the first still works.
    let next = SecretView {
        has_next: true,
        ..fresh_postgres()
    };
    let d = decide_one(
        Some(&ask),
        vec![view(Store::Postgres, next.clone(), &[])],
        &[],
    );
    assert_eq!(d.jobs.len(), 1);
    assert_eq!(d.jobs[0].name, set);
    assert_eq!(d.jobs[0].login.as_deref(), Some("silo_a"));
    assert!(d.steps.is_empty());
    let verdict = d.verdict.unwrap();
    assert_eq!(verdict.reason, reason::ROTATING);
    assert!(!verdict.ok);

    // The Job succeeded: the Secret moves to the new login (the Job stays until then).
    let d = decide_one(
        Some(&ask),
        vec![view(Store::Postgres, next, &[(&set, JobState::Succeeded)])],
        &[],
    );
    assert_eq!(
        d.steps,
        [SecretStep::Swap {
            store: Store::Postgres,
            token: "t1".into(),
            login: "silo_a".into()
        }]
    );
    assert_eq!(d.jobs.len(), 1);
    assert_eq!(d.status[0].phase, RotationPhase::NewCredentialSet);

    // Swapped: pods started with the old password keep the old one alive.
    let swapped = SecretView {
        username: Some("silo_a".into()),
        token: Some("t1".into()),
        has_next: false,
        previous_username: Some("silo".into()),
        has_previous: true,
    };
    let d = decide_one(
        Some(&ask),
        vec![view(Store::Postgres, swapped.clone(), &[])],
        &["web-1", "relay-2"],
    );
    assert!(d.jobs.is_empty() && d.steps.is_empty());
    assert_eq!(d.status[0].phase, RotationPhase::NewCredentialSet);
    assert!(
        d.status[0].message.contains("relay-2"),
        "{}",
        d.status[0].message
    );

    // Every pod rolled: the retire Job runs, then the Secret drops the old password.
    let d = decide_one(
        Some(&ask),
        vec![view(Store::Postgres, swapped.clone(), &[])],
        &[],
    );
    assert_eq!(d.jobs[0].name, retire);
    assert_eq!(d.jobs[0].kind, JobKind::Retire);
    assert_eq!(d.status[0].phase, RotationPhase::Rolled);
    let d = decide_one(
        Some(&ask),
        vec![view(
            Store::Postgres,
            swapped,
            &[(&retire, JobState::Succeeded)],
        )],
        &[],
    );
    assert_eq!(
        d.steps,
        [SecretStep::Clean {
            store: Store::Postgres
        }]
    );

    // Done: the same token again is a no-op.
    let done = SecretView {
        username: Some("silo_a".into()),
        token: Some("t1".into()),
        ..SecretView::default()
    };
    let d = decide_one(Some(&ask), vec![view(Store::Postgres, done, &[])], &[]);
    assert!(d.jobs.is_empty() && d.steps.is_empty() && !d.in_flight);
    assert_eq!(d.status[0].phase, RotationPhase::OldRetired);
    assert_eq!(d.status[0].finished_at, Some(now()));
    let verdict = d.verdict.unwrap();
    assert!(verdict.ok, "{verdict:?}");
    assert_eq!(verdict.reason, reason::ROTATED);
    assert!(verdict.message.contains("postgres") && verdict.message.contains("t1"));
}

#[test]
fn logins_alternate_between_two_roles() {
    assert_eq!(next_login("silo"), "silo_a");
    assert_eq!(next_login("silo_a"), "silo_b");
    assert_eq!(next_login("silo_b"), "silo_a");
}

#[test]
fn a_new_token_rotates_again_after_the_last_one() {
    let done = SecretView {
        username: Some("silo_a".into()),
        token: Some("t1".into()),
        has_next: true,
        ..SecretView::default()
    };
    let ask = request("t2", &[]);
    let d = decide_one(Some(&ask), vec![view(Store::Postgres, done, &[])], &[]);
    assert_eq!(d.jobs[0].login.as_deref(), Some("silo_b"));
    assert_eq!(
        d.jobs[0].name,
        job_name(Store::Postgres, JobKind::Set, "t2")
    );
}

#[test]
fn a_rolled_rotation_is_finished_before_a_newer_token_starts() {
    let swapped = SecretView {
        username: Some("silo_a".into()),
        token: Some("t1".into()),
        previous_username: Some("silo".into()),
        has_previous: true,
        ..SecretView::default()
    };
    let ask = request("t2", &["postgres"]);
    let d = decide_one(Some(&ask), vec![view(Store::Postgres, swapped, &[])], &[]);
    assert_eq!(
        d.jobs[0].name,
        job_name(Store::Postgres, JobKind::Retire, "t1")
    );
    assert_eq!(d.status[0].token, "t1");
    assert!(d.steps.is_empty());
    // Even with the request removed, the old password is retired.
    let swapped = SecretView {
        username: Some("silo_a".into()),
        token: Some("t1".into()),
        has_previous: true,
        ..SecretView::default()
    };
    let d = decide_one(None, vec![view(Store::Postgres, swapped, &[])], &[]);
    assert_eq!(d.jobs.len(), 1);
}

#[test]
fn redis_keeps_its_user_and_takes_a_second_password() {
    let ask = request("t1", &["redis"]);
    let secret = SecretView {
        has_next: true,
        ..SecretView::default()
    };
    let set = job_name(Store::Redis, JobKind::Set, "t1");
    let d = decide_one(
        Some(&ask),
        vec![view(Store::Redis, secret, &[(&set, JobState::Succeeded)])],
        &[],
    );
    assert_eq!(d.jobs[0].login, None);
    assert!(matches!(
        &d.steps[0],
        SecretStep::Swap {
            store: Store::Redis,
            ..
        }
    ));
}

#[test]
fn a_failed_job_is_named_and_nothing_moves() {
    let ask = request("t1", &["postgres"]);
    let set = job_name(Store::Postgres, JobKind::Set, "t1");
    let next = SecretView {
        has_next: true,
        ..fresh_postgres()
    };
    let d = decide_one(
        Some(&ask),
        vec![view(
            Store::Postgres,
            next,
            &[(
                &set,
                JobState::Failed {
                    message: "BackoffLimitExceeded".into(),
                },
            )],
        )],
        &[],
    );
    let verdict = d.verdict.unwrap();
    assert_eq!(verdict.reason, reason::ROTATION_FAILED);
    assert!(verdict.message.contains(&set), "{}", verdict.message);
    assert!(d.steps.is_empty());
    // The failed Job stays in the set: its state is the record.
    assert_eq!(d.jobs.len(), 1);
    assert!(!d.in_flight);
}

#[test]
fn bad_requests_name_the_problem_and_the_valid_stores() {
    let external = StoreView {
        store: Store::Postgres,
        provision: Provision::External {
            source: "platform-pg".into(),
        },
        secret: None,
        jobs: Vec::new(),
    };
    let redis = view(Store::Redis, SecretView::default(), &[]);
    let cases = [
        (&["postgres"][..], "external", "platform-pg"),
        (&["mysql"][..], "unknown store \"mysql\"", "postgres, redis"),
        (&["kafka"][..], "no password", "postgres, redis"),
    ];
    for (stores, problem, hint) in cases {
        let ask = request("t1", stores);
        let d = decide_one(Some(&ask), vec![external.clone(), redis.clone()], &[]);
        let verdict = d.verdict.unwrap();
        assert_eq!(verdict.reason, reason::INVALID_ROTATION);
        assert!(verdict.message.contains(problem), "{}", verdict.message);
        assert!(verdict.message.contains(hint), "{}", verdict.message);
        assert!(d.jobs.is_empty() && d.steps.is_empty());
    }
    // Every store asked (empty list): external ones are skipped, managed ones rotate.
    let ask = request("t1", &[]);
    let d = decide_one(Some(&ask), vec![external, redis], &[]);
    assert_eq!(
        d.steps,
        [SecretStep::PrepareNext {
            store: Store::Redis
        }]
    );
}

#[test]
fn no_request_and_no_rotation_leaves_everything_as_it_is() {
    let d = decide_one(
        None,
        vec![view(Store::Postgres, fresh_postgres(), &[])],
        &[],
    );
    assert_eq!(d.verdict, None);
    assert!(d.jobs.is_empty() && d.steps.is_empty() && d.status.is_empty());
    assert_eq!(
        revision(&[view(Store::Postgres, fresh_postgres(), &[])]),
        None
    );
    let rotated = SecretView {
        token: Some("t1".into()),
        ..fresh_postgres()
    };
    assert_eq!(
        revision(&[
            view(Store::Postgres, rotated, &[]),
            view(Store::Redis, SecretView::default(), &[])
        ]),
        Some("postgres=t1".into())
    );
}
