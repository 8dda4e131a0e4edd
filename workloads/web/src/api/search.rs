//! Sentry's issue search syntax (`?query=`), parsed into store conditions. Pure.
//!
//! ```text
//!  is:unresolved !environment:prod level:error release:"app 1.0" user.id:42 browser:Firefox
//!  "free text" more text
//!     └─► [Condition { term, negated }]  (unknown keys are tag searches)
//! ```
//!
//! Values may be quoted (`key:"a b"`, with `\"` inside); a quote that is never closed is a
//! 400. Keys Sentry gives a meaning this silo does not implement (`has:`, `age:`, ...) are a 400
//! naming the term, never silently treated as tags.

use silo_store::groups::{Condition, GroupStatus, Term};

use crate::error::{ApiResult, AppError};

/// Sentry search keys with semantics that are not implemented here.
const UNSUPPORTED_KEYS: [&str; 14] = [
    "has",
    "age",
    "firstSeen",
    "lastSeen",
    "timesSeen",
    "assigned",
    "assigned_or_suggested",
    "bookmarks",
    "subscribed",
    "first_release",
    "issue.category",
    "issue.type",
    "issue.priority",
    "event.timestamp",
];

const SUPPORTED: &str = "is:unresolved|resolved|ignored, environment:, level:, release:, \
     user.id:, any tag key:value, ! to negate, quoted values and free text";

/// The conditions of a search query.
pub fn parse(query: &str) -> ApiResult<Vec<Condition>> {
    let mut out = Vec::new();
    let mut text = Vec::new();
    for token in tokens(query)? {
        let (negated, body) = match token.raw.strip_prefix('!') {
            Some(rest) if token.key.is_some() => (true, rest),
            _ => (false, token.raw.as_str()),
        };
        let Some(key) = token.key else {
            text.push(token.value);
            continue;
        };
        let key = key.trim_start_matches('!');
        let value = token.value;
        if value.is_empty() {
            return Err(bad(body, "the value is empty"));
        }
        let term = match key {
            "is" => Term::Status(match value.as_str() {
                "unresolved" => GroupStatus::Unresolved,
                "resolved" => GroupStatus::Resolved,
                "ignored" | "archived" | "muted" => GroupStatus::Ignored,
                _ => return Err(bad(body, "is: takes unresolved, resolved or ignored")),
            }),
            "level" => Term::Level(value.to_ascii_lowercase()),
            "environment" => Term::Environment(value),
            "release" => Term::Release(value),
            "user.id" => Term::UserId(value),
            key if UNSUPPORTED_KEYS.contains(&key) => {
                return Err(bad(body, "this search key is not supported"));
            }
            key if valid_tag_key(key) => Term::Tag {
                key: key.to_owned(),
                value,
            },
            _ => return Err(bad(body, "the key is not a valid tag name")),
        };
        out.push(Condition { term, negated });
    }
    if !text.is_empty() {
        out.push(Condition::new(Term::Text(text.join(" "))));
    }
    Ok(out)
}

fn bad(term: &str, why: &str) -> AppError {
    AppError::BadRequest(format!(
        "Unsupported search term {term:?}: {why}. Supported: {SUPPORTED}."
    ))
}

fn valid_tag_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 200
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-:".contains(c))
}

#[derive(Debug, PartialEq)]
struct Token {
    /// The token as written (for error messages).
    raw: String,
    /// `Some` for `key:value` terms (with the `!` kept).
    key: Option<String>,
    /// The value (quotes removed) or the free text.
    value: String,
}

/// Split on whitespace outside quotes; `key:value`, `key:"quoted value"`, `"quoted text"`.
fn tokens(query: &str) -> ApiResult<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = query.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut raw = String::new();
        let mut key: Option<String> = None;
        let mut value = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            raw.push(c);
            match c {
                '"' => {
                    quoted = true;
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        raw.push(c);
                        match c {
                            '\\' => {
                                if let Some(escaped) = chars.next() {
                                    raw.push(escaped);
                                    value.push(escaped);
                                }
                            }
                            '"' => {
                                closed = true;
                                break;
                            }
                            other => value.push(other),
                        }
                    }
                    if !closed {
                        return Err(AppError::BadRequest(format!(
                            "Invalid search query: the quote in {raw:?} is never closed."
                        )));
                    }
                }
                ':' if key.is_none() && !quoted && !value.is_empty() => {
                    key = Some(std::mem::take(&mut value));
                }
                other => value.push(other),
            }
        }
        out.push(Token { raw, key, value });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(t: Term) -> Condition {
        Condition::new(t)
    }

    #[test]
    fn terms_negation_quotes_and_text() {
        let got = parse(
            r#"is:ignored !environment:prod level:ERROR release:"app 1.0" user.id:42 browser:Firefox "two words" more"#,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                term(Term::Status(GroupStatus::Ignored)),
                Condition {
                    term: Term::Environment("prod".into()),
                    negated: true
                },
                term(Term::Level("error".into())),
                term(Term::Release("app 1.0".into())),
                term(Term::UserId("42".into())),
                term(Term::Tag {
                    key: "browser".into(),
                    value: "Firefox".into()
                }),
                term(Term::Text("two words more".into())),
            ]
        );
        assert_eq!(
            parse(r#"url:"http://a/b" x"#).unwrap()[0],
            term(Term::Tag {
                key: "url".into(),
                value: "http://a/b".into()
            })
        );
        assert_eq!(
            parse(r#"msg:"say \"hi\"""#).unwrap()[0],
            term(Term::Tag {
                key: "msg".into(),
                value: "say \"hi\"".into()
            })
        );
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_terms_name_themselves() {
        for (query, needle) in [
            ("is:sleeping", "is:sleeping"),
            ("has:user", "has:user"),
            (r#"release:"1.0"#, "never closed"),
            ("environment:", "empty"),
            ("bad$key:1", "bad$key:1"),
        ] {
            let err = parse(query).unwrap_err().to_string();
            assert!(err.contains(needle), "{query}: {err}");
        }
    }
}
