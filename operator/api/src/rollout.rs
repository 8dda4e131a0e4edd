//! `ControlPlane.spec.rollout` (how a version change reaches the fleet) and the rollout ledger
//! in `ControlPlane.status.rollout` and `Region.status.rollout`.
//!
//! ```text
//!   spec.version changes ─► ledger: target, previous ─► groups in order ─► waves of at most
//!   maxConcurrency Regions ─► each healthy at the target for minSuccessTime ─► next group
//!   ─► control silo last ─► Complete
//! ```

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::region::Category;

/// A count (`3`) or a share of the Regions concerned (`"10%"`).
const INT_OR_PERCENT: &str =
    "type(self) == int ? self >= 0 : self.matches('^([0-9]|[1-9][0-9]|100)%$')";
/// Like [`INT_OR_PERCENT`] but at least one.
const POSITIVE_INT_OR_PERCENT: &str =
    "type(self) == int ? self >= 1 : self.matches('^([1-9]|[1-9][0-9]|100)%$')";
/// A number or a short string such as `10%`: an int-or-string bounded in length, so that
/// the CEL rules on it stay within the API server's cost budget.
fn int_or_percent(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "maxLength": 4,
    })
}

/// A duration such as `30s`, `10m`, `1h` or `0s`.
const DURATION: &str = "self.matches('^[0-9]{1,6}(ms|s|m|h)$')";

/// How a version change is rolled out: ordered groups of Regions, each upgraded in waves of at
/// most `maxConcurrency` Regions that must stay healthy at the new version for
/// `minSuccessTime`; the control silo follows the last group. Regions matched by no group
/// form a final group named `default` (multi-tenant ones before single-tenant ones when no
/// group is given at all: groups `multi-tenant`, then `single-tenant`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Groups in rollout order; a Region belongs to the first group it matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(g, self.exists_one(h, h.name == g.name))").message("spec.rollout.groups: group names must be unique"))]
    #[x_kube(validation = Rule::new("self.all(g, g.name != 'default')").message("spec.rollout.groups: 'default' names the group of Regions no group matches; choose another name"))]
    pub groups: Vec<RolloutGroup>,
    /// Settings of the groups the operator forms itself (`default`, or `multi-tenant` and
    /// `single-tenant` when `groups` is empty).
    #[serde(default)]
    pub default_group: GroupSettings,
    /// Regions that may fail to upgrade before the rollout stops (`onFailure`): a number or a
    /// percentage of the Regions being rolled out (rounded down). Default 0: the first failure
    /// stops it. Regions whose cluster is unreachable are counted apart, not as failures.
    #[serde(default = "zero")]
    #[schemars(schema_with = "int_or_percent")]
    #[x_kube(validation = Rule::new(INT_OR_PERCENT).message("spec.rollout.maxFailures must be a number >= 0 or a percentage from 0% to 100%"))]
    pub max_failures: IntOrString,
    /// How long one Region may take from the start of its upgrade to being healthy at the new
    /// version before it counts as failed, e.g. `10m`. Default `10m`. Time its cluster cannot
    /// be reached does not count: the deadline runs from the cluster's return. A Region whose
    /// cluster has not answered for longer than `progressDeadline` (from the later of its
    /// start and the moment its cluster stopped answering, `ClusterReachable=False`) is
    /// deferred (`status.rollout.deferred`): it keeps the new version and upgrades when its
    /// cluster answers again, counts as `unreachable` (never failed), but no longer holds a
    /// `maxConcurrency` slot nor keeps its group from finishing once another Region of that
    /// group has upgraded. The control silo still waits for every deferred Region.
    #[serde(default = "ten_minutes")]
    #[schemars(length(max = 12))]
    #[x_kube(validation = Rule::new(DURATION).message("spec.rollout.progressDeadline must be a duration such as 90s, 10m or 1h"))]
    pub progress_deadline: String,
    /// Hold the rollout: no Region starts upgrading; those already upgrading finish.
    #[serde(default)]
    pub paused: bool,
    /// What happens once more than `maxFailures` Regions failed: `Pause` (no new starts; fix
    /// the version and change `spec.version`) or `Rollback` (failed and upgraded Regions
    /// return to the previous version, last group first).
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Approvals of groups with `approval: Manual`, each `<version>/<group>` (e.g.
    /// `1.4.0/production`): that group may start rolling out that version. Granting one needs
    /// `patch` on controlplanes (the chart's `silo-operator-rollout-approver` ClusterRole).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 3, max = 200)))]
    pub approvals: Vec<String>,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            default_group: GroupSettings::default(),
            max_failures: zero(),
            progress_deadline: ten_minutes(),
            paused: false,
            on_failure: OnFailure::default(),
            approvals: Vec::new(),
        }
    }
}

fn zero() -> IntOrString {
    IntOrString::Int(0)
}

fn ten_minutes() -> String {
    "10m".to_owned()
}

/// One group of Regions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.selector) || has(self.category)").message("a rollout group needs a selector or a category (Regions no group matches form the final group 'default')"))]
pub struct RolloutGroup {
    /// Name of the group, shown in status and used in approvals.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("group name must be a lowercase DNS label"))]
    pub name: String,
    /// Regions whose labels match (with `category`, both must match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Regions of this category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    #[serde(flatten)]
    pub settings: GroupSettings,
}

/// How one group rolls out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupSettings {
    /// Regions of the group upgrading at once: a number (>= 1) or a percentage of the group
    /// (rounded down, at least one). Default `10%`.
    #[serde(default = "ten_percent")]
    #[schemars(schema_with = "int_or_percent")]
    #[x_kube(validation = Rule::new(POSITIVE_INT_OR_PERCENT).message("maxConcurrency must be a number >= 1 or a percentage from 1% to 100%"))]
    pub max_concurrency: IntOrString,
    /// How long a Region must stay healthy at the new version before it counts as upgraded
    /// (its slot is held meanwhile), e.g. `5m`. Default `0s`.
    #[serde(default = "zero_seconds")]
    #[schemars(length(max = 12))]
    #[x_kube(validation = Rule::new(DURATION).message("minSuccessTime must be a duration such as 30s, 5m or 1h"))]
    pub min_success_time: String,
    /// `Auto`: the group starts when the one before it finished. `Manual`: it also waits for
    /// `<version>/<group>` in `spec.rollout.approvals`.
    #[serde(default)]
    pub approval: Approval,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            max_concurrency: ten_percent(),
            min_success_time: zero_seconds(),
            approval: Approval::Auto,
        }
    }
}

fn ten_percent() -> IntOrString {
    IntOrString::String("10%".to_owned())
}

fn zero_seconds() -> String {
    "0s".to_owned()
}

/// Whether a group waits for an approval before it starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Approval {
    #[default]
    Auto,
    Manual,
}

/// What a rollout does once more than `maxFailures` Regions failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OnFailure {
    #[default]
    Pause,
    Rollback,
}

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutPhase {
    /// Regions are being upgraded group by group.
    #[default]
    Progressing,
    /// `spec.rollout.paused`: no new starts.
    Paused,
    /// The next group has `approval: Manual` and is not approved yet.
    WaitingForApproval,
    /// Every region group is done; the control silo is being upgraded.
    UpgradingControl,
    /// Every Region and the control silo run the target version.
    Complete,
    /// More than `maxFailures` Regions failed and `onFailure` is `Pause`.
    Failed,
    /// More than `maxFailures` Regions failed; Regions return to the previous version.
    RollingBack,
    /// Every Region that had moved to the target runs the previous version again.
    RolledBack,
}

/// The rollout ledger: what the operator decided and observed for the current target. The
/// operator derives its next step from it and the cluster, so it resumes after a restart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The version being rolled out (`spec.version` when the rollout started).
    pub target_version: String,
    /// The version the fleet ran before; Regions not yet upgraded keep running it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    pub phase: RolloutPhase,
    /// What the rollout waits for, or why it stopped.
    #[serde(default)]
    pub message: String,
    /// Regions at the target version out of those being rolled out (pinned ones excluded).
    #[serde(default)]
    pub done: i32,
    #[serde(default)]
    pub total: i32,
    /// Per group in rollout order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupStatus>,
    /// Regions moved to the target and not yet healthy there for `minSuccessTime`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<RegionStep>,
    /// Regions in flight whose cluster did not answer for longer than `progressDeadline`:
    /// they keep the target version and upgrade when their cluster answers again (then with a
    /// new `progressDeadline` from its return, and counted failed if they do not make it), but
    /// they hold no `maxConcurrency` slot and their group may finish without them once
    /// another of its Regions upgraded. The control silo waits until they are upgraded or
    /// failed. A Region stays here until then, even while its cluster answers again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<String>,
    /// Regions healthy at the target for `minSuccessTime`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upgraded: Vec<String>,
    /// Regions that failed to upgrade, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedRegion>,
    /// Regions sent back to the previous version and not yet healthy there (rollback).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reverting: Vec<RegionStep>,
    /// Regions that pin their own version and are left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

/// Counts of one group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    pub name: String,
    pub total: i32,
    pub pending: i32,
    /// Moved to the target, not healthy there yet (deferred Regions whose cluster answers
    /// again count here too, without holding a slot).
    pub upgrading: i32,
    /// Healthy at the target, waiting out `minSuccessTime`.
    pub soaking: i32,
    pub done: i32,
    pub failed: i32,
    /// Upgrading, but their cluster cannot be reached (retried, not a failure). Those
    /// unreachable for longer than `progressDeadline` are deferred: listed in
    /// `status.rollout.deferred`, they hold no `maxConcurrency` slot.
    pub unreachable: i32,
    /// Manual groups: whether the current target is approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<bool>,
}

/// A Region the rollout moved, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionStep {
    pub name: String,
    pub started: Time,
}

/// A Region whose upgrade failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedRegion {
    pub name: String,
    pub reason: String,
    pub message: String,
}

/// A Region's own part of the rollout, written by the operator with the rest of its status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionRollout {
    /// The version the rollout gives this Region (its desired version).
    pub version: String,
    /// When the rollout moved this Region to `version` (absent: it was never moved, e.g. the
    /// first version of the fleet or a pin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
    /// Since when every workload has run and served `version` without interruption; reset
    /// whenever they stop doing so or the Region is moved again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_since: Option<Time>,
}
