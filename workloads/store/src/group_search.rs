//! Issue search conditions and their SQL: what `?query=` of the issue lists (and bulk updates)
//! selects.
//!
//! ```text
//!  GroupFilter { conditions: [Condition { term, negated }], project_ids }
//!     Status, Level, Text          ─► columns of groups g
//!     Environment, Release, UserId, Tag ─► EXISTS (an event of the issue has it)
//!  push_where(qb, filter) ─► " AND ... AND ..."
//! ```

use sqlx::{Postgres, QueryBuilder};

use crate::groups::GroupStatus;

/// One search term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    /// `is:unresolved|resolved|ignored`.
    Status(GroupStatus),
    /// `level:error` (the issue's level).
    Level(String),
    /// `environment:prod` (some event of the issue has it).
    Environment(String),
    /// `release:1.0`.
    Release(String),
    /// `user.id:42`.
    UserId(String),
    /// `key:value` for any event tag.
    Tag { key: String, value: String },
    /// Case-insensitive substring of the title or culprit.
    Text(String),
}

/// A term, or its negation (`!key:value`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub term: Term,
    pub negated: bool,
}

impl Condition {
    pub fn new(term: Term) -> Self {
        Condition {
            term,
            negated: false,
        }
    }
}

/// Which issues to select.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupFilter {
    /// All must hold.
    pub conditions: Vec<Condition>,
    /// Only these projects (empty: all in scope).
    pub project_ids: Vec<i64>,
    /// Only these issues (empty: any).
    pub ids: Vec<i64>,
}

impl GroupFilter {
    /// The status this filter requires, if one (non-negated) status term is present.
    pub fn status(&self) -> Option<GroupStatus> {
        self.conditions.iter().find_map(|c| match c.term {
            Term::Status(s) if !c.negated => Some(s),
            _ => None,
        })
    }
}

/// Append ` AND <condition>` for each condition of `filter` (the query already has a `WHERE`).
pub fn push_where(qb: &mut QueryBuilder<'_, Postgres>, filter: &GroupFilter) {
    if !filter.project_ids.is_empty() {
        qb.push(" AND g.project_id = ANY(")
            .push_bind(filter.project_ids.clone())
            .push(")");
    }
    if !filter.ids.is_empty() {
        qb.push(" AND g.id = ANY(")
            .push_bind(filter.ids.clone())
            .push(")");
    }
    for condition in &filter.conditions {
        qb.push(if condition.negated {
            " AND NOT "
        } else {
            " AND "
        });
        push_term(qb, &condition.term);
    }
}

fn push_term(qb: &mut QueryBuilder<'_, Postgres>, term: &Term) {
    const EVENT: &str = "EXISTS (SELECT 1 FROM events e WHERE e.group_id = g.id AND ";
    match term {
        Term::Status(status) => {
            qb.push("(g.status = ").push_bind(status.as_str()).push(")");
        }
        Term::Level(level) => {
            qb.push("(g.level = ").push_bind(level.clone()).push(")");
        }
        Term::Text(text) => {
            let pattern = format!("%{}%", escape_like(text));
            qb.push("(g.title ILIKE ")
                .push_bind(pattern.clone())
                .push(" OR g.culprit ILIKE ")
                .push_bind(pattern)
                .push(")");
        }
        Term::Environment(env) => {
            qb.push(EVENT)
                .push("e.environment = ")
                .push_bind(env.clone())
                .push(")");
        }
        Term::Release(release) => {
            qb.push(EVENT)
                .push("e.release = ")
                .push_bind(release.clone())
                .push(")");
        }
        Term::UserId(id) => {
            qb.push(EVENT)
                .push("e.data->'user'->>'id' = ")
                .push_bind(id.clone())
                .push(")");
        }
        Term::Tag { key, value } => {
            qb.push(EVENT)
                .push("e.tags @> ")
                .push_bind(serde_json::json!({ key: value }))
                .push(")");
        }
    }
}

pub(crate) fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }

    #[test]
    fn conditions_become_sql() {
        let filter = GroupFilter {
            conditions: vec![
                Condition::new(Term::Status(GroupStatus::Ignored)),
                Condition {
                    term: Term::Tag {
                        key: "k".into(),
                        value: "v".into(),
                    },
                    negated: true,
                },
            ],
            project_ids: vec![1],
            ids: vec![],
        };
        let mut qb = QueryBuilder::<Postgres>::new("SELECT 1 FROM groups g WHERE true");
        push_where(&mut qb, &filter);
        let sql = qb.sql();
        assert!(sql.contains("AND (g.status = $2)"), "{sql}");
        assert!(sql.contains("AND NOT EXISTS"), "{sql}");
        assert_eq!(filter.status(), Some(GroupStatus::Ignored));
    }
}
