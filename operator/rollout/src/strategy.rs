//! `spec.rollout` checked and resolved: durations parsed, groups formed, counts and
//! percentages kept for resolution against the group sizes.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use silo_api::{Approval, Category, GroupSettings, OnFailure, RolloutSpec};

use crate::selector::{self, Selector};

/// A `spec.rollout` the API server accepted but the planner cannot use; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    #[error("{field}: {value:?} is not a duration such as 30s, 10m or 1h")]
    Duration { field: String, value: String },
    #[error("{field}: {value:?} is not a number or a percentage from 0% to 100%")]
    Count { field: String, value: String },
    #[error("{field}: must be at least 1 (or a percentage of at least 1%)")]
    ZeroConcurrency { field: String },
    #[error("{field}: {problem}")]
    Selector { field: String, problem: String },
}

/// A number of Regions or a share of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amount {
    Count(u32),
    Percent(u32),
}

impl Amount {
    fn parse(value: &IntOrString, field: &str) -> Result<Self, StrategyError> {
        let invalid = || StrategyError::Count {
            field: field.to_owned(),
            value: match value {
                IntOrString::Int(i) => i.to_string(),
                IntOrString::String(s) => s.clone(),
            },
        };
        match value {
            IntOrString::Int(i) => u32::try_from(*i).map(Amount::Count).map_err(|_| invalid()),
            IntOrString::String(s) => {
                let digits = s.strip_suffix('%').ok_or_else(invalid)?;
                let percent: u32 = digits.parse().map_err(|_| invalid())?;
                if percent > 100 {
                    return Err(invalid());
                }
                Ok(Amount::Percent(percent))
            }
        }
    }

    /// The amount out of `of` Regions (percentages rounded down).
    pub fn of(self, of: usize) -> usize {
        match self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) => of * p as usize / 100,
        }
    }
}

/// How one group rolls out.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: String,
    pub selector: Option<Selector>,
    pub category: Option<Category>,
    pub max_concurrency: Amount,
    pub min_success_time: Duration,
    pub manual: bool,
}

impl Group {
    /// Whether a Region with `labels` and `category` belongs to this group.
    pub fn matches(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
        category: Category,
    ) -> bool {
        self.category.is_none_or(|c| c == category)
            && self.selector.as_ref().is_none_or(|s| s.matches(labels))
    }

    /// Regions of a group of `size` that may upgrade at once (at least one).
    pub fn concurrency(&self, size: usize) -> usize {
        self.max_concurrency.of(size).max(1)
    }
}

/// The resolved strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct Strategy {
    /// In rollout order, the operator's own groups last.
    pub groups: Vec<Group>,
    /// How many of `groups` come from `spec.rollout.groups` (the first ones).
    pub spec_groups: usize,
    pub max_failures: Amount,
    pub progress_deadline: Duration,
    pub paused: bool,
    pub on_failure: OnFailure,
    pub approvals: Vec<String>,
}

/// Name of the group of Regions no group of `spec.rollout.groups` matches.
pub const DEFAULT_GROUP: &str = "default";

impl Strategy {
    pub fn from_spec(spec: &RolloutSpec) -> Result<Self, StrategyError> {
        let mut groups = Vec::with_capacity(spec.groups.len() + 2);
        for (i, g) in spec.groups.iter().enumerate() {
            let field = format!("spec.rollout.groups[{i}]");
            let selector = g
                .selector
                .as_ref()
                .map(|s| compile(s, &format!("{field}.selector")))
                .transpose()?;
            groups.push(group(&g.name, selector, g.category, &g.settings, &field)?);
        }
        let field = "spec.rollout.defaultGroup";
        if spec.groups.is_empty() {
            // Shared Regions first, dedicated ones (one customer each) last.
            for (name, category) in [
                ("multi-tenant", Category::MultiTenant),
                ("single-tenant", Category::SingleTenant),
            ] {
                groups.push(group(
                    name,
                    None,
                    Some(category),
                    &spec.default_group,
                    field,
                )?);
            }
        } else {
            groups.push(group(
                DEFAULT_GROUP,
                None,
                None,
                &spec.default_group,
                field,
            )?);
        }
        Ok(Self {
            spec_groups: spec.groups.len(),
            groups,
            max_failures: Amount::parse(&spec.max_failures, "spec.rollout.maxFailures")?,
            progress_deadline: parse_duration(
                &spec.progress_deadline,
                "spec.rollout.progressDeadline",
            )?,
            paused: spec.paused,
            on_failure: spec.on_failure,
            approvals: spec.approvals.clone(),
        })
    }

    /// The group of a Region: the first that matches (the last group matches every Region).
    pub fn group_of(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
        category: Category,
    ) -> usize {
        self.groups
            .iter()
            .position(|g| g.matches(labels, category))
            .unwrap_or(self.groups.len() - 1)
    }

    /// Whether `group` may start rolling out `version`.
    pub fn approved(&self, group: &Group, version: &str) -> bool {
        !group.manual
            || self
                .approvals
                .iter()
                .any(|a| *a == format!("{version}/{}", group.name))
    }
}

fn compile(selector: &LabelSelector, field: &str) -> Result<Selector, StrategyError> {
    selector::compile(selector).map_err(|problem| StrategyError::Selector {
        field: field.to_owned(),
        problem,
    })
}

fn group(
    name: &str,
    selector: Option<Selector>,
    category: Option<Category>,
    settings: &GroupSettings,
    field: &str,
) -> Result<Group, StrategyError> {
    let max_concurrency = Amount::parse(
        &settings.max_concurrency,
        &format!("{field}.maxConcurrency"),
    )?;
    if matches!(max_concurrency, Amount::Count(0) | Amount::Percent(0)) {
        return Err(StrategyError::ZeroConcurrency {
            field: format!("{field}.maxConcurrency"),
        });
    }
    Ok(Group {
        name: name.to_owned(),
        selector,
        category,
        max_concurrency,
        min_success_time: parse_duration(
            &settings.min_success_time,
            &format!("{field}.minSuccessTime"),
        )?,
        manual: settings.approval == Approval::Manual,
    })
}

/// `90s`, `10m`, `1h`, `250ms`, `0s`.
pub fn parse_duration(value: &str, field: &str) -> Result<Duration, StrategyError> {
    let invalid = || StrategyError::Duration {
        field: field.to_owned(),
        value: value.to_owned(),
    };
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(invalid()),
    };
    Ok(Duration::from_secs(n * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> RolloutSpec {
        serde_json::from_value(json).expect("rollout spec")
    }

    #[test]
    fn durations_parse_and_bad_ones_name_the_field() {
        assert_eq!(parse_duration("90s", "f"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m", "f"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms", "f"), Ok(Duration::from_millis(250)));
        let err = parse_duration("10 minutes", "spec.rollout.progressDeadline").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spec.rollout.progressDeadline:"),
            "{err}"
        );
        assert!(parse_duration("5", "f").is_err());
        assert!(parse_duration("m", "f").is_err());
    }

    #[test]
    fn no_groups_means_shared_regions_first_then_dedicated_ones() {
        let s = Strategy::from_spec(&RolloutSpec::default()).expect("strategy");
        let names: Vec<&str> = s.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["multi-tenant", "single-tenant"]);
        let none = Default::default();
        assert_eq!(s.group_of(&none, Category::SingleTenant), 1);
        assert_eq!(s.group_of(&none, Category::MultiTenant), 0);
        assert_eq!(s.max_failures, Amount::Count(0));
        assert_eq!(s.progress_deadline, Duration::from_secs(600));
    }

    #[test]
    fn unmatched_regions_fall_into_the_default_group() {
        let s = Strategy::from_spec(&spec(serde_json::json!({
            "groups": [
                {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}, "maxConcurrency": 1},
                {"name": "dedicated", "category": "SINGLE_TENANT", "maxConcurrency": "50%", "approval": "Manual"},
            ],
            "maxFailures": "10%",
        })))
        .expect("strategy");
        let canary = [("tier".to_owned(), "canary".to_owned())].into();
        assert_eq!(s.group_of(&canary, Category::SingleTenant), 0);
        assert_eq!(s.group_of(&Default::default(), Category::SingleTenant), 1);
        assert_eq!(s.group_of(&Default::default(), Category::MultiTenant), 2);
        assert_eq!(s.groups[2].name, DEFAULT_GROUP);
        assert_eq!(s.groups[1].concurrency(7), 3);
        assert_eq!(
            s.groups[2].concurrency(3),
            1,
            "10% of 3 rounds to at least one"
        );
        assert_eq!(s.max_failures.of(25), 2);
        assert!(!s.approved(&s.groups[1], "2.0.0"));
        let approved = Strategy {
            approvals: vec!["2.0.0/dedicated".into()],
            ..s.clone()
        };
        assert!(approved.approved(&approved.groups[1], "2.0.0"));
        assert!(
            !approved.approved(&approved.groups[1], "3.0.0"),
            "approvals are per version"
        );
    }

    #[test]
    fn values_the_schema_should_have_refused_still_name_their_field() {
        let zero = spec(
            serde_json::json!({"groups": [{"name": "a", "category": "MULTI_TENANT", "maxConcurrency": 0}]}),
        );
        assert_eq!(
            Strategy::from_spec(&zero).unwrap_err().to_string(),
            "spec.rollout.groups[0].maxConcurrency: must be at least 1 (or a percentage of at least 1%)"
        );
        let over = spec(serde_json::json!({"maxFailures": "150%"}));
        assert!(
            Strategy::from_spec(&over)
                .unwrap_err()
                .to_string()
                .starts_with("spec.rollout.maxFailures:")
        );
        let op = spec(
            serde_json::json!({"groups": [{"name": "a", "selector": {"matchExpressions": [{"key": "k", "operator": "Near"}]}}]}),
        );
        assert!(
            Strategy::from_spec(&op)
                .unwrap_err()
                .to_string()
                .starts_with("spec.rollout.groups[0].selector:"),
        );
    }
}
