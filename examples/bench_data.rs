//! DPO preprocessing speed, Temper against TRL, on the same pairs, tokenizer and machine.
//!
//! ```sh
//! cargo run --release --example bench_data -- --python /path/to/venv/bin/python
//! ```
//!
//! Generates synthetic conversational pairs (`temper_data::synthetic`), writes them to a JSONL
//! file, and times the chat template + tokenisation + masks over them: Temper on all cores and
//! on one, and TRL's own DPO preprocessing (`examples/anchors/trl_dpo_preprocess.py`, needs
//! the packages in `examples/anchors/requirements.txt`) in-process (TRL's default) and with one
//! worker process per core. Prints one
//! table with both rates and their ratio, and the token totals as a check that both did the
//! same work.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

/// The allocator the `temper` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use temper::data::tokenize::{Tokenized, tokenize_all};
use temper::data::{ChatTokenizer, Example, Format, TokenizeOptions, synthetic};

struct Args {
    pairs: usize,
    repeats: usize,
    tokenizer: PathBuf,
    python: Option<String>,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        pairs: 10_000,
        repeats: 3,
        tokenizer: PathBuf::from("fixtures/tokenizer"),
        python: None,
        out: std::env::temp_dir().join("temper_bench_pairs.jsonl"),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--pairs" => args.pairs = value()?.parse().map_err(|e| format!("--pairs: {e}"))?,
            "--repeats" => {
                args.repeats = value()?.parse().map_err(|e| format!("--repeats: {e}"))?
            }
            "--tokenizer" => args.tokenizer = PathBuf::from(value()?),
            "--python" => args.python = Some(value()?),
            "--out" => args.out = PathBuf::from(value()?),
            other => {
                return Err(format!(
                    "unknown argument {other} (expected --pairs, --repeats, --tokenizer, --python, --out)"
                ));
            }
        }
    }
    Ok(args)
}

struct Row {
    name: String,
    workers: usize,
    seconds: f64,
    tokens: Option<u64>,
}

fn total_tokens(outcomes: &[Tokenized]) -> u64 {
    outcomes
        .iter()
        .map(|t| match t {
            Tokenized::Pair(p) => {
                (p.prompt_ids.len() + p.chosen_ids.len() + p.rejected_ids.len()) as u64
            }
            _ => 0,
        })
        .sum()
}

/// Median seconds of `repeats` runs of template + tokenise + mask, and the token total.
fn time_temper(tokenizer: &ChatTokenizer, examples: &[Example], repeats: usize) -> (f64, u64) {
    let options = TokenizeOptions::default();
    let mut times = Vec::new();
    let mut tokens = 0;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let outcomes = tokenize_all(tokenizer, examples, &options);
        times.push(start.elapsed().as_secs_f64());
        let tokenized: Vec<Tokenized> = outcomes
            .into_iter()
            .map(|o| o.expect("synthetic pairs tokenise").tokenized)
            .collect();
        tokens = total_tokens(&tokenized);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], tokens)
}

fn run_trl(
    python: &str,
    data: &Path,
    tokenizer: &Path,
    num_proc: usize,
    repeats: usize,
) -> Result<Row, String> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/anchors/trl_dpo_preprocess.py");
    let output = Command::new(python)
        .arg(&script)
        .args(["--data", &data.display().to_string()])
        .args(["--tokenizer", &tokenizer.display().to_string()])
        .args([
            "--num-proc",
            &num_proc.to_string(),
            "--repeats",
            &repeats.to_string(),
        ])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "TRL script failed: {}",
            stderr.lines().last().unwrap_or("")
        ));
    }
    let result: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("TRL script printed no JSON: {e}"))?;
    Ok(Row {
        name: format!(
            "TRL {} {}",
            result["trl_version"].as_str().unwrap_or("?"),
            if num_proc == 0 {
                "(in-process)"
            } else {
                "(worker processes)"
            }
        ),
        workers: num_proc.max(1),
        seconds: result["seconds"]
            .as_f64()
            .ok_or("no seconds in TRL output")?,
        tokens: result["total_tokens"].as_u64(),
    })
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
    };
    let records = synthetic::preference_records(args.pairs, 0);
    let jsonl: String = records.iter().map(|r| format!("{r}\n")).collect();
    if let Err(e) = std::fs::write(&args.out, jsonl) {
        eprintln!("error: {}: {e}", args.out.display());
        std::process::exit(2);
    }
    let examples: Vec<Example> = records
        .iter()
        .flat_map(|r| {
            Format::TrlPreference
                .parse(r)
                .expect("synthetic pairs are valid")
        })
        .collect();
    let tokenizer = match ChatTokenizer::from_dir(&args.tokenizer, None) {
        Ok(tokenizer) => tokenizer,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let cores = rayon::current_num_threads();
    let mut rows = Vec::new();
    let (seconds, tokens) = time_temper(&tokenizer, &examples, args.repeats);
    rows.push(Row {
        name: "temper (rayon)".into(),
        workers: cores,
        seconds,
        tokens: Some(tokens),
    });
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a thread pool");
    let (seconds, tokens) = one.install(|| time_temper(&tokenizer, &examples, args.repeats));
    rows.push(Row {
        name: "temper".into(),
        workers: 1,
        seconds,
        tokens: Some(tokens),
    });
    if let Some(python) = &args.python {
        // 0: `map` in the calling process, TRL's default (`dataset_num_proc=None`).
        for num_proc in [0, cores] {
            match run_trl(python, &args.out, &args.tokenizer, num_proc, args.repeats) {
                Ok(row) => rows.push(row),
                Err(message) => {
                    eprintln!("TRL with {num_proc} process(es) not measured: {message}")
                }
            }
        }
    }
    let trl_one = rows
        .iter()
        .find(|r| r.name.starts_with("TRL") && r.workers == 1)
        .map(|r| r.seconds);
    println!(
        "DPO preprocessing (chat template + tokenise + masks), {} conversational pairs, {} cores",
        args.pairs, cores
    );
    println!(
        "| implementation | workers | seconds (median of {}) | pairs/s | tokens | speed-up vs TRL, 1 process |",
        args.repeats
    );
    println!("|---|---|---|---|---|---|");
    for row in &rows {
        let ratio = trl_one.map_or("n/a".to_string(), |trl| {
            format!("{:.1}×", trl / row.seconds)
        });
        let tokens = row.tokens.map_or("?".to_string(), |t| t.to_string());
        println!(
            "| {} | {} | {:.3} | {:.0} | {} | {} |",
            row.name,
            row.workers,
            row.seconds,
            args.pairs as f64 / row.seconds,
            tokens,
            ratio
        );
    }
}
