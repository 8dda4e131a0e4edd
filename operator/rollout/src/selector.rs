//! Label selectors (`matchLabels`, `matchExpressions`) evaluated against a Region's labels.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A compiled selector: every requirement must hold. An empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

/// Compile `selector`, or say which expression is unusable.
pub fn compile(selector: &LabelSelector) -> Result<Selector, String> {
    let mut requirements: Vec<Requirement> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
        .collect();
    for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
        let values = e.values.clone().unwrap_or_default();
        let field = format!("matchExpressions[{i}]");
        let requirement = match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!("{field}: operator {} needs values", e.operator));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!("{field}: operator {} takes no values", e.operator));
            }
            "In" => Requirement::In(e.key.clone(), values),
            "NotIn" => Requirement::NotIn(e.key.clone(), values),
            "Exists" => Requirement::Exists(e.key.clone()),
            "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
            other => {
                return Err(format!(
                    "{field}: unknown operator {other:?} (use In, NotIn, Exists or DoesNotExist)"
                ));
            }
        };
        requirements.push(requirement);
    }
    Ok(Selector(requirements))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).into()).collect()),
        }
    }

    #[test]
    fn labels_and_expressions_must_all_hold() {
        let s = compile(&LabelSelector {
            match_labels: Some(labels(&[("tier", "canary")])),
            match_expressions: Some(vec![
                expr("geo", "In", &["eu", "us"]),
                expr("frozen", "DoesNotExist", &[]),
                expr("env", "NotIn", &["test"]),
            ]),
        })
        .expect("selector");
        assert!(s.matches(&labels(&[("tier", "canary"), ("geo", "eu")])));
        assert!(!s.matches(&labels(&[("tier", "canary"), ("geo", "ap")])));
        assert!(!s.matches(&labels(&[
            ("tier", "canary"),
            ("geo", "eu"),
            ("frozen", "")
        ])));
        assert!(!s.matches(&labels(&[
            ("tier", "canary"),
            ("geo", "us"),
            ("env", "test")
        ])));
        assert!(!s.matches(&labels(&[("geo", "eu")])));
        let exists = compile(&LabelSelector {
            match_expressions: Some(vec![expr("tier", "Exists", &[])]),
            ..Default::default()
        })
        .expect("selector");
        assert!(exists.matches(&labels(&[("tier", "")])));
        assert!(
            compile(&LabelSelector::default())
                .expect("empty")
                .matches(&labels(&[]))
        );
    }

    #[test]
    fn unusable_expressions_are_named() {
        let bad = |e| {
            compile(&LabelSelector {
                match_expressions: Some(vec![e]),
                ..Default::default()
            })
        };
        assert!(
            bad(expr("k", "In", &[]))
                .unwrap_err()
                .contains("matchExpressions[0]: operator In needs values")
        );
        assert!(
            bad(expr("k", "Exists", &["v"]))
                .unwrap_err()
                .contains("takes no values")
        );
        assert!(
            bad(expr("k", "Gt", &["1"]))
                .unwrap_err()
                .contains("unknown operator \"Gt\"")
        );
    }
}
