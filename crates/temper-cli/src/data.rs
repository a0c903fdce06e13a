//! `temper data check` and `temper data render`.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;
use temper_data::check::{CheckError, CheckReport, check_file_mapped};
use temper_data::columns::Columns;
use temper_data::dataset_info::DatasetEntry;
use temper_data::tokenize::{TokenizeError, TokenizeOutcome, tokenize};
use temper_data::{
    BuiltinTemplate, ChatTokenizer, DataError, Example, Format, FormatChoice, LossMask,
    RecordError, TokenizeOptions, Tokenized, TruncationSide, dataset,
};

use crate::Outcome;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Validate data files and summarise them (format, counts, errors, token lengths).
    Check(CheckArgs),
    /// Show one record as the model will see it, with the trained spans marked ⟦like this⟧.
    Render(RenderArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    /// JSON Lines, JSON array or Parquet files; each is checked on its own.
    #[arg(required_unless_present = "dataset", conflicts_with = "dataset")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
    /// Hugging Face tokenizer directory: also tokenise, report lengths and truncation.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Count invalid records but exit 0.
    #[arg(long)]
    skip_invalid: bool,
    /// Print one JSON object per file on stdout, nothing else.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RenderArgs {
    #[arg(required_unless_present = "dataset", conflicts_with = "dataset")]
    file: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
    /// Hugging Face tokenizer directory.
    #[arg(long)]
    tokenizer: PathBuf,
    /// 0-based index of the record to show.
    #[arg(long, default_value_t = 0)]
    index: u64,
    /// Print the text, token ids and labels (-100 where untrained) as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CommonArgs {
    /// Dataset format, or auto to pick it from the fields of the first record.
    #[arg(long, value_enum, default_value_t)]
    format: FormatChoice,
    /// Use a built-in chat template instead of the tokenizer's.
    #[arg(long, value_parser = parse_builtin)]
    template: Option<BuiltinTemplate>,
    /// Name of the template when tokenizer_config.json holds several.
    #[arg(long)]
    template_name: Option<String>,
    /// Which field of each record holds a format's field: `field=column` pairs (the trainers'
    /// `columns`).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// Datasets named in `--dataset-dir`'s `dataset_info.json` (LLaMA-Factory's), instead of
    /// files: each read with its entry's format and columns.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["format", "columns"])]
    dataset: Vec<String>,
    /// The directory holding `dataset_info.json`.
    #[arg(long, default_value = "data", requires = "dataset")]
    dataset_dir: PathBuf,
    #[command(flatten)]
    tokenize: TokenizeArgs,
}

/// How examples are tokenised: the trainers' `loss_mask`, `max_length`, `max_prompt_length` and
/// `truncation_mode`, for the commands that tokenise data without training on it.
#[derive(Args)]
pub struct TokenizeArgs {
    /// Which tokens are trained (SFT data); the scored tokens of `temper score`.
    #[arg(long, value_enum, default_value_t)]
    loss_mask: LossMask,
    /// Longest prompt + answer in tokens.
    #[arg(long, value_parser = at_least_one)]
    max_length: Option<usize>,
    /// Longest prompt in tokens (longer prompts keep their end).
    #[arg(long, value_parser = at_least_one)]
    max_prompt_length: Option<usize>,
    /// Which end of an over-long sequence is kept (the trainers' `truncation_mode`).
    #[arg(long, value_enum, default_value_t)]
    truncation: TruncationSide,
}

impl TokenizeArgs {
    pub fn options(&self) -> TokenizeOptions {
        TokenizeOptions {
            loss_mask: self.loss_mask,
            max_length: self.max_length,
            max_prompt_length: self.max_prompt_length,
            truncation: self.truncation,
        }
    }
}

fn parse_builtin(name: &str) -> Result<BuiltinTemplate, String> {
    name.parse()
}

/// A length limit: at least one token, as the trainers require.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl RenderArgs {
    /// The file shown (given, or the one `--dataset` names).
    fn file(&self) -> &Path {
        self.file.as_deref().unwrap_or(Path::new(""))
    }
}

impl CommonArgs {
    /// The column mapping; `None` (after one error line) when `--columns` is not
    /// `field=column` pairs: a usage error.
    fn columns(&self) -> Option<Columns> {
        Columns::parse(&self.columns)
            .map_err(|reason| error_line(format!("--columns: {reason}")))
            .ok()
    }

    /// The files to read with their format and columns: `files` with `--format` and
    /// `--columns`, or `--dataset`'s; `None` (after an error line) when they cannot be told.
    fn inputs(&self, files: &[PathBuf]) -> Option<Vec<(PathBuf, Option<Format>, Columns)>> {
        if self.dataset.is_empty() {
            let columns = self.columns()?;
            let format = self.format.format();
            return Some(
                files
                    .iter()
                    .map(|file| (file.clone(), format, columns.clone()))
                    .collect(),
            );
        }
        match temper_data::dataset_info::resolve(&self.dataset_dir, &self.dataset) {
            Ok(entries) => Some(
                entries
                    .into_iter()
                    .flat_map(DatasetEntry::into_files)
                    .map(|(file, format, columns)| (file, Some(format), columns))
                    .collect(),
            ),
            Err(error) => {
                error_line(error);
                None
            }
        }
    }

    fn load_tokenizer(&self, dir: &Path) -> Result<ChatTokenizer, String> {
        let mut tokenizer = ChatTokenizer::from_dir(dir, self.template_name.as_deref())
            .map_err(|e| e.to_string())?;
        if let Some(builtin) = self.template {
            tokenizer.use_builtin_template(builtin);
        }
        Ok(tokenizer)
    }
}

pub fn run(command: DataCommand) -> Outcome {
    match command {
        DataCommand::Check(args) => check(args),
        DataCommand::Render(args) => render(args),
    }
}

fn error_line(message: impl std::fmt::Display) {
    eprintln!("error: {message}");
}

fn check(args: CheckArgs) -> Outcome {
    let Some(inputs) = args.common.inputs(&args.files) else {
        return Outcome::Failure;
    };
    let tokenizer = match args
        .tokenizer
        .as_deref()
        .map(|dir| args.common.load_tokenizer(dir))
        .transpose()
    {
        Ok(tokenizer) => tokenizer,
        Err(message) => {
            error_line(message);
            return Outcome::Failure;
        }
    };
    let options = args.common.tokenize.options();
    let mut outcome = Outcome::Success;
    for (file, format, columns) in &inputs {
        let failed = |message: String, outcome: Outcome| {
            error_line(&message);
            if args.json {
                let object =
                    json!({"file": file.display().to_string(), "format": null, "error": message});
                crate::out!("{object}");
            }
            outcome
        };
        match check_file_mapped(file, *format, columns, tokenizer.as_ref(), &options) {
            Ok(report) => {
                for error in &report.errors {
                    error_line(error);
                }
                if report.invalid > 0 && !args.skip_invalid {
                    outcome = outcome.max(Outcome::Invalid);
                }
                if report.records == 0 {
                    error_line(format!("{}: no records", report.file));
                    outcome = outcome.max(Outcome::Invalid);
                }
                if args.json {
                    crate::out!("{}", serde_json::to_string(&report).unwrap_or_default());
                } else {
                    print_report(&report, args.skip_invalid);
                }
            }
            Err(CheckError::Data(DataError::Detection { message, .. })) => {
                outcome = outcome.max(failed(message, Outcome::Invalid));
            }
            Err(error) => {
                outcome = outcome.max(failed(error.to_string(), Outcome::Failure));
            }
        }
    }
    outcome
}

fn print_report(report: &CheckReport, skip_invalid: bool) {
    let mut out = std::io::stdout().lock();
    let format = match (&report.format, report.detected) {
        (Some(format), true) => format!("{format} (auto-detected from the first record's fields)"),
        (Some(format), false) => format.clone(),
        (None, _) => "unknown (no readable record)".to_string(),
    };
    let _ = writeln!(out, "{}", report.file);
    let _ = writeln!(out, "  format      {format}");
    if let Some(kind) = report.kind {
        let _ = writeln!(out, "  kind        {}", kind.as_str());
    }
    let _ = writeln!(out, "  records     {}", report.records);
    let _ = writeln!(out, "  examples    {}", report.examples);
    let skipped = if skip_invalid && report.invalid > 0 {
        " (skipped)"
    } else {
        ""
    };
    let _ = writeln!(out, "  invalid     {}{skipped}", report.invalid);
    for error in report.errors.iter().take(5) {
        let _ = writeln!(out, "    {error}");
    }
    if report.errors.len() > 5 {
        let _ = writeln!(
            out,
            "    ... and {} more (all are on stderr)",
            report.errors.len() - 5
        );
    }
    let Some(tokens) = &report.tokens else {
        return;
    };
    for (name, summary) in [
        ("prompt", &tokens.prompt),
        ("completion", &tokens.completion),
        ("sequence", &tokens.sequence),
    ] {
        if let Some(s) = summary {
            let _ = writeln!(
                out,
                "  {name:<11} tokens: min {} · mean {:.1} · p50 {} · p95 {} · max {} (n={})",
                s.min, s.mean, s.p50, s.p95, s.max, s.count
            );
        }
    }
    let _ = writeln!(out, "  trained     {} tokens", tokens.trained_tokens);
    let _ = writeln!(
        out,
        "  truncated   {} prompts, {} sequences",
        tokens.truncated_prompts, tokens.truncated_sequences
    );
    if tokens.merged_prompts > 0 {
        let _ = writeln!(
            out,
            "  merged      {} prompts whose last tokens merge with the answer's (the answer starts where the ids diverge, as TRL)",
            tokens.merged_prompts
        );
    }
}

/// One tokenised sequence of a rendered record.
struct Shown {
    name: &'static str,
    ids: Vec<u32>,
    trained: Vec<bool>,
}

fn shown_sequences(tokenized: &Tokenized) -> Vec<Shown> {
    match tokenized {
        Tokenized::Sequence(s) => vec![Shown {
            name: "sequence",
            ids: s.input_ids.clone(),
            trained: s.loss_mask.clone(),
        }],
        Tokenized::Pair(p) => [("chosen", &p.chosen_ids), ("rejected", &p.rejected_ids)]
            .into_iter()
            .map(|(name, answer)| Shown {
                name,
                ids: p.prompt_ids.iter().chain(answer).copied().collect(),
                trained: (0..p.prompt_ids.len() + answer.len())
                    .map(|i| i >= p.prompt_ids.len())
                    .collect(),
            })
            .collect(),
        Tokenized::Unpaired(u) => vec![Shown {
            name: if u.desirable {
                "desirable"
            } else {
                "undesirable"
            },
            ids: u
                .prompt_ids
                .iter()
                .chain(&u.completion_ids)
                .copied()
                .collect(),
            trained: (0..u.prompt_ids.len() + u.completion_ids.len())
                .map(|i| i >= u.prompt_ids.len())
                .collect(),
        }],
        Tokenized::Prompt(p) => vec![Shown {
            name: "prompt",
            ids: p.prompt_ids.clone(),
            trained: vec![false; p.prompt_ids.len()],
        }],
    }
}

fn render(mut args: RenderArgs) -> Outcome {
    let given: Vec<PathBuf> = args.file.iter().cloned().collect();
    let Some(mut inputs) = args.common.inputs(&given) else {
        return Outcome::Failure;
    };
    if inputs.len() != 1 {
        error_line(format!(
            "--dataset: render shows one file's record; these datasets hold {} files",
            inputs.len()
        ));
        return Outcome::Failure;
    }
    let (file, format, columns) = inputs.remove(0);
    args.file = Some(file);
    let tokenizer = match args.common.load_tokenizer(&args.tokenizer) {
        Ok(tokenizer) => tokenizer,
        Err(message) => {
            error_line(message);
            return Outcome::Failure;
        }
    };
    let found = match find_record(args.file(), format, &columns, args.index) {
        Ok(found) => found,
        Err(error @ DataError::Detection { .. }) => {
            error_line(error);
            return Outcome::Invalid;
        }
        Err(error) => {
            error_line(error);
            return Outcome::Failure;
        }
    };
    let (format, examples) = match found {
        Found::Record {
            format,
            examples: Ok(examples),
        } => (format, examples),
        Found::Record {
            examples: Err(error),
            ..
        } => {
            error_line(error);
            return Outcome::Invalid;
        }
        Found::Missing { records } => {
            error_line(format!(
                "{}: no record {} (the file has {records})",
                args.file().display(),
                args.index
            ));
            return Outcome::Failure;
        }
    };
    let options = args.common.tokenize.options();
    let mut rendered = Vec::new();
    for example in &examples {
        match tokenize(&tokenizer, example, &options) {
            Ok(TokenizeOutcome { tokenized, .. }) => rendered.push(shown_sequences(&tokenized)),
            Err(TokenizeError::Record(error)) => {
                error_line(format!(
                    "{}: record {}: {error}",
                    args.file().display(),
                    args.index
                ));
                return Outcome::Invalid;
            }
            Err(TokenizeError::Setup(error)) => {
                error_line(format!("{}: {error}", args.tokenizer.display()));
                return Outcome::Failure;
            }
        }
    }
    if args.json {
        print_render_json(&args, &tokenizer, &rendered, format)
    } else {
        print_render_text(&tokenizer, &rendered)
    }
}

enum Found {
    Record {
        format: Option<Format>,
        examples: Result<Vec<Example>, RecordError>,
    },
    Missing {
        records: u64,
    },
}

/// Reads `path` up to record `index` (streamed: the rest of the file is not read).
fn find_record(
    path: &Path,
    format: Option<Format>,
    columns: &Columns,
    index: u64,
) -> Result<Found, DataError> {
    let mut found = None;
    let mut records = 0;
    let resolved = dataset::read_parsed_chunks(
        path,
        format,
        columns,
        dataset::CHUNK_RECORDS,
        &mut |chunk| {
            for parsed in chunk {
                records += 1;
                if parsed.location.record == index {
                    found = Some(parsed.examples);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        },
    )?;
    Ok(match found {
        Some(examples) => Found::Record {
            format: resolved.map(|r| r.format),
            examples,
        },
        None => Found::Missing { records },
    })
}

fn decode(tokenizer: &ChatTokenizer, ids: &[u32]) -> Result<String, Outcome> {
    tokenizer.decode(ids, false).map_err(|e| {
        error_line(e);
        Outcome::Failure
    })
}

fn print_render_text(tokenizer: &ChatTokenizer, rendered: &[Vec<Shown>]) -> Outcome {
    let mut out = std::io::stdout().lock();
    for (i, sequences) in rendered.iter().enumerate() {
        for shown in sequences {
            let trained = shown.trained.iter().filter(|&&t| t).count();
            let pair_label = if rendered.len() > 1 {
                format!(" of pair {i}")
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "── {}{pair_label}: {} tokens, {trained} trained ──",
                shown.name,
                shown.ids.len()
            );
            let mut text = String::new();
            let mut start = 0;
            while start < shown.ids.len() {
                let is_trained = shown.trained[start];
                let end = (start..shown.ids.len())
                    .find(|&j| shown.trained[j] != is_trained)
                    .unwrap_or(shown.ids.len());
                let span = match decode(tokenizer, &shown.ids[start..end]) {
                    Ok(span) => span,
                    Err(outcome) => return outcome,
                };
                if is_trained {
                    text.push('⟦');
                    text.push_str(&span);
                    text.push('⟧');
                } else {
                    text.push_str(&span);
                }
                start = end;
            }
            let _ = writeln!(out, "{text}");
        }
    }
    Outcome::Success
}

fn print_render_json(
    args: &RenderArgs,
    tokenizer: &ChatTokenizer,
    rendered: &[Vec<Shown>],
    format: Option<Format>,
) -> Outcome {
    let mut examples = Vec::new();
    for sequences in rendered {
        let mut shown_json = Vec::new();
        for shown in sequences {
            let text = match decode(tokenizer, &shown.ids) {
                Ok(text) => text,
                Err(outcome) => return outcome,
            };
            let labels: Vec<i64> = shown
                .ids
                .iter()
                .zip(&shown.trained)
                .map(|(&id, &trained)| if trained { i64::from(id) } else { -100 })
                .collect();
            shown_json.push(
                json!({"name": shown.name, "text": text, "input_ids": shown.ids, "labels": labels}),
            );
        }
        examples.push(json!({"sequences": shown_json}));
    }
    let object = json!({
        "file": args.file().display().to_string(),
        "record": args.index,
        "format": format.map(Format::name),
        "kind": format.map(|f| f.kind().as_str()),
        "examples": examples,
    });
    crate::out!("{object}");
    Outcome::Success
}
