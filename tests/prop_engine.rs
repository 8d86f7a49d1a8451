use std::collections::HashMap;
use crisiswatch::config::Config;
use crisiswatch::engine::Engine;
use crisiswatch::event::{decode, DecodeLimits};

#[test]
fn scratch() {
    let toml = r#"
[[rules]]
name = "c"
window = "3s"
slide = "1s"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 100 }
"#;
    let cfg = Config::from_toml_str(toml, &HashMap::<String, String>::new()).unwrap();
    let mut e = Engine::new(&cfg).unwrap();
    let mut out = Vec::new();
    for (id, ts) in [("a", 500i64), ("b", 1500)] {
        let s = format!(r#"{{"id":"{id}","type":"complaint","ts":{ts}}}"#);
        let ev = decode(s.as_bytes(), &DecodeLimits::default(), None).unwrap();
        e.process(&ev, &mut out);
        println!("{:?}", e.groups(0));
    }
    println!("{:?}", e.current_values(0));
}
