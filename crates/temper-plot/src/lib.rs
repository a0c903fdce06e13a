//! Charts of a training run: `metrics.jsonl` in, one PNG per group of metrics out.
//!
//! The charts are the ones a TRL user looks at on Weights & Biases, drawn the same way for a run
//! that never left the machine: the loss with its evaluation points on the same axes, the
//! implicit rewards of the chosen and rejected completions, their margin, the preference
//! accuracy, the learning rate and the gradient norm, then every other numeric metric the run
//! logged, grouped by the prefix of its name (`completions/...` together) or, without one, in a
//! small-multiples page of its own (`other.png`). The x axis is the optimizer step throughout.
//!
//! Two halves, usable apart:
//! - [`parse_metrics`] turns the bytes of a `metrics.jsonl` into [`RunMetrics`] (per metric, its
//!   training and evaluation points), with no I/O, so it can be tested on its own;
//! - [`figures`] decides which metrics share a file and which share axes, and [`plot_metrics`]
//!   draws them; [`plot_run`] reads, parses and draws in one call.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (`assets/fonts`), not with system
//! fonts: a CI machine or a fresh container has none, and the charts must look the same there.
//!
//! ```no_run
//! use std::path::Path;
//!
//! let written = temper_plot::plot_run(Path::new("out/metrics.jsonl"), Path::new("out/plots"))?;
//! for png in written {
//!     println!("{}", png.display()); // out/plots/loss.png, out/plots/rewards.png, ...
//! }
//! # Ok::<(), temper_plot::PlotError>(())
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::data::float::pretty_print_float;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use serde_json::Value;

/// DejaVu Sans cut to Latin-1 and a few punctuation marks (23 KB; see `assets/fonts/README.md`).
const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-subset.ttf");
/// The family name the font is registered under; plotters' `ab_glyph` text looks fonts up by it.
const FAMILY: &str = "sans-serif";

/// Size of a page with a single chart.
const SINGLE: (u32, u32) = (1000, 600);
/// Size of one chart on a small-multiples page, and the most charts side by side.
const CELL: (u32, u32) = (640, 420);
const MAX_COLUMNS: usize = 3;
/// Charts on one small-multiples page; more go on further pages (`other_2.png`, ...), so that a
/// run logging hundreds of metrics gets several readable pages rather than one giant image.
const MAX_CHARTS_PER_PAGE: usize = 12;

/// Matplotlib's default colour cycle ("tab10"): familiar, and distinct for the first few lines.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Chosen is always green and rejected always red, whatever else shares the axes, so the
/// preference charts read the same from one run to the next.
const CHOSEN: RGBColor = PALETTE[2];
const REJECTED: RGBColor = PALETTE[3];

/// Values beyond this magnitude are left out of a chart. Plotters' tick search divides the
/// axis span by powers of ten; a span that overflows to infinity, or one down in the subnormal
/// numbers, turns its arithmetic into NaN and it never returns. No real metric comes near.
const DRAWABLE: f64 = 1e200;

/// Why a run could not be plotted. Each names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}:{line}: {reason}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}: no numeric metric with a step to plot", path.display())]
    NoMetrics { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// Plotters failed to draw; in practice only a font that does not load.
    #[error("cannot draw {}: {message}", path.display())]
    Draw { path: PathBuf, message: String },
}

/// A line of `metrics.jsonl` that is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based, as an editor counts.
    pub line: usize,
    pub reason: String,
}

/// One logged value: the optimizer step it was logged at and the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub step: f64,
    pub value: f64,
}

/// A metric's points from training rows (`loss`) and from evaluation rows (`eval_loss`), each
/// sorted by step with one point per step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metric {
    pub train: Vec<Point>,
    pub eval: Vec<Point>,
}

/// Every numeric metric of a run, by its name without the `eval_` prefix, so that a metric's
/// training and evaluation values travel together and end up on the same axes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunMetrics {
    pub metrics: BTreeMap<String, Metric>,
    /// Rows without a numeric `step` (a summary row, say): nothing to place them at, so skipped.
    pub rows_without_step: usize,
}

/// Parses the contents of a `metrics.jsonl` file.
///
/// Each non-blank line must be a JSON object; its numeric `step` places it on the x axis, and
/// every other finite number in it is a metric value (keys starting with `eval_` are the
/// evaluation values of the metric named by the rest). `epoch` is not a metric here: it is
/// another x axis, not something to watch. Strings, booleans, nulls (serde_json writes a NaN as
/// null) and missing keys are simply absent from the series. When a step appears twice, as it
/// does after resuming from a checkpoint (the resumed run logs again the steps after the
/// checkpoint), the later row wins: it belongs to the run that went on.
pub fn parse_metrics(bytes: &[u8]) -> Result<RunMetrics, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut run = RunMetrics::default();
    for (index, line) in bytes.split(|&byte| byte == b'\n').enumerate() {
        let line_number = index + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row: Value = serde_json::from_slice(line).map_err(|error| ParseError {
            line: line_number,
            reason: json_reason(&error),
        })?;
        let Value::Object(row) = row else {
            return Err(ParseError {
                line: line_number,
                reason: format!("expected a JSON object, found {}", json_kind(&row)),
            });
        };
        let Some(step) = row.get("step").and_then(Value::as_f64) else {
            run.rows_without_step += 1;
            continue;
        };
        for (key, value) in &row {
            if key == "step" || key == "epoch" {
                continue;
            }
            let Some(value) = value.as_f64().filter(|value| value.is_finite()) else {
                continue;
            };
            let metric = match key.strip_prefix("eval_") {
                Some(name) if !name.is_empty() => {
                    &mut run.metrics.entry(name.into()).or_default().eval
                }
                _ => &mut run.metrics.entry(key.clone()).or_default().train,
            };
            metric.push(Point { step, value });
        }
    }
    for metric in run.metrics.values_mut() {
        last_per_step(&mut metric.train);
        last_per_step(&mut metric.eval);
    }
    Ok(run)
}

/// Sorts by step and keeps the last-logged point of each step (the sort is stable, so "last"
/// is the order of the file).
fn last_per_step(points: &mut Vec<Point>) {
    points.sort_by(|a, b| a.step.total_cmp(&b.step));
    let mut kept: Vec<Point> = Vec::with_capacity(points.len());
    for point in points.drain(..) {
        match kept.last_mut() {
            Some(last) if last.step == point.step => *last = point,
            _ => kept.push(point),
        }
    }
    *points = kept;
}

/// serde_json's message without its " at line 1 column N" tail (each line is parsed alone, so
/// its line is always 1 and would contradict the file's line number).
fn json_reason(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let tail = format!(" at line {} column {}", error.line(), error.column());
    let message = message.strip_suffix(&tail).unwrap_or(&message);
    format!("not valid JSON: {message} (column {})", error.column())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One PNG: a title and the charts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// The file name without `.png`; unique among the figures of a run.
    pub file_stem: String,
    pub title: String,
    pub charts: Vec<Chart>,
}

/// Metrics drawn on one pair of axes, each with its training line and evaluation points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    pub title: String,
    pub y_label: String,
    /// Names as keys of [`RunMetrics::metrics`] (without `eval_`).
    pub metrics: Vec<String>,
}

/// A chart every trainer of the kind produces and its users look for by name.
struct Known {
    file_stem: &'static str,
    title: &'static str,
    y_label: &'static str,
    /// Drawn on the same axes, those present. The reward model's `margin` and `accuracy` sit
    /// with DPO's because they measure the same thing (a run logs one family or the other).
    metrics: &'static [&'static str],
}

const KNOWN: &[Known] = &[
    Known {
        file_stem: "loss",
        title: "Loss",
        y_label: "loss",
        metrics: &["loss"],
    },
    Known {
        file_stem: "rewards",
        title: "Rewards: chosen vs rejected",
        y_label: "implicit reward",
        metrics: &["rewards/chosen", "rewards/rejected"],
    },
    Known {
        file_stem: "margins",
        title: "Reward margin (chosen - rejected)",
        y_label: "margin",
        metrics: &["rewards/margins", "margin"],
    },
    Known {
        file_stem: "accuracies",
        title: "Preference accuracy (chosen > rejected)",
        y_label: "accuracy",
        metrics: &["rewards/accuracies", "accuracy"],
    },
    Known {
        file_stem: "learning_rate",
        title: "Learning rate",
        y_label: "learning rate",
        metrics: &["learning_rate"],
    },
    Known {
        file_stem: "grad_norm",
        title: "Gradient norm",
        y_label: "global L2 norm",
        metrics: &["grad_norm"],
    },
    Known {
        file_stem: "logps",
        title: "Log-probabilities: chosen vs rejected",
        y_label: "log-probability",
        metrics: &["logps/chosen", "logps/rejected"],
    },
    Known {
        file_stem: "logits",
        title: "Mean logits: chosen vs rejected",
        y_label: "mean logit",
        metrics: &["logits/chosen", "logits/rejected"],
    },
];

/// Decides the PNGs for a run: first the known charts whose metrics are present, in the order
/// people read a DPO run in (`loss`, `rewards`, `margins`, `accuracies`, `learning_rate`,
/// `grad_norm`, `logps`, `logits`); then one small-multiples page per name prefix for the rest
/// (`completions/mean_length` and `completions/max_length` on `completions.png`, one chart
/// each, since they rarely share a scale); then the remaining unprefixed metrics on
/// `other.png`. A page holds at most 12 charts; more continue on `other_2.png` and so on.
pub fn figures(run: &RunMetrics) -> Vec<Figure> {
    let mut figures = Vec::new();
    let mut stems = HashSet::new();
    let mut placed = HashSet::new();
    for known in KNOWN {
        let metrics: Vec<String> = known
            .metrics
            .iter()
            .filter(|name| run.metrics.contains_key(**name))
            .map(|name| name.to_string())
            .collect();
        if metrics.is_empty() {
            continue;
        }
        placed.extend(metrics.iter().cloned());
        figures.push(Figure {
            file_stem: unique_stem(known.file_stem, &mut stems),
            title: known.title.into(),
            charts: vec![Chart {
                title: known.title.into(),
                y_label: known.y_label.into(),
                metrics,
            }],
        });
    }

    let mut by_prefix: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut other = Vec::new();
    for name in run.metrics.keys().filter(|name| !placed.contains(*name)) {
        match name.split_once('/') {
            Some((prefix, _)) if !prefix.is_empty() => {
                by_prefix.entry(prefix).or_default().push(name)
            }
            _ => other.push(name.as_str()),
        }
    }
    // Titled by the name as logged: `eval_runtime` for a metric only evaluation rows have.
    let one_chart_each = |names: &[&str]| {
        names
            .iter()
            .map(|&name| {
                let only_eval = run.metrics[name].train.is_empty();
                let shown = if only_eval {
                    format!("eval_{name}")
                } else {
                    name.to_string()
                };
                Chart {
                    y_label: shown.rsplit('/').next().unwrap_or(&shown).to_string(),
                    title: shown,
                    metrics: vec![name.to_string()],
                }
            })
            .collect()
    };
    let pages = by_prefix
        .iter()
        .map(|(prefix, names)| (*prefix, *prefix, names))
        .chain((!other.is_empty()).then_some(("other", "Other metrics", &other)));
    for (stem, title, names) in pages {
        let count = names.len().div_ceil(MAX_CHARTS_PER_PAGE);
        let first = unique_stem(stem, &mut stems);
        for (page, names) in names.chunks(MAX_CHARTS_PER_PAGE).enumerate() {
            let (file_stem, title) = match page {
                0 if count == 1 => (first.clone(), title.to_string()),
                0 => (first.clone(), format!("{title} (1/{count})")),
                _ => (
                    unique_stem(&format!("{first}_{}", page + 1), &mut stems),
                    format!("{title} ({}/{count})", page + 1),
                ),
            };
            figures.push(Figure {
                file_stem,
                title,
                charts: one_chart_each(names),
            });
        }
    }
    figures
}

/// A file name from a metric prefix: ASCII letters, digits, `-` and `_` kept, anything else
/// (a path separator above all) replaced by `_`; `_2`, `_3`, ... appended on a clash, which
/// only a prefix spelt like a known chart (or sanitised into one) can cause.
fn unique_stem(name: &str, taken: &mut HashSet<String>) -> String {
    let base: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut stem = base.clone();
    let mut n = 2;
    while !taken.insert(stem.clone()) {
        stem = format!("{base}_{n}");
        n += 1;
    }
    stem
}

/// Reads `metrics_path`, and writes one PNG per [`figures`] entry into `output_dir` (created if
/// missing; files of the same name are replaced). Returns the paths written, in figure order.
pub fn plot_run(metrics_path: &Path, output_dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let bytes = fs::read(metrics_path).map_err(|source| PlotError::Read {
        path: metrics_path.to_path_buf(),
        source,
    })?;
    let run = parse_metrics(&bytes).map_err(|error| PlotError::Parse {
        path: metrics_path.to_path_buf(),
        line: error.line,
        reason: error.reason,
    })?;
    if run.metrics.is_empty() {
        return Err(PlotError::NoMetrics {
            path: metrics_path.to_path_buf(),
        });
    }
    plot_metrics(&run, output_dir)
}

/// Writes the PNGs of metrics already in memory (a trainer at the end of its run, say) into
/// `output_dir`. A run without metrics writes nothing and returns no paths.
pub fn plot_metrics(run: &RunMetrics, output_dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let figures = figures(run);
    if figures.is_empty() {
        return Ok(Vec::new());
    }
    fs::create_dir_all(output_dir).map_err(|source| PlotError::Write {
        path: output_dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::with_capacity(figures.len());
    for figure in &figures {
        let path = output_dir.join(format!("{}.png", figure.file_stem));
        let image = render(figure, run).map_err(|message| PlotError::Draw {
            path: path.clone(),
            message,
        })?;
        let png = image.encode_png().map_err(|source| PlotError::Write {
            path: path.clone(),
            source,
        })?;
        fs::write(&path, png).map_err(|source| PlotError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// An RGB image, 8 bits a channel, row by row.
struct Rgb {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Rgb {
    fn encode_png(&self) -> io::Result<Vec<u8>> {
        let mut png = Vec::new();
        let mut encoder = png::Encoder::new(&mut png, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(io::Error::other)?;
        writer
            .write_image_data(&self.pixels)
            .map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)?;
        Ok(png)
    }
}

/// Registers the embedded font once per process (plotters keeps fonts in a global table).
fn font_ready() -> Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err("the embedded font does not load".into())
    }
}

/// Draws a figure in memory: a single chart fills the page; several are laid out in a grid
/// under the figure's title, up to [`MAX_COLUMNS`] across.
fn render(figure: &Figure, run: &RunMetrics) -> Result<Rgb, String> {
    font_ready()?;
    let count = figure.charts.len().max(1);
    let columns = count.min(MAX_COLUMNS);
    let rows = count.div_ceil(columns);
    let (width, height) = if count == 1 {
        SINGLE
    } else {
        (CELL.0 * columns as u32, CELL.1 * rows as u32 + 60)
    };
    let mut pixels = vec![255; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        let result = (|| {
            root.fill(&WHITE)?;
            let cells = if count == 1 {
                vec![root.clone()]
            } else {
                root.titled(&figure.title, (FAMILY, 30).into_font().color(&BLACK))?
                    .split_evenly((rows, columns))
            };
            for (chart, cell) in figure.charts.iter().zip(&cells) {
                draw_chart(cell, chart, run)?;
            }
            root.present()
        })();
        result.map_err(|error| error.to_string())?;
    }
    Ok(Rgb {
        width,
        height,
        pixels,
    })
}

/// One line of a chart: a metric's training or evaluation points.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    /// Evaluation lines are dashed with a marker at each point: they are few, and each one is a
    /// measurement worth seeing, unlike the dense training line.
    eval: bool,
}

fn lines(chart: &Chart, run: &RunMetrics) -> Vec<Line> {
    let drawable = |points: &[Point]| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter(|p| p.step.abs() <= DRAWABLE && p.value.abs() <= DRAWABLE)
            .map(|p| (p.step, p.value))
            .collect()
    };
    let mut lines = Vec::new();
    for (index, name) in chart.metrics.iter().enumerate() {
        let Some(metric) = run.metrics.get(name) else {
            continue;
        };
        let color = if name.ends_with("chosen") {
            CHOSEN
        } else if name.ends_with("rejected") {
            REJECTED
        } else {
            PALETTE[index % PALETTE.len()]
        };
        for (eval, points, label) in [
            (false, &metric.train, name.clone()),
            (true, &metric.eval, format!("eval_{name}")),
        ] {
            let points = drawable(points);
            if !points.is_empty() {
                lines.push(Line {
                    label,
                    points,
                    color,
                    eval,
                });
            }
        }
    }
    lines
}

fn draw_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &Chart,
    run: &RunMetrics,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let lines = lines(chart, run);
    let bounds = |coordinate: fn(&(f64, f64)) -> f64| {
        lines
            .iter()
            .flat_map(|line| line.points.iter().map(coordinate))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let (x_lo, x_hi) = bounds(|p| p.0);
    let (y_lo, y_hi) = bounds(|p| p.1);
    if lines.is_empty() {
        // Every value was beyond `DRAWABLE`: say so rather than draw empty axes.
        area.draw(&Text::new(
            format!("{}: no drawable values", chart.title),
            (20, 20),
            (FAMILY, 18),
        ))?;
        return Ok(());
    }
    let x_range = axis_range(x_lo, x_hi, 0.0);
    let y_range = axis_range(y_lo, y_hi, 0.05);
    let legend = legend_corner(&lines, &x_range, &y_range);
    // Steps are whole numbers: ask for no more ticks than there are steps, or a short run
    // gets ticks at 1.5, 2.5, ...
    let x_ticks = (x_range.end - x_range.start).floor().clamp(1.0, 9.0) as usize + 1;

    let mut context = ChartBuilder::on(area)
        .caption(&chart.title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(78)
        .build_cartesian_2d(x_range, y_range)?;
    context
        .configure_mesh()
        .x_desc("step")
        .y_desc(&chart.y_label)
        .x_labels(x_ticks)
        .y_labels(8)
        .x_label_formatter(&|x| pretty_print_float(*x, false))
        .y_label_formatter(&|y| pretty_print_float(*y, true))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(TRANSPARENT)
        .draw()?;

    for line in &lines {
        let style = line.color.stroke_width(2);
        if line.eval {
            context
                .draw_series(DashedLineSeries::new(
                    line.points.iter().copied(),
                    6,
                    4,
                    style,
                ))?
                .label(&line.label)
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + DashedPathElement::new(vec![(0, 0), (20, 0)], 6, 4, style)
                        + Circle::new((10, 0), 3, style.filled())
                });
            context.draw_series(
                line.points
                    .iter()
                    .map(|&point| Circle::new(point, 3, style.filled())),
            )?;
        } else {
            context
                .draw_series(LineSeries::new(line.points.iter().copied(), style))?
                .label(&line.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            if let [only] = line.points[..] {
                // A lone training point is a zero-length line, which draws nothing: mark it.
                context.draw_series([Circle::new(only, 5, style.filled())])?;
            }
        }
    }
    context
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(190, 190, 190))
        .label_font((FAMILY, 14))
        .draw()
}

/// The axis range over `[lo, hi]`, widened by `pad` of the span on each side. A flat span (one
/// point, a constant learning rate) is given room around its value, so the line sits in the
/// middle of the chart with readable ticks, and plotters' tick search never sees a zero span.
fn axis_range(lo: f64, hi: f64, pad: f64) -> Range<f64> {
    let magnitude = lo.abs().max(hi.abs());
    let span = hi - lo;
    // Relative to the values' size: f64 cannot place ticks on a finer span, and a floor well
    // above the subnormal numbers, where plotters' arithmetic breaks down.
    if span <= (magnitude * 1e-9).max(1e-150) {
        let middle = lo + span / 2.0;
        let half = if magnitude > 1e-150 {
            magnitude * 0.05
        } else {
            1.0
        };
        return (middle - half)..(middle + half);
    }
    (lo - span * pad)..(hi + span * pad)
}

/// The corner of the plot whose quarter holds the fewest points, so the legend hides as little
/// of the lines as it can (a falling loss leaves the upper right empty, a rising accuracy the
/// lower right).
fn legend_corner(lines: &[Line], x: &Range<f64>, y: &Range<f64>) -> SeriesLabelPosition {
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let fraction = |v: f64, range: &Range<f64>| (v - range.start) / (range.end - range.start);
    let mut counts = [0usize; 4];
    for &(px, py) in lines.iter().flat_map(|line| &line.points) {
        let (fx, fy) = (fraction(px, x), fraction(py, y));
        for (count, &(_, right, upper)) in counts.iter_mut().zip(&corners) {
            let in_x = if right { fx >= 0.55 } else { fx <= 0.45 };
            let in_y = if upper { fy >= 0.55 } else { fy <= 0.45 };
            *count += usize::from(in_x && in_y);
        }
    }
    let best = (0..corners.len())
        .min_by_key(|&i| counts[i])
        .unwrap_or_default();
    corners[best].0.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: f64, value: f64) -> Point {
        Point { step, value }
    }

    fn parse(text: &str) -> RunMetrics {
        parse_metrics(text.as_bytes()).unwrap()
    }

    #[test]
    fn rows_split_into_train_and_eval_series_of_the_same_metric() {
        let run = parse(concat!(
            r#"{"step": 1, "epoch": 0.5, "loss": 0.69, "rewards/chosen": 0.01}"#,
            "\n",
            r#"{"step": 2, "epoch": 1.0, "loss": 0.60, "rewards/chosen": 0.03}"#,
            "\n",
            r#"{"step": 2, "epoch": 1.0, "eval_loss": 0.65, "eval_rewards/chosen": 0.02}"#,
            "\n",
        ));
        assert_eq!(
            run.metrics.keys().collect::<Vec<_>>(),
            ["loss", "rewards/chosen"],
            "eval_ is stripped, step and epoch are no metrics"
        );
        assert_eq!(
            run.metrics["loss"].train,
            [point(1.0, 0.69), point(2.0, 0.60)]
        );
        assert_eq!(run.metrics["loss"].eval, [point(2.0, 0.65)]);
        assert_eq!(run.metrics["rewards/chosen"].eval, [point(2.0, 0.02)]);
        assert_eq!(run.rows_without_step, 0);
    }

    #[test]
    fn non_numeric_and_missing_values_are_left_out() {
        let run = parse(concat!(
            r#"{"step": 1, "loss": 0.5, "grad_norm": null, "note": "warmup", "done": false, "v": [1]}"#,
            "\n",
            r#"{"step": 2, "grad_norm": 1.5, "loss": "nan"}"#,
            "\n",
        ));
        assert_eq!(run.metrics["loss"].train, [point(1.0, 0.5)]);
        assert_eq!(run.metrics["grad_norm"].train, [point(2.0, 1.5)]);
        assert!(!run.metrics.contains_key("note") && !run.metrics.contains_key("done"));
        assert!(!run.metrics.contains_key("v"));
    }

    #[test]
    fn a_repeated_step_keeps_its_last_row_and_points_come_sorted() {
        // A run resumed from the checkpoint at step 2 logs steps 3 and 4 again.
        let run = parse(concat!(
            "{\"step\": 1, \"loss\": 1.0}\n",
            "{\"step\": 2, \"loss\": 0.9}\n",
            "{\"step\": 3, \"loss\": 0.8}\n",
            "{\"step\": 4, \"loss\": 0.7}\n",
            "{\"step\": 3, \"loss\": 0.85}\n",
            "{\"step\": 4, \"loss\": 0.75}\n",
        ));
        let steps: Vec<(f64, f64)> = run.metrics["loss"]
            .train
            .iter()
            .map(|p| (p.step, p.value))
            .collect();
        assert_eq!(steps, [(1.0, 1.0), (2.0, 0.9), (3.0, 0.85), (4.0, 0.75)]);
    }

    #[test]
    fn blank_lines_crlf_and_a_bom_are_accepted_and_stepless_rows_counted() {
        let run = parse(concat!(
            "\u{feff}{\"step\": 1, \"loss\": 1.0}\r\n",
            "\n",
            "   \r\n",
            "{\"train_runtime\": 12.5, \"train_loss\": 0.4}\n",
            "{\"step\": 2.0, \"loss\": 0.5}",
        ));
        assert_eq!(
            run.metrics["loss"].train,
            [point(1.0, 1.0), point(2.0, 0.5)]
        );
        assert_eq!(run.rows_without_step, 1);
        assert!(!run.metrics.contains_key("train_loss"));
    }

    #[test]
    fn a_line_that_is_not_a_json_object_is_an_error_naming_the_line() {
        let error = parse_metrics(b"{\"step\": 1, \"loss\": 1.0}\n\n{\"step\": 2, \"loss\": }\n")
            .unwrap_err();
        assert_eq!(error.line, 3);
        assert!(
            error.reason.starts_with("not valid JSON: expected value"),
            "{}",
            error.reason
        );
        assert!(
            !error.reason.contains("line 1"),
            "serde_json's own line would mislead: {}",
            error.reason
        );

        let error = parse_metrics(b"{\"step\": 1}\n[1, 2]\n").unwrap_err();
        assert_eq!(
            error,
            ParseError {
                line: 2,
                reason: "expected a JSON object, found an array".into()
            }
        );

        let error = parse_metrics(b"{\"step\": 1, \"loss\": 0.5}\n{\"step\": 2, \"lo").unwrap_err();
        assert_eq!(
            error.line, 2,
            "a truncated last line (a run killed mid-write)"
        );

        let error = parse_metrics(b"{\"step\": 1, \"na\xffme\": 0.5}\n").unwrap_err();
        assert_eq!(error.line, 1, "invalid UTF-8 is an error, not a panic");

        // Python's json.dumps writes NaN; JSON has no such token.
        let error = parse_metrics(b"{\"step\": 1, \"loss\": NaN}\n").unwrap_err();
        assert_eq!(error.line, 1);
    }

    #[test]
    fn plot_run_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        let plots = dir.path().join("plots");

        let error = plot_run(&metrics, &plots).unwrap_err();
        assert!(matches!(error, PlotError::Read { .. }), "{error}");

        fs::write(&metrics, "{\"step\": 1, \"loss\": 1.0}\nnot json\n").unwrap();
        let error = plot_run(&metrics, &plots).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("{}:2: not valid JSON", metrics.display())),
            "{message}"
        );

        fs::write(&metrics, "{\"step\": 1, \"note\": \"nothing numeric\"}\n").unwrap();
        let error = plot_run(&metrics, &plots).unwrap_err();
        assert!(matches!(error, PlotError::NoMetrics { .. }), "{error}");
        assert!(!plots.exists(), "nothing to plot creates nothing");
    }

    /// A run with the given metric names, each logged at steps 1 and 2.
    fn run_with(names: &[&str]) -> RunMetrics {
        let mut run = RunMetrics::default();
        for name in names {
            let (name, eval) = match name.strip_prefix("eval_") {
                Some(name) => (name, true),
                None => (*name, false),
            };
            let metric = run.metrics.entry(name.to_string()).or_default();
            let points = vec![point(1.0, 1.0), point(2.0, 2.0)];
            if eval {
                metric.eval = points;
            } else {
                metric.train = points;
            }
        }
        run
    }

    fn stems(figures: &[Figure]) -> Vec<&str> {
        figures
            .iter()
            .map(|figure| figure.file_stem.as_str())
            .collect()
    }

    #[test]
    fn known_charts_come_first_then_prefix_pages_then_the_rest() {
        let run = run_with(&[
            "loss",
            "eval_loss",
            "learning_rate",
            "grad_norm",
            "rewards/chosen",
            "rewards/rejected",
            "rewards/margins",
            "rewards/accuracies",
            "logps/chosen",
            "logps/rejected",
            "logits/chosen",
            "logits/rejected",
            "nll_loss",
            "log_odds_ratio",
            "completions/mean_length",
            "completions/clipped_ratio",
            "eval_runtime",
        ]);
        let figures = figures(&run);
        assert_eq!(
            stems(&figures),
            [
                "loss",
                "rewards",
                "margins",
                "accuracies",
                "learning_rate",
                "grad_norm",
                "logps",
                "logits",
                "completions",
                "other"
            ]
        );
        let rewards = &figures[1].charts;
        assert_eq!(
            rewards.len(),
            1,
            "chosen and rejected share one pair of axes"
        );
        assert_eq!(rewards[0].metrics, ["rewards/chosen", "rewards/rejected"]);
        assert_eq!(
            figures[0].charts[0].metrics,
            ["loss"],
            "train and eval loss on one chart"
        );

        let completions: Vec<&str> = figures[8].charts.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(
            completions,
            ["completions/clipped_ratio", "completions/mean_length"]
        );
        let other: Vec<&str> = figures[9].charts.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(
            other,
            ["log_odds_ratio", "nll_loss", "eval_runtime"],
            "sorted by name without eval_, which an eval-only metric keeps in its title"
        );
    }

    #[test]
    fn reward_model_and_sft_runs_get_their_charts() {
        let rm = figures(&run_with(&["loss", "accuracy", "margin", "learning_rate"]));
        assert_eq!(
            stems(&rm),
            ["loss", "margins", "accuracies", "learning_rate"]
        );
        assert_eq!(rm[2].charts[0].metrics, ["accuracy"]);

        let sft = figures(&run_with(&[
            "loss",
            "mean_token_accuracy",
            "entropy",
            "num_tokens",
        ]));
        assert_eq!(stems(&sft), ["loss", "other"]);
        assert_eq!(sft[1].charts.len(), 3);
    }

    #[test]
    fn file_names_are_safe_and_unique_and_pages_stay_small() {
        let mut names: Vec<String> = (0..30).map(|i| format!("m{i:02}")).collect();
        names.extend([
            "loss/a".into(),
            "../x/y".into(),
            "a b/c".into(),
            "other/z".into(),
        ]);
        let run = run_with(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let figures = figures(&run);
        // `..` is a prefix like any other, and its dots go with the other unsafe characters;
        // `other/z` takes `other.png`, so the unprefixed pages number on from `other_2`.
        assert_eq!(
            stems(&figures),
            [
                "__",
                "a_b",
                "loss",
                "other",
                "other_2",
                "other_2_2",
                "other_2_3"
            ],
        );
        let sizes: Vec<usize> = figures[3..].iter().map(|f| f.charts.len()).collect();
        assert_eq!(
            sizes,
            [1, 12, 12, 6],
            "`other/z` on other.png; 30 unprefixed on three pages"
        );
        assert_eq!(figures[4].title, "Other metrics (1/3)");
        assert_eq!(figures[6].title, "Other metrics (3/3)");
    }

    #[test]
    fn axis_ranges_give_flat_and_single_values_room() {
        assert_eq!(axis_range(0.0, 10.0, 0.05), -0.5..10.5);
        assert_eq!(axis_range(3.0, 3.0, 0.0), 2.85..3.15);
        assert_eq!(axis_range(0.0, 0.0, 0.05), -1.0..1.0);
        let tiny = axis_range(1e-300, 1e-300, 0.05);
        assert!(tiny.end - tiny.start >= 1.0, "{tiny:?}");
        let lr = axis_range(1e-5, 1e-5, 0.05);
        assert!(
            lr.start < 1e-5 && lr.end > 1e-5 && lr.end - lr.start < 1e-5,
            "{lr:?}"
        );
    }

    #[test]
    fn the_legend_goes_to_the_emptiest_corner() {
        let line = |points: Vec<(f64, f64)>| Line {
            label: String::new(),
            points,
            color: BLACK,
            eval: false,
        };
        let falling = line((0..10).map(|i| (i as f64, 10.0 - i as f64)).collect());
        let rising = line((0..10).map(|i| (i as f64, i as f64)).collect());
        let (x, y) = (0.0..9.0, 0.0..10.0);
        assert!(matches!(
            legend_corner(&[falling], &x, &y),
            SeriesLabelPosition::UpperRight
        ));
        assert!(matches!(
            legend_corner(&[rising], &x, &y),
            SeriesLabelPosition::UpperLeft
        ));
    }

    /// Decodes a PNG file: its width, height and RGB pixels.
    fn decode(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
        let bytes = fs::read(path).unwrap();
        assert_eq!(
            &bytes[..8],
            b"\x89PNG\r\n\x1a\n",
            "{} is no PNG",
            path.display()
        );
        let mut reader = png::Decoder::new(io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buffer).unwrap();
        assert_eq!(
            (info.color_type, info.bit_depth),
            (png::ColorType::Rgb, png::BitDepth::Eight)
        );
        let pixels = buffer[..info.buffer_size()]
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        (info.width, info.height, pixels)
    }

    fn count(pixels: &[[u8; 3]], color: RGBColor) -> usize {
        pixels
            .iter()
            .filter(|p| **p == [color.0, color.1, color.2])
            .count()
    }

    /// A DPO run's `metrics.jsonl` as the trainer writes it: a training row per step, an
    /// evaluation row every `eval_every` steps, with ORPO's and GRPO's extra names mixed in so
    /// every kind of page appears.
    fn dpo_run(steps: usize, eval_every: usize) -> String {
        let mut text = String::new();
        for step in 1..=steps {
            let t = step as f64 / steps as f64;
            let loss = 0.693 * (-2.0 * t).exp() + 0.05 * (step as f64 * 1.7).sin().abs();
            let lr = if step <= 4 {
                1e-5 * step as f64 / 4.0
            } else {
                1e-5 * (1.0 - t)
            };
            let (chosen, rejected) = (0.8 * t, -1.2 * t);
            let row = serde_json::json!({
                "step": step, "epoch": t, "loss": loss, "learning_rate": lr,
                "grad_norm": 3.0 * (1.0 - t) + 0.5,
                "rewards/chosen": chosen, "rewards/rejected": rejected,
                "rewards/margins": chosen - rejected, "rewards/accuracies": 0.5 + t / 2.0,
                "logps/chosen": -40.0 + chosen, "logps/rejected": -42.0 + rejected,
                "logits/chosen": -0.3, "logits/rejected": -0.31,
                "nll_loss": 2.0 - t, "log_odds_ratio": -0.7 + t / 2.0,
                "completions/mean_length": 100.0 + step as f64,
                "note": "warmup", "maybe": null,
            });
            text += &format!("{row}\n");
            if step % eval_every == 0 {
                let row = serde_json::json!({
                    "step": step, "epoch": t, "eval_loss": loss + 0.05,
                    "eval_rewards/chosen": chosen * 0.8, "eval_rewards/rejected": rejected * 0.8,
                    "eval_runtime": 1.5,
                });
                text += &format!("{row}\n");
            }
        }
        text
    }

    #[test]
    fn a_run_renders_to_valid_non_blank_pngs() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        fs::write(&metrics, dpo_run(40, 10)).unwrap();
        let plots = dir.path().join("out").join("plots");

        let written = plot_run(&metrics, &plots).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "loss.png",
                "rewards.png",
                "margins.png",
                "accuracies.png",
                "learning_rate.png",
                "grad_norm.png",
                "logps.png",
                "logits.png",
                "completions.png",
                "other.png"
            ]
        );
        for path in &written {
            assert_eq!(path.parent(), Some(plots.as_path()));
            let (width, height, pixels) = decode(path);
            assert_eq!(pixels.len(), width as usize * height as usize);
            let white = count(&pixels, RGBColor(255, 255, 255));
            let ink = pixels.iter().filter(|p| p.iter().all(|&c| c < 100)).count();
            assert!(
                white < pixels.len() * 99 / 100,
                "{} is blank",
                path.display()
            );
            assert!(
                white > pixels.len() / 2,
                "{} is not a chart on white",
                path.display()
            );
            assert!(
                ink > 500,
                "{}: no text or axes ({ink} dark pixels)",
                path.display()
            );
        }

        let (width, height, loss) = decode(&written[0]);
        assert_eq!((width, height), SINGLE);
        // 40 steps drawn 2 px wide across ~900 px, eval dashes and markers in the same colour.
        assert!(count(&loss, PALETTE[0]) > 1000, "the loss line is missing");

        let (_, _, rewards) = decode(&written[1]);
        assert!(
            count(&rewards, CHOSEN) > 1000,
            "the chosen line is missing or not green"
        );
        assert!(
            count(&rewards, REJECTED) > 1000,
            "the rejected line is missing or not red"
        );

        let (width, height, _) = decode(&written[9]);
        assert_eq!(
            (width, height),
            (3 * CELL.0, CELL.1 + 60),
            "three charts side by side"
        );
    }

    #[test]
    fn a_single_step_run_still_shows_its_point() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        fs::write(&metrics, "{\"step\": 0, \"loss\": 0.6931}\n").unwrap();
        let written = plot_run(&metrics, dir.path()).unwrap();
        assert_eq!(written, [dir.path().join("loss.png")]);
        let (_, _, pixels) = decode(&written[0]);
        // The legend's sample line is 40 pixels of the colour; the marker adds more.
        assert!(count(&pixels, PALETTE[0]) > 60);
    }

    #[test]
    fn the_embedded_font_draws_text_where_the_pen_is() {
        font_ready().unwrap();
        let ink_columns = |text: &str| {
            let (width, height) = (400u32, 160u32);
            let mut pixels = vec![255u8; (width * height * 3) as usize];
            {
                let area =
                    BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
                area.draw(&Text::new(text, (50, 20), (FAMILY, 100)))
                    .unwrap();
                area.present().unwrap();
            }
            let columns: Vec<u32> = (0..width)
                .filter(|&x| (0..height).any(|y| pixels[((y * width + x) * 3) as usize] < 128))
                .collect();
            columns
        };
        let l = ink_columns("l");
        assert!(!l.is_empty(), "the font drew nothing");
        // DejaVu's "l" starts 193/2048 em right of the pen, 9 px at 100 px: plotters drops
        // that bearing unless the font's glyphs are anchored at x = 0 (assets/fonts).
        assert!(
            (57..=61).contains(&l[0]),
            "the l's ink starts at x = {}",
            l[0]
        );
        let cl = ink_columns("cl");
        let gaps = cl.windows(2).filter(|w| w[1] > w[0] + 1).count();
        assert_eq!(gaps, 1, "\"cl\" must stay two glyphs, not merge into \"d\"");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        #[test]
        fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_metrics(&bytes);
        }

        #[test]
        fn any_values_render_without_panicking(
            train in proptest::collection::vec((extreme(), extreme()), 0..6),
            eval in proptest::collection::vec((extreme(), extreme()), 0..3),
        ) {
            let points = |pairs: &[(f64, f64)]| -> Vec<Point> { pairs.iter().map(|&(s, v)| point(s, v)).collect() };
            let mut run = RunMetrics::default();
            run.metrics.insert("loss".into(), Metric { train: points(&train), eval: points(&eval) });
            let figure = &figures(&run)[0];
            render(figure, &run).unwrap();
        }
    }

    /// Floats a chart must survive: ordinary, huge, tiny, subnormal, infinite, NaN, and equal
    /// neighbours (flat spans).
    fn extreme() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        prop_oneof![
            -1e3..1e3f64,
            Just(0.0),
            Just(1.0),
            Just(1.0 + f64::EPSILON),
            Just(1e15),
            Just(1e15 + 0.125),
            Just(-1e199),
            Just(1e250),
            Just(f64::MAX),
            Just(1e-310),
            Just(-5e-324),
            Just(1e-160),
            Just(f64::INFINITY),
            Just(f64::NAN),
        ]
    }
}
