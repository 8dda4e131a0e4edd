//! Grouping: which issue an event belongs to. Pure.
//!
//! An explicit `fingerprint` list wins (`{{ default }}` entries expand to the default parts);
//! otherwise exceptions group by type + value and messages by their text. Numbers, UUIDs and
//! long hex strings in values and messages are replaced by placeholders, so `timeout after
//! 31s` and `timeout after 30s` land in one issue. The issue key is the SHA-256 (hex) of the
//! parts.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::normalize::Normalized;

/// The grouping parts of an event and their hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grouping {
    pub parts: Vec<String>,
    pub hash: String,
}

/// Group `payload` (the raw event), using `normalized` for the default parts.
pub fn group(payload: &Value, normalized: &Normalized) -> Grouping {
    let defaults = default_parts(normalized);
    let parts = match explicit_fingerprint(payload) {
        Some(entries) => entries
            .into_iter()
            .flat_map(|entry| {
                if is_default_marker(&entry) {
                    defaults.clone()
                } else {
                    vec![entry]
                }
            })
            .collect(),
        None => defaults,
    };
    let hash = hash_parts(&parts);
    Grouping { parts, hash }
}

/// The `fingerprint` list of strings (numbers are accepted as their text), if any.
fn explicit_fingerprint(payload: &Value) -> Option<Vec<String>> {
    let list = payload.get("fingerprint")?.as_array()?;
    let entries: Vec<String> = list
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
        .collect();
    (!entries.is_empty()).then_some(entries)
}

fn is_default_marker(entry: &str) -> bool {
    let inner = entry.trim();
    inner
        .strip_prefix("{{")
        .and_then(|s| s.strip_suffix("}}"))
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("default"))
}

fn default_parts(n: &Normalized) -> Vec<String> {
    if let Some(exception) = &n.exception {
        let mut parts = vec![exception.kind.clone()];
        if let Some(value) = &exception.value {
            parts.push(parameterize(value));
        }
        return parts;
    }
    if let Some(message) = n.grouping_message.as_deref().filter(|m| !m.is_empty()) {
        return vec![parameterize(message)];
    }
    vec![n.title.clone()]
}

/// SHA-256 hex of the parts, each length-prefixed so `["ab","c"]` and `["a","bc"]` differ.
pub fn hash_parts(parts: &[String]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Replace the variable-looking tokens of a message: UUIDs -> `<uuid>`, hex strings of 8+
/// characters containing a digit -> `<hex>`, numbers -> `<int>` / `<float>`.
pub fn parameterize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

fn flush(token: &mut String, out: &mut String) {
    if token.is_empty() {
        return;
    }
    // A trailing full stop ends a sentence; keep it outside the token.
    let trailing_dot = token.len() > 1 && token.ends_with('.');
    let core = if trailing_dot {
        &token[..token.len() - 1]
    } else {
        token.as_str()
    };
    out.push_str(&replace_token(core));
    if trailing_dot {
        out.push('.');
    }
    token.clear();
}

fn replace_token(t: &str) -> String {
    if is_uuid(t) {
        return "<uuid>".into();
    }
    let digits = t.chars().filter(char::is_ascii_digit).count();
    if digits > 0 && t.len() >= 8 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        return "<hex>".into();
    }
    let unsigned = t.strip_prefix('-').unwrap_or(t);
    if !unsigned.is_empty() && unsigned.chars().all(|c| c.is_ascii_digit()) {
        return "<int>".into();
    }
    if unsigned.split('.').count() == 2
        && unsigned
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return "<float>".into();
    }
    t.to_owned()
}

fn is_uuid(t: &str) -> bool {
    let groups: Vec<&str> = t.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::normalize::{NormalizeInput, normalize};

    fn grouping(payload: Value) -> Grouping {
        let n = normalize(&NormalizeInput {
            payload: &payload,
            received: 1_700_000_000.0,
        });
        group(&payload, &n)
    }

    fn exception(kind: &str, value: &str) -> Value {
        json!({"exception": {"values": [{"type": kind, "value": value}]}})
    }

    #[test]
    fn same_exception_same_group_different_value_different_group() {
        let a = grouping(exception("ValueError", "bad input"));
        let b = grouping(exception("ValueError", "bad input"));
        let c = grouping(exception("ValueError", "other input"));
        let d = grouping(exception("KeyError", "bad input"));
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
        assert_ne!(a.hash, d.hash);
        assert_eq!(a.parts, vec!["ValueError", "bad input"]);
        assert_eq!(a.hash.len(), 64);
    }

    #[test]
    fn numbers_and_ids_do_not_split_groups() {
        let a = grouping(exception(
            "Timeout",
            "request 1234 to 6f1c2a90-1b2c-4d5e-8f90-0a1b2c3d4e5f timed out after 30.5 s (v2s)",
        ));
        let b = grouping(exception(
            "Timeout",
            "request 99 to 00000000-1111-2222-3333-444444444444 timed out after 2.0 s (v2s)",
        ));
        assert_eq!(a.hash, b.hash);
        assert_eq!(
            a.parts[1], "request <int> to <uuid> timed out after <float> s (v2s)",
            "words with digits stay"
        );
        assert_eq!(
            parameterize("user 42 at deadbeef01."),
            "user <int> at <hex>."
        );
        assert_eq!(parameterize("v2 of api"), "v2 of api");
        assert_eq!(parameterize("took 1.25 s"), "took <float> s");
    }

    #[test]
    fn messages_group_by_template_when_given() {
        let a = grouping(
            json!({"logentry": {"message": "user %s failed", "formatted": "user a failed"}}),
        );
        let b = grouping(
            json!({"logentry": {"message": "user %s failed", "formatted": "user b failed"}}),
        );
        assert_eq!(a.hash, b.hash);
        let c = grouping(json!({"message": "disk full"}));
        let d = grouping(json!({"message": "disk almost full"}));
        assert_ne!(c.hash, d.hash);
    }

    #[test]
    fn explicit_fingerprint_wins_and_expands_default() {
        let mut a = exception("DbError", "connection reset");
        a["fingerprint"] = json!(["database-down"]);
        let mut b = exception("IoError", "pipe closed");
        b["fingerprint"] = json!(["database-down"]);
        assert_eq!(grouping(a.clone()).hash, grouping(b).hash);
        assert_eq!(grouping(a).parts, vec!["database-down"]);

        let mut c = exception("DbError", "connection reset");
        c["fingerprint"] = json!(["{{ default }}", "tenant-7"]);
        let c = grouping(c);
        assert_eq!(c.parts, vec!["DbError", "connection reset", "tenant-7"]);
        assert_ne!(
            c.hash,
            grouping(exception("DbError", "connection reset")).hash
        );

        let mut e = exception("DbError", "connection reset");
        e["fingerprint"] = json!(["{{default}}"]);
        assert_eq!(
            grouping(e).hash,
            grouping(exception("DbError", "connection reset")).hash
        );
    }

    #[test]
    fn empty_or_malformed_fingerprint_falls_back_to_default() {
        let mut a = exception("E", "x");
        a["fingerprint"] = json!([]);
        let mut b = exception("E", "x");
        b["fingerprint"] = json!("not-a-list");
        let base = grouping(exception("E", "x")).hash;
        assert_eq!(grouping(a).hash, base);
        assert_eq!(grouping(b).hash, base);
    }

    #[test]
    fn hash_separates_part_boundaries() {
        assert_ne!(
            hash_parts(&["ab".into(), "c".into()]),
            hash_parts(&["a".into(), "bc".into()])
        );
    }
}
