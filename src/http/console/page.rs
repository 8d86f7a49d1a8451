//! The console's HTML, rendered on the server from a [`View`]: no script,
//! no external resource. Every value that comes from events, the
//! configuration or a person (slices, event ids, silence comments, notes) is
//! written through [`esc`], in text and in attribute values alike (always
//! double-quoted), so an attribute value like `"><img onerror=…>` shows as
//! that text.

use std::fmt::Write;

use crate::admin::history::RuleSample;
use crate::event::format_ts;
use crate::incident::lifecycle::Incident;
use crate::incident::model::{fmt_value, labels_text, AlertEvidence};
use crate::incident::outbox::feedback::{FeedbackState, Label};
use crate::incident::outbox::timeline::Entry;
use crate::incident::peers::Holding;
use crate::incident::silence::Silence;

/// Escapes text for HTML element content and double-quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// One open incident with what the console shows beside it.
#[derive(Debug)]
pub(crate) struct IncidentView {
    /// The incident.
    pub(crate) incident: Incident,
    /// Its acknowledgement and label.
    pub(crate) feedback: Option<FeedbackState>,
    /// Its notifications.
    pub(crate) timeline: Vec<Entry>,
    /// Ids of the active silences that cover every active alert.
    pub(crate) muted_by: Vec<String>,
    /// One chart per active alert (title, SVG if there is enough history).
    pub(crate) charts: Vec<(String, Option<String>)>,
}

/// One receiver's queue and breaker, from the metrics.
#[derive(Debug, Default)]
pub(crate) struct ReceiverRow {
    /// Name.
    pub(crate) name: String,
    /// Pending notifications.
    pub(crate) depth: Option<f64>,
    /// Age of the oldest pending one, s.
    pub(crate) oldest_s: Option<f64>,
    /// Dead letters kept.
    pub(crate) dead: Option<f64>,
    /// Circuit open (1) or closed (0).
    pub(crate) circuit_open: Option<f64>,
}

/// The service's health.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Why the service is not ready; `None` when it is.
    pub(crate) not_ready: Option<String>,
    /// Engine clock (event time).
    pub(crate) clock: Option<String>,
    /// Wall clock − watermark, s.
    pub(crate) watermark_delay_s: Option<f64>,
    /// Kafka consumer lag, messages (all partitions).
    pub(crate) kafka_lag: Option<f64>,
    /// Unix time of the last checkpoint.
    pub(crate) last_checkpoint: Option<f64>,
    /// Events applied since start.
    pub(crate) applied: Option<f64>,
    /// Invalid events since start.
    pub(crate) invalid: Option<f64>,
    /// Receivers.
    pub(crate) receivers: Vec<ReceiverRow>,
    /// Seconds since start.
    pub(crate) uptime_s: f64,
}

/// A rule's row.
#[derive(Debug)]
pub(crate) struct RuleRow {
    /// Thresholds and worst slices.
    pub(crate) sample: RuleSample,
    /// What it catches.
    pub(crate) description: String,
}

/// Everything the page shows.
#[derive(Debug, Default)]
pub(crate) struct View {
    /// Wall clock, ms.
    pub(crate) now_ms: i64,
    /// The engine's clock (event time), ms, if it has seen events.
    pub(crate) event_now_ms: Option<i64>,
    /// The outcome of the last form, from the redirect.
    pub(crate) flash: Option<String>,
    /// Open incidents; `None` when this process has no incident manager.
    pub(crate) incidents: Option<Vec<IncidentView>>,
    /// With `sources.kafka.scale_out`: the other running instances' open
    /// incidents (from the controls topic); `None` for one instance.
    pub(crate) elsewhere: Option<Vec<Holding>>,
    /// Silences, latest ending first.
    pub(crate) silences: Vec<Silence>,
    /// Rules.
    pub(crate) rules: Vec<RuleRow>,
    /// Health.
    pub(crate) health: Health,
    /// Whether an admin token is configured (else the forms cannot work).
    pub(crate) token_configured: bool,
}

fn severity_of(i: &Incident) -> &'static str {
    let active = i
        .alerts
        .iter()
        .filter(|a| a.active)
        .map(|a| a.severity)
        .max();
    active
        .or_else(|| i.alerts.iter().map(|a| a.severity).max())
        .map_or("none", |s| s.as_str())
}

fn token_field() -> &'static str {
    r#"<label>admin token <input type="password" name="token" required autocomplete="off"></label>"#
}

fn age(now_ms: i64, then_ms: i64) -> String {
    let s = ((now_ms - then_ms) / 1000).max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}

/// The whole page.
pub(crate) fn render(v: &View) -> String {
    let mut s = String::with_capacity(32 * 1024);
    s.push_str(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>crisiswatch console</title><link rel="stylesheet" href="/console.css"></head><body>"#,
    );
    s.push_str(r##"<header><h1>crisiswatch</h1><nav><a href="#incidents">incidents</a> <a href="#silences">silences</a> <a href="#rules">rules</a> <a href="#health">health</a> <a href="/">refresh</a></nav></header><main>"##);
    if let Some(f) = &v.flash {
        let _ = write!(s, r#"<p class="flash" role="status">{}</p>"#, esc(f));
    }
    if !v.token_configured {
        s.push_str(r#"<p class="warn">No admin token is configured (server.admin_token_env / admin_token_file): the forms below are refused.</p>"#);
    }
    incidents(&mut s, v);
    elsewhere(&mut s, v);
    silences(&mut s, v);
    rules(&mut s, v);
    health(&mut s, v);
    s.push_str("</main></body></html>\n");
    s
}

fn incidents(s: &mut String, v: &View) {
    let Some(list) = &v.incidents else {
        s.push_str(r#"<section id="incidents"><h2>Open incidents</h2><p>This process keeps no incidents (no incident manager).</p></section>"#);
        return;
    };
    let _ = write!(
        s,
        r#"<section id="incidents"><h2>Open incidents <span class="count">{}</span></h2>"#,
        list.len()
    );
    if list.is_empty() {
        s.push_str(r#"<p class="quiet">No open incident.</p>"#);
    }
    for (n, iv) in list.iter().enumerate() {
        incident(s, v, n, iv);
    }
    s.push_str("</section>");
}

/// The other instances' open incidents, read-only: acting on one goes
/// through its holder (the API and the CLI of any instance take it).
fn elsewhere(s: &mut String, v: &View) {
    let Some(list) = &v.elsewhere else {
        return;
    };
    let n: usize = list.iter().map(|h| h.incidents.len()).sum();
    let _ = write!(
        s,
        r#"<section id="elsewhere"><h2>Held by other instances <span class="count">{n}</span></h2>"#
    );
    if n == 0 {
        s.push_str(r#"<p class="quiet">No other running instance of the group holds an open incident.</p></section>"#);
        return;
    }
    s.push_str(r#"<p class="quiet">Shown read-only: acknowledge, label or close them on their instance's console, or through the API or CLI of any instance.</p><table class="elsewhere"><thead><tr><th>severity</th><th>incident</th><th>since</th><th>held by</th></tr></thead><tbody>"#);
    for h in list {
        for i in &h.incidents {
            // A class name only from letters (the value comes from the topic).
            let sev: String = i
                .severity
                .as_deref()
                .unwrap_or("none")
                .chars()
                .filter(char::is_ascii_alphabetic)
                .collect();
            let _ = write!(
                s,
                r#"<tr class="elsewhere" data-key="{}" data-instance="{}"><td><span class="badge sev-{sev}">{}</span></td><td>{} <span class="slice">{}</span>{} <code>{}</code></td><td><time>{}</time></td><td>instance <code>{}</code> at <code>{}</code>, listed {} ago</td></tr>"#,
                esc(&i.key),
                esc(&h.instance),
                esc(&sev),
                esc(&i.route),
                esc(&labels_text(&i.labels)),
                if i.opened { "" } else { " (forming)" },
                esc(&i.key),
                esc(&format_ts(i.started_at)),
                esc(&h.instance),
                esc(&h.listen),
                age(v.now_ms, h.at_ms),
            );
        }
    }
    s.push_str("</tbody></table></section>");
}

fn incident(s: &mut String, v: &View, n: usize, iv: &IncidentView) {
    let i = &iv.incident;
    let sev = severity_of(i);
    let _ = write!(
        s,
        r#"<article class="incident sev-{sev}" id="incident-{n}" data-key="{}"><h3><span class="badge sev-{sev}">{sev}</span> {} <span class="slice">{}</span></h3>"#,
        esc(&i.key),
        esc(&i.route),
        esc(&labels_text(&i.labels)),
    );
    let _ = write!(
        s,
        r#"<p class="meta">since <time>{}</time> ({} of event time) · {} · key <code>{}</code>"#,
        esc(&format_ts(i.started_at)),
        age(v.event_now_ms.unwrap_or(v.now_ms), i.started_at),
        if i.opened {
            "open"
        } else {
            "forming (group window)"
        },
        esc(&i.key),
    );
    if !iv.muted_by.is_empty() {
        let _ = write!(
            s,
            r#" · <span class="badge muted">muted by silence {}</span>"#,
            esc(&iv.muted_by.join(", "))
        );
    }
    if let Some(fb) = &iv.feedback {
        if let Some(a) = &fb.ack {
            let _ = write!(
                s,
                r#" · <span class="badge ack">acknowledged by {}</span>"#,
                esc(&a.by)
            );
        }
        if let Some(l) = &fb.label {
            let label = l.label.map_or("?", Label::as_str);
            let _ = write!(
                s,
                r#" · <span class="badge label-{label}">{label} (by {})</span>"#,
                esc(&l.by)
            );
        }
    }
    s.push_str("</p>");
    alerts(s, &i.alerts);
    for (title, svg) in &iv.charts {
        let _ = write!(s, r#"<figure><figcaption>{}</figcaption>"#, esc(title));
        match svg {
            Some(svg) => s.push_str(svg),
            None => {
                s.push_str(r#"<p class="quiet">Not enough history recorded yet for a chart.</p>"#)
            }
        }
        s.push_str("</figure>");
    }
    timeline(s, &iv.timeline);
    feedback_forms(s, &i.key);
    s.push_str("</article>");
}

fn alerts(s: &mut String, alerts: &[AlertEvidence]) {
    s.push_str(r#"<table class="alerts"><thead><tr><th>rule</th><th>slice</th><th>state</th><th>severity</th><th>value</th><th>threshold</th><th>peak</th><th>since</th><th>sample events</th></tr></thead><tbody>"#);
    for a in alerts {
        let cond = match a.condition {
            crate::config::Condition::Above => "&gt;",
            crate::config::Condition::Below => "&lt;",
        };
        let _ = write!(
            s,
            r#"<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{cond} {} (clear {})</td><td class="num">{}</td><td><time>{}</time></td><td class="ids">{}</td></tr>"#,
            if a.active { "active" } else { "resolved" },
            esc(&a.rule),
            esc(&a.group_text()),
            if a.active { "firing" } else { "resolved" },
            a.severity.as_str(),
            esc(&fmt_value(a.value)),
            esc(&fmt_value(Some(a.threshold))),
            esc(&fmt_value(Some(a.clear))),
            esc(&fmt_value(a.peak)),
            esc(&format_ts(a.started_at)),
            esc(&a.sample_event_ids.join(" ")),
        );
        if !a.hints.is_empty() {
            let _ = write!(
                s,
                r#"<tr class="hints"><td></td><td colspan="8">root-cause hints (over-represented now): {}</td></tr>"#,
                a.hints
                    .iter()
                    .map(|h| format!("<span class=\"hint\">{}</span>", esc(&h.text())))
                    .collect::<Vec<_>>()
                    .join(" · ")
            );
        }
    }
    s.push_str("</tbody></table>");
}

fn timeline(s: &mut String, entries: &[Entry]) {
    let _ = write!(
        s,
        r#"<details class="timeline" open><summary>Timeline ({} notifications)</summary><ol>"#,
        entries.len()
    );
    for e in entries {
        let n = &e.notification;
        let deliveries: Vec<String> = e
            .deliveries
            .iter()
            .map(|(r, st)| format!("{r}: {}", st.as_str()))
            .collect();
        let _ = write!(
            s,
            r#"<li><time>{}</time> <b>{}</b> ({}) {} — {} <span class="deliveries">[{}]</span></li>"#,
            esc(&format_ts(n.at)),
            n.action.as_str(),
            esc(serde_json::to_value(n.reason)
                .ok()
                .as_ref()
                .and_then(|r| r.as_str())
                .unwrap_or("")),
            n.severity.as_str(),
            esc(&n.summary),
            esc(&deliveries.join(", ")),
        );
    }
    s.push_str("</ol></details>");
}

fn feedback_forms(s: &mut String, key: &str) {
    let key = esc(key);
    let _ = write!(
        s,
        r#"<div class="forms"><form method="post" action="/console/incidents/ack" class="ack"><input type="hidden" name="key" value="{key}"><label>by <input name="by" required></label><label>note <input name="note"></label>{tok}<button type="submit">Acknowledge</button></form>"#,
        tok = token_field()
    );
    let _ = write!(
        s,
        r#"<form method="post" action="/console/incidents/label" class="label"><input type="hidden" name="key" value="{key}"><label>by <input name="by" required></label><label>note <input name="note"></label>{tok}<button type="submit" name="label" value="useful">Useful</button><button type="submit" name="label" value="noise">Noise</button></form>"#,
        tok = token_field()
    );
    let _ = write!(
        s,
        r#"<form method="post" action="/console/incidents/close" class="close"><input type="hidden" name="key" value="{key}"><label>reason <input name="reason" required></label><label>by <input name="by" required></label>{tok}<button type="submit">Resolve by hand</button></form></div>"#,
        tok = token_field()
    );
}

fn silences(s: &mut String, v: &View) {
    s.push_str(r#"<section id="silences"><h2>Silences</h2>"#);
    let shown: Vec<&Silence> = v
        .silences
        .iter()
        .filter(|x| x.ends_at > v.now_ms - 86_400_000)
        .collect();
    if shown.is_empty() {
        s.push_str(r#"<p class="quiet">No silence in the last day.</p>"#);
    } else {
        s.push_str(r#"<table class="silences"><thead><tr><th>id</th><th>matchers</th><th>state</th><th>from</th><th>until</th><th>by</th><th>comment</th><th></th></tr></thead><tbody>"#);
        for x in shown {
            let state = if x.active(v.now_ms) {
                "active"
            } else if v.now_ms < x.starts_at {
                "pending"
            } else {
                "expired"
            };
            let matchers: Vec<String> = x.matchers.iter().map(ToString::to_string).collect();
            let _ = write!(
                s,
                r#"<tr class="silence {state}" data-id="{id}"><td><code>{id}</code></td><td>{}</td><td>{state}</td><td><time>{}</time></td><td><time>{}</time></td><td>{}</td><td>{}</td><td>"#,
                esc(&matchers.join(" ")),
                esc(&format_ts(x.starts_at)),
                esc(&format_ts(x.ends_at)),
                esc(&x.created_by),
                esc(&x.comment),
                id = esc(&x.id),
            );
            if state != "expired" {
                let _ = write!(
                    s,
                    r#"<form method="post" action="/console/silences/expire"><input type="hidden" name="id" value="{}">{}<button type="submit">Expire</button></form>"#,
                    esc(&x.id),
                    token_field()
                );
            }
            s.push_str("</td></tr>");
        }
        s.push_str("</tbody></table>");
    }
    let _ = write!(
        s,
        r#"<form method="post" action="/console/silences" class="new-silence"><h3>New silence</h3><label>matchers <input name="matchers" required placeholder="rule=social_spike product=router-x" size="40"></label><label>for <input name="duration" value="2h" required size="6"></label><label>by <input name="by" required></label><label>comment <input name="comment"></label>{}<button type="submit">Create silence</button></form>"#,
        token_field()
    );
    s.push_str(r#"<p class="help">Matchers, separated by spaces: <code>rule=NAME</code>, <code>attribute=value</code>, <code>attribute!=value</code>. An incident whose active alerts all match an active silence is muted: its notifications are recorded, not delivered.</p></section>"#);
}

fn rules(s: &mut String, v: &View) {
    s.push_str(r#"<section id="rules"><h2>Rules</h2><table class="rules"><thead><tr><th>rule</th><th>indicator</th><th>thresholds</th><th>slices</th><th>alerting</th><th>worst slices now</th></tr></thead><tbody>"#);
    for r in &v.rules {
        let x = &r.sample;
        let cond = match x.condition {
            crate::config::Condition::Above => "&gt;",
            crate::config::Condition::Below => "&lt;",
        };
        let thresholds: Vec<String> = x
            .thresholds
            .iter()
            .map(|(sev, t)| format!("{} {cond} {}", sev.as_str(), esc(&fmt_value(Some(*t)))))
            .collect();
        let alerting = x.slices.iter().filter(|g| g.state > 0).count();
        let _ = write!(
            s,
            r#"<tr><td><b>{}</b><br><small>{}</small></td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td><ol class="worst">"#,
            esc(&x.rule),
            esc(&r.description),
            esc(&x.kind),
            thresholds.join("<br>"),
            x.live_groups,
            alerting,
        );
        for g in x.slices.iter().take(3) {
            let state = ["", " pending", " firing"][g.state.clamp(0, 2) as usize];
            let _ = write!(
                s,
                r#"<li class="slice{state}">{} <span class="num">{}</span>{state}</li>"#,
                esc(&labels_text(&g.group)),
                esc(&fmt_value(g.value)),
            );
        }
        s.push_str("</ol></td></tr>");
    }
    s.push_str("</tbody></table></section>");
}

fn health(s: &mut String, v: &View) {
    let h = &v.health;
    let opt = |x: Option<f64>, unit: &str| {
        x.map_or("–".to_string(), |x| {
            format!("{} {unit}", fmt_value(Some(x)))
        })
    };
    s.push_str(r#"<section id="health"><h2>Service health</h2><dl>"#);
    match &h.not_ready {
        None => s.push_str(r#"<dt>ready</dt><dd class="ok">yes</dd>"#),
        Some(why) => {
            let _ = write!(s, r#"<dt>ready</dt><dd class="bad">no: {}</dd>"#, esc(why));
        }
    }
    let _ = write!(
        s,
        "<dt>event clock</dt><dd>{}</dd><dt>watermark delay (wall clock − watermark)</dt><dd>{}</dd><dt>Kafka consumer lag</dt><dd>{}</dd><dt>last checkpoint</dt><dd>{}</dd><dt>events applied / invalid</dt><dd>{} / {}</dd><dt>uptime</dt><dd>{}</dd></dl>",
        esc(h.clock.as_deref().unwrap_or("no event yet")),
        opt(h.watermark_delay_s, "s"),
        opt(h.kafka_lag, "messages"),
        h.last_checkpoint
            .map(|t| {
                let ms = (t * 1000.0) as i64;
                format!("{} ({} ago)", format_ts(ms), age(v.now_ms, ms))
            })
            .unwrap_or_else(|| "none (no durable state in this process, or none written yet)".into()),
        opt(h.applied, ""),
        opt(h.invalid, ""),
        age((h.uptime_s * 1000.0) as i64, 0),
    );
    s.push_str(r#"<h3>Receivers</h3><table class="receivers"><thead><tr><th>receiver</th><th>queued</th><th>oldest queued</th><th>dead letters</th><th>circuit</th></tr></thead><tbody>"#);
    for r in &h.receivers {
        let _ = write!(
            s,
            r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            esc(&r.name),
            opt(r.depth, ""),
            opt(r.oldest_s, "s"),
            opt(r.dead, ""),
            match r.circuit_open {
                Some(x) if x > 0.0 => "open (paused)",
                Some(_) => "closed",
                None => "–",
            },
        );
    }
    if h.receivers.is_empty() {
        s.push_str(r#"<tr><td colspan="5">no HTTP receiver</td></tr>"#);
    }
    s.push_str("</tbody></table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_attribute_values() {
        assert_eq!(
            esc(r#""><img src=x onerror=alert(1)> & 'q'"#),
            "&quot;&gt;&lt;img src=x onerror=alert(1)&gt; &amp; &#39;q&#39;"
        );
    }
}
