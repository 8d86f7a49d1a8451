//! The console's indicator chart: one rule on one slice over the recorded
//! hours, as inline SVG — the value, each severity's threshold, the clear
//! level (dashed), pending (amber) and firing (red) spans shaded. Plain
//! markup with no script and no external reference; every text in it is
//! escaped.

use std::fmt::Write;

use crate::admin::history::Point;
use crate::config::Severity;
use crate::event::format_ts;

use super::page::esc;

const W: f64 = 560.0;
const H: f64 = 150.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 20.0;

/// A colour per severity.
pub(crate) fn severity_colour(s: Severity) -> &'static str {
    match s {
        Severity::Info => "#3b82f6",
        Severity::Warning => "#d97706",
        Severity::Error => "#ea580c",
        Severity::Critical => "#b91c1c",
    }
}

fn fmt_axis(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The SVG of `points` (event time, value, state) with `thresholds` and
/// `clear`; `title` names it for screen readers; the latest value is marked
/// with a dot (so a chart of one sample — a burst processed between two
/// samples — still shows where the value stands). `None` without points
/// points.
pub(crate) fn svg(
    title: &str,
    points: &[Point],
    thresholds: &[(Severity, f64)],
    clear: Option<f64>,
) -> Option<String> {
    if points.is_empty() {
        return None;
    }
    let t0 = points[0].0;
    let t1 = points[points.len() - 1].0.max(t0 + 1);
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in points
        .iter()
        .filter_map(|p| p.1)
        .chain(thresholds.iter().map(|t| t.1))
        .chain(clear)
        .filter(|v| v.is_finite())
    {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return None;
    }
    lo = lo.min(0.0);
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    hi += (hi - lo) * 0.08;
    let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img"><title>{}</title>"#,
        esc(title)
    );
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="#fafafa" stroke="#ddd"/>"##,
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    );
    // Pending and firing spans: from a point in that state to the next point.
    for w in points.windows(2) {
        let fill = match w[0].2 {
            2 => "#fecaca",
            1 => "#fde68a",
            _ => continue,
        };
        let (a, b) = (x(w[0].0), x(w[1].0));
        let _ = write!(
            s,
            r#"<rect class="span-{}" x="{a:.1}" y="{TOP}" width="{:.1}" height="{}" fill="{fill}"/>"#,
            if w[0].2 == 2 { "firing" } else { "pending" },
            (b - a).max(0.5),
            H - TOP - BOTTOM
        );
    }
    for (sev, v) in thresholds {
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="{}" stroke-width="1"><title>{} {}</title></line>"#,
            W - RIGHT,
            severity_colour(*sev),
            sev.as_str(),
            fmt_axis(*v),
            y = y(*v)
        );
    }
    if let Some(c) = clear {
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#16a34a" stroke-dasharray="4 3"><title>clear {}</title></line>"##,
            W - RIGHT,
            fmt_axis(c),
            y = y(c)
        );
    }
    // The value: one path, broken where there was no value.
    let mut d = String::new();
    let mut pen = false;
    for p in points {
        match p.1 {
            Some(v) => {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1} ",
                    if pen { "L" } else { "M" },
                    x(p.0),
                    y(v)
                );
                pen = true;
            }
            None => pen = false,
        }
    }
    let _ = write!(
        s,
        r##"<path d="{}" fill="none" stroke="#111827" stroke-width="1.5"/>"##,
        d.trim_end()
    );
    if let Some(&(t, Some(v), _)) = points.last() {
        let _ = write!(
            s,
            r##"<circle class="latest" cx="{:.1}" cy="{:.1}" r="3" fill="#111827"/>"##,
            x(t),
            y(v)
        );
    }
    for v in [lo, hi] {
        let _ = write!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end" font-size="10" fill="#555">{}</text>"##,
            LEFT - 4.0,
            y(v) + 3.0,
            fmt_axis(v)
        );
    }
    for (t, anchor) in [(t0, "start"), (t1, "end")] {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{}" text-anchor="{anchor}" font-size="10" fill="#555">{}</text>"##,
            x(t),
            H - 6.0,
            esc(&format_ts(t))
        );
    }
    s.push_str("</svg>");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_value_thresholds_and_firing_spans_as_valid_svg() {
        let pts: Vec<Point> = (0..20)
            .map(|i| (i * 60_000, Some(i as f64), if i >= 12 { 2 } else { 0 }))
            .collect();
        let svg = svg(
            "r on <product=\"x\">",
            &pts,
            &[(Severity::Warning, 10.0), (Severity::Critical, 15.0)],
            Some(8.0),
        )
        .unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let spans = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("span-firing"))
            .count();
        assert_eq!(spans, 7);
        assert_eq!(
            doc.descendants().filter(|n| n.has_tag_name("line")).count(),
            3
        );
        assert!(svg.contains("&lt;product=&quot;x&quot;&gt;"));
        assert!(super::svg("t", &[], &[], None).is_none());
        let one = super::svg("t", &pts[..1], &[], None).unwrap();
        assert!(one.contains("class=\"latest\""), "{one}");
    }
}
