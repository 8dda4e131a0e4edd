//! The Events a planning step asks for on the ControlPlane: their reason, type and note.

use std::fmt;
use std::time::Duration;

/// Something worth an Event on the ControlPlane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Started {
        target: String,
        previous: String,
    },
    GroupStarted {
        group: String,
    },
    GroupFinished {
        group: String,
    },
    RegionFailed {
        region: String,
        reason: String,
        message: String,
    },
    /// A Region in flight whose cluster did not answer for longer than `progressDeadline`
    /// stops holding a slot of its group.
    RegionDeferred {
        region: String,
        group: String,
        deadline: Duration,
    },
    Paused,
    WaitingForApproval {
        group: String,
    },
    Stopped {
        failed: usize,
        budget: usize,
    },
    RollbackStarted {
        failed: usize,
        budget: usize,
    },
    RolledBack,
    Complete {
        target: String,
    },
}

impl Event {
    /// The Event's reason (CamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            Event::Started { .. } => "RolloutStarted",
            Event::GroupStarted { .. } => "RolloutGroupStarted",
            Event::GroupFinished { .. } => "RolloutGroupFinished",
            Event::RegionFailed { .. } => "RolloutRegionFailed",
            Event::RegionDeferred { .. } => "RolloutRegionDeferred",
            Event::Paused => "RolloutPaused",
            Event::WaitingForApproval { .. } => "RolloutWaitingForApproval",
            Event::Stopped { .. } => "RolloutFailed",
            Event::RollbackStarted { .. } => "RolloutRollingBack",
            Event::RolledBack => "RolloutRolledBack",
            Event::Complete { .. } => "RolloutComplete",
        }
    }

    /// Whether the Event is a Warning rather than Normal.
    pub fn warning(&self) -> bool {
        matches!(
            self,
            Event::RegionFailed { .. }
                | Event::RegionDeferred { .. }
                | Event::Stopped { .. }
                | Event::RollbackStarted { .. }
        )
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Started { target, previous } => {
                write!(f, "rolling out {target} (from {previous})")
            }
            Event::GroupStarted { group } => write!(f, "group {group} started"),
            Event::GroupFinished { group } => write!(f, "group {group} finished"),
            Event::RegionFailed {
                region,
                reason,
                message,
            } => write!(f, "region {region} failed to upgrade: {reason}: {message}"),
            Event::RegionDeferred {
                region,
                group,
                deadline,
            } => write!(
                f,
                "region {region} deferred: its cluster has not answered for longer than progressDeadline ({}s); it no longer holds a slot of group {group}, keeps the new version and upgrades when its cluster answers",
                deadline.as_secs()
            ),
            Event::Paused => write!(f, "paused (spec.rollout.paused): no new Region starts"),
            Event::WaitingForApproval { group } => write!(f, "group {group} waits for approval"),
            Event::Stopped { failed, budget } => write!(
                f,
                "{failed} Regions failed (maxFailures {budget}): no new Region starts"
            ),
            Event::RollbackStarted { failed, budget } => write!(
                f,
                "{failed} Regions failed (maxFailures {budget}): rolling back"
            ),
            Event::RolledBack => write!(f, "every moved Region runs the previous version again"),
            Event::Complete { target } => {
                write!(f, "every Region and the control silo run {target}")
            }
        }
    }
}
