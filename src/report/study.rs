//! Tables, summaries and plots of a PTQ study (`mxsim study`): one row per (method, plan,
//! format, scale rule), written as CSV, JSON, a Markdown summary and SVG plots.
//!
//! Grading follows the seed paper (arXiv 2601.09555): the *recovery* of a quantized model is
//! its metric relative to the unquantized model; here the metric is perplexity, so
//! `recovery = ppl_fp32 / ppl_quantized` and the *drop* is `100 * (1 - recovery)` percent. A
//! configuration is `lossless` when the drop is at most 1%, `acceptable` up to 3%, and
//! `high-risk` beyond.

use crate::error::{Error, Result};
use crate::io::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The seed paper's grade of a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grade {
    /// Drop at most 1%.
    Lossless,
    /// Drop at most 3%.
    Acceptable,
    /// Drop above 3%.
    HighRisk,
}

impl Grade {
    /// Grade of a drop in percent.
    pub fn of_drop(drop_pct: f64) -> Grade {
        if drop_pct <= 1.0 {
            Grade::Lossless
        } else if drop_pct <= 3.0 {
            Grade::Acceptable
        } else {
            Grade::HighRisk
        }
    }

    /// Name as written in tables.
    pub fn name(self) -> &'static str {
        match self {
            Grade::Lossless => "lossless",
            Grade::Acceptable => "acceptable",
            Grade::HighRisk => "high-risk",
        }
    }
}

/// Read a float written by serde_json, which writes NaN and infinities as `null`: `null`
/// reads back as NaN (so stored results with undefined statistics can be reused).
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The error of one tensor role in one layer (from the evaluation's per-layer statistics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerError {
    /// Block index.
    pub layer: usize,
    /// Role (`wq`, ..., `w2`, or a site name).
    pub role: String,
    /// `local` (layer fed the reference input) or `propagated`.
    pub mode: String,
    /// Signal-to-quantization-noise ratio in dB.
    #[serde(deserialize_with = "f64_or_nan")]
    pub sqnr_db: f64,
}

/// One configuration's measured result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRow {
    /// PTQ method (e.g. `rtn`, `gptq`, `quarot+gptq`).
    pub method: String,
    /// Named plan (`W8A8`, `W4A8`, `W4A4`, ...).
    pub plan: String,
    /// Element format given with the plan.
    pub format: String,
    /// Scale rule of the weights.
    pub scale_rule: String,
    /// Perplexity of the unquantized (fp32) model on the same tokens.
    #[serde(deserialize_with = "f64_or_nan")]
    pub ppl_fp32: f64,
    /// Perplexity of the quantized model.
    #[serde(deserialize_with = "f64_or_nan")]
    pub ppl: f64,
    /// Mean KL divergence of the quantized next-token distribution from the fp32 one (nats).
    #[serde(deserialize_with = "f64_or_nan")]
    pub kl: f64,
    /// Fraction of positions where the quantized top-1 token equals the fp32 one.
    #[serde(deserialize_with = "f64_or_nan")]
    pub top1: f64,
    /// `ppl_fp32 / ppl`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub recovery: f64,
    /// `100 * (1 - recovery)`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub drop_pct: f64,
    /// Grade of the drop.
    pub grade: Grade,
    /// Scored tokens.
    pub tokens: usize,
    /// Wall time of calibration plus evaluation, seconds.
    #[serde(deserialize_with = "f64_or_nan")]
    pub seconds: f64,
    /// Per-layer errors (may be empty).
    #[serde(default)]
    pub layers: Vec<LayerError>,
}

impl StudyRow {
    /// Fill in recovery, drop and grade from the perplexities.
    pub fn finish(mut self) -> Self {
        self.recovery = self.ppl_fp32 / self.ppl;
        self.drop_pct = 100.0 * (1.0 - self.recovery);
        self.grade = Grade::of_drop(self.drop_pct);
        self
    }

    /// A file-name-safe key identifying the configuration.
    pub fn key(method: &str, plan: &str, format: &str, rule: &str) -> String {
        let raw = format!("{method}__{plan}__{format}__{rule}");
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }
}

/// Write the rows as CSV (without per-layer errors).
pub fn write_csv(path: &Path, rows: &[StudyRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "method",
        "plan",
        "format",
        "scale_rule",
        "ppl_fp32",
        "ppl",
        "kl",
        "top1",
        "recovery",
        "drop_pct",
        "grade",
        "tokens",
        "seconds",
    ])
    .map_err(|e| Error::invalid(e.to_string()))?;
    for r in rows {
        w.write_record([
            r.method.clone(),
            r.plan.clone(),
            r.format.clone(),
            r.scale_rule.clone(),
            format!("{:.4}", r.ppl_fp32),
            format!("{:.4}", r.ppl),
            format!("{:.6}", r.kl),
            format!("{:.4}", r.top1),
            format!("{:.4}", r.recovery),
            format!("{:.2}", r.drop_pct),
            r.grade.name().to_string(),
            r.tokens.to_string(),
            format!("{:.1}", r.seconds),
        ])
        .map_err(|e| Error::invalid(e.to_string()))?;
    }
    let bytes = w.into_inner().map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Write the rows (with per-layer errors) as pretty JSON.
pub fn write_json(path: &Path, rows: &[StudyRow]) -> Result<()> {
    let s = serde_json::to_string_pretty(rows).map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(path, s.as_bytes())
}

/// A Markdown summary: the full table, then per (plan, format) the best method and the grade
/// counts.
pub fn markdown(rows: &[StudyRow], title: &str, notes: &str) -> String {
    let mut s = format!("# {title}\n\n{notes}\n\n");
    s.push_str(
        "| method | plan | format | scale rule | ppl | fp32 ppl | drop % | KL | top-1 | grade |\n",
    );
    s.push_str("|---|---|---|---|---:|---:|---:|---:|---:|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.2} | {:.4} | {:.3} | {} |\n",
            r.method,
            r.plan,
            r.format,
            r.scale_rule,
            r.ppl,
            r.ppl_fp32,
            r.drop_pct,
            r.kl,
            r.top1,
            r.grade.name()
        ));
    }
    let mut groups: BTreeMap<(String, String), Vec<&StudyRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.plan.clone(), r.format.clone()))
            .or_default()
            .push(r);
    }
    s.push_str("\n## Best method per plan and format\n\n| plan | format | best method | ppl | drop % | lossless | acceptable | high-risk |\n|---|---|---|---:|---:|---:|---:|---:|\n");
    for ((plan, format), g) in &groups {
        let best = g
            .iter()
            .min_by(|a, b| a.ppl.total_cmp(&b.ppl))
            .expect("non-empty group");
        let count = |gr: Grade| g.iter().filter(|r| r.grade == gr).count();
        s.push_str(&format!(
            "| {plan} | {format} | {} | {:.3} | {:.2} | {} | {} | {} |\n",
            best.method,
            best.ppl,
            best.drop_pct,
            count(Grade::Lossless),
            count(Grade::Acceptable),
            count(Grade::HighRisk)
        ));
    }
    s
}

const PALETTE: [plotters::style::RGBColor; 8] = [
    plotters::style::RGBColor(31, 119, 180),
    plotters::style::RGBColor(255, 127, 14),
    plotters::style::RGBColor(44, 160, 44),
    plotters::style::RGBColor(214, 39, 40),
    plotters::style::RGBColor(148, 103, 189),
    plotters::style::RGBColor(140, 86, 75),
    plotters::style::RGBColor(227, 119, 194),
    plotters::style::RGBColor(127, 127, 127),
];

fn plot_err<E: std::fmt::Display>(e: E) -> Error {
    Error::invalid(format!("plotting failed: {e}"))
}

/// SVG: perplexity (log scale) of every method, one panel per plan, one line per format, with
/// the fp32 perplexity as a dashed line.
pub fn plot_perplexity(path: &Path, rows: &[StudyRow]) -> Result<()> {
    use plotters::prelude::*;
    let mut methods: Vec<String> = Vec::new();
    let mut plans: Vec<String> = Vec::new();
    let mut formats: Vec<String> = Vec::new();
    for r in rows {
        for (v, x) in [
            (&mut methods, &r.method),
            (&mut plans, &r.plan),
            (&mut formats, &r.format),
        ] {
            if !v.contains(x) {
                v.push(x.clone());
            }
        }
    }
    if rows.is_empty() {
        return Err(Error::invalid("no results to plot"));
    }
    let fp32 = rows[0].ppl_fp32;
    let ymax = rows.iter().map(|r| r.ppl).fold(fp32, f64::max) * 1.2;
    let ymin = rows.iter().map(|r| r.ppl).fold(fp32, f64::min) * 0.95;
    let mut svg = String::new();
    {
        let w = 420 * plans.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (w, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let panels = root.split_evenly((1, plans.len().max(1)));
        for (panel, plan) in panels.iter().zip(&plans) {
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{plan}: perplexity"), ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(110)
                .y_label_area_size(50)
                .build_cartesian_2d(
                    -0.5f64..methods.len() as f64 - 0.5,
                    (ymin..ymax).log_scale(),
                )
                .map_err(plot_err)?;
            let ms = methods.clone();
            chart
                .configure_mesh()
                .x_labels(methods.len())
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < ms.len() {
                        ms[i as usize].clone()
                    } else {
                        String::new()
                    }
                })
                .x_label_style(
                    ("sans-serif", 11)
                        .into_font()
                        .transform(FontTransform::Rotate90),
                )
                .y_desc("perplexity")
                .draw()
                .map_err(plot_err)?;
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(-0.5, fp32), (methods.len() as f64 - 0.5, fp32)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(plot_err)?
                .label(format!("fp32 {fp32:.3}"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
            for (fi, f) in formats.iter().enumerate() {
                let pts: Vec<(f64, f64)> = methods
                    .iter()
                    .enumerate()
                    .filter_map(|(mi, m)| {
                        rows.iter()
                            .find(|r| &r.method == m && &r.plan == plan && &r.format == f)
                            .map(|r| (mi as f64, r.ppl))
                    })
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let c = PALETTE[fi % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(plot_err)?
                    .label(f.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2))
                    });
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(plot_err)?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    write_atomic(path, svg.as_bytes())
}

/// SVG: layer-local SQNR (dB) of every (layer, role) for the given rows (one line per row,
/// labelled by method), x axis ordered by layer then role.
pub fn plot_layer_error(path: &Path, rows: &[&StudyRow], title: &str) -> Result<()> {
    use plotters::prelude::*;
    let mut sites: Vec<(usize, String)> = Vec::new();
    for r in rows {
        for l in r.layers.iter().filter(|l| l.mode == "local") {
            let k = (l.layer, l.role.clone());
            if !sites.contains(&k) {
                sites.push(k);
            }
        }
    }
    sites.sort();
    if sites.is_empty() {
        return Err(Error::invalid("no per-layer errors to plot"));
    }
    let vals: Vec<f64> = rows
        .iter()
        .flat_map(|r| {
            r.layers
                .iter()
                .filter(|l| l.mode == "local" && l.sqnr_db.is_finite())
                .map(|l| l.sqnr_db)
        })
        .collect();
    let (lo, hi) = vals
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo <= hi {
        (lo - 2.0, hi + 2.0)
    } else {
        (0.0, 1.0)
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(70)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5f64..sites.len() as f64 - 0.5, lo..hi)
            .map_err(plot_err)?;
        let ss = sites.clone();
        chart
            .configure_mesh()
            .x_labels(sites.len())
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < ss.len() {
                    format!("{}.{}", ss[i as usize].0, ss[i as usize].1)
                } else {
                    String::new()
                }
            })
            .x_label_style(
                ("sans-serif", 10)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            )
            .y_desc("layer-local SQNR (dB)")
            .draw()
            .map_err(plot_err)?;
        for (ri, r) in rows.iter().enumerate() {
            let pts: Vec<(f64, f64)> = sites
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    r.layers
                        .iter()
                        .find(|l| {
                            l.mode == "local"
                                && l.layer == s.0
                                && l.role == s.1
                                && l.sqnr_db.is_finite()
                        })
                        .map(|l| (i as f64, l.sqnr_db))
                })
                .collect();
            let c = PALETTE[ri % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(plot_err)?
                .label(r.method.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    write_atomic(path, svg.as_bytes())
}
