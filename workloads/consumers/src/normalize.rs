//! Normalization: the fields of a Sentry event the store and the API need. Pure.
//!
//! Timestamps (seconds or RFC 3339, clamped to relay's receive time when missing or off by
//! more than the allowed drift), level (default `error`, aliases folded), platform (default
//! `other`), and Sentry-like title and culprit: `Type: value` of the main exception or the
//! message; culprit from an explicit `culprit`, the `transaction`, or the top in-app frame.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Longest title kept; longer ones are cut with an ellipsis.
pub const MAX_TITLE_CHARS: usize = 200;
/// Events claiming a time further in the future than this are stamped with the receive time.
pub const MAX_FUTURE_DRIFT_SECS: f64 = 60.0;
/// Events older than this are stamped with the receive time.
pub const MAX_AGE_SECS: f64 = 30.0 * 24.0 * 3600.0;

const LEVELS: [&str; 5] = ["fatal", "error", "warning", "info", "debug"];

/// What normalization reads.
#[derive(Clone, Copy, Debug)]
pub struct NormalizeInput<'a> {
    pub payload: &'a Value,
    /// Unix seconds when relay accepted the event.
    pub received: f64,
}

/// The main exception of an event (the last of `exception.values`, as Sentry orders chains).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MainException {
    pub kind: String,
    pub value: Option<String>,
    /// `mechanism.synthetic`: the SDK made the exception up (a captured message with a stack
    /// trace, a non-error thrown), so its type and value say nothing about the error.
    pub synthetic: bool,
}

/// The normalized view of an event.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    /// Unix seconds.
    pub timestamp: f64,
    pub level: String,
    pub platform: String,
    pub title: String,
    pub culprit: String,
    /// The formatted message, if the event has one.
    pub message: String,
    /// The message template (or the message) used for grouping.
    pub grouping_message: Option<String>,
    pub exception: Option<MainException>,
    pub environment: Option<String>,
    pub release: Option<String>,
}

impl Normalized {
    /// `error` for exception events, `default` for everything else.
    pub fn group_type(&self) -> &'static str {
        if self.exception.is_some() {
            "error"
        } else {
            "default"
        }
    }

    /// Issue metadata shown in lists.
    pub fn metadata(&self) -> Value {
        match &self.exception {
            Some(e) if e.synthetic => serde_json::json!({"value": e.value, "title": self.title}),
            Some(e) => serde_json::json!({"type": e.kind, "value": e.value, "title": self.title}),
            None => serde_json::json!({"title": self.title}),
        }
    }
}

pub fn normalize(input: &NormalizeInput<'_>) -> Normalized {
    let p = input.payload;
    let exception = main_exception(p);
    let message = message(p);
    let title = truncate(
        &title(p, exception.as_ref(), message.as_deref()),
        MAX_TITLE_CHARS,
    );
    Normalized {
        timestamp: timestamp(p.get("timestamp"), input.received),
        level: level(p.get("level")),
        platform: platform(p.get("platform")),
        culprit: culprit(p),
        title,
        grouping_message: message_template(p).or_else(|| message.clone()),
        message: message.unwrap_or_default(),
        exception,
        environment: short_string(p.get("environment")),
        release: short_string(p.get("release")),
    }
}

fn timestamp(value: Option<&Value>, received: f64) -> f64 {
    let claimed = match value {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => parse_time(s),
        _ => None,
    };
    match claimed {
        Some(t)
            if t.is_finite()
                && t <= received + MAX_FUTURE_DRIFT_SECS
                && t >= received - MAX_AGE_SECS =>
        {
            t
        }
        _ => received,
    }
}

fn parse_time(s: &str) -> Option<f64> {
    if let Ok(n) = s.parse::<f64>() {
        return Some(n);
    }
    let parsed = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            // SDKs also send naive UTC times: `2024-01-01T10:00:00.123`.
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc())
        })
        .ok()?;
    Some(parsed.timestamp_micros() as f64 / 1e6)
}

fn level(value: Option<&Value>) -> String {
    let raw = value
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let folded = match raw.as_str() {
        "warn" => "warning",
        "critical" => "fatal",
        "log" => "info",
        other => other,
    };
    if LEVELS.contains(&folded) {
        folded.to_owned()
    } else {
        "error".to_owned()
    }
}

fn platform(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .unwrap_or_else(|| "other".to_owned())
}

fn short_string(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| truncate(s, MAX_TITLE_CHARS))
}

/// `exception.values` (or a bare list, as older SDKs send).
fn exception_values(p: &Value) -> &[Value] {
    let exc = p.get("exception");
    exc.and_then(|e| e.get("values"))
        .and_then(Value::as_array)
        .or_else(|| exc.and_then(Value::as_array))
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn main_exception(p: &Value) -> Option<MainException> {
    let exc = exception_values(p).iter().rev().find(|e| {
        e.get("type").and_then(Value::as_str).is_some()
            || e.get("value").and_then(Value::as_str).is_some()
    })?;
    let kind = exc
        .get("type")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("Error")
        .to_owned();
    let value = exc
        .get("value")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let synthetic = exc
        .get("mechanism")
        .and_then(|m| m.get("synthetic"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Some(MainException {
        kind,
        value,
        synthetic,
    })
}

/// The formatted message: `logentry.formatted`, `logentry.message`, or `message` (a string or
/// an object with the same fields).
fn message(p: &Value) -> Option<String> {
    let from = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(_) => v
                .get("formatted")
                .and_then(Value::as_str)
                .or_else(|| v.get("message").and_then(Value::as_str))
                .map(str::to_owned),
            _ => None,
        }
    };
    p.get("logentry")
        .and_then(from)
        .or_else(|| p.get("message").and_then(from))
        .filter(|s| !s.trim().is_empty())
}

/// The unformatted template of a parameterized message (`user %s failed`).
fn message_template(p: &Value) -> Option<String> {
    ["logentry", "message"]
        .iter()
        .find_map(|field| {
            let v = p.get(*field)?;
            v.get("params")?;
            v.get("message").and_then(Value::as_str).map(str::to_owned)
        })
        .or_else(|| {
            ["logentry", "message"].iter().find_map(|field| {
                let v = p.get(*field)?;
                v.as_object()?;
                v.get("message").and_then(Value::as_str).map(str::to_owned)
            })
        })
}

/// Sentry's titles: `Type: first line of value` for exceptions; for synthetic ones the crash
/// frame's function (as Sentry does), else the message (where Sentry says `<unknown>`); else
/// the message's first line.
fn title(p: &Value, exception: Option<&MainException>, message: Option<&str>) -> String {
    if let Some(e) = exception.filter(|e| e.synthetic) {
        let fallback = message.or(e.value.as_deref()).map(first_line);
        return match crash_frame(p).and_then(|f| text_field(f, "function")) {
            Some(function) => function.to_owned(),
            None => match fallback {
                Some(m) if !m.is_empty() => m.to_owned(),
                _ => "<unknown>".to_owned(),
            },
        };
    }
    if let Some(e) = exception {
        return match e.value.as_deref().map(first_line) {
            Some(value) if !value.is_empty() => format!("{}: {value}", e.kind),
            _ => e.kind.clone(),
        };
    }
    match message.map(first_line) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => "<unlabeled event>".to_owned(),
    }
}

fn culprit(p: &Value) -> String {
    let explicit = ["culprit", "transaction"].iter().find_map(|field| {
        p.get(*field)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    });
    let culprit = match explicit {
        Some(s) => s.to_owned(),
        None => frame_culprit(p).unwrap_or_default(),
    };
    truncate(&culprit, MAX_TITLE_CHARS)
}

/// `module in function` (or `filename in function`) of the innermost in-app frame of the main
/// exception's stack trace, falling back to the innermost frame.
fn frame_culprit(p: &Value) -> Option<String> {
    let frame = crash_frame(p)?;
    let text = |k: &str| text_field(frame, k);
    let location = text("module").or_else(|| text("filename"));
    match (location, text("function")) {
        (Some(l), Some(f)) => Some(format!("{l} in {f}")),
        (Some(l), None) => Some(l.to_owned()),
        (None, Some(f)) => Some(f.to_owned()),
        (None, None) => None,
    }
}

/// The innermost in-app frame of the main exception's stack trace (or the event's), falling
/// back to the innermost frame.
fn crash_frame(p: &Value) -> Option<&Value> {
    let frames = exception_values(p)
        .iter()
        .rev()
        .find_map(|e| e.get("stacktrace")?.get("frames")?.as_array())
        .or_else(|| p.get("stacktrace")?.get("frames")?.as_array())?;
    // Frames are ordered outermost first; the crash site is the last one.
    frames
        .iter()
        .rev()
        .find(|f| f.get("in_app").and_then(Value::as_bool) == Some(true))
        .or_else(|| frames.last())
}

fn text_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "<unknown>" && *s != "<redacted>")
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RECEIVED: f64 = 1_700_000_000.0;

    fn norm(payload: Value) -> Normalized {
        normalize(&NormalizeInput {
            payload: &payload,
            received: RECEIVED,
        })
    }

    #[test]
    fn exception_title_and_in_app_culprit() {
        let n = norm(json!({
            "platform": "Python",
            "exception": {"values": [
                {"type": "KeyError", "value": "'id'"},
                {"type": "ValueError", "value": "bad input\nmore detail", "stacktrace": {"frames": [
                    {"module": "app.main", "function": "run", "in_app": true},
                    {"module": "app.views", "function": "create", "in_app": true},
                    {"module": "django.core", "function": "dispatch", "in_app": false}
                ]}}
            ]}
        }));
        assert_eq!(n.title, "ValueError: bad input");
        assert_eq!(n.culprit, "app.views in create");
        assert_eq!(n.platform, "python");
        assert_eq!(n.level, "error");
        assert_eq!(n.group_type(), "error");
        assert_eq!(
            n.exception,
            Some(MainException {
                kind: "ValueError".into(),
                value: Some("bad input\nmore detail".into()),
                synthetic: false,
            })
        );
    }

    #[test]
    fn transaction_is_the_culprit_when_present_and_frames_fall_back_to_filename() {
        let n = norm(json!({"transaction": "/api/users", "message": "x"}));
        assert_eq!(n.culprit, "/api/users");
        let n = norm(
            json!({"exception": [{"type": "E", "stacktrace": {"frames": [
                {"filename": "src/lib.rs", "function": "boom"}
            ]}}]}),
        );
        assert_eq!(n.culprit, "src/lib.rs in boom");
        assert_eq!(n.title, "E");
    }

    #[test]
    fn message_events() {
        let n = norm(json!({"message": "disk full", "level": "WARN"}));
        assert_eq!(n.title, "disk full");
        assert_eq!(n.level, "warning");
        assert_eq!(n.group_type(), "default");
        let n = norm(
            json!({"logentry": {"message": "user %s failed", "params": ["a"], "formatted": "user a failed"}}),
        );
        assert_eq!(n.title, "user a failed");
        assert_eq!(n.grouping_message.as_deref(), Some("user %s failed"));
        let n = norm(json!({}));
        assert_eq!(n.title, "<unlabeled event>");
        assert_eq!(n.platform, "other");
    }

    #[test]
    fn synthetic_exceptions_are_titled_by_their_function_or_message() {
        let n = norm(json!({
            "message": "checkout failed",
            "exception": {"values": [{"value": "checkout failed",
                "mechanism": {"type": "generic", "synthetic": true},
                "stacktrace": {"frames": [
                    {"function": "main", "in_app": true},
                    {"function": "checkout", "module": "shop", "in_app": true}
                ]}}]}
        }));
        assert_eq!(n.title, "checkout");
        assert_eq!(n.culprit, "shop in checkout");
        assert!(n.metadata().get("type").is_none());
        let n = norm(json!({
            "message": "checkout failed",
            "exception": {"values": [{"value": "checkout failed",
                "mechanism": {"synthetic": true}}]}
        }));
        assert_eq!(n.title, "checkout failed");
    }

    #[test]
    fn levels_default_to_error() {
        for (given, want) in [
            (json!("fatal"), "fatal"),
            (json!("critical"), "fatal"),
            (json!("info"), "info"),
            (json!("nonsense"), "error"),
            (json!(3), "error"),
        ] {
            assert_eq!(norm(json!({"level": given})).level, want);
        }
    }

    #[test]
    fn timestamps_parse_and_clamp() {
        assert_eq!(
            norm(json!({"timestamp": RECEIVED - 5.5})).timestamp,
            RECEIVED - 5.5
        );
        assert_eq!(
            norm(json!({"timestamp": "2023-11-14T22:13:10Z"})).timestamp,
            RECEIVED - 10.0
        );
        assert_eq!(
            norm(json!({"timestamp": "2023-11-14T22:13:10.500"})).timestamp,
            RECEIVED - 9.5
        );
        assert_eq!(
            norm(json!({"timestamp": RECEIVED + 3600.0})).timestamp,
            RECEIVED
        );
        assert_eq!(norm(json!({"timestamp": 10.0})).timestamp, RECEIVED);
        assert_eq!(norm(json!({"timestamp": "yesterday"})).timestamp, RECEIVED);
        assert_eq!(norm(json!({})).timestamp, RECEIVED);
    }

    #[test]
    fn long_titles_are_cut() {
        let n = norm(json!({"message": "x".repeat(500)}));
        assert_eq!(n.title.chars().count(), MAX_TITLE_CHARS);
        assert!(n.title.ends_with('…'));
    }
}
