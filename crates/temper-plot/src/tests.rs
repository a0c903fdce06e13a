//! The crate's tests: parsing, figure layout and drawing.

use std::fs;
use std::path::Path;

use plotters::prelude::*;

use super::*;
use crate::draw::*;

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
    let error =
        parse_metrics(b"{\"step\": 1, \"loss\": 1.0}\n\n{\"step\": 2, \"loss\": }\n").unwrap_err();
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
            let area = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
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
