//! Which metrics share a PNG, and which share axes: the known charts a TRL user looks for by
//! name, then one page per name prefix, then the rest.

use std::collections::{BTreeMap, HashSet};

use crate::RunMetrics;

/// Charts on one small-multiples page; more go on further pages (`other_2.png`, ...), so that a
/// run logging hundreds of metrics gets several readable pages rather than one giant image.
const MAX_CHARTS_PER_PAGE: usize = 12;

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
