//! Keyset pagination shared by every list query.
//!
//! A page is read after (or before) a cursor `"<value>:<id>:<is_prev>"`, the textual shape of
//! Sentry's cursors. `value` is the sort column (a count, an id, or a timestamp in
//! microseconds) and `id` the row id that breaks ties, so pages stay stable while rows are
//! added. Clients treat the string as opaque and copy it from the `Link` header.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};

/// A position in a sorted list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub value: i64,
    pub id: i64,
    /// Read the page *before* this position instead of after it.
    pub is_prev: bool,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.value, self.id, u8::from(self.is_prev))
    }
}

/// A `cursor` query parameter that is not `<int>:<int>:<0|1>`.
#[derive(Debug, thiserror::Error)]
#[error("invalid cursor {0:?}: expected the value of a Link header cursor, like \"0:10:0\"")]
pub struct CursorParseError(pub String);

impl FromStr for Cursor {
    type Err = CursorParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CursorParseError(s.to_owned());
        let mut parts = s.split(':');
        let value = parts.next().and_then(|v| v.parse().ok()).ok_or_else(err)?;
        let id = parts.next().and_then(|v| v.parse().ok()).ok_or_else(err)?;
        let is_prev = match parts.next() {
            Some("0") => false,
            Some("1") => true,
            _ => return Err(err()),
        };
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Cursor { value, id, is_prev })
    }
}

/// What page to read.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub cursor: Option<Cursor>,
    pub limit: u32,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 100;

    pub fn first(limit: u32) -> Self {
        PageRequest {
            cursor: None,
            limit,
        }
    }

    fn limit(&self) -> i64 {
        i64::from(self.limit.clamp(1, Self::MAX_LIMIT))
    }
}

/// One page of rows plus the cursors to move from it.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor of the next page and whether it has rows.
    pub next: (Cursor, bool),
    /// Cursor of the previous page and whether it has rows.
    pub prev: (Cursor, bool),
}

/// The sort column of a list and how its value maps to a cursor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SortKey {
    /// Qualified column name, e.g. `g.last_seen`.
    pub column: &'static str,
    /// Qualified id column, e.g. `g.id`.
    pub id_column: &'static str,
    pub descending: bool,
    pub kind: SortKind,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum SortKind {
    /// A BIGINT column.
    Int,
    /// A TIMESTAMPTZ column; cursor values are microseconds since the epoch.
    Time,
}

impl SortKey {
    pub const fn int(column: &'static str, id_column: &'static str, descending: bool) -> Self {
        SortKey {
            column,
            id_column,
            descending,
            kind: SortKind::Int,
        }
    }

    pub const fn time(column: &'static str, id_column: &'static str, descending: bool) -> Self {
        SortKey {
            column,
            id_column,
            descending,
            kind: SortKind::Time,
        }
    }

    /// Append ` AND (col, id) <op> (value, id)` for the cursor (if any), then the ORDER BY and
    /// LIMIT. The query must already have a WHERE clause.
    pub fn push_page(&self, qb: &mut QueryBuilder<'_, Postgres>, page: &PageRequest) {
        let reverse = page.cursor.is_some_and(|c| c.is_prev);
        // Reading backwards flips both the comparison and the order; rows are reversed after.
        let descending = self.descending != reverse;
        if let Some(cursor) = page.cursor {
            let op = if descending { "<" } else { ">" };
            qb.push(format_args!(
                " AND ({}, {}) {op} (",
                self.column, self.id_column
            ));
            match self.kind {
                SortKind::Int => qb.push_bind(cursor.value),
                SortKind::Time => qb.push_bind(micros_to_time(cursor.value)),
            };
            qb.push(", ").push_bind(cursor.id).push(")");
        }
        let dir = if descending { "DESC" } else { "ASC" };
        qb.push(format_args!(
            " ORDER BY {} {dir}, {} {dir} LIMIT ",
            self.column, self.id_column
        ));
        qb.push_bind(page.limit() + 1);
    }

    /// Turn the `limit + 1` rows fetched by [`SortKey::push_page`] into a page.
    pub fn finish<T>(
        &self,
        page: &PageRequest,
        mut rows: Vec<T>,
        key: impl Fn(&T) -> (i64, i64),
    ) -> Page<T> {
        let limit = usize::try_from(page.limit()).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let backwards = page.cursor.is_some_and(|c| c.is_prev);
        if backwards {
            rows.reverse();
        }
        let (has_next, has_prev) = match page.cursor {
            None => (more, false),
            Some(_) if backwards => (true, more),
            Some(_) => (more, true),
        };
        let at = |row: Option<&T>, is_prev: bool| {
            row.map(|r| {
                let (value, id) = key(r);
                Cursor { value, id, is_prev }
            })
        };
        let fallback = page.cursor.unwrap_or(Cursor {
            value: 0,
            id: 0,
            is_prev: false,
        });
        let next = at(rows.last(), false).unwrap_or(Cursor {
            is_prev: false,
            ..fallback
        });
        let prev = at(rows.first(), true).unwrap_or(Cursor {
            is_prev: true,
            ..fallback
        });
        Page {
            items: rows,
            next: (next, has_next),
            prev: (prev, has_prev),
        }
    }
}

/// Microseconds since the epoch, the cursor value of a timestamp column.
pub fn time_to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn micros_to_time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            value: 1_700_000_000_000_000,
            id: 42,
            is_prev: true,
        };
        assert_eq!(c.to_string().parse::<Cursor>().ok(), Some(c));
        for bad in ["", "1:2", "1:2:3", "a:2:0", "1:2:0:0", "1:b:1"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad} should be rejected");
        }
    }

    fn ids(page: &Page<i64>) -> Vec<i64> {
        page.items.clone()
    }

    #[test]
    fn finish_trims_extra_row_and_sets_cursors() {
        let key = SortKey::int("x", "id", false);
        let req = PageRequest::first(2);
        let page = key.finish(&req, vec![1, 2, 3], |v| (*v, *v));
        assert_eq!(ids(&page), vec![1, 2]);
        assert_eq!(page.next.0.to_string(), "2:2:0");
        assert!(page.next.1);
        assert!(!page.prev.1);
    }

    #[test]
    fn finish_reverses_rows_read_backwards() {
        let key = SortKey::int("x", "id", false);
        let req = PageRequest {
            cursor: Some("5:5:1".parse().expect("cursor")),
            limit: 2,
        };
        // Backwards reads arrive in reverse order: 4, 3, (2 = the extra row).
        let page = key.finish(&req, vec![4, 3, 2], |v| (*v, *v));
        assert_eq!(ids(&page), vec![3, 4]);
        assert!(page.prev.1, "row 2 is still before this page");
        assert_eq!(page.prev.0.to_string(), "3:3:1");
        assert!(page.next.1);
        assert_eq!(page.next.0.to_string(), "4:4:0");
    }
}
