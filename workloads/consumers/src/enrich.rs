//! Event enrichment before storing, as Sentry's processing does it. Pure: it rewrites the
//! payload in place and returns what the store indexes.
//!
//! ```text
//!  payload ─► logentry params formatted into `logentry.formatted`
//!          ─► `{{auto}}` ip addresses (user.ip_address, request.env.REMOTE_ADDR) = client address
//!          ─► tags normalized to [[key, value], ...] with environment, release, dist,
//!             server_name, transaction and user promoted
//!  ─► Enriched { tags, user }  (the store indexes tags for search and counts users per issue)
//! ```

use serde_json::{Map, Value};

use crate::logentry;

/// Longest tag key and value kept (Sentry's limits); longer tags are dropped.
pub const MAX_TAG_KEY_CHARS: usize = 200;
pub const MAX_TAG_VALUE_CHARS: usize = 200;

/// The placeholder SDKs send for "the address the request came from".
const AUTO: &str = "{{auto}}";

/// Event fields Sentry promotes to tags, with the tag key.
const PROMOTED: [(&str, &str); 5] = [
    ("environment", "environment"),
    ("release", "release"),
    ("dist", "dist"),
    ("server_name", "server_name"),
    ("transaction", "transaction"),
];

/// What the store indexes beyond the payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enriched {
    /// Every tag of the event, in order, keys unique.
    pub tags: Vec<(String, String)>,
    /// The event's user as Sentry's `user` tag names it (`id:42`, `email:a@b`, ...).
    pub user: Option<String>,
}

/// Enrich `payload` (a Sentry event object) in place. `remote_addr` is the client address
/// relay saw.
pub fn enrich(payload: &mut Value, remote_addr: Option<&str>) -> Enriched {
    let Some(event) = payload.as_object_mut() else {
        return Enriched::default();
    };
    for field in ["logentry", "message"] {
        if let Some(entry) = event.get_mut(field).and_then(Value::as_object_mut) {
            logentry::format_in_place(entry);
        }
    }
    resolve_auto_ip(event, remote_addr);
    let user = user_tag(event.get("user"));
    let tags = tags(event, user.as_deref());
    event.insert(
        "tags".into(),
        Value::Array(
            tags.iter()
                .map(|(k, v)| Value::Array(vec![Value::from(k.as_str()), Value::from(v.as_str())]))
                .collect(),
        ),
    );
    Enriched { tags, user }
}

/// Replace `{{auto}}` addresses with the client address (removed when relay saw none).
fn resolve_auto_ip(event: &mut Map<String, Value>, remote_addr: Option<&str>) {
    if let Some(user) = event.get_mut("user").and_then(Value::as_object_mut) {
        replace_auto(user, "ip_address", remote_addr);
    }
    if let Some(env) = event
        .get_mut("request")
        .and_then(|r| r.get_mut("env"))
        .and_then(Value::as_object_mut)
    {
        replace_auto(env, "REMOTE_ADDR", remote_addr);
    }
}

fn replace_auto(map: &mut Map<String, Value>, key: &str, remote_addr: Option<&str>) {
    if map.get(key).and_then(Value::as_str) != Some(AUTO) {
        return;
    }
    match remote_addr {
        Some(addr) => {
            map.insert(key.into(), Value::from(addr));
        }
        None => {
            map.remove(key);
        }
    }
}

/// Sentry's `user` tag: the first of id, email, username, ip address.
fn user_tag(user: Option<&Value>) -> Option<String> {
    let user = user?.as_object()?;
    [
        ("id", "id"),
        ("email", "email"),
        ("username", "username"),
        ("ip_address", "ip"),
    ]
    .iter()
    .find_map(|(field, prefix)| {
        let value = match user.get(*field)? {
            Value::String(s) if !s.trim().is_empty() => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some(format!("{prefix}:{value}"))
    })
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The event's tags (`{"k": "v"}` or `[["k", "v"]]`) followed by the promoted fields it does
/// not tag itself; blank, oversized and repeated keys are dropped.
fn tags(event: &Map<String, Value>, user: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |key: &str, value: Option<String>| {
        let key = key.trim();
        let Some(value) = value.map(|v| v.trim().to_owned()) else {
            return;
        };
        if key.is_empty()
            || value.is_empty()
            || key.chars().count() > MAX_TAG_KEY_CHARS
            || value.chars().count() > MAX_TAG_VALUE_CHARS
            || out.iter().any(|(k, _)| k == key)
        {
            return;
        }
        out.push((key.to_owned(), value));
    };
    match event.get("tags") {
        Some(Value::Object(map)) => {
            for (k, v) in map {
                push(k, scalar_text(v));
            }
        }
        Some(Value::Array(pairs)) => {
            for pair in pairs {
                if let Some([k, v]) = pair.as_array().map(Vec::as_slice)
                    && let Some(k) = k.as_str()
                {
                    push(k, scalar_text(v));
                }
            }
        }
        _ => {}
    }
    for (field, key) in PROMOTED {
        push(key, event.get(field).and_then(scalar_text));
    }
    push("user", user.map(str::to_owned));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn formats_logentry_and_resolves_auto_addresses() {
        let mut p = json!({
            "logentry": {"message": "payment failed for %s", "params": ["bob"]},
            "user": {"id": "42", "ip_address": "{{auto}}"},
            "request": {"env": {"REMOTE_ADDR": "{{auto}}"}},
        });
        enrich(&mut p, Some("203.0.113.9"));
        assert_eq!(p["logentry"]["formatted"], "payment failed for bob");
        assert_eq!(p["user"]["ip_address"], "203.0.113.9");
        assert_eq!(p["request"]["env"]["REMOTE_ADDR"], "203.0.113.9");
        let mut p = json!({"user": {"ip_address": "{{auto}}"}});
        enrich(&mut p, None);
        assert!(p["user"].get("ip_address").is_none());
        let mut p = json!({"user": {"ip_address": "10.0.0.1"}});
        enrich(&mut p, Some("203.0.113.9"));
        assert_eq!(p["user"]["ip_address"], "10.0.0.1");
    }

    #[test]
    fn promotes_fields_to_tags_without_overriding_the_events_own() {
        let mut p = json!({
            "tags": {"server_name": "explicit", "k": "v", "n": 3, "": "x", "long": "v".repeat(201)},
            "environment": "prod",
            "release": "app@1.0",
            "server_name": "web-1",
            "transaction": "/checkout",
            "user": {"email": "a@b.c"},
        });
        let e = enrich(&mut p, None);
        let keys: Vec<&str> = e.tags.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "k",
                "n",
                "server_name",
                "environment",
                "release",
                "transaction",
                "user"
            ]
        );
        assert_eq!(e.tags[2].1, "explicit");
        assert_eq!(e.tags[1].1, "3");
        assert_eq!(e.user.as_deref(), Some("email:a@b.c"));
        assert_eq!(p["tags"][3], json!(["environment", "prod"]));
    }

    #[test]
    fn user_tag_prefers_the_id() {
        let mut p = json!({"tags": [["a", "1"], ["bad"]], "user": {"id": 7, "email": "x@y"}});
        let e = enrich(&mut p, None);
        assert_eq!(e.user.as_deref(), Some("id:7"));
        assert_eq!(
            e.tags,
            [("a".into(), "1".into()), ("user".into(), "id:7".into())]
        );
        assert_eq!(enrich(&mut json!({}), None), Enriched::default());
    }
}
