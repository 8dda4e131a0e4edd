//! One silo's stores and migrations as the Region and ControlPlane reconcilers see them:
//! resolve how each store is provided, judge the stores from the watched StatefulSets and
//! pods, read the migration Job, and turn the gate's decision into conditions.
//!
//! ```text
//!   spec + Stores ─► resolve ─► SiloInfra ─► build(stores only) ─► stores_ready ─┐
//!   Job store ─► job_state ──────────────────────────────────────────────────────┼─► gate::decide
//!   Deployment store ─► running_version ─────────────────────────────────────────┘
//! ```

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use silo_api::conditions::{self, reason};
use silo_api::{ManagedStore, Store, StoreSpec, Workload};

use crate::build::{self, DesiredSet};
use crate::infra::gate::{self, Decision, GateInput, JobState};
use crate::infra::{ExternalError, Provided, SiloInfra, resolve_external, storage_for};
use crate::labels;
use crate::pods::PodProblems;
use crate::status::{self, Verdict, Waiting};
use crate::stores::Stores;

/// Where one store of a silo comes from, as the spec says.
#[derive(Clone, Debug)]
pub enum Source<'a> {
    /// A Region's `infrastructure.<store>`.
    Spec(&'a StoreSpec),
    /// Always managed, with this sizing (the control silo's and monolith's stores).
    Managed(&'a ManagedStore),
    /// A Secret in the silo's namespace with the URL under `key`.
    Reference { secret: &'a str, key: &'a str },
}

/// Resolve how each store is provided: storage from the cluster's classes and the existing
/// StatefulSet, external Secrets from the operator's namespace.
pub fn resolve(
    stores: &Stores,
    namespace: &str,
    sources: &[(Store, Source<'_>)],
    retain_on_delete: bool,
) -> Result<SiloInfra, ExternalError> {
    let default_class = stores.has_default_storage_class();
    let managed = |store: Store, sizing: &ManagedStore| {
        let existing = stores
            .stateful_sets
            .get(&ObjectRef::new(store.name()).within(namespace))
            .map(|s| s.state.has_claims);
        Provided::Managed {
            sizing: sizing.clone(),
            storage: storage_for(store, sizing, default_class, existing),
        }
    };
    let mut infra = SiloInfra {
        postgres: Provided::Reference {
            secret: String::new(),
            key: String::new(),
        },
        redis: None,
        kafka: None,
        retain_on_delete,
    };
    for (store, source) in sources {
        let provided = match source {
            Source::Managed(sizing) => managed(*store, sizing),
            Source::Reference { secret, key } => Provided::Reference {
                secret: (*secret).to_owned(),
                key: (*key).to_owned(),
            },
            Source::Spec(spec) => match (&spec.external, spec.managed()) {
                (Some(external), _) => {
                    let secret = stores.external_secret(&external.secret_name);
                    let data = resolve_external(
                        *store,
                        &stores.operator_namespace,
                        external,
                        secret.as_deref(),
                    )?;
                    Provided::External {
                        source: external.secret_name.clone(),
                        data,
                    }
                }
                (None, sizing) => managed(*store, &sizing.unwrap_or_default()),
            },
        };
        match store {
            Store::Postgres => infra.postgres = provided,
            Store::Redis => infra.redis = Some(provided),
            Store::Kafka => infra.kafka = Some(provided),
        }
    }
    Ok(infra)
}

/// Whether every managed store of `set` is ready; otherwise which are not and why (the pod's
/// reason when one of their pods cannot run).
pub fn stores_ready(
    set: &DesiredSet,
    stores: &Stores,
    problems: &PodProblems,
) -> Result<(), String> {
    let mut waiting = Vec::new();
    for want in set.stateful_sets() {
        let name = want.name_any();
        let ns = want.namespace().unwrap_or_default();
        let want_hash = want.annotations().get(labels::SPEC_HASH);
        let why = match stores.stateful_sets.get(&ObjectRef::new(&name).within(&ns)) {
            None => Err("not created yet".to_owned()),
            Some(have) if have.meta.spec_hash.as_ref() != want_hash => {
                Err("update not yet observed".to_owned())
            }
            Some(have) => status::stateful_set_ready(&have),
        };
        if let Err(why) = why {
            match problems.of(&ns, &name) {
                Some(problem) => waiting.push(format!(
                    "{name} is not ready (pod {}: {}: {})",
                    problem.pod,
                    problem.reason,
                    problem.message.chars().take(300).collect::<String>()
                )),
                None => waiting.push(format!("{name} is not ready ({why})")),
            }
        }
    }
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(format!("waiting for stores: {}", waiting.join("; ")))
    }
}

/// What a Job's status says.
pub fn job_state(job: &Job) -> JobState {
    let status = job.status.as_ref();
    let condition = |type_: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == "True"))
    };
    if condition("Complete").is_some() || status.and_then(|s| s.succeeded).unwrap_or(0) > 0 {
        return JobState::Succeeded;
    }
    if let Some(failed) = condition("Failed") {
        let message = [failed.reason.as_deref(), failed.message.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        return JobState::Failed { message };
    }
    JobState::Running
}

/// The version the silo's Deployments run (the pod template's version label of the first
/// workload found), if any runs.
pub fn running_version(stores: &Stores, namespace: &str) -> Option<String> {
    Workload::ALL.iter().find_map(|w| {
        stores
            .deployments
            .get(&ObjectRef::new(w.name()).within(namespace))?
            .state
            .version
            .clone()
    })
}

/// Decide the gate of a silo whose stores-only set is `stores_set` and whose desired
/// version is `target`.
pub fn decide(
    stores: &Stores,
    problems: &PodProblems,
    namespace: &str,
    target: &str,
    stores_set: &DesiredSet,
    infra: &SiloInfra,
) -> Decision {
    let job_name = build::job_name(target);
    let job = stores
        .jobs
        .get(&ObjectRef::new(&job_name).within(namespace))
        .map(|j| j.state.clone());
    let running = running_version(stores, namespace);
    let job_running = job == Some(JobState::Running);
    let job_failed = matches!(job, Some(JobState::Failed { .. }));
    let mut decision = gate::decide(&GateInput {
        target,
        stores: stores_ready(stores_set, stores, problems),
        job: job.map(|j| (job_name.as_str(), j)),
        running: running.as_deref(),
    });
    // A migration pod that cannot run (bad image, crash) is named with the kubelet's reason.
    if job_running && let Some(problem) = problems.of(namespace, build::MIGRATE_NAME) {
        decision.migrations.message = format!(
            "{} (pod {}: {}: {})",
            decision.migrations.message,
            problem.pod,
            problem.reason,
            problem.message.chars().take(300).collect::<String>()
        );
        decision.migrations.reason = problem.reason;
    } else if job_failed && let Some(problem) = problems.of(namespace, build::MIGRATE_NAME) {
        // Why it failed, from the end of its pod's log (e.g. the database refused the
        // password): the reason stays MigrationFailed.
        decision.migrations.message = format!(
            "{} (pod {}: {})",
            decision.migrations.message, problem.pod, problem.message
        );
    }
    // A migration pod that could not use an external store (refused credentials, TLS, DNS,
    // no answer) says which store, where, and what went wrong.
    if (job_running || job_failed)
        && let Some(problem) = problems.of(namespace, build::MIGRATE_NAME)
        && let Some((reason, message)) = crate::infra::connection::failure(infra, &problem.message)
    {
        decision.infrastructure = gate::GateVerdict {
            ok: false,
            reason: reason.to_owned(),
            message,
        };
    }
    decision
}

/// Conditions of a silo after a successful apply: `Ready` is all of `InfrastructureReady`,
/// `MigrationsComplete` and `WorkloadsReady`.
pub fn verdicts(
    silo: &str,
    decision: &Decision,
    infra: &SiloInfra,
    workloads: Result<(), Waiting>,
) -> Vec<Verdict> {
    let mut infrastructure = decision.infrastructure.clone();
    let ephemeral = infra.ephemeral();
    if !ephemeral.is_empty() {
        let names: Vec<&str> = ephemeral.iter().map(|s| s.name()).collect();
        infrastructure.message = format!(
            "{}; no StorageClass to claim from (set storageClassName or give the cluster a default class): {} keep their data in an emptyDir, lost when their pod is deleted",
            infrastructure.message,
            names.join(", ")
        );
    }
    let workloads = match (&decision.workload_version, workloads) {
        (None, _) => Err(Waiting {
            reason: reason::PROGRESSING.to_owned(),
            message: "the workloads start once the migrations of their version are applied"
                .to_owned(),
        }),
        (Some(_), result) => result,
    };
    let ready = if !infrastructure.ok {
        Verdict::new(
            conditions::READY,
            false,
            &infrastructure.reason,
            infrastructure.message.clone(),
        )
    } else if !decision.migrations.ok {
        Verdict::new(
            conditions::READY,
            false,
            &decision.migrations.reason,
            decision.migrations.message.clone(),
        )
    } else {
        match &workloads {
            Ok(()) => Verdict::new(
                conditions::READY,
                true,
                reason::READY,
                format!("{silo} is ready"),
            ),
            Err(w) => Verdict::new(conditions::READY, false, &w.reason, w.message.clone()),
        }
    };
    vec![
        ready,
        Verdict::new(
            conditions::INFRASTRUCTURE_READY,
            infrastructure.ok,
            &infrastructure.reason,
            infrastructure.message,
        ),
        Verdict::new(
            conditions::MIGRATIONS_COMPLETE,
            decision.migrations.ok,
            &decision.migrations.reason,
            decision.migrations.message.clone(),
        ),
        match workloads {
            Ok(()) => Verdict::new(
                conditions::WORKLOADS_READY,
                true,
                reason::AVAILABLE,
                format!("{silo} workloads are available at the desired spec"),
            ),
            Err(w) => Verdict::new(conditions::WORKLOADS_READY, false, &w.reason, w.message),
        },
        Verdict::new(
            conditions::RECONCILED,
            true,
            reason::APPLIED,
            "every desired object is applied",
        ),
    ]
}

/// Conditions when an external store's Secret is unusable: nothing of the silo changes.
pub fn external_invalid(error: &ExternalError) -> Vec<Verdict> {
    let message = format!("{error}; nothing else of the silo was changed");
    vec![
        Verdict::new(
            conditions::READY,
            false,
            reason::EXTERNAL_SECRET_INVALID,
            message.clone(),
        ),
        Verdict::new(
            conditions::INFRASTRUCTURE_READY,
            false,
            reason::EXTERNAL_SECRET_INVALID,
            message,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    use super::*;

    fn job(conditions: Vec<(&str, &str)>, succeeded: i32) -> Job {
        Job {
            status: Some(JobStatus {
                succeeded: Some(succeeded),
                conditions: Some(
                    conditions
                        .into_iter()
                        .map(|(t, r)| JobCondition {
                            type_: t.into(),
                            status: "True".into(),
                            reason: Some(r.into()),
                            message: Some("Job has reached the specified backoff limit".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn job_states_follow_its_conditions() {
        assert_eq!(job_state(&job(vec![], 0)), JobState::Running);
        assert_eq!(
            job_state(&job(vec![("Complete", "")], 1)),
            JobState::Succeeded
        );
        match job_state(&job(vec![("Failed", "BackoffLimitExceeded")], 0)) {
            JobState::Failed { message } => {
                assert!(
                    message.starts_with("BackoffLimitExceeded: Job has reached"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
