//! `temper score`, `temper generate` and `temper chat`: load a Hugging Face model directory,
//! tokenise with temper-data, run temper-model, print.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use temper_data::tokenize::tokenize;
use temper_data::{
    ChatTokenizer, Example, FormatChoice, Message, RlvrPrompt, TokenizeOptions, Tokenized, Turns,
    dataset,
};
use temper_kernels::KernelBackend;
use temper_model::{
    CausalLm, Decoding, GenerationConfig, ModelConfig, ScoredSequence, generate_streaming,
    load_model, score_sequences,
};

use crate::Outcome;
use crate::backend::{BackendArgs, with_backend};
use crate::data::TokenizeArgs;

#[derive(Args)]
pub struct ScoreArgs {
    /// Hugging Face model directory (config.json, safetensors, tokenizer files).
    #[arg(long)]
    model: PathBuf,
    /// Dataset file (SFT or preference data).
    #[arg(long)]
    data: PathBuf,
    /// Dataset format, or auto to pick it from the fields of the first record.
    #[arg(long, value_enum, default_value_t)]
    format: FormatChoice,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Print one JSON object per example on stdout, nothing else.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tokenize: TokenizeArgs,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub struct GenerateArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    /// Apply the chat template to the prompt as one user message, with the generation prompt.
    #[arg(long)]
    chat: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Stop when the generated text contains this string (kept in the output); repeatable.
    #[arg(long)]
    stop: Vec<String>,
    /// Print `{"prompt_tokens", "tokens", "text"}` on stdout, nothing else.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub struct ChatArgs {
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    backend: BackendArgs,
}

/// How tokens are chosen, shared by `generate`, `chat` and `eval`.
#[derive(Args)]
pub struct SamplingArgs {
    /// Most tokens generated per completion.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// 0 is greedy; above 0, tokens are sampled from the softmax of logits / temperature.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Sampling: only among the most likely tokens whose probabilities add up to this.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Sampling: only among the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// CTRL's penalty on tokens already in the sequence (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f64,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The settings transformers would refuse, as an error naming the flag.
    pub fn check(&self) -> Result<(), String> {
        // 0 asks for greedy decoding; a negative or NaN temperature is an error.
        let temperature = (self.temperature != 0.0).then_some(self.temperature);
        temper_model::check_sampling(temperature, self.top_p, Some(self.repetition_penalty))
            .map_err(|e| format!("--{}: {}", e.key.replace('_', "-"), e.reason))
    }

    /// Greedy at temperature 0, else sampling with these settings.
    pub fn decoding(&self) -> Decoding {
        if self.temperature > 0.0 {
            Decoding::Sample {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
            }
        } else {
            Decoding::Greedy
        }
    }

    /// These settings on top of the model directory's stops and padding.
    fn settings(&self, dir: &Path, config: &ModelConfig) -> GenerationConfig {
        GenerationConfig {
            decoding: self.decoding(),
            seed: self.seed,
            max_new_tokens: self.max_new_tokens,
            repetition_penalty: self.repetition_penalty,
            ..GenerationConfig::for_model_dir(dir, config)
        }
    }
}

/// `settings` with at most as many new tokens as the model has positions left after the
/// prompt: generation stops there rather than run on where the model has no positions.
fn within_positions(
    mut settings: GenerationConfig,
    config: &ModelConfig,
    prompt_tokens: usize,
) -> GenerationConfig {
    let left = config.max_position_embeddings.saturating_sub(prompt_tokens);
    settings.max_new_tokens = settings.max_new_tokens.min(left);
    settings
}

fn fail(message: impl std::fmt::Display) -> Outcome {
    eprintln!("error: {message}");
    Outcome::Failure
}

/// The model, its config and its tokenizer, from one directory.
pub fn open<B: KernelBackend>(
    dir: &Path,
) -> Result<(ModelConfig, CausalLm<B>, ChatTokenizer), String> {
    let (config, model) = load_model::<B>(dir, &Default::default()).map_err(|e| e.to_string())?;
    let tokenizer =
        ChatTokenizer::from_dir(dir, None).map_err(|e| format!("{}: {e}", dir.display()))?;
    tokenizer
        .check_fits(config.vocab_size)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok((config, model, tokenizer))
}

pub fn score(args: ScoreArgs) -> Outcome {
    with_backend!(args.backend, B => score_on::<B>(args))
}

fn score_on<B: KernelBackend>(args: ScoreArgs) -> Outcome {
    if args.batch_size == 0 {
        return fail("--batch-size: must be at least 1");
    }
    let format = args.format.format();
    let (config, model, tokenizer) = match open::<B>(&args.model) {
        Ok(opened) => opened,
        Err(message) => return fail(message),
    };
    let data = match dataset::load(&args.data, format, false) {
        Ok(data) => data,
        Err(error) => {
            eprintln!("{error}");
            return Outcome::Invalid;
        }
    };
    if data.examples.is_empty() {
        eprintln!("error: {}: no records to score", args.data.display());
        return Outcome::Invalid;
    }
    // Each example becomes one or two scored sequences: the tokens trained on are scored.
    let mut sequences = Vec::new();
    let mut shapes = Vec::new();
    let options = args.tokenize.options();
    for (index, example) in data.examples.iter().enumerate() {
        let first = sequences.len();
        // Named as the trainers name it: the file and the record the example came from.
        let record = data
            .record_of_example
            .get(index)
            .copied()
            .unwrap_or_default();
        let what = format!("{}: record {record}", args.data.display());
        match tokenize(&tokenizer, &example, &options).map(|o| o.tokenized) {
            Ok(Tokenized::Sequence(sequence)) => {
                sequences.push(ScoredSequence {
                    ids: sequence.input_ids,
                    scored: sequence.loss_mask,
                });
                shapes.push(false);
            }
            Ok(Tokenized::Pair(pair)) => {
                for completion in [&pair.chosen_ids, &pair.rejected_ids] {
                    sequences.push(ScoredSequence::completion(&pair.prompt_ids, completion));
                }
                shapes.push(true);
            }
            Ok(Tokenized::Unpaired(unpaired)) => {
                sequences.push(ScoredSequence::completion(
                    &unpaired.prompt_ids,
                    &unpaired.completion_ids,
                ));
                shapes.push(false);
            }
            Ok(Tokenized::Prompt(_)) => {
                return fail(format!(
                    "{}: prompt-only data has nothing to score",
                    args.data.display()
                ));
            }
            Err(error) => {
                eprintln!("error: {what}: {error}");
                return Outcome::Invalid;
            }
        }
        let longest = sequences[first..].iter().map(|s| s.ids.len()).max();
        let longest = longest.unwrap_or(0);
        if let Err(error) = config.check_positions(what, longest) {
            eprintln!("error: {error}");
            return Outcome::Invalid;
        }
    }
    let scores = score_sequences(&model, &sequences, args.batch_size, &Default::default());
    let mut next = scores.into_iter();
    let mut stdout = std::io::stdout().lock();
    for (index, is_pair) in shapes.into_iter().enumerate() {
        let line = if is_pair {
            let (chosen, rejected) = (
                next.next().unwrap_or_default(),
                next.next().unwrap_or_default(),
            );
            if args.json {
                json!({"index": index, "chosen_logp": chosen.0, "chosen_tokens": chosen.1,
                       "rejected_logp": rejected.0, "rejected_tokens": rejected.1})
                .to_string()
            } else {
                format!(
                    "{index}\tchosen {:.4} ({} tokens)\trejected {:.4} ({} tokens)",
                    chosen.0, chosen.1, rejected.0, rejected.1
                )
            }
        } else {
            let (logp, tokens) = next.next().unwrap_or_default();
            if args.json {
                json!({"index": index, "logp": logp, "tokens": tokens}).to_string()
            } else {
                format!("{index}\t{logp:.4} ({tokens} tokens)")
            }
        };
        if writeln!(stdout, "{line}").is_err() {
            return Outcome::Failure;
        }
    }
    Outcome::Success
}

/// Prompt ids: the chat template over the messages with the generation prompt, or the text
/// with the tokenizer's special tokens (as `tokenizer(text)` in transformers).
fn prompt_ids(
    tokenizer: &ChatTokenizer,
    chat: Option<Vec<Message>>,
    text: &str,
) -> Result<Vec<u32>, String> {
    match chat {
        Some(messages) => {
            let example = Example::Rlvr(RlvrPrompt {
                prompt: Turns::Messages(messages),
                ground_truth: None,
                datasets: Vec::new(),
                extra: Default::default(),
            });
            match tokenize(tokenizer, &example, &TokenizeOptions::default())
                .map_err(|e| e.to_string())?
                .tokenized
            {
                Tokenized::Prompt(prompt) => Ok(prompt.prompt_ids),
                _ => Err("a chat prompt tokenises to a prompt".into()),
            }
        }
        None => tokenizer.encode(text, true).map_err(|e| e.to_string()),
    }
}

pub fn generate_text(args: GenerateArgs) -> Outcome {
    with_backend!(args.backend, B => generate_text_on::<B>(args))
}

fn generate_text_on<B: KernelBackend>(args: GenerateArgs) -> Outcome {
    if let Err(message) = args.sampling.check() {
        eprintln!("error: {message}");
        return Outcome::Invalid;
    }
    let (config, model, tokenizer) = match open::<B>(&args.model) {
        Ok(opened) => opened,
        Err(message) => return fail(message),
    };
    let chat = args.chat.then(|| vec![Message::user(args.prompt.clone())]);
    let prompt = match prompt_ids(&tokenizer, chat, &args.prompt) {
        Ok(ids) => ids,
        Err(message) => return fail(message),
    };
    if let Err(error) = config.check_positions("the prompt", prompt.len()) {
        eprintln!("error: {error}");
        return Outcome::Invalid;
    }
    let settings = args.sampling.settings(&args.model, &config);
    let settings = within_positions(settings, &config, prompt.len());
    // Stop strings are checked on the decoded text after every token.
    let mut so_far: Vec<u32> = Vec::new();
    let output = generate_streaming(
        &model,
        std::slice::from_ref(&prompt),
        &settings,
        &Default::default(),
        |_, token| {
            so_far.push(token);
            args.stop.is_empty()
                || !tokenizer
                    .decode(&so_far, true)
                    .is_ok_and(|text| args.stop.iter().any(|stop| text.contains(stop.as_str())))
        },
    );
    let tokens = &output.tokens[0];
    let text = match tokenizer.decode(tokens, true) {
        Ok(text) => text,
        Err(error) => return fail(error),
    };
    if args.json {
        crate::out!(
            "{}",
            json!({"prompt_tokens": prompt.len(), "tokens": tokens, "text": text})
        );
    } else {
        crate::out!("{text}");
    }
    Outcome::Success
}

pub fn chat(args: ChatArgs) -> Outcome {
    with_backend!(args.backend, B => chat_on::<B>(args))
}

fn chat_on<B: KernelBackend>(args: ChatArgs) -> Outcome {
    if let Err(message) = args.sampling.check() {
        eprintln!("error: {message}");
        return Outcome::Invalid;
    }
    let (config, model, tokenizer) = match open::<B>(&args.model) {
        Ok(opened) => opened,
        Err(message) => return fail(message),
    };
    let settings = args.sampling.settings(&args.model, &config);
    let mut messages: Vec<Message> = Vec::new();
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    eprintln!(
        "temper chat: {} ({}); an empty line or end of input quits.",
        args.model.display(),
        config.family.model_type()
    );
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            return Outcome::Success;
        }
        messages.push(Message::user(line.trim_end().to_string()));
        let prompt = match prompt_ids(&tokenizer, Some(messages.clone()), "") {
            Ok(ids) => ids,
            Err(message) => return fail(message),
        };
        if let Err(error) = config.check_positions("the conversation", prompt.len()) {
            eprintln!("error: {error}");
            return Outcome::Invalid;
        }
        let settings = within_positions(settings.clone(), &config, prompt.len());
        // Stream: print the decoded text as it grows (decoding the whole reply each time keeps
        // multi-token characters intact).
        let mut reply: Vec<u32> = Vec::new();
        let mut printed = 0;
        let output = generate_streaming(
            &model,
            &[prompt],
            &settings,
            &Default::default(),
            |_, token| {
                reply.push(token);
                // A byte-level token may end inside a character: wait until it is complete.
                if let Ok(text) = tokenizer.decode(&reply, true)
                    && text.len() > printed
                    && text.is_char_boundary(printed)
                    && !text.ends_with('\u{FFFD}')
                {
                    let _ = write!(stdout, "{}", &text[printed..]);
                    let _ = stdout.flush();
                    printed = text.len();
                }
                true
            },
        );
        let _ = writeln!(stdout);
        let text = tokenizer
            .decode(&output.tokens[0], true)
            .unwrap_or_default();
        messages.push(Message::assistant(text));
    }
}
