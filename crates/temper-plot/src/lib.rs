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

mod draw;
mod figures;
mod parse;
#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use draw::render;
pub use figures::{Chart, Figure, figures};
pub use parse::{Metric, ParseError, Point, RunMetrics, parse_metrics};

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
