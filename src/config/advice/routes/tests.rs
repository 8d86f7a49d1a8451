use std::collections::HashMap;

use super::*;
use crate::config::{advice, EXAMPLE_CONFIG};

fn cfg(text: &str) -> Config {
    Config::from_toml_str(text, &HashMap::<String, String>::new()).expect("valid")
}

/// Two rules: `by_product` (group_by product, warning and critical) and
/// `by_region` (group_by region and segment, warning only), then `routes`.
fn two_rules(routes: &str) -> Config {
    cfg(&format!(
        r#"
[[rules]]
name = "by_product"
group_by = ["product"]
window = "10m"
indicator = {{ kind = "count" }}
thresholds = {{ warning = 5, critical = 10 }}

[[rules]]
name = "by_region"
group_by = ["region", "segment"]
window = "10m"
indicator = {{ kind = "count" }}
thresholds = {{ warning = 5 }}
{routes}
"#
    ))
}

/// The shipped example with `line` added to its `product` route.
fn shipped_with(line: &str) -> Config {
    shipped_replacing("", &format!("{line}\n"))
}

/// The shipped example with the first `old` after the start of its
/// `product` route replaced by `new`.
fn shipped_replacing(old: &str, new: &str) -> Config {
    let anchor = "name = \"product\"\n";
    let at = EXAMPLE_CONFIG.find(anchor).expect("a product route") + anchor.len();
    let (head, tail) = EXAMPLE_CONFIG.split_at(at);
    assert!(tail.contains(old), "{old}");
    cfg(&format!("{head}{}", tail.replacen(old, new, 1)))
}

#[test]
fn the_shipped_configurations_have_no_route_warnings() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("config/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("read");
            assert_eq!(advice(&cfg(&text)), Vec::<String>::new(), "{path:?}");
            checked += 1;
        }
    }
    assert!(checked >= 1, "no configuration under {dir}");
}

#[test]
fn a_typo_in_a_route_matcher_is_named_with_the_label_it_meant() {
    let w = advice(&shipped_with("match = { regoin = \"eu-west\" }"));
    assert!(
        w.contains(&"incidents.routes[1].match.regoin: no rule route \"product\" takes groups by \"regoin\", so this matcher never holds and the route takes no alert (did you mean \"region\"?)".to_string()),
        "{w:#?}"
    );
    // The product route took every product rule: now none has a route.
    for rule in ["complaint_surge", "social_spike", "response_backlog"] {
        assert!(
            w.iter()
                .any(|m| m.starts_with(&format!("rules.{rule}: no [[incidents.routes]]"))),
            "{rule}: {w:#?}"
        );
    }
    assert!(
        !w.iter().any(|m| m.starts_with("rules.churn_surge")),
        "{w:#?}"
    );
}

#[test]
fn a_matcher_is_judged_on_the_rules_the_route_lists() {
    // `by_region` carries region: the route can match.
    assert_eq!(
        advice(&two_rules(
            "[[incidents.routes]]\nname = \"eu\"\nmatch = { region = \"eu\" }\n[[incidents.routes]]\nname = \"rest\"\n"
        )),
        Vec::<String>::new()
    );
    // Listing only `by_product`, it cannot: no suggestion within two edits.
    let w = advice(&two_rules(
        "[[incidents.routes]]\nname = \"eu\"\nrules = [\"by_product\"]\nmatch = { region = \"eu\" }\n[[incidents.routes]]\nname = \"rest\"\n",
    ));
    assert_eq!(
        w,
        vec!["incidents.routes[0].match.region: no rule route \"eu\" takes groups by \"region\", so this matcher never holds and the route takes no alert"],
    );
}

#[test]
fn a_negative_matcher_on_a_missing_label_holds_and_is_named_as_such() {
    // `segment` is carried by `by_region`, absent from `by_product`'s
    // alerts (where `not` holds): it sorts them, no warning.
    let c = two_rules(
        "[[incidents.routes]]\nname = \"external\"\nmatch = { segment = { not = \"internal\" } }\n",
    );
    assert_eq!(advice(&c), Vec::<String>::new());
    // On `by_product` alone it keeps nothing out; the route still takes it.
    let c = two_rules(
        "[[incidents.routes]]\nname = \"external\"\nrules = [\"by_product\"]\nmatch = { segment = { not = \"internal\" } }\n[[incidents.routes]]\nname = \"rest\"\n",
    );
    assert_eq!(
        advice(&c),
        vec!["incidents.routes[0].match.segment: no rule route \"external\" takes groups by \"segment\", so this matcher always holds and keeps no alert out"],
    );
    let w = advice(&shipped_with("match = { segmnt = { not = \"vip\" } }"));
    assert_eq!(
        w,
        vec!["incidents.routes[1].match.segmnt: no rule route \"product\" takes groups by \"segmnt\", so this matcher always holds and keeps no alert out (did you mean \"segment\"?)"],
    );
}

#[test]
fn a_rule_matcher_naming_no_rule_is_named() {
    let w = advice(&two_rules(
        "[[incidents.routes]]\nname = \"p\"\nmatch = { rule = [\"by_product\", \"by_regoin\"] }\n[[incidents.routes]]\nname = \"rest\"\n",
    ));
    assert_eq!(
        w,
        vec!["incidents.routes[0].match.rule: route \"p\" takes no rule named \"by_regoin\", so this value never matches (did you mean \"by_region\"?)"],
    );
    let w = advice(&two_rules(
        "[[incidents.routes]]\nname = \"p\"\nmatch = { rule = \"by_prodcut\" }\n",
    ));
    assert_eq!(w.len(), 3, "{w:#?}");
    assert!(
        w[0].ends_with("so this value never matches and the route takes no alert (did you mean \"by_product\"?)"),
        "{w:#?}"
    );
}

#[test]
fn a_grouping_label_no_rule_of_the_route_carries_is_named() {
    let w = advice(&shipped_replacing(
        "group_by = [\"product\"]",
        "group_by = [\"produkt\"]",
    ));
    assert_eq!(
        w,
        vec!["incidents.routes[1].group_by[0]: none of the rules route \"product\" takes groups by \"produkt\", so every incident of the route has produkt=\"\" and different slices merge into one (did you mean \"product\"?)"],
    );
    // One rule of the route carrying the label is enough; `rule` is always there.
    let c = two_rules(
        "[[incidents.routes]]\nname = \"all\"\ngroup_by = [\"rule\", \"product\", \"segment\"]\n",
    );
    assert_eq!(advice(&c), Vec::<String>::new());
    // Only the rules the route can take count: `by_region` never reaches
    // a critical-only route.
    let w = advice(&two_rules(
        "[[incidents.routes]]\nname = \"pager\"\nmin_severity = \"critical\"\ngroup_by = [\"region\"]\n[[incidents.routes]]\nname = \"rest\"\n",
    ));
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].starts_with("incidents.routes[0].group_by[0]: none of the rules route \"pager\" takes groups by \"region\""), "{w:#?}");
}

#[test]
fn a_rule_no_route_can_take_is_named() {
    // By `rules`, by `min_severity` above its highest threshold, by a
    // matcher on a label it lacks.
    for routes in [
        "[[incidents.routes]]\nname = \"p\"\nrules = [\"by_product\"]\n",
        "[[incidents.routes]]\nname = \"p\"\nmin_severity = \"critical\"\n",
        "[[incidents.routes]]\nname = \"p\"\nmatch = { product = \"x\" }\n",
    ] {
        let w = advice(&two_rules(routes));
        assert_eq!(
            w,
            vec!["rules.by_region: no [[incidents.routes]] can take its alerts (by their `rules`, `min_severity` and `match`): they fire and open no incident; add a last route without `rules` and `match` to catch them"],
            "{routes}"
        );
    }
    // Without routes, the default route takes everything.
    assert_eq!(advice(&two_rules("")), Vec::<String>::new());
}

#[test]
fn edit_distance_and_suggestions() {
    assert_eq!(levenshtein("", "abc"), 3);
    assert_eq!(levenshtein("produkt", "product"), 1);
    assert_eq!(levenshtein("regoin", "region"), 2);
    assert_eq!(levenshtein("kitten", "sitting"), 3);
    assert_eq!(
        did_you_mean("segmnt", ["region", "segment"].into_iter()),
        " (did you mean \"segment\"?)"
    );
    assert_eq!(
        did_you_mean("channel", ["region", "segment"].into_iter()),
        ""
    );
    assert_eq!(did_you_mean("region", ["region"].into_iter()), "");
}
