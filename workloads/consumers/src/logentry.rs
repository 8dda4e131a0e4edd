//! Formatting a parameterized message (`logentry.message` with `logentry.params`) the way
//! Sentry does before storing it. Pure.
//!
//! ```text
//!  {"message": "payment failed for %s", "params": ["bob"]} ─► formatted "payment failed for bob"
//! ```
//!
//! Placeholders: printf style (`%s`, `%d`, `%5.2f`, ..., `%%`; a `%` that starts no placeholder
//! stays) and `%(name)s` taking params in order or by name, and curly style (`{}`, `{0}`, `{name}`). A template whose placeholders the
//! params cannot fill is left as it is (the SDK's own `formatted`, if any, wins anyway).

use serde_json::{Map, Value};

/// Set `formatted` on a logentry-shaped object (`message` + `params`, no `formatted`).
/// Returns whether it changed anything.
pub fn format_in_place(entry: &mut Map<String, Value>) -> bool {
    if entry
        .get("formatted")
        .and_then(Value::as_str)
        .is_some_and(|f| !f.is_empty())
    {
        return false;
    }
    let Some(template) = entry.get("message").and_then(Value::as_str) else {
        return false;
    };
    let Some(params) = entry.get("params") else {
        return false;
    };
    let Some(formatted) = format(template, params) else {
        return false;
    };
    entry.insert("formatted".into(), Value::String(formatted));
    true
}

/// `template` with its placeholders filled from `params` (a list or an object); `None` when the
/// template has no placeholder the params fill, or names one they lack.
pub fn format(template: &str, params: &Value) -> Option<String> {
    if template.contains('%')
        && let Some(out) = printf(template, params)
    {
        return Some(out);
    }
    if template.contains('{') {
        return curly(template, params);
    }
    None
}

/// A parameter as message text: strings as they are, everything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    }
}

struct Params<'a> {
    params: &'a Value,
    next: usize,
}

impl<'a> Params<'a> {
    fn positional(&mut self) -> Option<&'a Value> {
        let v = match self.params {
            Value::Array(list) => list.get(self.next),
            // A single non-list parameter (Python's `"%s" % x`).
            Value::Object(_) => None,
            other if self.next == 0 => Some(other),
            _ => None,
        };
        self.next += 1;
        v
    }

    fn named(&self, name: &str) -> Option<&'a Value> {
        match self.params {
            Value::Object(map) => map.get(name),
            Value::Array(list) => name.parse::<usize>().ok().and_then(|i| list.get(i)),
            _ => None,
        }
    }
}

const CONVERSIONS: &str = "sdiufFeEgGxXocrab";

fn printf(template: &str, params: &Value) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut params = Params { params, next: 0 };
    let mut filled = false;
    let mut rest = template;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let spec = &rest[at + 1..];
        if let Some(after) = spec.strip_prefix('%') {
            out.push('%');
            rest = after;
            continue;
        }
        // Optional `(name)`, then flags/width/precision, then a conversion letter.
        let (name, spec) = match spec.strip_prefix('(') {
            Some(named) => {
                let close = named.find(')')?;
                (Some(&named[..close]), &named[close + 1..])
            }
            None => (None, spec),
        };
        let flags_len = spec
            .find(|c: char| !(c.is_ascii_digit() || "-+ #.".contains(c)))
            .unwrap_or(spec.len());
        let conversion = spec[flags_len..].chars().next();
        match conversion {
            Some(c) if CONVERSIONS.contains(c) => {
                let value = match name {
                    Some(name) => params.named(name)?,
                    None => params.positional()?,
                };
                out.push_str(&text(value));
                filled = true;
                rest = &spec[flags_len + c.len_utf8()..];
            }
            // Not a placeholder (`100% sure`): keep the percent sign.
            _ => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    filled.then_some(out)
}

fn curly(template: &str, params: &Value) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut params = Params { params, next: 0 };
    let mut filled = false;
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let close = template[i..].find('}')? + i;
                let field = &template[i + 1..close];
                let name = field.split(':').next().unwrap_or_default();
                let value = if name.is_empty() {
                    params.positional()?
                } else {
                    params.named(name)?
                };
                out.push_str(&text(value));
                filled = true;
                while chars.peek().is_some_and(|(j, _)| *j <= close) {
                    chars.next();
                }
            }
            other => out.push(other),
        }
    }
    filled.then_some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn printf_placeholders() {
        let f = |t: &str, p: Value| format(t, &p);
        assert_eq!(
            f("payment failed for %s", json!(["bob"])).as_deref(),
            Some("payment failed for bob")
        );
        assert_eq!(
            f("%s took %d ms (%.2f%%)", json!(["job", 12, 0.5])).as_deref(),
            Some("job took 12 ms (0.5%)")
        );
        assert_eq!(
            f(
                "user %(name)s from %(ip)s",
                json!({"name": "a", "ip": "1.2.3.4"})
            )
            .as_deref(),
            Some("user a from 1.2.3.4")
        );
        assert_eq!(f("only %s", json!("one")).as_deref(), Some("only one"));
        assert_eq!(
            f("100%% sure %s", json!(["x"])).as_deref(),
            Some("100% sure x")
        );
        assert_eq!(f("rate %s%", json!(["5"])).as_deref(), Some("rate 5%"));
        // Too few params, or nothing to fill: left alone.
        assert_eq!(f("%s and %s", json!(["a"])), None);
        assert_eq!(f("no placeholders", json!(["a"])), None);
    }

    #[test]
    fn curly_placeholders() {
        let f = |t: &str, p: Value| format(t, &p);
        assert_eq!(f("{} + {}", json!([1, 2])).as_deref(), Some("1 + 2"));
        assert_eq!(f("{1} {0}", json!(["a", "b"])).as_deref(), Some("b a"));
        assert_eq!(
            f("hi {name}, {{literal}}", json!({"name": "x"})).as_deref(),
            Some("hi x, {literal}")
        );
        assert_eq!(f("{missing}", json!({})), None);
    }

    #[test]
    fn formats_in_place_unless_already_formatted() {
        let mut entry = json!({"message": "failed for %s", "params": ["bob"]});
        assert!(format_in_place(entry.as_object_mut().unwrap()));
        assert_eq!(entry["formatted"], "failed for bob");
        let mut done = json!({"message": "%s", "params": ["x"], "formatted": "given"});
        assert!(!format_in_place(done.as_object_mut().unwrap()));
        assert_eq!(done["formatted"], "given");
    }
}
