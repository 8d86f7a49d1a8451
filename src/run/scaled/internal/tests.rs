//! Internal clients' configurations.

use super::*;

/// No internal client asks the broker to create a topic, whatever the
/// pass-through properties say; their other properties pass.
#[test]
fn internal_clients_never_auto_create_topics() {
    let cfg = crate::config::Config::from_toml_str(
            r#"
[sources.kafka]
brokers = "127.0.0.1:9092"
topics = [{ name = "complaints", default_type = "complaint" }]
properties = { "allow.auto.create.topics" = "true", "client.rack" = "r1", "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }
"#,
            &std::collections::HashMap::<String, String>::new(),
        )
        .expect("config");
    let k = cfg.sources.kafka.expect("kafka");
    let c = client_config(&k);
    assert_eq!(c.get("allow.auto.create.topics"), Some("false"));
    assert_eq!(c.get("client.rack"), Some("r1"));
    assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    assert_eq!(c.get("session.timeout.ms"), Some("6000"));
    // A producer takes neither consumer-only property (each was a
    // CONFWARN line at every start), and everything else.
    let p = producer_config(&k);
    assert_eq!(p.get("session.timeout.ms"), None);
    assert_eq!(p.get("heartbeat.interval.ms"), None);
    assert_eq!(p.get("client.rack"), Some("r1"));
    assert_eq!(p.get("allow.auto.create.topics"), Some("false"));
}
