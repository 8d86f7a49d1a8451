//! `check`'s advice on how receivers are reached: a routing key, a signed
//! body or a URL password sent over plain `http://` to another machine
//! travels readable by anyone on the way (a signature proves who sent a
//! body, it does not hide it; a routing key lets whoever reads it page
//! the team). Loopback addresses are not named: a local relay or sidecar
//! is the usual reason for one.

use super::super::{Config, ReceiverKind};

/// Pushes a warning per receiver that sends a credential in clear text.
pub(super) fn advise(cfg: &Config, out: &mut Vec<String>) {
    for (i, r) in cfg.receivers.iter().enumerate() {
        let Ok(url) = reqwest::Url::parse(&r.url) else {
            continue;
        };
        if url.scheme() != "http" || loopback(url.host_str().unwrap_or_default()) {
            continue;
        }
        let mut what = Vec::new();
        if r.kind == ReceiverKind::Pagerduty
            || r.routing_key_env.is_some()
            || r.routing_key_file.is_some()
        {
            what.push("its routing key");
        }
        if r.secret_env.is_some() || r.secret_file.is_some() {
            what.push("its signed bodies");
        }
        if url.password().is_some() {
            what.push("the URL's password");
        }
        if what.is_empty() {
            continue;
        }
        out.push(format!(
            "receivers[{i}] ({}): url is plain http:// to {}: it carries {} unencrypted — use https://",
            r.name,
            url.host_str().unwrap_or_default(),
            what.join(" and ")
        ));
    }
}

/// Whether `host` is this machine (`localhost`, 127.0.0.0/8, `::1`).
fn loopback(host: &str) -> bool {
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn advice(receivers: &str) -> Vec<String> {
        let cfg = Config::from_toml_str(receivers, &std::collections::HashMap::new()).unwrap();
        let mut out = Vec::new();
        super::advise(&cfg, &mut out);
        out
    }

    #[test]
    fn credentials_over_plain_http_to_another_machine_are_named() {
        let pd = advice(
            "[[receivers]]\nname = \"pd\"\nkind = \"pagerduty\"\nurl = \"http://events.pagerduty.com/v2/enqueue\"\nrouting_key_env = \"K\"\n",
        );
        assert_eq!(pd.len(), 1, "{pd:?}");
        assert!(
            pd[0].starts_with("receivers[0] (pd): url is plain http:// to events.pagerduty.com: it carries its routing key unencrypted")
                && pd[0].contains("use https://"),
            "{}",
            pd[0]
        );
        let signed = advice(
            "[[receivers]]\nname = \"hook\"\nkind = \"generic\"\nurl = \"http://u:p@10.0.0.5:8080/x\"\nsecret_env = \"S\"\n",
        );
        assert!(
            signed[0].contains("its signed bodies and the URL's password"),
            "{signed:?}"
        );
        // Loopback, https, or nothing secret: nothing to say.
        for url in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://[::1]:9/x",
            "https://events.pagerduty.com/v2/enqueue",
        ] {
            let a = advice(&format!(
                "[[receivers]]\nname = \"h\"\nkind = \"generic\"\nurl = \"{url}\"\nsecret_env = \"S\"\n"
            ));
            assert!(a.is_empty(), "{url}: {a:?}");
        }
        assert!(advice(
            "[[receivers]]\nname = \"h\"\nkind = \"generic\"\nurl = \"http://10.0.0.5/x\"\n"
        )
        .is_empty());
    }
}
