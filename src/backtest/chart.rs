//! Pictures of a backtest (SVG, drawn with plotters).
//!
//! * [`collect`] replays history for one rule and slice, sampling the group's
//!   indicator value at every slide boundary (the value the engine last
//!   evaluated) and at each of its transitions; [`render_indicator`] draws it
//!   with the rule's thresholds and clear level, the firing intervals shaded
//!   red and the known crises of that slice shaded orange.
//! * [`render_tune`] draws a tuning run: median detection delay against false
//!   incidents per candidate, the Pareto front joined, the chosen one ringed.
//!
//! Text is written as SVG `<text>` elements, so no font files are needed.
//! PNG output is not offered: it would need a font rasteriser and system fonts.

use std::ops::Range;
use std::path::Path;

use chrono::{TimeZone, Utc};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::alert::{Labels, Transition};
use crate::config::{Config, RuleConfig};
use crate::engine::{Engine, EngineError};

use super::input::{InputError, Inputs, LineRef};
use super::labels::{self, Crisis};
use super::report::{fmt_value, group_label, Tracker};
use super::{Driver, Observer};

mod tune_plot;
pub use tune_plot::render_tune;

/// Errors drawing a chart.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The rule is not configured.
    #[error("no rule named {name:?} in the configuration (rules: {known})")]
    UnknownRule {
        /// The name asked for.
        name: String,
        /// The configured rules.
        known: String,
    },
    /// The slice does not fit the rule's `group_by`.
    #[error("--group {given:?} does not name the slice of rule {rule} (write {expected}; in a value, write % as %25, , as %2C and = as %3D)")]
    Group {
        /// The rule.
        rule: String,
        /// What was given.
        given: String,
        /// The expected form.
        expected: String,
    },
    /// Nothing to draw.
    #[error("{0}")]
    Empty(String),
    /// Reading the history failed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The engine could not be built.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Drawing or writing the file failed.
    #[error("cannot draw {path}: {message}")]
    Draw {
        /// The output file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// The data of an indicator chart.
#[derive(Debug, Clone, PartialEq)]
pub struct IndicatorChart {
    /// The rule.
    pub(crate) rule: RuleConfig,
    /// The slice.
    pub(crate) group: Labels,
    /// (time, value) samples; `None` is "no data". With the rule's
    /// `confidence` the value is the confidence bound judged.
    pub points: Vec<(i64, Option<f64>)>,
    /// With the rule's `confidence`: (time, point estimate) at every pane
    /// boundary, drawn beside the bound; empty otherwise.
    pub estimates: Vec<(i64, Option<f64>)>,
    /// Firing intervals (fired → resolved, or the end of the data).
    pub firing: Vec<(i64, i64)>,
    /// Known crises of this slice.
    pub crises: Vec<Crisis>,
    /// First event time.
    pub(crate) start_ms: i64,
    /// Last event time.
    pub(crate) end_ms: i64,
}

/// Parses `product=router-x,region=eu-west` into the rule's slice (in
/// `group_by` order). `""` is the slice of a rule without `group_by`.
pub fn parse_group(rule: &RuleConfig, spec: &str) -> Result<Labels, ChartError> {
    let expected = if rule.group_by.is_empty() {
        "\"\" (the rule has no group_by)".to_string()
    } else {
        rule.group_by
            .iter()
            .map(|k| format!("{k}=VALUE"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let bad = || ChartError::Group {
        rule: rule.name.clone(),
        given: spec.to_string(),
        expected: expected.clone(),
    };
    let mut given: Vec<(String, String)> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(bad)?;
        let k = unescape_group(k.trim()).ok_or_else(bad)?;
        let v = unescape_group(v.trim()).ok_or_else(bad)?;
        given.push((k, v));
    }
    if given.len() != rule.group_by.len() {
        return Err(bad());
    }
    rule.group_by
        .iter()
        .map(|k| {
            given
                .iter()
                .find(|(gk, _)| gk == k)
                .map(|(_, v)| (k.clone(), v.clone()))
                .ok_or_else(bad)
        })
        .collect()
}

/// A key or value as `--group` takes it: `%`, `,` and `=` (and blanks at
/// either end, which `--group` trims) percent-encoded, so every slice can be
/// named — `x,region=y` is `x%2Cregion%3Dy`.
fn escape_group(s: &str) -> String {
    let n = s.chars().count();
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        let edge = i == 0 || i + 1 == n;
        match c {
            '%' | ',' | '=' => out.push_str(&format!("%{:02X}", c as u32)),
            c if edge && c.is_whitespace() && c.is_ascii() => {
                out.push_str(&format!("%{:02X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Decodes [`escape_group`]'s `%XX` escapes (any byte; the result must be
/// UTF-8); `None` for a malformed escape.
fn unescape_group(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

struct Sample {
    group: Labels,
    points: Vec<(i64, Option<f64>)>,
    /// Point estimates, when the rule has a confidence.
    estimates: Option<Vec<(i64, Option<f64>)>>,
    tracker: Tracker,
    /// The slice had a group at some boundary.
    seen: bool,
    /// A few slices the rule did have, for the error when `group` never
    /// occurred.
    others: std::collections::BTreeSet<Labels>,
}

impl Observer for Sample {
    fn transition(&mut self, t: &Transition) {
        self.tracker.transition(t);
        if t.group == self.group {
            self.points.push((t.at, t.value));
        }
    }

    fn boundary(&mut self, engine: &Engine, at: i64) {
        let groups = engine.groups(0);
        if !self.seen && self.others.len() < 5 {
            for g in &groups {
                if self.others.len() < 5 && g.group != self.group {
                    self.others.insert(g.group.clone());
                }
            }
        }
        let g = groups.into_iter().find(|g| g.group == self.group);
        self.seen |= g.is_some();
        self.points.push((at, g.as_ref().and_then(|g| g.value)));
        if let Some(e) = self.estimates.as_mut() {
            e.push((at, g.and_then(|g| g.estimate)));
        }
    }
}

fn find_rule<'a>(cfg: &'a Config, name: &str) -> Result<&'a RuleConfig, ChartError> {
    cfg.rules
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| ChartError::UnknownRule {
            name: name.to_string(),
            known: cfg.rule_names(),
        })
}

/// Replays `lines` for rule `rule` and collects the chart of slice `group`.
pub fn collect_from(
    cfg: &Config,
    rule: &str,
    group: &Labels,
    crises: &[Crisis],
    now_ms: Option<i64>,
    feed: impl FnOnce(&mut dyn FnMut(&[u8])) -> Result<(), InputError>,
) -> Result<IndicatorChart, ChartError> {
    collect_with(cfg, rule, group, crises, now_ms, None, |f| {
        feed(&mut |line| f(line, None))
    })
}

/// [`collect_from`] with the position of every line (named in the
/// late-events warning) from `inputs`.
fn collect_with(
    cfg: &Config,
    rule: &str,
    group: &Labels,
    crises: &[Crisis],
    now_ms: Option<i64>,
    inputs: Option<&Inputs>,
    feed: impl FnOnce(&mut dyn FnMut(&[u8], Option<LineRef>)) -> Result<(), InputError>,
) -> Result<IndicatorChart, ChartError> {
    let rule = find_rule(cfg, rule)?.clone();
    // Only this rule: other rules cannot change its values or transitions.
    let one = Config {
        engine: cfg.engine.clone(),
        rules: vec![rule.clone()],
        ..Config::default()
    };
    let mut driver = Driver::new(&one, rule.slide().as_ms(), now_ms)?;
    let mut obs = Sample {
        group: group.clone(),
        points: Vec::new(),
        estimates: rule.confidence.map(|_| Vec::new()),
        tracker: Tracker::new(driver.engine()),
        seen: false,
        others: std::collections::BTreeSet::new(),
    };
    feed(&mut |line, at| match at {
        Some(at) => driver.feed_at(line, None, at, &mut obs),
        None => driver.feed(line, &mut obs),
    })?;
    driver.clock_watch().warn("chart", inputs);
    driver.warn_refuted("chart", inputs);
    driver.invalid_lines().warn("chart", driver.lines(), inputs);
    driver.finish_input(&mut obs);
    let (Some(start), Some(end)) = (driver.first_ms(), driver.engine().clock()) else {
        return Err(ChartError::Empty(
            "no valid events in the input (`crisiswatch backtest` on it shows the invalid reasons; \
             a history stamped after this machine's clock is future_timestamp: pass --now with a \
             time after it)"
                .into(),
        ));
    };
    if !obs.seen && !obs.points.iter().any(|p| p.1.is_some()) {
        let show = |l: &Labels| {
            let s: Vec<String> = l
                .iter()
                .map(|(k, v)| format!("{}={}", escape_group(k), escape_group(v)))
                .collect();
            format!("--group {:?}", s.join(","))
        };
        let known: Vec<String> = obs.others.iter().map(show).collect();
        return Err(ChartError::Empty(format!(
            "slice {} of rule {:?} never occurred in the history (no event fell in it){}",
            show(group),
            rule.name,
            if known.is_empty() {
                String::new()
            } else {
                format!("; slices it has: {}", known.join(", "))
            }
        )));
    }
    let firing = obs
        .tracker
        .finish()
        .into_iter()
        .filter(|i| i.group == *group)
        .map(|i| (i.fired_at, i.resolved_at.unwrap_or(end)))
        .collect();
    let crises = crises
        .iter()
        .filter(|c| labels::matches(group, c.start_ms, c, 0))
        .cloned()
        .collect();
    Ok(IndicatorChart {
        rule,
        group: group.clone(),
        points: obs.points,
        estimates: obs.estimates.unwrap_or_default(),
        firing,
        crises,
        start_ms: start,
        end_ms: end,
    })
}

/// Replays `inputs` for rule `rule` and collects the chart of slice `group`.
pub fn collect(
    cfg: &Config,
    inputs: &Inputs,
    rule: &str,
    group: &Labels,
    crises: &[Crisis],
    now_ms: Option<i64>,
) -> Result<IndicatorChart, ChartError> {
    collect_with(cfg, rule, group, crises, now_ms, Some(inputs), |f| {
        inputs.for_each_line(|l, at| f(l, Some(at))).map(|_| ())
    })
}

fn draw_err(path: &Path) -> impl Fn(String) -> ChartError + '_ {
    move |message| ChartError::Draw {
        path: path.display().to_string(),
        message,
    }
}

fn time_label(ms: i64, long: bool) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) if long => t.format("%m-%d %H:%M").to_string(),
        Some(t) => t.format("%H:%M").to_string(),
        None => ms.to_string(),
    }
}

/// The chart of both pictures: linear axes, f64 by f64, on an SVG canvas.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

const LEVEL_COLOURS: [RGBColor; 4] = [
    RGBColor(0x55, 0x88, 0xcc),
    RGBColor(0xe0, 0x9a, 0x00),
    RGBColor(0xd0, 0x50, 0x20),
    RGBColor(0xb0, 0x00, 0x30),
];

/// Draws an indicator chart to an SVG file.
pub fn render_indicator(c: &IndicatorChart, path: &Path) -> Result<(), ChartError> {
    let err = draw_err(path);
    let values: Vec<f64> = c
        .points
        .iter()
        .chain(&c.estimates)
        .filter_map(|(_, v)| *v)
        .collect();
    let levels = c.rule.thresholds.levels();
    let clear = c.rule.clear_threshold();
    let mut lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for v in levels.iter().map(|l| l.1).chain(clear) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(ChartError::Empty("nothing to draw".into()));
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.05).max(1e-9);
    let (ymin, ymax) = (lo - pad, hi + pad);
    // x in hours since the hour the data starts in, so ticks fall on round times.
    let origin = c.start_ms.div_euclid(3_600_000) * 3_600_000;
    let hx = |ms: i64| (ms - origin) as f64 / 3_600_000.0;
    let (x0, x1) = (hx(c.start_ms), hx(c.end_ms.max(c.start_ms + 1)));
    let long = x1 - x0 > 48.0;
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    let caption = format!("{} — {}", c.rule.name, group_label(&c.group));
    let mut chart = frame(&root, caption, 72, x0..x1, ymin..ymax).map_err(&err)?;
    chart
        .configure_mesh()
        .x_labels(12)
        .x_label_formatter(&|x: &f64| time_label(origin + (x * 3_600_000.0).round() as i64, long))
        .y_label_formatter(&|y: &f64| fmt_value(*y))
        .x_desc("event time (UTC)")
        .y_desc(c.rule.indicator.kind_name())
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(e.to_string()))?;

    let orange = RGBColor(0xff, 0x99, 0x00);
    for cr in &c.crises {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [
                    (hx(cr.start_ms).max(x0), ymin),
                    (hx(cr.end_ms).min(x1), ymax),
                ],
                orange.mix(0.18).filled(),
            )))
            .map_err(|e| err(e.to_string()))?
            .label(format!("crisis: {}", cr.name))
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 14, y + 5)], orange.mix(0.45).filled())
            });
    }
    if !c.firing.is_empty() {
        chart
            .draw_series(c.firing.iter().map(|&(a, b)| {
                Rectangle::new(
                    [(hx(a), ymin), (hx(b.max(a + 1)), ymax)],
                    RED.mix(0.16).filled(),
                )
            }))
            .map_err(|e| err(e.to_string()))?
            .label("firing")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], RED.mix(0.35).filled()));
    }
    for (sev, v) in &levels {
        let colour = LEVEL_COLOURS[*sev as usize % LEVEL_COLOURS.len()];
        let label = format!("{sev} {}", fmt_value(*v));
        line(
            &mut chart,
            vec![(x0, *v), (x1, *v)],
            colour.stroke_width(2),
            Some(label),
        )
        .map_err(&err)?;
    }
    if let Some(v) = clear {
        let green = RGBColor(0x2a, 0x9d, 0x5c);
        let label = format!("clear {}", fmt_value(v));
        line(
            &mut chart,
            vec![(x0, v), (x1, v)],
            green.stroke_width(1),
            Some(label),
        )
        .map_err(&err)?;
    }
    // With a confidence, the point estimate (thin, light) beside the bound.
    let light = RGBColor(0x8f, 0xa8, 0xd8).stroke_width(1);
    broken_line(&mut chart, &c.estimates, hx, light, "point estimate").map_err(&err)?;
    // The indicator, broken where there is no data.
    let name = match c.rule.confidence {
        Some(level) => format!(
            "{} ({} % confidence bound)",
            c.rule.name,
            fmt_value(level * 100.0)
        ),
        None => c.rule.name.clone(),
    };
    let blue = RGBColor(0x1f, 0x4e, 0xa8).stroke_width(2);
    broken_line(&mut chart, &c.points, hx, blue, &name).map_err(&err)?;
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft).map_err(&err)
}

/// The chart area of both pictures: a white canvas with a caption and
/// linear axes over `xs` and `ys` (`y_labels`: the width of the y labels).
fn frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: String,
    y_labels: u32,
    xs: Range<f64>,
    ys: Range<f64>,
) -> Result<Chart<'a, 'b>, String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(y_labels)
        .build_cartesian_2d(xs, ys)
        .map_err(|e| e.to_string())
}

/// A line through `pts`, in the legend as `label` when there is one.
fn line(
    chart: &mut Chart<'_, '_>,
    pts: Vec<(f64, f64)>,
    style: ShapeStyle,
    label: Option<String>,
) -> Result<(), String> {
    let series = chart
        .draw_series(LineSeries::new(pts, style))
        .map_err(|e| e.to_string())?;
    if let Some(label) = label {
        series
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], style));
    }
    Ok(())
}

/// The samples with a value as a line broken where there is no data (one
/// legend entry for all its pieces).
fn broken_line(
    chart: &mut Chart<'_, '_>,
    points: &[(i64, Option<f64>)],
    hx: impl Fn(i64) -> f64,
    style: ShapeStyle,
    label: &str,
) -> Result<(), String> {
    for (i, seg) in segments(points, hx).into_iter().enumerate() {
        line(chart, seg, style, (i == 0).then(|| label.to_string()))?;
    }
    Ok(())
}

/// The legend box in the corner `position`, then the file written.
fn finish<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    root: &DrawingArea<SVGBackend<'b>, Shift>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// The samples with a value as line segments in chart coordinates, broken
/// where there is no data.
fn segments(points: &[(i64, Option<f64>)], hx: impl Fn(i64) -> f64) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for &(t, v) in points {
        match v {
            Some(v) => cur.push((hx(t), v)),
            None if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests;
