//! Unit tests of `backtest::review`.

use super::*;

#[test]
fn long_keys_make_short_distinct_file_names() {
    let a = format!("rule/product={}/1", "p".repeat(300));
    let b = format!("rule/product={}/2", "p".repeat(300));
    let (na, nb) = (safe_name(&a), safe_name(&b));
    assert!(na.len() <= MAX_FILE_NAME && nb.len() <= MAX_FILE_NAME);
    assert_ne!(na, nb);
    assert!(na.starts_with("rule_product_ppp"), "{na}");
    assert_eq!(safe_name("a/b=c"), "a_b_c");
}

/// A dedup key as the engine makes it, of a `product` slice.
fn key(product: &str) -> String {
    Transition::make_dedup_key("cnt", &[("product".into(), product.into())], 1)
}

#[test]
fn keys_made_alike_still_get_one_file_each() {
    let values = [
        "路由器",
        "手机壳",
        "Zürich",
        "Zärich",
        "a b",
        "a_b",
        "a:b",
        "a/b",
        "a%b",
    ];
    let keys: Vec<String> = values.iter().map(|v| key(v)).collect();
    let names = file_names(keys.iter().map(String::as_str)).unwrap();
    let distinct: std::collections::HashSet<String> =
        names.iter().map(|n| n.to_ascii_lowercase()).collect();
    assert_eq!(distinct.len(), values.len(), "{names:?}");
    for (k, n) in keys.iter().zip(&names) {
        // A name is a pure function of its key (no batch needed here)...
        assert_eq!(*n, format!("{}.md", safe_name(k)), "{k}");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)),
            "{n}"
        );
    }
    // ... readable, with 16 hex digits of the exact key where the
    // readable part lost something.
    assert!(
        names[2].starts_with("cnt_product_Z_rich_1~"),
        "{}",
        names[2]
    );
    assert_eq!(names[2].len(), "cnt_product_Z_rich_1~".len() + 16 + 3);
    assert_ne!(safe_name(&key("路由器")), safe_name(&key("手机壳")));
    // Keys of letters, digits, `-_.` and the separators keep their names.
    assert_eq!(names[5], "cnt_product_a_b_1.md");
    assert_eq!(safe_name(&key("router-x")), "cnt_product_router-x_1");
    assert_eq!(safe_name("a/b=c,d"), "a_b_c_d");
}

#[test]
fn names_that_would_meet_are_told_apart() {
    // Keys of safe characters alike once the separators are `_`, and names
    // differing only in case (one file on macOS or Windows): all hashed.
    let keys = [
        "x/a_b/1",
        "x/a/b/1",
        "x/a=b/1",
        "r/p=Router/1",
        "r/p=router/1",
        "r/p=q/1",
    ];
    let names = file_names(keys).unwrap();
    for n in &names[..5] {
        assert!(n.contains('~'), "{names:?}");
    }
    assert_eq!(names[5], "r_p_q_1.md");
    let distinct: std::collections::HashSet<String> =
        names.iter().map(|n| n.to_ascii_lowercase()).collect();
    assert_eq!(distinct.len(), keys.len(), "{names:?}");
    // Two incidents with one key (a transitions file can hold them):
    // numbered, not one over the other.
    let names = file_names(["r/p=q/1", "r/p=q/1", "r/p=é/1", "r/p=é/1"]).unwrap();
    assert_eq!(names[0], "r_p_q_1.md");
    assert_eq!(names[1], "r_p_q_1~2.md");
    assert_eq!(names[3], names[2].replace(".md", "~2.md"));
    assert!(file_names(Vec::<&str>::new()).unwrap().is_empty());
}

/// Picking an incident twice reviews it once (one file, counted once).
#[test]
fn an_incident_picked_twice_is_taken_once() {
    let cfg = config();
    let text = lines().join("\n");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.jsonl");
    std::fs::write(&p, text).unwrap();
    let (incidents, _) = incidents_from_transitions(&cfg, &p).unwrap();
    let k = incidents[0].dedup_key.clone();
    let chosen = select(&incidents, &[k.clone(), k]).unwrap();
    assert_eq!(chosen.len(), 1);
}

fn config() -> Config {
    Config::from_toml_str(
        r#"
[[rules]]
name = "cnt"
group_by = ["product"]
window = "10m"
slide = "1m"
for = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 1, error = 3, critical = 5 }
"#,
        &std::collections::HashMap::<String, String>::new(),
    )
    .expect("config")
}

/// Transitions in the engine's order: two instances of slice `p` (the
/// second's breach starting the minute the first resolves) and one of
/// `q`, with two escalations at one time.
fn lines() -> Vec<String> {
    let line = |product: &str, state: &str, sev: &str, at: &str, start: &str, value: f64| {
        let started = parse_rfc3339_ms(start).unwrap();
        let key = Transition::make_dedup_key("cnt", &[("product".into(), product.into())], started);
        format!(
            r#"{{"rule":"cnt","group":{{"product":"{product}"}},"state":"{state}","severity":"{sev}","at":"{at}","value":{value},"threshold":1,"clear":1,"dedup_key":"{key}","started_at":"{start}","window":"10m"}}"#
        )
    };
    let (p1, p2, q) = (
        "2026-11-20T10:00:00Z",
        "2026-11-20T10:20:00Z",
        "2026-11-20T10:05:00Z",
    );
    vec![
        line("p", "pending", "warning", p1, p1, 2.0),
        line("p", "firing", "warning", "2026-11-20T10:01:00Z", p1, 2.0),
        line("q", "pending", "warning", q, q, 2.0),
        line("p", "escalated", "error", "2026-11-20T10:06:00Z", p1, 4.0),
        line(
            "p",
            "escalated",
            "critical",
            "2026-11-20T10:06:00Z",
            p1,
            6.0,
        ),
        line("q", "firing", "warning", "2026-11-20T10:06:00Z", q, 2.0),
        line("p", "resolved", "critical", p2, p1, 0.0),
        line("p", "pending", "warning", p2, p2, 2.0),
        line("q", "resolved", "warning", "2026-11-20T10:25:00Z", q, 1.0),
        line("p", "firing", "warning", "2026-11-20T10:21:00Z", p2, 2.0),
    ]
}

/// The reviews of the incidents of a transitions file, and its end.
fn reviews(cfg: &Config, text: &str) -> (Vec<String>, i64) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.jsonl");
    std::fs::write(&p, text).unwrap();
    let (incidents, end) = incidents_from_transitions(cfg, &p).unwrap();
    let docs = incidents
        .iter()
        .map(|i| render(i, cfg.rules.first(), None, &[], None, end, false))
        .collect();
    (docs, end)
}

/// A transitions file cut at a time (an export of the last hours) starts
/// in the middle of incidents: those whose first line escalates or
/// resolves are still incidents, shown from their breach start.
#[test]
fn a_file_that_starts_mid_incident_keeps_those_incidents() {
    let cfg = config();
    let lines = lines();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.jsonl");
    // From 10:06 on: p's first instance is seen escalating, then resolving.
    std::fs::write(&p, lines[3..].join("\n")).unwrap();
    let (incidents, _) = incidents_from_transitions(&cfg, &p).unwrap();
    let first = parse_rfc3339_ms("2026-11-20T10:00:00Z").unwrap();
    let cut = incidents
        .iter()
        .find(|i| i.started_at == first)
        .expect("the incident already firing when the file starts");
    assert_eq!(cut.fired_at, first);
    assert_eq!(
        cut.resolved_at,
        Some(parse_rfc3339_ms("2026-11-20T10:20:00Z").unwrap())
    );
    assert_eq!(cut.severity, crate::config::Severity::Critical);
    // q (pending at 10:05, cut) fires at 10:06: kept; p's second instance too.
    assert_eq!(incidents.len(), 3, "{incidents:#?}");
}

#[test]
fn a_reversed_or_doubled_transitions_file_gives_the_same_reviews() {
    let cfg = config();
    let lines = lines();
    let (want, end) = reviews(&cfg, &lines.join("\n"));
    assert_eq!(want.len(), 3, "{want:#?}");
    assert!(
        want[0].contains("| Resolved | 2026-11-20T10:20:00"),
        "{}",
        want[0]
    );
    assert!(
        want[0].contains("| Highest severity | critical"),
        "{}",
        want[0]
    );
    let mut reversed = lines.clone();
    reversed.reverse();
    let doubled: Vec<&String> = lines.iter().flat_map(|l| [l, l]).collect();
    let twice = format!("{}\n{}", lines.join("\n"), lines.join("\n"));
    let reversed_doubled: Vec<&String> = reversed.iter().flat_map(|l| [l, l]).collect();
    for (what, text) in [
        ("reversed", reversed.join("\n")),
        (
            "doubled",
            doubled
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        ("written twice", twice),
        (
            "reversed and doubled",
            reversed_doubled
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ] {
        let (got, got_end) = reviews(&cfg, &text);
        assert_eq!(got_end, end, "{what}");
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn the_order_and_the_repeats_are_counted() {
    let mut ts: Vec<Transition> = lines()
        .iter()
        .rev()
        .map(|l| parse_transition(l).unwrap())
        .collect();
    let again = ts[0].clone();
    ts.push(again);
    let r = in_time_order(&mut ts);
    assert_eq!(r.duplicates, 1);
    // Reversed: all but the two newest lines are behind one before them,
    // and so is the repeat appended.
    assert_eq!(r.behind, 9, "{r:?}");
    assert!(ts.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(ts.len(), 10);
}

#[test]
fn parses_a_replay_line() {
    let line = r#"{"rule":"complaint_rate","group":{"product":"router-x","region":"eu-west"},"state":"firing","severity":"warning","at":"2026-11-20T09:18:31.560Z","value":0.0661,"threshold":0.065,"clear":0.04,"dedup_key":"complaint_rate/product=router-x,region=eu-west/1795165111560","started_at":"2026-11-20T09:13:31.560Z","window":"1h","sample_event_ids":["e-42-98121"]}"#;
    let t = parse_transition(line).unwrap();
    assert_eq!(t.state, State::Firing);
    let at = parse_rfc3339_ms("2026-11-20T09:18:31.560Z").unwrap();
    assert_eq!(t.at, at);
    assert_eq!(t.started_at, at - 300_000);
    assert_eq!(t.window_ms, 3_600_000);
    assert_eq!(t.group[1], ("region".to_string(), "eu-west".to_string()));
    assert!(parse_transition("{\"rule\":\"x\"}").is_err());
}

/// A `below` rule's peak is its lowest value, and the review says so (it
/// said "highest at a transition" beside the lowest: a field trial).
#[test]
fn a_below_rules_peak_is_called_the_lowest() {
    let cfg = Config::from_toml_str(
        r#"
[[rules]]
name = "low"
group_by = ["product"]
window = "10m"
slide = "1m"
condition = "below"
indicator = { kind = "count", select = { type = "order" } }
thresholds = { warning = 5, critical = 2 }
"#,
        &std::collections::HashMap::<String, String>::new(),
    )
    .expect("config");
    let start = "2026-11-20T10:00:00Z";
    let key = Transition::make_dedup_key(
        "low",
        &[("product".into(), "p".into())],
        parse_rfc3339_ms(start).unwrap(),
    );
    let line = |state: &str, sev: &str, at: &str, value: f64| {
        format!(
            r#"{{"rule":"low","group":{{"product":"p"}},"state":"{state}","severity":"{sev}","at":"{at}","value":{value},"threshold":5,"clear":5,"dedup_key":"{key}","started_at":"{start}","window":"10m"}}"#
        )
    };
    let text = [
        line("firing", "warning", start, 4.0),
        line("escalated", "critical", "2026-11-20T10:03:00Z", 1.0),
        line("resolved", "critical", "2026-11-20T10:09:00Z", 6.0),
    ]
    .join("\n");
    let (docs, _) = reviews(&cfg, &text);
    assert_eq!(docs.len(), 1);
    assert!(
        docs[0].contains("| Peak value | 1 at ") && docs[0].contains("(lowest at a transition)"),
        "{}",
        docs[0]
    );
}

/// The sampled peaks of a backtest replace a transitions file's only for
/// the same incidents — same key, same firing and resolve — and the worse
/// of the two wins; one incident of another kind (made with another
/// `clear`: it resolved later in the backtest) keeps them all as they are.
#[test]
fn sampled_peaks_come_only_from_the_same_incidents() {
    let cfg = config();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.jsonl");
    std::fs::write(&p, lines().join("\n")).unwrap();
    let (incidents, _) = incidents_from_transitions(&cfg, &p).unwrap();
    assert!(!incidents.is_empty());
    let worse = |i: &Incident| {
        let mut b = i.clone();
        b.peak = b.peak.map(|p| super::super::report::Peak {
            value: p.value * 2.0 + 1.0,
            at: p.at,
        });
        b
    };
    let sampled: Vec<Incident> = incidents.iter().map(worse).collect();
    let mut mine = incidents.clone();
    assert!(sample_peaks(&mut mine, &sampled));
    for (m, s) in mine.iter().zip(&sampled) {
        assert_eq!(m.peak.map(|p| p.value), s.peak.map(|p| p.value));
    }
    let mut other = sampled.clone();
    other[0].resolved_at = other[0].resolved_at.map(|r| r + 60_000).or(Some(0));
    let mut mine = incidents.clone();
    assert!(!sample_peaks(&mut mine, &other));
    for (m, i) in mine.iter().zip(&incidents) {
        assert_eq!(m.peak.map(|p| p.value), i.peak.map(|p| p.value));
    }
}
