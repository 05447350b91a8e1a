//! PNG plots of a report with `plotters` (bitmap backend). Text uses the
//! DejaVu Sans font file from Debian's `fonts-dejavu-core`, loaded through
//! `ab_glyph`, so no fontconfig is involved.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::report::{CaseRecord, Report};
use super::spec::{BenchAlgorithm, FrameSize};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where Debian's fonts-dejavu-core puts the font.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn e<E: std::fmt::Display>(err: E) -> Error {
    err.to_string().into()
}

pub(super) fn load_font() -> Result<(), Error> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT_PATH)
                .map_err(|err| format!("{FONT_PATH}: {err} (install fonts-dejavu-core)"))?;
            // plotters keeps the font for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{FONT_PATH}: not a usable font"))
        })
        .clone()
        .map_err(Into::into)
}

pub(super) const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xff, 0x7f, 0x0e),
];

/// A named line of (x, Mpps) points.
struct Series {
    name: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn y_range(series: &[Series]) -> std::ops::Range<f64> {
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(l, h), y| (l.min(y), h.max(y)));
    if lo > hi {
        return 0.1..10.0;
    }
    (lo / 2.0).max(1e-4)..hi * 2.0
}

/// One panel: lines over categorical or log x.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    x_desc: &str,
    x_label: &dyn Fn(&f64) -> String,
    y_desc: &str,
    series: &[Series],
) -> Result<(), Error>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y_range(series).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(x_label)
        .y_labels(12)
        .y_label_formatter(&|y| format!("{y:.2}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    for s in series {
        if s.points.is_empty() {
            continue;
        }
        let style = s.color.stroke_width(2);
        let color = s.color;
        if s.dashed {
            chart
                .draw_series(DashedLineSeries::new(s.points.clone(), 6, 4, style))
                .map_err(e)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        } else {
            chart
                .draw_series(LineSeries::new(s.points.clone(), style))
                .map_err(e)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|&p| Circle::new(p, 3, s.color.filled())),
            )
            .map_err(e)?;
    }
    if series.iter().all(|s| s.points.is_empty()) {
        return Ok(());
    }
    chart
        .configure_series_labels()
        // Rates fall to the right, cycles rise: the legend goes where the
        // lines are not.
        .position(if y_desc == MPPS {
            SeriesLabelPosition::LowerLeft
        } else {
            SeriesLabelPosition::UpperLeft
        })
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}

const MPPS: &str = "Mpps (median, wall clock)";

fn frame_index(label: &str) -> Option<f64> {
    FrameSize::SWEEP
        .iter()
        .position(|f| f.label() == label)
        .map(|i| i as f64)
}

fn is_sweep_case(c: &CaseRecord) -> bool {
    !c.udp_encap && c.sa_count == 1 && c.scale_frames == 0
}

/// Throughput by frame size, one panel per direction, one line per suite
/// and the testpmd baseline. Returns whether there was anything to draw.
pub fn throughput_by_frame_size(report: &Report, path: &Path) -> Result<bool, Error> {
    if !report.cases.iter().any(is_sweep_case) {
        return Ok(false);
    }
    load_font()?;
    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let panels = root.split_evenly((1, 2));
    for (area, dir) in panels.iter().zip(["encrypt", "decrypt"]) {
        let cases: Vec<&CaseRecord> = report
            .cases
            .iter()
            .filter(|c| c.direction == dir && is_sweep_case(c))
            .collect();
        let mut series = Vec::new();
        for (k, alg) in BenchAlgorithm::ALL.iter().enumerate() {
            let points: Vec<(f64, f64)> = cases
                .iter()
                .filter(|c| c.algorithm == alg.name())
                .filter_map(|c| Some((frame_index(&c.frame_size)?, c.mpps)))
                .collect();
            series.push(Series {
                name: alg.name().to_string(),
                color: COLORS[k],
                dashed: false,
                points,
            });
        }
        // The baseline replays the pcap of the case: for decrypt it
        // differs per suite; draw the first suite's.
        let base_alg = cases.first().map(|c| c.algorithm.clone());
        let points: Vec<(f64, f64)> = cases
            .iter()
            .filter(|c| Some(&c.algorithm) == base_alg.as_ref())
            .filter_map(|c| Some((frame_index(&c.frame_size)?, c.baseline_mpps)))
            .collect();
        series.push(Series {
            name: match (dir, &base_alg) {
                ("decrypt", Some(a)) => format!("testpmd io ({a} pcap)"),
                _ => "testpmd io".to_string(),
            },
            color: COLORS[4],
            dashed: true,
            points,
        });
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            FrameSize::SWEEP
                .get(i as usize)
                .map(|f| f.label())
                .unwrap_or_default()
        };
        panel(
            area,
            &format!("{dir}, 1 SA: throughput by frame size"),
            -0.3..3.3,
            "frame size (bytes, FCS included)",
            &label,
            MPPS,
            &series,
        )?;
    }
    root.present().map_err(e)?;
    Ok(true)
}

/// Throughput by SA count (AES-128-GCM, IMIX, no UDP), both directions
/// with their baselines; the SA-count series (equal pcap lengths) where the
/// report has it.
pub fn throughput_by_sa_count(report: &Report, path: &Path) -> Result<bool, Error> {
    let series_only = report.cases.iter().any(|c| c.scale_frames != 0);
    let pick = |dir: &str| -> Vec<&CaseRecord> {
        let mut v: Vec<&CaseRecord> = report
            .cases
            .iter()
            .filter(|c| {
                c.direction == dir
                    && c.algorithm == BenchAlgorithm::AesGcm128.name()
                    && c.frame_size == "imix"
                    && !c.udp_encap
                    && (!series_only || c.scale_frames != 0)
            })
            .collect();
        v.sort_by_key(|c| c.sa_count);
        v
    };
    let (enc, dec) = (pick("encrypt"), pick("decrypt"));
    if enc.len() + dec.len() < 2 {
        return Ok(false);
    }
    load_font()?;
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let pts = |v: &[&CaseRecord], f: fn(&CaseRecord) -> f64| -> Vec<(f64, f64)> {
        v.iter()
            .map(|c| ((c.sa_count as f64).log10(), f(c)))
            .collect()
    };
    let series = vec![
        Series {
            name: "encrypt".into(),
            color: COLORS[0],
            dashed: false,
            points: pts(&enc, |c| c.mpps),
        },
        Series {
            name: "decrypt".into(),
            color: COLORS[1],
            dashed: false,
            points: pts(&dec, |c| c.mpps),
        },
        Series {
            name: "testpmd io (plaintext pcap)".into(),
            color: COLORS[4],
            dashed: true,
            points: pts(&enc, |c| c.baseline_mpps),
        },
        Series {
            name: "testpmd io (ESP pcap)".into(),
            color: COLORS[5],
            dashed: true,
            points: pts(&dec, |c| c.baseline_mpps),
        },
    ];
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() > 0.01 {
            return String::new();
        }
        format!("{}", 10u64.pow(i.max(0.0) as u32))
    };
    panel(
        &root,
        "aes128gcm16, IMIX: throughput by SA count",
        -0.3..5.3,
        "SAs (traffic spread over all; log scale)",
        &label,
        MPPS,
        &series,
    )?;
    root.present().map_err(e)?;
    Ok(true)
}

/// The systems side by side by frame size (1 SA, no UDP): one panel per
/// suite and direction, one line each for Espresso (the lab's gateway),
/// `espresso run` (where measured), ipsec-secgw and testpmd io, in TSC
/// cycles per packet of the polling thread's on-CPU time (lower is
/// better; wall-clock rates would also measure the machine's other load).
pub fn systems_by_frame_size(report: &Report, path: &Path) -> Result<bool, Error> {
    let has = |c: &CaseRecord| c.secgw.is_some() || c.product.is_some();
    if !report.cases.iter().any(|c| is_sweep_case(c) && has(c)) {
        return Ok(false);
    }
    let suites: Vec<BenchAlgorithm> = BenchAlgorithm::ALL
        .into_iter()
        .filter(|a| {
            report
                .cases
                .iter()
                .any(|c| is_sweep_case(c) && c.algorithm == a.name())
        })
        .collect();
    load_font()?;
    let rows = suites.len();
    let root = BitMapBackend::new(path, (1200, 400 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let panels = root.split_evenly((rows, 2));
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() > 0.01 || i < 0.0 {
            return String::new();
        }
        FrameSize::SWEEP
            .get(i as usize)
            .map(|f| f.label())
            .unwrap_or_default()
    };
    for (k, alg) in suites.iter().enumerate() {
        for (d, dir) in ["encrypt", "decrypt"].into_iter().enumerate() {
            let cases: Vec<&CaseRecord> = report
                .cases
                .iter()
                .filter(|c| c.direction == dir && c.algorithm == alg.name() && is_sweep_case(c))
                .collect();
            let line = |f: &dyn Fn(&CaseRecord) -> Option<f64>| -> Vec<(f64, f64)> {
                cases
                    .iter()
                    .filter_map(|c| Some((frame_index(&c.frame_size)?, f(c)?)))
                    .filter(|p| p.1.is_finite() && p.1 > 0.0)
                    .collect()
            };
            let system = |r: Option<&super::report::SystemRecord>| {
                r.and_then(|r| r.unavailable.is_none().then_some(r.rate?.cycles_per_packet))
            };
            let series = vec![
                Series {
                    name: "Espresso (lab gateway)".into(),
                    color: COLORS[0],
                    dashed: false,
                    points: line(&|c| Some(c.cycles_per_packet)),
                },
                Series {
                    name: "espresso run".into(),
                    color: COLORS[2],
                    dashed: false,
                    points: line(&|c| system(c.product.as_ref())),
                },
                Series {
                    name: "ipsec-secgw".into(),
                    color: COLORS[1],
                    dashed: false,
                    points: line(&|c| system(c.secgw.as_ref())),
                },
                Series {
                    name: "testpmd io".into(),
                    color: COLORS[4],
                    dashed: true,
                    points: line(&|c| Some(c.baseline_cycles_per_packet)),
                },
            ];
            panel(
                &panels[k * 2 + d],
                &format!("{dir} {}, 1 SA", alg.name()),
                -0.3..3.3,
                "frame size (bytes, FCS included)",
                &label,
                "cycles/packet (on CPU, median)",
                &series,
            )?;
        }
    }
    root.present().map_err(e)?;
    Ok(true)
}

/// Draws every plot the report has data for into `dir`; returns the files.
pub fn draw_all(report: &Report, dir: &Path) -> Result<Vec<std::path::PathBuf>, Error> {
    let mut out = Vec::new();
    let p = dir.join("throughput_by_frame_size.png");
    if throughput_by_frame_size(report, &p)? {
        out.push(p);
    }
    let p = dir.join("systems_by_frame_size.png");
    if systems_by_frame_size(report, &p)? {
        out.push(p);
    }
    let p = dir.join("throughput_by_sa_count.png");
    if throughput_by_sa_count(report, &p)? {
        out.push(p);
    }
    Ok(out)
}
