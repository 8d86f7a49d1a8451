//! The deserializing stage of a load: every value serde refuses, not only
//! the first (bad values taken out or given a stand-in, then tried again),
//! each with its key path and the value as written.

use super::super::{Config, ConfigError};

/// The most errors of the deserializing stage one load reports.
const MAX_DESERIALIZE_ERRORS: usize = 50;

/// How the closing note past [`MAX_DESERIALIZE_ERRORS`] begins (not an
/// error itself: `check` does not count it).
pub(crate) const MORE_ERRORS: &str = "more errors follow";

/// Deserializes `tree`, reporting every value serde refuses, not only the
/// first: after each error the offending key is taken out of a scratch copy
/// and deserializing starts again, so one bad duration does not hide the
/// next. A required field it took out (`rules[0].window = "30q"`) gets a
/// stand-in value of some form serde takes instead, so the errors of the
/// other rules are still found. It stops at an error it cannot step past (a
/// required field missing, a bad element of an array, a field no stand-in
/// fits). When the errors could all be stepped past, [`Refused::config`] is
/// the configuration with them taken out or stood in for: its checks across
/// keys are trusted only for top-level tables nothing was taken out of
/// ([`Refused::untouched`]).
pub(super) fn deserialize_all(tree: &toml::Value) -> Result<Config, Refused> {
    let mut scratch = tree.clone();
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    // Per key taken out for an unknown variant, the first one serde named
    // (`expected one of `generic`, …`): the stand-in a tag like a
    // receiver's `kind` takes when no plain one fits.
    let mut variants: std::collections::HashMap<String, String> = Default::default();
    let mut stood_in = None;
    // One error past the cap is looked for, to say whether more follow.
    while errors.len() <= MAX_DESERIALIZE_ERRORS {
        let e = match serde_path_to_error::deserialize::<_, Config>(scratch.clone()) {
            Ok(config) if errors.is_empty() => return Ok(config),
            Ok(config) => {
                stood_in = Some(Box::new(config));
                break;
            }
            Err(e) => e,
        };
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        // The key path is shown already (and exactly): drop the toml
        // crate's own trailer, "\nin `rules.window`", which lacks the index.
        let message = e.inner().to_string();
        let message = match message.trim_end().rsplit_once("\nin `") {
            Some((head, tail)) if tail.ends_with('`') && !tail.contains('\n') => head.to_string(),
            _ => message,
        };
        // A required field this loop took out: not the user's error.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let ours = missing.is_some_and(|f| {
            let taken = if path.is_empty() {
                f.to_string()
            } else {
                format!("{path}.{f}")
            };
            removed.contains(&taken)
        });
        if ours {
            let taken = match (path.is_empty(), missing) {
                (_, None) => break,
                (true, Some(f)) => f.to_string(),
                (false, Some(f)) => format!("{path}.{f}"),
            };
            if stand_in(
                &mut scratch,
                &taken,
                variants.get(&taken).map(String::as_str),
            ) {
                continue;
            }
            // A tag (an indicator's `kind`) no stand-in fits: stand in for
            // the table holding it.
            if let Some((parent, _)) = taken.rsplit_once('.') {
                if stand_in(&mut scratch, parent, None) {
                    removed.push(parent.to_string());
                    continue;
                }
            }
            break;
        }
        if errors
            .iter()
            .any(|x| x.path == path && x.message == message)
        {
            break;
        }
        if let Some(v) = message
            .split_once("expected one of `")
            .or_else(|| message.split_once("expected `"))
            .and_then(|(_, rest)| rest.split('`').next())
        {
            variants.insert(path.clone(), v.to_string());
        }
        let value = lookup(tree, &path).unwrap_or_default();
        // A number, a boolean, a table: shown as written, not as a string.
        let literal = node(tree, &path).is_some_and(|v| !v.is_str());
        errors.push(ConfigError::new(path.clone(), value, message).literal(literal));
        if !remove_key(&mut scratch, &path) {
            break;
        }
        removed.push(path);
    }
    // Past the cap, say that more follow (rather than a count that reads
    // as the whole story).
    if errors.len() > MAX_DESERIALIZE_ERRORS {
        errors.truncate(MAX_DESERIALIZE_ERRORS);
        errors.push(ConfigError::new(
            String::new(),
            "",
            format!(
                "{MORE_ERRORS}: the first {MAX_DESERIALIZE_ERRORS} are shown; fix them and check again"
            ),
        ));
        stood_in = None;
    }
    Err(Refused {
        errors,
        config: stood_in,
        removed,
    })
}

/// What [`deserialize_all`] refused, and what it could read around it.
pub(super) struct Refused {
    /// Every value serde refused (and a closing note past the cap).
    pub(super) errors: Vec<ConfigError>,
    /// The configuration with the refused values taken out or stood in for,
    /// when deserializing got past all of them.
    pub(super) config: Option<Box<Config>>,
    /// The key paths taken out (some given a stand-in).
    removed: Vec<String>,
}

impl Refused {
    /// Nothing refused but the values at `paths` (which interpolation could
    /// not expand): for [`Refused::untouched`].
    pub(super) fn taken(paths: impl IntoIterator<Item = String>) -> Refused {
        Refused {
            errors: Vec::new(),
            config: None,
            removed: paths.into_iter().collect(),
        }
    }

    /// Whether a check's error at `path` can be trusted of the stood-in
    /// configuration: it lies in a top-level table (`rules[3]`, `engine`)
    /// nothing was taken out of — or it is a rule's threshold order, which
    /// reads only `thresholds`, `clear` and `condition`, none of them taken
    /// out — and nothing others refer to was taken out (a whole table, a
    /// `name`, a `group_by`, a `kind`, anything in `engine`).
    pub(super) fn untouched(&self, path: &str) -> bool {
        // "rules[3].thresholds.critical" → ("rules[3]", "thresholds").
        let parts = |p: &str| {
            let mut it = p.split('.');
            let top = it.next().unwrap_or_default().to_string();
            let second = it
                .next()
                .map(|k| k.split('[').next().unwrap_or(k).to_string());
            (top, second)
        };
        let (top, second) = parts(path);
        !path.is_empty()
            && self.removed.iter().all(|r| {
                let (r_top, r_second) = parts(r);
                let last = r.rsplit('.').next().unwrap_or(r);
                // `engine` holds settings other tables' checks read
                // (`engine.shards` bounds the scale-out's partitions).
                let referred = r_second.is_none()
                    || r_top == "engine"
                    || ["name", "group_by", "kind"]
                        .iter()
                        .any(|k| last.split('[').next() == Some(k));
                let order = |k: &Option<String>| {
                    k.as_deref()
                        .is_some_and(|k| ["thresholds", "clear", "condition"].contains(&k))
                };
                !referred && (r_top != top || (order(&second) && !order(&r_second)))
            })
    }
}

/// Puts at `path` (a required field [`deserialize_all`] took out) the first
/// stand-in value under which deserializing gets past it: `variant` (a
/// value serde named as expected there), a duration, a number, a flag, a
/// word, a list, a table. `false` when none does.
fn stand_in(scratch: &mut toml::Value, path: &str, variant: Option<&str>) -> bool {
    let named = variant.map(|v| toml::Value::String(v.to_string()));
    let candidates = named.into_iter().chain([
        toml::Value::String("1m".into()),
        toml::Value::Integer(1),
        toml::Value::Float(1.0),
        toml::Value::Boolean(true),
        toml::Value::String("x".into()),
        toml::Value::Array(Vec::new()),
        toml::Value::Table(toml::map::Map::new()),
        // A table tagged by `kind` (an indicator) takes no empty stand-in.
        toml::Value::Table(toml::map::Map::from_iter([(
            "kind".to_string(),
            toml::Value::String("count".into()),
        )])),
    ]);
    for v in candidates {
        let mut trial = scratch.clone();
        if !set_key(&mut trial, path, v) {
            return false;
        }
        let stuck = match serde_path_to_error::deserialize::<_, Config>(trial.clone()) {
            Ok(_) => false,
            Err(e) => {
                let at = e.path().to_string();
                let at = if at == "." { String::new() } else { at };
                let (parent, field) = path.rsplit_once('.').unwrap_or(("", path));
                let message = e.inner().to_string();
                at == path
                    || (at == parent
                        && message
                            .strip_prefix("missing field `")
                            .and_then(|m| m.split('`').next())
                            == Some(field))
            }
        };
        if !stuck {
            *scratch = trial;
            return true;
        }
    }
    false
}

/// One step of a key path: a key, or an array element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A path part (`rules[2]`) as its key and element indices.
fn split_part(part: &str) -> (&str, Vec<usize>) {
    match part.split_once('[') {
        Some((k, rest)) => (
            k,
            rest.split('[')
                .filter_map(|i| i.trim_end_matches(']').parse().ok())
                .collect(),
        ),
        None => (part, Vec::new()),
    }
}

/// The steps of a serde path (`a.b[2].c`) in `tree`. serde joins keys with
/// dots whatever they hold, so a key with dots in it (a librdkafka
/// property, `"ssl.key.password"`) is the longest run of parts the table
/// holds; a part the tree does not hold (a key taken out) is one key.
fn steps(tree: &toml::Value, path: &str) -> Vec<Step> {
    let parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    let mut out = Vec::new();
    let mut cur = Some(tree);
    let mut i = 0;
    while i < parts.len() {
        let found = cur.and_then(toml::Value::as_table).and_then(|t| {
            (i + 1..=parts.len()).rev().find_map(|j| {
                // Only the last part of a run may index an array.
                if parts[i..j - 1].iter().any(|p| p.contains('[')) {
                    return None;
                }
                let joined = parts[i..j].join(".");
                let (key, idx) = split_part(&joined);
                t.contains_key(key).then(|| (j, key.to_string(), idx))
            })
        });
        let (next, key, idx) = found.unwrap_or_else(|| {
            let (key, idx) = split_part(parts[i]);
            (i + 1, key.to_string(), idx)
        });
        if !key.is_empty() {
            cur = cur.and_then(|c| c.get(key.as_str()));
            out.push(Step::Key(key));
        }
        for k in idx {
            cur = cur.and_then(|c| c.get(k));
            out.push(Step::Index(k));
        }
        i = next;
    }
    out
}

/// The table holding the key at `path` (`a.b[2].c`) and the key's name;
/// `None` when that table does not exist, or the path ends in an array
/// element.
fn parent_table<'a>(
    tree: &'a mut toml::Value,
    path: &str,
) -> Option<(&'a mut toml::map::Map<String, toml::Value>, String)> {
    let mut steps = steps(tree, path);
    let Some(Step::Key(last)) = steps.pop() else {
        return None;
    };
    let mut cur = tree;
    for s in steps {
        cur = match s {
            Step::Key(k) => cur.get_mut(k.as_str())?,
            Step::Index(i) => cur.get_mut(i)?,
        };
    }
    Some((cur.as_table_mut()?, last))
}

/// Sets the key at `path` (`a.b[2].c`) in `tree` to `value`; `false` when
/// its table does not exist.
fn set_key(tree: &mut toml::Value, path: &str, value: toml::Value) -> bool {
    parent_table(tree, path)
        .map(|(t, last)| t.insert(last, value))
        .is_some()
}

/// Takes the key at `path` (`a.b[2].c`) out of `tree`; `false` when there
/// is none, or the path ends in an array element (taking it out would
/// renumber the ones after it).
fn remove_key(tree: &mut toml::Value, path: &str) -> bool {
    parent_table(tree, path).is_some_and(|(t, last)| t.remove(&last).is_some())
}

/// The value at a serde_path_to_error path (`rules[0].window`).
pub(super) fn node<'t>(tree: &'t toml::Value, path: &str) -> Option<&'t toml::Value> {
    let mut cur = tree;
    for s in steps(tree, path) {
        cur = match s {
            Step::Key(k) => cur.get(k.as_str())?,
            Step::Index(i) => cur.get(i)?,
        };
    }
    Some(cur)
}

/// Renders the value at a serde_path_to_error path (`rules[0].window`) for
/// error messages.
pub(super) fn lookup(tree: &toml::Value, path: &str) -> Option<String> {
    Some(match node(tree, path)? {
        toml::Value::String(s) => s.clone(),
        // As written (through serde it is a private table).
        toml::Value::Datetime(d) => d.to_string(),
        // A table or array quoted whole: credentials in it hidden.
        other => super::super::properties::redact_value(other).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bad value of a required field in one rule (taken out, it would be
    /// missing) does not hide the next rule's: found in a field trial, `check`
    /// reported only `rules[0].window` of three errors. The toml crate's own
    /// trailer (`in `rules.window``, without the index) is not repeated.
    #[test]
    fn bad_required_fields_in_several_rules_are_all_reported() {
        let text = r#"
    [[rules]]
    name = "a"
    window = "30q"
    indicator = { kind = "count" }
    thresholds = { warning = 5 }

    [[rules]]
    name = "b"
    window = "1x"
    indicator = { kind = "count" }
    thresholds = { warning = "five" }

    [[rules]]
    name = "c"
    window = "10m"
    windoww = "10m"
    indicator = { kind = "count" }
    thresholds = { warning = 5 }

    [engine]
    max_groups_per_rule = -5
    "#;
        let e = match Config::from_toml_str(text, &std::collections::HashMap::new()) {
            Err(crate::config::LoadError::Invalid(e)) => e,
            other => panic!("{other:?}"),
        };
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "rules[0].window",
            "rules[1].window",
            "rules[1].thresholds.warning",
            "rules[2].windoww",
            "engine.max_groups_per_rule",
        ] {
            assert!(paths.contains(&want), "{want} missing from {e:?}");
        }
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(e.iter().all(|e| !e.message.contains("\nin `")), "{e:?}");
    }
}
