//! The migration gate: a version's workloads start only after its migration Job succeeded,
//! and that Job starts only once the stores are ready. A failed Job leaves the previous
//! version serving.

use silo_api::conditions::reason;

/// What the migration Job of the desired version reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed { message: String },
}

/// Everything the gate looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateInput<'a> {
    /// The version the silo should run.
    pub target: &'a str,
    /// `Err(message)` naming the store that is not ready and why.
    pub stores: Result<(), String>,
    /// Name and state of the target's migration Job, when it exists.
    pub job: Option<(&'a str, JobState)>,
    /// The version the silo's Deployments run now (their pod template's version label).
    pub running: Option<&'a str>,
}

/// A condition the gate decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateVerdict {
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

/// What the build and status steps do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Include the target's migration Job in the desired set.
    pub run_job: bool,
    /// The version the workloads are built at (`None`: no workload is built yet).
    pub workload_version: Option<String>,
    pub infrastructure: GateVerdict,
    pub migrations: GateVerdict,
}

pub fn decide(input: &GateInput<'_>) -> Decision {
    let infrastructure = match &input.stores {
        Ok(()) => GateVerdict {
            ok: true,
            reason: reason::READY.to_owned(),
            message: "every store is ready".to_owned(),
        },
        Err(message) => GateVerdict {
            ok: false,
            reason: reason::STORE_NOT_READY.to_owned(),
            message: message.clone(),
        },
    };
    // The version the Deployments run passed this gate when it rolled out (a Deployment is
    // only ever built at a version whose Job succeeded): going back to it, or an operator
    // restart, needs no new Job, whose pods would only check the same migrations again.
    let runs_target = input.running == Some(input.target);
    // A Job that exists stays (a store restarting must not delete a migration under way).
    let run_job = input.job.is_some() || (input.stores.is_ok() && !runs_target);
    let previous = || match input.running {
        Some(v) if v != input.target => format!("; version {v} keeps serving"),
        _ => String::new(),
    };
    let migrations = match &input.job {
        _ if runs_target => GateVerdict {
            ok: true,
            reason: reason::MIGRATED.to_owned(),
            message: format!(
                "version {} runs; its migrations were applied when it rolled out",
                input.target
            ),
        },
        Some((_, JobState::Succeeded)) => GateVerdict {
            ok: true,
            reason: reason::MIGRATED.to_owned(),
            message: format!("migrations of version {} are applied", input.target),
        },
        Some((name, JobState::Failed { message })) => GateVerdict {
            ok: false,
            reason: reason::MIGRATION_FAILED.to_owned(),
            message: format!(
                "migration Job {name} of version {} failed: {message}{}. Fix the cause (its pod's log says why) and delete the Job to retry, or go back to the previous version",
                input.target,
                previous()
            ),
        },
        Some((name, JobState::Running)) => GateVerdict {
            ok: false,
            reason: reason::MIGRATING.to_owned(),
            message: format!(
                "migration Job {name} of version {} is running{}",
                input.target,
                previous()
            ),
        },
        None if input.stores.is_ok() => GateVerdict {
            ok: false,
            reason: reason::MIGRATING.to_owned(),
            message: format!("creating the migration Job of version {}", input.target),
        },
        None => GateVerdict {
            ok: false,
            reason: reason::WAITING_FOR_INFRASTRUCTURE.to_owned(),
            message: format!(
                "migrations of version {} wait for the stores{}",
                input.target,
                previous()
            ),
        },
    };
    let workload_version = if migrations.ok {
        Some(input.target.to_owned())
    } else {
        input.running.map(str::to_owned)
    };
    Decision {
        run_job,
        workload_version,
        infrastructure,
        migrations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(
        stores: Result<(), String>,
        job: Option<JobState>,
        running: Option<&'a str>,
    ) -> GateInput<'a> {
        GateInput {
            target: "2.0.0",
            stores,
            job: job.map(|j| ("migrate-2.0.0", j)),
            running,
        }
    }

    #[test]
    fn nothing_runs_before_the_stores_are_ready() {
        let d = decide(&input(Err("postgres: Pending".into()), None, None));
        assert!(!d.run_job);
        assert_eq!(d.workload_version, None);
        assert!(!d.infrastructure.ok);
        assert_eq!(d.migrations.reason, reason::WAITING_FOR_INFRASTRUCTURE);
    }

    #[test]
    fn the_job_starts_with_ready_stores_and_workloads_follow_its_success() {
        let d = decide(&input(Ok(()), None, None));
        assert!(d.run_job);
        assert_eq!(d.workload_version, None);
        let d = decide(&input(Ok(()), Some(JobState::Running), None));
        assert_eq!(d.workload_version, None);
        assert_eq!(d.migrations.reason, reason::MIGRATING);
        let d = decide(&input(Ok(()), Some(JobState::Succeeded), None));
        assert!(d.migrations.ok);
        assert_eq!(d.workload_version.as_deref(), Some("2.0.0"));
    }

    #[test]
    fn a_failed_migration_keeps_the_previous_version() {
        let d = decide(&input(
            Ok(()),
            Some(JobState::Failed {
                message: "BackoffLimitExceeded".into(),
            }),
            Some("1.0.0"),
        ));
        assert!(!d.migrations.ok);
        assert_eq!(d.migrations.reason, reason::MIGRATION_FAILED);
        assert!(
            d.migrations.message.contains("migrate-2.0.0"),
            "{:?}",
            d.migrations
        );
        assert!(d.migrations.message.contains("1.0.0 keeps serving"));
        assert_eq!(d.workload_version.as_deref(), Some("1.0.0"));
    }

    #[test]
    fn going_back_to_the_running_version_needs_no_job() {
        // Pinned to 2.0.0, whose Job failed; back to 1.0.0, which still runs.
        let back = GateInput {
            target: "1.0.0",
            stores: Ok(()),
            job: None,
            running: Some("1.0.0"),
        };
        let d = decide(&back);
        assert!(!d.run_job, "no Job re-checks a version that runs");
        assert!(d.migrations.ok, "{:?}", d.migrations);
        assert_eq!(d.migrations.reason, reason::MIGRATED);
        assert_eq!(d.workload_version.as_deref(), Some("1.0.0"));
    }

    #[test]
    fn a_store_blip_keeps_an_existing_job_and_the_running_version() {
        let d = decide(&input(
            Err("kafka: not ready".into()),
            Some(JobState::Succeeded),
            Some("2.0.0"),
        ));
        assert!(d.run_job);
        assert!(!d.infrastructure.ok);
        assert_eq!(d.workload_version.as_deref(), Some("2.0.0"));
    }
}
