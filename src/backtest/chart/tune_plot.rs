//! The tuning chart: median detection delay against false incidents per
//! candidate, the Pareto front joined, the chosen one ringed (drawn with the
//! indicator chart's frame and helpers).

use std::path::Path;

use plotters::prelude::*;

use super::super::tune::TuneResult;
use super::{draw_err, finish, frame, line, ChartError};

/// Draws a tuning run to an SVG file: median delay against false incidents.
pub fn render_tune(r: &TuneResult, path: &Path) -> Result<(), ChartError> {
    let err = draw_err(path);
    if !r.labelled {
        return Err(ChartError::Empty(
            "the tuning chart plots delay against false incidents: pass --labels".into(),
        ));
    }
    // (row, false incidents, median delay in minutes); rows that detected nothing have no delay.
    let pts: Vec<(usize, f64, f64)> = r
        .rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            Some((
                i,
                row.false_incidents()? as f64,
                row.median_delay_ms()? as f64 / 60_000.0,
            ))
        })
        .collect();
    if pts.is_empty() {
        return Err(ChartError::Empty(
            "no candidate detected any crisis: nothing to plot".into(),
        ));
    }
    let xmax = pts.iter().map(|p| p.1).fold(0.0, f64::max) * 1.2 + 1.0;
    let ymax = pts.iter().map(|p| p.2).fold(0.0, f64::max) * 1.1 + 1.0;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let caption = format!("tuning {}: detection delay vs false incidents", r.base.name);
    let mut chart = frame(&root, caption, 64, -0.5..xmax, 0.0..ymax).map_err(&err)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x: &f64| format!("{x:.0}"))
        .x_desc("false incidents")
        .y_desc("median detection delay (min)")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let mut front: Vec<(f64, f64)> = pts
        .iter()
        .filter(|p| r.rows[p.0].pareto)
        .map(|p| (p.1, p.2))
        .collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let red = RGBColor(0xc0, 0x20, 0x30);
    line(
        &mut chart,
        front,
        red.stroke_width(1),
        Some("Pareto front".into()),
    )
    .map_err(&err)?;
    let grey = RGBColor(0x80, 0x80, 0x80);
    chart
        .draw_series(pts.iter().map(|&(i, x, y)| {
            let style = if r.rows[i].pareto {
                red.filled()
            } else {
                grey.filled()
            };
            Circle::new((x, y), 5, style)
        }))
        .map_err(|e| err(e.to_string()))?
        .label("candidate")
        .legend(move |(x, y)| Circle::new((x + 7, y), 4, grey.filled()));
    if let Some((_, x, y)) = pts.iter().find(|p| Some(p.0) == r.chosen) {
        chart
            .draw_series(std::iter::once(Circle::new(
                (*x, *y),
                9,
                BLACK.stroke_width(2),
            )))
            .map_err(|e| err(e.to_string()))?
            .label("chosen")
            .legend(|(x, y)| Circle::new((x + 7, y), 5, BLACK.stroke_width(2)));
    }
    chart
        .draw_series(pts.iter().map(|&(i, x, y)| {
            Text::new(
                format!("#{} {}", i + 1, r.rows[i].candidate.label()),
                (x, y),
                ("sans-serif", 12).into_font(),
            )
        }))
        .map_err(|e| err(e.to_string()))?;
    finish(&mut chart, &root, SeriesLabelPosition::UpperRight).map_err(&err)
}
