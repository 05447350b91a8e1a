//! The latency plot: one-way latency percentiles by load, the gateway
//! (solid) against testpmd io (dashed), one panel per direction.

use std::path::Path;

use plotters::prelude::*;

use super::latency::{LatencyRecord, BASELINE, GATEWAY, LOAD_POINTS};
use super::plot::{load_font, COLORS};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn e<E: std::fmt::Display>(err: E) -> Error {
    err.to_string().into()
}

/// Reads one figure of a record.
type Field = fn(&LatencyRecord) -> f64;

/// The percentiles drawn, with their names.
const PERCENTILES: [(&str, Field); 3] = [
    ("p50", |r| r.p50_us),
    ("p99", |r| r.p99_us),
    ("p99.9", |r| r.p999_us),
];

/// Draws `path` if there are latency records; returns whether it did.
pub fn latency_by_load(lat: &[LatencyRecord], path: &Path) -> Result<bool, Error> {
    let dirs: Vec<&str> = ["encrypt", "decrypt"]
        .into_iter()
        .filter(|d| lat.iter().any(|r| r.direction == *d))
        .collect();
    if dirs.is_empty() {
        return Ok(false);
    }
    load_font()?;
    let root = BitMapBackend::new(path, (600 * dirs.len() as u32, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let panels = root.split_evenly((1, dirs.len()));
    for (area, dir) in panels.iter().zip(&dirs) {
        let recs: Vec<&LatencyRecord> = lat
            .iter()
            .filter(|r| r.direction == *dir && r.samples > 0)
            .collect();
        let ys = recs
            .iter()
            .flat_map(|r| PERCENTILES.iter().map(|p| (p.1)(r)));
        let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(l, h), y| (l.min(y), h.max(y)));
        let yr = if lo > hi {
            1.0..1000.0
        } else {
            (lo / 2.0).max(0.01)..hi * 10.0
        };
        let title = recs.first().map_or_else(
            || dir.to_string(),
            |r| format!("{dir} {} {}B: one-way latency", r.algorithm, r.frame_size),
        );
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..100.0, yr.log_scale())
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("load (% of the gateway's maximum through memif)")
            .y_desc("µs (log scale)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(e)?;
        for (k, (name, f)) in PERCENTILES.iter().enumerate() {
            for dut in [GATEWAY, BASELINE] {
                let mut pts: Vec<(f64, f64)> = recs
                    .iter()
                    .filter(|r| r.dut == dut && LOAD_POINTS.contains(&r.load_pct))
                    .map(|r| (f64::from(r.load_pct), f(r)))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                if pts.is_empty() {
                    continue;
                }
                let color = COLORS[k];
                let style = color.stroke_width(2);
                let label = format!("{dut} {name}");
                if dut == GATEWAY {
                    chart
                        .draw_series(LineSeries::new(pts.clone(), style))
                        .map_err(e)?
                        .label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                } else {
                    chart
                        .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))
                        .map_err(e)?
                        .label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                }
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(e)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(true)
}
