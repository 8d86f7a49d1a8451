//! The console's address: `server.external_url`, else made from `listen`,
//! and where Alertmanager alerts link as their `generatorURL`.

use super::*;

/// `server.external_url` must be an http(s) URL; without it the console's
/// address is made from `listen`.
#[test]
fn the_console_url_is_the_external_url_or_made_from_listen() {
    let e = errors("[server]\nexternal_url = \"ftp://x\"\n");
    assert!(e.iter().any(|e| e.path == "server.external_url"), "{e:?}");
    let cfg = |text: &str| Config::from_toml_str(text, &HashMap::<String, String>::new()).unwrap();
    let c = cfg("[server]\nexternal_url = \"https://cw.example.com/\"\n");
    assert_eq!(
        c.server.console_url().as_deref(),
        Some("https://cw.example.com")
    );
    let c = cfg("[server]\nlisten = \"127.0.0.1:9000\"\n");
    assert_eq!(
        c.server.console_url().as_deref(),
        Some("http://127.0.0.1:9000")
    );
    let c = cfg("[server]\nlisten = \"[::1]:9000\"\n");
    assert_eq!(c.server.console_url().as_deref(), Some("http://[::1]:9000"));
    let c = cfg("[server]\nlisten = \"0.0.0.0:9000\"\n");
    let url = c.server.console_url().unwrap();
    assert!(
        url.starts_with("http://") && url.ends_with(":9000") && !url.contains("0.0.0.0"),
        "{url}"
    );
    assert_eq!(cfg("[server]\nlisten = \"\"\n").server.console_url(), None);
    // Any free port: no address anyone could open (Alertmanager's
    // generatorURL pointed at port 0).
    assert_eq!(
        cfg("[server]\nlisten = \"127.0.0.1:0\"\n")
            .server
            .console_url(),
        None
    );
}

/// Alertmanager's `generatorURL` falls back to the console only where it is
/// served: a process that serves none (`replay`, `outbox deliver`) links
/// only a configured `external_url`, never a loopback address nothing
/// answers on.
#[test]
fn the_generator_url_is_a_console_that_answers() {
    let cfg = |text: &str| Config::from_toml_str(text, &HashMap::<String, String>::new()).unwrap();
    let c = cfg("[server]\nlisten = \"127.0.0.1:9000\"\n");
    assert_eq!(
        c.server.generator_url(true).as_deref(),
        Some("http://127.0.0.1:9000/")
    );
    assert_eq!(c.server.generator_url(false), None);
    let c = cfg("[server]\nexternal_url = \"https://cw.example.com\"\n");
    for serving in [true, false] {
        assert_eq!(
            c.server.generator_url(serving).as_deref(),
            Some("https://cw.example.com/")
        );
    }
    assert_eq!(
        cfg("[server]\nlisten = \"\"\n").server.generator_url(true),
        None
    );
}
