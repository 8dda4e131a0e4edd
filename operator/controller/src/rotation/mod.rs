//! Password rotation of a Region's managed stores, decided purely from a typed snapshot.
//!
//! ```text
//!   spec.rotateCredentials ─┐
//!   connection Secrets ─────┤  (login, token annotation, next-/previous- keys)
//!   rotation Jobs' state ───┼─► decide ─► Decision: Jobs to build, Secret steps to run,
//!   pods not yet rolled ────┤             pod template revision, status.credentials,
//!   status.credentials ─────┘             the CredentialsRotated condition
//! ```
//!
//! Per store: `Requested` (a new password is generated into the Secret's `next-password` and
//! a Job sets it in the store while the old one keeps working) -> `NewCredentialSet` (the
//! Secret holds the new password, the old one moves to `previous-*`; the pod templates'
//! revision changes, so every workload rolls) -> `Rolled` (no pod that read the old password
//! is left; a Job retires it) -> `OldRetired` (the `previous-*` keys are removed). Every step
//! is read back from the Secret and the Jobs, so a restart resumes where it stopped.
//!
//! Postgres alternates two login roles (`silo_a`, `silo_b`), members of the owning role
//! `silo` with `ALTER ROLE ... SET role = silo`, so objects keep one owner whatever login made
//! them; the first rotation moves a Region off the original `silo` login. Redis gives the
//! default user a second password (`ACL SETUSER default >new`), then removes the old one.

pub mod execute;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use silo_api::conditions::{self, reason};
use silo_api::{CredentialRotationRequest, CredentialRotationStatus, RotationPhase, Store};

use crate::infra::gate::JobState;
use crate::status::Verdict;

/// The stores whose managed form has a password.
pub const ROTATABLE: [Store; 2] = [Store::Postgres, Store::Redis];
/// Keys of a managed store's connection Secret.
pub const USERNAME_KEY: &str = "username";
pub const PASSWORD_KEY: &str = "password";
pub const NEXT_PASSWORD_KEY: &str = "next-password";
pub const PREVIOUS_USERNAME_KEY: &str = "previous-username";
pub const PREVIOUS_PASSWORD_KEY: &str = "previous-password";

/// How a Region provides a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provision {
    Managed,
    /// From the platform team's Secret `source`.
    External {
        source: String,
    },
    Absent,
}

/// What a managed store's connection Secret shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretView {
    pub username: Option<String>,
    /// The token its password comes from (`None`: generated at creation).
    pub token: Option<String>,
    pub has_next: bool,
    pub previous_username: Option<String>,
    pub has_previous: bool,
}

/// One store as the snapshot sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreView {
    pub store: Store,
    pub provision: Provision,
    /// `None`: the Secret does not exist yet.
    pub secret: Option<SecretView>,
    /// State of the Jobs named by [`job_name`] for this store, by step and token.
    pub jobs: Vec<(String, JobState)>,
}

impl StoreView {
    fn job(&self, name: &str) -> Option<&JobState> {
        self.jobs.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }
}

/// Everything the decision looks at.
#[derive(Clone, Debug)]
pub struct Snapshot<'a> {
    pub request: Option<&'a CredentialRotationRequest>,
    pub stores: Vec<StoreView>,
    pub previous: &'a [CredentialRotationStatus],
    /// Pods that connect to the stores and were not built at [`revision`] (they may hold an
    /// old password), by name.
    pub stale_pods: Vec<String>,
    pub now: Time,
}

/// A rotation step run by a Job in the Region's namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// Set the new password (Postgres: on login `login`) while the old one works.
    Set,
    /// Retire the old password.
    Retire,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Set => "set",
            JobKind::Retire => "retire",
        }
    }
}

/// A Job the build adds to the Region's desired set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationJob {
    pub store: Store,
    pub kind: JobKind,
    pub name: String,
    /// The login the Job sets (Postgres `Set` only).
    pub login: Option<String>,
}

/// A change the reconciler makes to a connection Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretStep {
    /// Generate a random password into `next-password` (unless one is there).
    PrepareNext { store: Store },
    /// Move the current login and password to `previous-*`, the next password (on `login`)
    /// to `username`/`password`/`uri`, and record `token`.
    Swap {
        store: Store,
        token: String,
        login: String,
    },
    /// Drop the `previous-*` keys: the old password is retired.
    Clean { store: Store },
}

/// What the reconciler does.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub jobs: Vec<RotationJob>,
    pub steps: Vec<SecretStep>,
    pub status: Vec<CredentialRotationStatus>,
    /// `CredentialsRotated`, when a rotation was asked or is under way.
    pub verdict: Option<Verdict>,
    /// A rotation is under way: look again soon (pods going away trigger nothing).
    pub in_flight: bool,
}

/// `rotate-<store>-<step>-<hash of token>`.
pub fn job_name(store: Store, kind: JobKind, token: &str) -> String {
    let hash = &crate::build::content_hash(&token)[..10];
    format!("rotate-{}-{}-{hash}", store.name(), kind.as_str())
}

/// The Postgres login after `current`: the original `silo` and `silo_b` go to `silo_a`,
/// `silo_a` to `silo_b`.
pub fn next_login(current: &str) -> String {
    let owner = crate::build::POSTGRES_USER;
    if current == format!("{owner}_a") {
        format!("{owner}_b")
    } else {
        format!("{owner}_a")
    }
}

/// The pod template revision: the token of every rotated store's Secret, `None` before any
/// rotation (templates stay as they were).
pub fn revision(stores: &[StoreView]) -> Option<String> {
    let parts: Vec<String> = stores
        .iter()
        .filter_map(|s| {
            let token = s.secret.as_ref()?.token.as_ref()?;
            Some(format!("{}={token}", s.store.name()))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// The stores `request` names, or why it cannot be honored.
fn requested(
    request: &CredentialRotationRequest,
    stores: &[StoreView],
) -> Result<Vec<Store>, String> {
    let valid = || {
        ROTATABLE
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let provision = |store: Store| {
        stores
            .iter()
            .find(|v| v.store == store)
            .map(|v| &v.provision)
    };
    if request.stores.is_empty() {
        return Ok(ROTATABLE
            .into_iter()
            .filter(|s| provision(*s) == Some(&Provision::Managed))
            .collect());
    }
    let mut chosen = Vec::new();
    for name in &request.stores {
        let store = ROTATABLE.into_iter().find(|s| s.name() == name);
        match (store, name.as_str()) {
            (Some(store), _) => match provision(store) {
                Some(Provision::Managed) => chosen.push(store),
                Some(Provision::External { source }) => {
                    return Err(format!(
                        "spec.rotateCredentials.stores names {name}, which is external: external stores rotate at their owner (change the password there, then update Secret {source} in the operator's namespace; the region's workloads roll on their own); remove {name} from the list"
                    ));
                }
                _ => {
                    return Err(format!(
                        "spec.rotateCredentials.stores names {name}, which this region does not use; valid: {}",
                        valid()
                    ));
                }
            },
            (None, "kafka") => {
                return Err(format!(
                    "spec.rotateCredentials.stores names kafka, which has no password (the region's namespace is its boundary); valid: {}",
                    valid()
                ));
            }
            (None, _) => {
                return Err(format!(
                    "spec.rotateCredentials.stores names unknown store {name:?}; valid: {}",
                    valid()
                ));
            }
        }
    }
    Ok(chosen)
}

/// Where one store stands.
struct Progress {
    token: String,
    phase: RotationPhase,
    login: Option<String>,
    message: String,
    failed: bool,
}

fn advance(
    view: &StoreView,
    wanted: Option<&str>,
    snapshot: &Snapshot<'_>,
    out: &mut Decision,
) -> Option<Progress> {
    let store = view.store;
    let Some(secret) = view.secret.as_ref() else {
        return wanted.map(|token| Progress {
            token: token.to_owned(),
            phase: RotationPhase::Requested,
            login: None,
            message: format!("waiting for Secret {}-credentials", store.name()),
            failed: false,
        });
    };
    let login = secret.username.clone();
    if secret.has_previous {
        // Swapped: finish this rotation (whatever token is asked now) before another.
        let token = secret.token.clone().unwrap_or_default();
        let retire = job_name(store, JobKind::Retire, &token);
        let mut progress = Progress {
            token,
            phase: RotationPhase::Rolled,
            login,
            message: String::new(),
            failed: false,
        };
        if !snapshot.stale_pods.is_empty() {
            progress.phase = RotationPhase::NewCredentialSet;
            let mut names = snapshot.stale_pods.clone();
            names.sort();
            let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
            progress.message = format!(
                "waiting for {} pod(s) started with the old password to be gone: {}",
                names.len(),
                shown.join(", ")
            );
            return Some(progress);
        }
        out.jobs.push(RotationJob {
            store,
            kind: JobKind::Retire,
            name: retire.clone(),
            login: None,
        });
        match view.job(&retire) {
            None | Some(JobState::Running) => {
                progress.message =
                    format!("every pod rolled; Job {retire} retires the old password");
            }
            Some(JobState::Succeeded) => {
                out.steps.push(SecretStep::Clean { store });
                progress.message = "old password retired".to_owned();
            }
            Some(JobState::Failed { message }) => {
                progress.failed = true;
                progress.message = format!(
                    "Job {retire} failed: {message}; its pod's log says why (the old password still works)"
                );
            }
        }
        return Some(progress);
    }
    let token = wanted?;
    if secret.token.as_deref() == Some(token) {
        return Some(Progress {
            token: token.to_owned(),
            phase: RotationPhase::OldRetired,
            login,
            message: String::new(),
            failed: false,
        });
    }
    let mut progress = Progress {
        token: token.to_owned(),
        phase: RotationPhase::Requested,
        login: login.clone(),
        message: String::new(),
        failed: false,
    };
    if !secret.has_next {
        out.steps.push(SecretStep::PrepareNext { store });
        progress.message = "generating the new password".to_owned();
        return Some(progress);
    }
    let next = match store {
        Store::Postgres => next_login(login.as_deref().unwrap_or(crate::build::POSTGRES_USER)),
        _ => login.clone().unwrap_or_default(),
    };
    let set = job_name(store, JobKind::Set, token);
    out.jobs.push(RotationJob {
        store,
        kind: JobKind::Set,
        name: set.clone(),
        login: (store == Store::Postgres).then(|| next.clone()),
    });
    match view.job(&set) {
        None | Some(JobState::Running) => {
            progress.message = format!("Job {set} sets the new password in the store");
        }
        Some(JobState::Succeeded) => {
            out.steps.push(SecretStep::Swap {
                store,
                token: token.to_owned(),
                login: next.clone(),
            });
            progress.phase = RotationPhase::NewCredentialSet;
            progress.login = Some(next);
            progress.message =
                "the store accepts both passwords; the Secret takes the new one".to_owned();
        }
        Some(JobState::Failed { message }) => {
            progress.failed = true;
            progress.message = format!(
                "Job {set} failed: {message}; its pod's log says why (nothing changed for the workloads; set a new token to try again)"
            );
        }
    }
    Some(progress)
}

/// Decide the next rotation steps.
pub fn decide(snapshot: &Snapshot<'_>) -> Decision {
    let mut out = Decision {
        jobs: Vec::new(),
        steps: Vec::new(),
        status: Vec::new(),
        verdict: None,
        in_flight: false,
    };
    let chosen = match snapshot.request.map(|r| requested(r, &snapshot.stores)) {
        Some(Err(problem)) => {
            out.verdict = Some(Verdict::new(
                conditions::CREDENTIALS_ROTATED,
                false,
                reason::INVALID_ROTATION,
                problem,
            ));
            Vec::new()
        }
        Some(Ok(stores)) => stores,
        None => Vec::new(),
    };
    let token = snapshot.request.map(|r| r.token.as_str());
    let mut lines = Vec::new();
    let (mut failed, mut pending, mut done) = (false, false, Vec::new());
    for view in snapshot
        .stores
        .iter()
        .filter(|v| v.provision == Provision::Managed && ROTATABLE.contains(&v.store))
    {
        let wanted = token.filter(|_| chosen.contains(&view.store));
        let Some(progress) = advance(view, wanted, snapshot, &mut out) else {
            // Not asked: keep what status says of its last rotation.
            if let Some(last) = snapshot
                .previous
                .iter()
                .find(|p| p.store == view.store.name())
            {
                out.status.push(last.clone());
            }
            continue;
        };
        let previous = snapshot
            .previous
            .iter()
            .find(|p| p.store == view.store.name() && p.token == progress.token);
        let started_at = previous
            .and_then(|p| p.started_at.clone())
            .or_else(|| Some(snapshot.now.clone()));
        let finished_at = (progress.phase == RotationPhase::OldRetired).then(|| {
            previous
                .and_then(|p| p.finished_at.clone())
                .unwrap_or_else(|| snapshot.now.clone())
        });
        let name = view.store.name();
        if progress.phase == RotationPhase::OldRetired {
            if wanted.is_some() {
                done.push(name);
            }
        } else {
            pending = true;
            lines.push(format!(
                "{name}: {:?}: {}",
                progress.phase, progress.message
            ));
        }
        failed |= progress.failed;
        out.status.push(CredentialRotationStatus {
            store: name.to_owned(),
            token: progress.token,
            phase: progress.phase,
            login: progress.login,
            started_at,
            finished_at,
            message: progress.message,
        });
    }
    out.in_flight = pending && !failed;
    if out.verdict.is_some() {
        return out;
    }
    out.verdict = if failed {
        Some(Verdict::new(
            conditions::CREDENTIALS_ROTATED,
            false,
            reason::ROTATION_FAILED,
            lines.join("; "),
        ))
    } else if pending {
        Some(Verdict::new(
            conditions::CREDENTIALS_ROTATED,
            false,
            reason::ROTATING,
            lines.join("; "),
        ))
    } else if let Some(token) = token {
        let message = if done.is_empty() {
            format!("token {token}: no managed store with a password to rotate")
        } else {
            format!(
                "{} rotated for token {token}: the old password no longer authenticates",
                done.join(", ")
            )
        };
        Some(Verdict::new(
            conditions::CREDENTIALS_ROTATED,
            true,
            reason::ROTATED,
            message,
        ))
    } else {
        None
    };
    out
}

#[cfg(test)]
mod tests;
