//! `${VAR}` and `${VAR:-default}` environment interpolation in configuration
//! string values, as Vector and docker-compose do.
//!
//! Runs on the parsed TOML tree before it is deserialized, so only string
//! values are touched and an expansion can never inject TOML syntax.
//! `$$` is a literal `$`. `${VAR}` with `VAR` unset is an error naming the key
//! path; `${VAR:-default}` uses the default when `VAR` is unset or empty, and
//! `${VAR-default}` only when it is unset.

use super::ConfigError;

/// Where variable values come from: the process environment in production,
/// a map in tests.
pub trait Env {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// Interpolates every string in `value` in place, collecting one error per bad string.
pub(crate) fn interpolate_tree(
    value: &mut toml::Value,
    env: &dyn Env,
    errors: &mut Vec<ConfigError>,
) {
    walk(value, &mut String::new(), env, errors);
}

fn walk(value: &mut toml::Value, path: &mut String, env: &dyn Env, errors: &mut Vec<ConfigError>) {
    match value {
        toml::Value::String(s) => match interpolate_str(s, env) {
            Ok(new) => *s = new,
            Err(msg) => errors.push(ConfigError::new(path.clone(), s.clone(), msg)),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, env, errors);
                path.truncate(len);
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk(v, path, env, errors);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Expands the variables in one string.
pub(crate) fn interpolate_str(s: &str, env: &dyn Env) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let end = body_start
                .find('}')
                .ok_or_else(|| "unterminated `${` (write `$$` for a literal `$`)".to_string())?;
            let body = &body_start[..end];
            out.push_str(&expand(body, env)?);
            rest = &body_start[end + 1..];
        } else {
            // A `$` not followed by `{` or `$` is kept as is (e.g. "$5").
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The variable references of `s` that expand (`${NAME}`, `${NAME:-d}`,
/// `${NAME-d}`), each with what it expands to: to put a message that quotes
/// an expanded value back as written.
pub(crate) fn references(s: &str, env: &dyn Env) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            rest = r;
        } else if let Some((body, r)) = after.strip_prefix('{').and_then(|b| b.split_once('}')) {
            if let Ok(v) = expand(body, env) {
                out.push((format!("${{{body}}}"), v));
            }
            rest = r;
        } else {
            rest = after;
        }
    }
    out
}

fn expand(body: &str, env: &dyn Env) -> Result<String, String> {
    let (name, default, empty_counts_as_unset) = if let Some((n, d)) = body.split_once(":-") {
        (n, Some(d), true)
    } else if let Some((n, d)) = body.split_once('-') {
        (n, Some(d), false)
    } else {
        (body, None, false)
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`${{{body}}}` is not a valid variable reference"));
    }
    match (env.get(name), default) {
        (Some(v), Some(d)) if v.is_empty() && empty_counts_as_unset => Ok(d.to_string()),
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => Err(format!(
            "environment variable {name} is not set (use `${{{name}:-default}}` for a default)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert("HOST".to_string(), "kafka:9092".to_string());
        m.insert("EMPTY".to_string(), String::new());
        m
    }

    #[test]
    fn expands_set_unset_and_defaults() {
        let e = env();
        assert_eq!(interpolate_str("${HOST}", &e).unwrap(), "kafka:9092");
        assert_eq!(
            interpolate_str("a-${HOST}-b", &e).unwrap(),
            "a-kafka:9092-b"
        );
        assert_eq!(interpolate_str("${NOPE:-x:1}", &e).unwrap(), "x:1");
        assert_eq!(interpolate_str("${EMPTY:-d}", &e).unwrap(), "d");
        assert_eq!(interpolate_str("${EMPTY-d}", &e).unwrap(), "");
        assert_eq!(interpolate_str("${NOPE-d}", &e).unwrap(), "d");
        assert_eq!(interpolate_str("${NOPE:-}", &e).unwrap(), "");
        assert_eq!(
            interpolate_str("cost $$5 and $5", &e).unwrap(),
            "cost $5 and $5"
        );
        assert!(interpolate_str("${NOPE}", &e).unwrap_err().contains("NOPE"));
        assert!(interpolate_str("${HOST", &e).is_err());
        assert!(interpolate_str("${a b}", &e).is_err());
    }

    #[test]
    fn tree_errors_carry_key_paths() {
        let mut v: toml::Value = toml::from_str(
            r#"
            a = "${HOST}"
            [[rules]]
            name = "${MISSING}"
            "#,
        )
        .unwrap();
        let mut errors = Vec::new();
        interpolate_tree(&mut v, &env(), &mut errors);
        assert_eq!(v["a"].as_str(), Some("kafka:9092"));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "rules[0].name");
        assert_eq!(errors[0].value, "${MISSING}");
    }
}
