//! Verification speed, Temper against the Python references, on the same rows and machine.
//!
//! ```sh
//! NLTK_DATA=/root/.cache/temper-nltk-data cargo run --release --example bench_verifiers -- \
//!     --python /root/.cache/temper-verifiers-venv/bin/python
//! ```
//!
//! Scores the conformance rows of `fixtures/verifiers` (gsm8k, math, ifeval_old through the
//! registry; IFEval rows strict and loose) repeatedly for `--seconds`, on one core and on all,
//! and, with `--python`, runs `examples/anchors/verifiers_bench.py` (IFEval's official code and
//! open-instruct's verifiers, single-threaded as they run) on the same rows. Prints rows/s per
//! verifier and the ratio of Temper's one-core rate to the reference's.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rayon::prelude::*;
use serde_json::Value;
use temper::verifiers::{Instructions, Registry};

/// The allocator the `temper` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    seconds: f64,
    python: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 3.0,
        python: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => {
                args.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            "--python" => args.python = Some(value()?),
            other => {
                return Err(format!(
                    "unknown argument {other} (expected --seconds, --python)"
                ));
            }
        }
    }
    Ok(args)
}

fn rows(name: &str) -> Vec<Value> {
    let path = Path::new("fixtures/verifiers").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run from the repository root)", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).expect("fixture rows are JSON"))
        .collect()
}

/// One fixture row, read out of its JSON before timing (as the Python side reads dicts).
struct Case {
    response: String,
    ground_truth: Value,
    ids: Vec<String>,
    kwargs: Vec<Value>,
}

impl Case {
    fn new(row: &Value) -> Case {
        Case {
            response: row["response"].as_str().unwrap_or("").to_string(),
            ground_truth: row["ground_truth"].clone(),
            ids: serde_json::from_value(row["instruction_id_list"].clone()).unwrap_or_default(),
            kwargs: serde_json::from_value(row["kwargs"].clone()).unwrap_or_default(),
        }
    }
}

/// Rows per second of `score` over `cases`, repeated until `seconds` have passed, on one core
/// or on all (each thread takes whole passes, at least 10,000 rows at a time, so that the
/// pool's scheduling cost stays out of the measurement).
fn rate(
    cases: &[Case],
    seconds: f64,
    parallel: bool,
    score: &(dyn Fn(&Case) -> f64 + Sync),
) -> f64 {
    let threads = if parallel {
        rayon::current_num_threads().max(1)
    } else {
        1
    };
    let passes_per_task = 10_000usize.div_ceil(cases.len().max(1));
    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        let task = |_| {
            (0..passes_per_task)
                .map(|_| cases.iter().map(score).sum::<f64>())
                .sum::<f64>()
        };
        let total: f64 = if parallel {
            (0..threads).into_par_iter().map(task).sum()
        } else {
            task(0)
        };
        std::hint::black_box(total);
        done += cases.len() * passes_per_task * threads;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// IFEval's strict and loose evaluation of one row, kwargs built as the reference builds them.
fn ifeval_score(case: &Case) -> f64 {
    let instructions =
        Instructions::new(&case.ids, &case.kwargs).expect("fixture kwargs are valid");
    let following = instructions.following(&case.response);
    following.loose.iter().filter(|&&f| f).count() as f64
}

fn python_rates(python: &str, seconds: f64) -> Result<Vec<(String, f64)>, String> {
    let output = Command::new(python)
        .args([
            "examples/anchors/verifiers_bench.py",
            "--seconds",
            &seconds.to_string(),
        ])
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "verifiers_bench.py failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|v| {
            Some((
                v["verifier"].as_str()?.to_string(),
                v["rows_per_s"].as_f64()?,
            ))
        })
        .collect())
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
    };
    let registry = Registry::default();
    let python = match args
        .python
        .as_deref()
        .map(|p| python_rates(p, args.seconds))
    {
        Some(Ok(rates)) => rates,
        Some(Err(message)) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
        None => Vec::new(),
    };
    println!(
        "{:<11} {:>5} {:>16} {:>16} {:>16} {:>9}",
        "verifier", "rows", "temper 1 core/s", "temper all/s", "python/s", "ratio"
    );
    for (name, file) in [
        ("gsm8k", "gsm8k.jsonl"),
        ("math", "math.jsonl"),
        ("ifeval_old", "ifeval_old.jsonl"),
        ("ifeval", "ifeval.jsonl"),
    ] {
        let rows: Vec<Case> = rows(file).iter().map(Case::new).collect();
        let verifier = (name != "ifeval").then(|| registry.get(name).expect("registered"));
        let score = |case: &Case| match verifier {
            Some(verifier) => verifier
                .score(&case.response, &case.ground_truth)
                .unwrap_or(0.0),
            None => ifeval_score(case),
        };
        let one = rate(&rows, args.seconds, false, &score);
        let all = rate(&rows, args.seconds, true, &score);
        let reference = python.iter().find(|(n, _)| n == name).map(|&(_, r)| r);
        let (python_cell, ratio_cell) = match reference {
            Some(r) => (format!("{r:.0}"), format!("{:.0}×", one / r)),
            None => ("-".to_string(), "-".to_string()),
        };
        println!(
            "{name:<11} {:>5} {one:>16.0} {all:>16.0} {python_cell:>16} {ratio_cell:>9}",
            rows.len()
        );
    }
    if python.is_empty() {
        println!("(pass --python PATH to time the Python references too)");
    }
}
