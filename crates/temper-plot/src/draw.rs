//! Drawing a figure into an RGB image with plotters, and encoding it as PNG.

use std::io;
use std::ops::Range;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::data::float::pretty_print_float;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::{Chart, Figure, Point, RunMetrics};

/// DejaVu Sans cut to Latin-1 and a few punctuation marks (23 KB; see `assets/fonts/README.md`).
const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-subset.ttf");
/// The family name the font is registered under; plotters' `ab_glyph` text looks fonts up by it.
pub(crate) const FAMILY: &str = "sans-serif";

/// Size of a page with a single chart.
pub(crate) const SINGLE: (u32, u32) = (1000, 600);
/// Size of one chart on a small-multiples page, and the most charts side by side.
pub(crate) const CELL: (u32, u32) = (640, 420);
const MAX_COLUMNS: usize = 3;

/// Matplotlib's default colour cycle ("tab10"): familiar, and distinct for the first few lines.
pub(crate) const PALETTE: [RGBColor; 10] = [
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
pub(crate) const CHOSEN: RGBColor = PALETTE[2];
pub(crate) const REJECTED: RGBColor = PALETTE[3];

/// Values beyond this magnitude are left out of a chart. Plotters' tick search divides the
/// axis span by powers of ten; a span that overflows to infinity, or one down in the subnormal
/// numbers, turns its arithmetic into NaN and it never returns. No real metric comes near.
const DRAWABLE: f64 = 1e200;

/// An RGB image, 8 bits a channel, row by row.
pub(crate) struct Rgb {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) pixels: Vec<u8>,
}

impl Rgb {
    pub(crate) fn encode_png(&self) -> io::Result<Vec<u8>> {
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
pub(crate) fn font_ready() -> Result<(), String> {
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
pub(crate) fn render(figure: &Figure, run: &RunMetrics) -> Result<Rgb, String> {
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
pub(crate) struct Line {
    pub(crate) label: String,
    pub(crate) points: Vec<(f64, f64)>,
    pub(crate) color: RGBColor,
    /// Evaluation lines are dashed with a marker at each point: they are few, and each one is a
    /// measurement worth seeing, unlike the dense training line.
    pub(crate) eval: bool,
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
pub(crate) fn axis_range(lo: f64, hi: f64, pad: f64) -> Range<f64> {
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
pub(crate) fn legend_corner(lines: &[Line], x: &Range<f64>, y: &Range<f64>) -> SeriesLabelPosition {
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
