//! Token ids with loss masks, following TRL.
//!
//! - Conversational data: prompt ids = template(prompt, add_generation_prompt=true); the ids of
//!   prompt + answer = template(prompt + answer); the answer's ids are what follows the prompt
//!   ids, after checking that the prompt ids are a prefix (a record that fails is invalid).
//! - Plain strings: prompt ids with the tokenizer's special tokens (e.g. bos); the completion is
//!   what `prompt + completion` adds after them, followed by eos.
//!
//! Multi-turn conversations get one span per assistant turn, found the same way for each turn,
//! and the [`LossMask`] strategy says which spans are trained. A turn that the template renders
//! differently once later turns follow (Qwen3's `<think>` blocks) is located in the rendering
//! of the whole conversation instead (see `Rendering`).

use std::ops::Range;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::FieldError;
use crate::pieces::PieceMemo;
use crate::tokenizer::{ByteRange, ChatTokenizer, TokenizerError};
use crate::types::{
    AsExample, ExampleRef, Message, MixedKinds, Preference, Role, SftExample, Turns, Unpaired,
};

/// Which tokens of an SFT example are trained. Preference completions are always the answers.
/// Named in kebab-case (`all-assistant`); the snake-case spelling of config files is taken too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum LossMask {
    /// The completion: for prompt-completion data the completion, for whole conversations
    /// every assistant turn (TRL's `completion_only_loss`, LLaMA-Factory's default).
    #[default]
    Completion,
    /// Every token, prompt included (TRL `completion_only_loss=False`, LLaMA-Factory
    /// `train_on_prompt`).
    Prompt,
    /// Every assistant turn, also those inside a prompt (TRL `assistant_only_loss`).
    #[serde(alias = "all_assistant")]
    #[cfg_attr(feature = "clap", value(alias = "all_assistant"))]
    AllAssistant,
    /// Only the final assistant turn (LLaMA-Factory `mask_history`).
    #[serde(alias = "last_turn")]
    #[cfg_attr(feature = "clap", value(alias = "last_turn"))]
    LastTurn,
}

/// Which end of an over-long sequence survives `max_length`. Named as TRL's
/// `truncation_mode` (`keep_start`); the kebab-case spelling of flags is taken too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "clap", value(rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum TruncationSide {
    /// Cut the end (TRL's default).
    #[default]
    #[serde(alias = "keep-start")]
    #[cfg_attr(feature = "clap", value(alias = "keep-start"))]
    KeepStart,
    /// Cut the beginning.
    #[serde(alias = "keep-end")]
    #[cfg_attr(feature = "clap", value(alias = "keep-end"))]
    KeepEnd,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct TokenizeOptions {
    pub loss_mask: LossMask,
    /// Longest prompt + completion, in tokens.
    pub max_length: Option<usize>,
    /// Longest prompt; longer prompts keep their end (next to the answer), as TRL does.
    pub max_prompt_length: Option<usize>,
    pub truncation: TruncationSide,
}

/// An SFT example as ids: `loss_mask[i]` says whether token `i` is trained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenizedSequence {
    pub input_ids: Vec<u32>,
    pub loss_mask: Vec<bool>,
    /// Tokens of the prompt of a prompt-completion example (0 for whole conversations).
    pub prompt_len: usize,
}

impl TokenizedSequence {
    pub fn trained_tokens(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m).count()
    }
}

/// A preference pair as ids; chosen and rejected are the completions after the shared prompt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenizedPair {
    pub prompt_ids: Vec<u32>,
    pub chosen_ids: Vec<u32>,
    pub rejected_ids: Vec<u32>,
}

/// One unpaired completion as ids (KTO), judged desirable or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenizedUnpaired {
    pub prompt_ids: Vec<u32>,
    pub completion_ids: Vec<u32>,
    /// The mismatched completion KTO's KL estimate scores after this prompt (another
    /// example's; see [`TokenizedSet::pair_kl_completions`]); empty until paired.
    pub kl_completion_ids: Vec<u32>,
    pub desirable: bool,
}

impl TokenizedUnpaired {
    /// As the rows a batch holds: the completion in `chosen`, the KL completion in `rejected`.
    pub fn as_pair(&self) -> TokenizedPair {
        TokenizedPair {
            prompt_ids: self.prompt_ids.clone(),
            chosen_ids: self.completion_ids.clone(),
            rejected_ids: self.kl_completion_ids.clone(),
        }
    }
}

/// An RLVR prompt as ids, ready for generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenizedPrompt {
    pub prompt_ids: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Tokenized {
    Sequence(TokenizedSequence),
    Pair(TokenizedPair),
    Unpaired(TokenizedUnpaired),
    Prompt(TokenizedPrompt),
}

/// A dataset's examples tokenised, all of one kind: what a trainer takes is in the type, so
/// none meets an example of another kind at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizedSet {
    Sequences(Vec<TokenizedSequence>),
    Pairs(Vec<TokenizedPair>),
    Unpaired(Vec<TokenizedUnpaired>),
    Prompts(Vec<TokenizedPrompt>),
}

impl TokenizedSet {
    /// The examples as one set (an empty list is an empty set of sequences).
    pub fn new(examples: Vec<Tokenized>) -> Result<Self, MixedKinds> {
        let mut set = match examples.first() {
            Some(Tokenized::Pair(_)) => TokenizedSet::Pairs(Vec::new()),
            Some(Tokenized::Unpaired(_)) => TokenizedSet::Unpaired(Vec::new()),
            Some(Tokenized::Prompt(_)) => TokenizedSet::Prompts(Vec::new()),
            Some(Tokenized::Sequence(_)) | None => TokenizedSet::Sequences(Vec::new()),
        };
        for (index, example) in examples.into_iter().enumerate() {
            match (&mut set, example) {
                (TokenizedSet::Sequences(all), Tokenized::Sequence(one)) => all.push(one),
                (TokenizedSet::Pairs(all), Tokenized::Pair(one)) => all.push(one),
                (TokenizedSet::Unpaired(all), Tokenized::Unpaired(one)) => all.push(one),
                (TokenizedSet::Prompts(all), Tokenized::Prompt(one)) => all.push(one),
                _ => return Err(MixedKinds { index }),
            }
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        match self {
            TokenizedSet::Sequences(all) => all.len(),
            TokenizedSet::Pairs(all) => all.len(),
            TokenizedSet::Unpaired(all) => all.len(),
            TokenizedSet::Prompts(all) => all.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives each unpaired example the completion KTO's KL estimate pairs with its prompt, as
    /// TRL 1.16's `KTOTrainer` does: in the dataset's order, within each run of `batch_size`
    /// examples (the batches KTO's sequential sampling makes), example `i` takes example
    /// `i - 1`'s completion and the first takes the last's. Each KL sequence is then cut to
    /// `max_length` tokens, as TRL's collator cuts it. Other kinds are left as they are.
    pub fn pair_kl_completions(&mut self, batch_size: usize, max_length: Option<usize>) {
        let TokenizedSet::Unpaired(all) = self else {
            return;
        };
        for chunk in all.chunks_mut(batch_size.max(1)) {
            let completions: Vec<Vec<u32>> =
                chunk.iter().map(|u| u.completion_ids.clone()).collect();
            let n = chunk.len();
            for (i, example) in chunk.iter_mut().enumerate() {
                let mut kl = completions[(i + n - 1) % n].clone();
                if let Some(limit) = max_length {
                    kl.truncate(limit.saturating_sub(example.prompt_ids.len()));
                }
                example.kl_completion_ids = kl;
            }
        }
    }

    /// The rows a preference batch holds, per example: pairs as they are, unpaired examples
    /// as (prompt, completion, KL completion). `None` for sequences and prompts.
    pub fn as_pairs(&self) -> Option<Vec<TokenizedPair>> {
        match self {
            TokenizedSet::Pairs(pairs) => Some(pairs.clone()),
            TokenizedSet::Unpaired(all) => {
                Some(all.iter().map(TokenizedUnpaired::as_pair).collect())
            }
            TokenizedSet::Sequences(_) | TokenizedSet::Prompts(_) => None,
        }
    }
}

impl Tokenized {
    /// Why this example would train on nothing (truncation left no completion), if it would:
    /// `temper data check` and the trainers refuse the same examples.
    pub fn nothing_to_train(&self) -> Option<&'static str> {
        match self {
            Tokenized::Sequence(sequence) if sequence.trained_tokens() == 0 => {
                Some("no trained tokens are left (after truncation to max_length?)")
            }
            Tokenized::Pair(pair) if pair.chosen_ids.is_empty() || pair.rejected_ids.is_empty() => {
                Some("a completion is empty (after truncation to max_length?)")
            }
            Tokenized::Unpaired(unpaired) if unpaired.completion_ids.is_empty() => {
                Some("the completion is empty (after truncation to max_length?)")
            }
            Tokenized::Prompt(prompt) if prompt.prompt_ids.is_empty() => {
                Some("the prompt is empty")
            }
            _ => None,
        }
    }
}

/// What truncation cut from one example.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Truncation {
    pub prompt: bool,
    pub sequence: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizeOutcome {
    pub tokenized: Tokenized,
    pub truncation: Truncation,
    /// The prompt's ids were not a prefix of the ids of prompt + answer (tokens merged across
    /// the boundary, or the template renders the prompt alone differently): as TRL 1.16, the
    /// answer starts where the two diverge, and the prompt's diverging tail is not part of the
    /// example. TRL warns once; `temper data check` counts these records.
    pub prompt_merged: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// The record cannot be tokenised (its template fails, its text is far too long).
    #[error("{0}")]
    Record(FieldError),
    /// The tokenizer cannot tokenise this kind of data at all (no template, no eos).
    #[error(transparent)]
    Setup(TokenizerError),
}

impl From<TokenizerError> for TokenizeError {
    /// Encoding fails for one record's text; a missing template or eos fails them all.
    fn from(error: TokenizerError) -> Self {
        match error {
            TokenizerError::Encode(message) => {
                TokenizeError::Record(FieldError::new("", format!("tokenizer failed: {message}")))
            }
            other => TokenizeError::Setup(other),
        }
    }
}

/// Records are never refused for size below this many bytes, whatever the limits.
const ALWAYS_TOKENIZED_BYTES: usize = 1 << 20;

/// Refuses, before tokenising it, a record far longer than the options keep: tokenising costs
/// about a hundred bytes of memory per byte of text (the tokenizer's per-byte alignments and
/// per-token strings), so a 50 MB record truncated to 64 tokens would take gigabytes. The
/// limit is four times the text the kept tokens can stand for (each side of a pair counted),
/// and never below 1 MiB, so every record that truncation keeps meaningfully is truncated as
/// before.
fn check_size(
    tokenizer: &ChatTokenizer,
    example: ExampleRef<'_>,
    options: &TokenizeOptions,
) -> Result<(), TokenizeError> {
    let (kept, option) = match example {
        ExampleRef::Sft(_) | ExampleRef::Unpaired(_) => (options.max_length, "max_length"),
        // Prompt, chosen and rejected: each may keep up to max_length tokens.
        ExampleRef::Preference(_) => (options.max_length.map(|l| 3 * l), "max_length"),
        ExampleRef::Rlvr(_) => (options.max_prompt_length, "max_prompt_length"),
    };
    let Some(kept) = kept else {
        return Ok(());
    };
    let limit = kept
        .saturating_mul(tokenizer.longest_token_bytes())
        .saturating_mul(4)
        .max(ALWAYS_TOKENIZED_BYTES);
    let mut counter = ByteCount(0);
    // Serialising into a counter allocates nothing; a failure leaves the count as far as it got.
    let _ = serde_json::to_writer(&mut counter, &example);
    if counter.0 > limit {
        return Err(TokenizeError::Record(FieldError::new(
            "",
            format!(
                "the record holds {} bytes of text, far more than {option} keeps (at most {limit} \
                 bytes are tokenised); shorten it, or raise {option}",
                counter.0
            ),
        )));
    }
    Ok(())
}

/// An `io::Write` that only counts.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Tokenises one example.
pub fn tokenize(
    tokenizer: &ChatTokenizer,
    example: &(impl AsExample + ?Sized),
    options: &TokenizeOptions,
) -> Result<TokenizeOutcome, TokenizeError> {
    let example = example.as_example();
    check_size(tokenizer, example, options)?;
    let mut truncation = Truncation::default();
    let mut prompt_merged = false;
    let tokenized = match example {
        ExampleRef::Sft(sft) => {
            let (mut sequence, merged) = sft_sequence(tokenizer, sft, options.loss_mask)?;
            prompt_merged = merged;
            truncation = truncate_sequence(&mut sequence, options);
            Tokenized::Sequence(sequence)
        }
        ExampleRef::Preference(preference) => {
            let (mut pair, merged) = preference_pair(tokenizer, preference)?;
            prompt_merged = merged;
            truncation = truncate_pair(&mut pair, options);
            Tokenized::Pair(pair)
        }
        ExampleRef::Unpaired(unpaired) => {
            let (mut one, merged) = unpaired_completion(tokenizer, unpaired)?;
            prompt_merged = merged;
            // As a pair's prompt: its end is kept.
            if let Some(limit) = options
                .max_prompt_length
                .filter(|&l| one.prompt_ids.len() > l)
            {
                one.prompt_ids.drain(..one.prompt_ids.len() - limit);
                truncation.prompt = true;
            }
            // TRL's collator keeps the start of prompt + completion.
            if let Some(limit) = options.max_length {
                let kept = limit.saturating_sub(one.prompt_ids.len());
                truncation.sequence = one.completion_ids.len() > kept;
                one.completion_ids.truncate(kept);
            }
            Tokenized::Unpaired(one)
        }
        ExampleRef::Rlvr(rlvr) => {
            let mut prompt_ids = match &rlvr.prompt {
                // TRL's GRPO tokenises plain prompts without special tokens.
                Turns::Text(text) => tokenizer.encode(text, false)?,
                Turns::Messages(messages) => chat_ids(
                    tokenizer,
                    &mut PieceMemo::default(),
                    messages,
                    None,
                    true,
                    "prompt",
                )?,
            };
            if let Some(limit) = options.max_prompt_length.filter(|&l| prompt_ids.len() > l) {
                prompt_ids.drain(..prompt_ids.len() - limit);
                truncation.prompt = true;
            }
            Tokenized::Prompt(TokenizedPrompt { prompt_ids })
        }
    };
    Ok(TokenizeOutcome {
        tokenized,
        truncation,
        prompt_merged,
    })
}

/// Tokenises many examples in parallel; results keep the input order.
pub fn tokenize_all<E: AsExample>(
    tokenizer: &ChatTokenizer,
    examples: &[E],
    options: &TokenizeOptions,
) -> Vec<Result<TokenizeOutcome, TokenizeError>> {
    examples
        .par_iter()
        .map(|example| tokenize(tokenizer, example, options))
        .collect()
}

/// The sequence, and whether its prompt merged into the completion (see
/// [`TokenizeOutcome::prompt_merged`]).
fn sft_sequence(
    tokenizer: &ChatTokenizer,
    example: &SftExample,
    mask: LossMask,
) -> Result<(TokenizedSequence, bool), TokenizeError> {
    match example {
        SftExample::Text { text } => {
            let mut input_ids = tokenizer.encode(text, true)?;
            let eos = tokenizer.eos_id()?;
            if input_ids.last() != Some(&eos) {
                input_ids.push(eos);
            }
            let loss_mask = vec![true; input_ids.len()];
            let sequence = TokenizedSequence {
                input_ids,
                loss_mask,
                prompt_len: 0,
            };
            Ok((sequence, false))
        }
        SftExample::Completion { prompt, completion } => {
            let prompt_ids = tokenizer.encode(prompt, true)?;
            let (prompt_len, completion_ids) =
                text_answer(tokenizer, prompt, &prompt_ids, completion)?;
            let merged = prompt_len < prompt_ids.len();
            let mut loss_mask = vec![mask == LossMask::Prompt; prompt_len];
            loss_mask.resize(prompt_len + completion_ids.len(), true);
            let mut input_ids = prompt_ids;
            input_ids.truncate(prompt_len);
            input_ids.extend(completion_ids);
            let sequence = TokenizedSequence {
                input_ids,
                loss_mask,
                prompt_len,
            };
            Ok((sequence, merged))
        }
        SftExample::Chat {
            messages,
            completion_start,
            tools,
        } => chat_sequence(
            tokenizer,
            messages,
            *completion_start,
            tools.as_deref(),
            mask,
        ),
    }
}

/// A conversation with one span per trained assistant turn, and whether its prompt merged into
/// the completion.
fn chat_sequence(
    tokenizer: &ChatTokenizer,
    messages: &[Message],
    completion_start: usize,
    tools: Option<&[Value]>,
    mask: LossMask,
) -> Result<(TokenizedSequence, bool), TokenizeError> {
    let mut memo = PieceMemo::default();
    let input_ids = chat_ids(tokenizer, &mut memo, messages, tools, false, "messages")?;
    let last_assistant = messages.iter().rposition(|m| m.role == Role::Assistant);
    let trained = |i: usize| match mask {
        LossMask::Completion => i >= completion_start,
        LossMask::Prompt | LossMask::AllAssistant => true,
        LossMask::LastTurn => Some(i) == last_assistant,
    };
    let mut loss_mask = vec![mask == LossMask::Prompt; input_ids.len()];
    let mut prompt_len = 0;
    let mut merged = false;
    if completion_start > 0 {
        let prompt_ids = chat_ids(
            tokenizer,
            &mut memo,
            &messages[..completion_start],
            tools,
            true,
            "prompt",
        )?;
        prompt_len = common_prefix_len(&prompt_ids, &input_ids);
        merged = prompt_len < prompt_ids.len();
    }
    // Under `prompt` every token is trained but an assistant turn weighted 0; otherwise the
    // mask's assistant turns are, unless weighted 0.
    let every_token = mask == LossMask::Prompt;
    if !every_token || messages.iter().any(Message::untrained) {
        // Made only for a turn whose span is not found by prefixes.
        let mut rendering: Option<Rendering> = None;
        // Where the last span found ends: the next turn is looked for after it.
        let mut spans_end = 0;
        for (i, message) in messages.iter().enumerate() {
            if message.role != Role::Assistant {
                continue;
            }
            let set = if every_token {
                message.untrained().then_some(false)
            } else {
                (trained(i) && !message.untrained()).then_some(true)
            };
            let Some(trained) = set else {
                continue;
            };
            let field = format!("messages[{i}]");
            let merged_completion = merged && i == completion_start && i + 1 == messages.len();
            let span = match prefix_span(tokenizer, &mut memo, messages, i, tools, &input_ids)? {
                // A prompt that merged into its one-turn completion: the completion starts
                // where the ids diverge, as TRL 1.16.
                _ if merged_completion => prompt_len..input_ids.len(),
                Some(span) => span,
                None => {
                    let rendering = match &mut rendering {
                        Some(rendering) => rendering,
                        none => {
                            none.insert(Rendering::new(tokenizer, messages, tools, &input_ids)?)
                        }
                    };
                    rendering.turn_span(tokenizer, messages, i, tools, spans_end, &field)?
                }
            };
            spans_end = span.end;
            loss_mask[span].iter_mut().for_each(|m| *m = trained);
        }
    }
    let sequence = TokenizedSequence {
        input_ids,
        loss_mask,
        prompt_len,
    };
    Ok((sequence, merged))
}

/// Assistant turn `i`'s tokens found as TRL finds a completion: from the end of
/// `template(messages[..i], add_generation_prompt)` to the end of `template(messages[..=i])`.
/// `None` when either is not a token prefix of the whole conversation's ids: the template
/// renders the turn, or one before it, differently once later turns follow (Qwen3 writes an
/// empty `<think>` block only after the last user message and drops earlier reasoning;
/// Mistral writes the system message into the last user turn).
fn prefix_span(
    tokenizer: &ChatTokenizer,
    memo: &mut PieceMemo,
    messages: &[Message],
    i: usize,
    tools: Option<&[Value]>,
    input_ids: &[u32],
) -> Result<Option<Range<usize>>, TokenizeError> {
    let field = format!("messages[{i}]");
    let start = chat_ids(tokenizer, memo, &messages[..i], tools, true, &field)?;
    if !input_ids.starts_with(&start) {
        return Ok(None);
    }
    let end = if i + 1 == messages.len() {
        input_ids.len()
    } else {
        let through = chat_ids(tokenizer, memo, &messages[..=i], tools, false, &field)?;
        if !input_ids.starts_with(&through) {
            return Ok(None);
        }
        through.len()
    };
    Ok((end >= start.len()).then_some(start.len()..end))
}

/// The whole conversation rendered once, with each token's byte range in the text, for turns
/// that prefixes cannot find. Each such turn is located in this single rendering, the one the
/// model trains on, by what the template writes for it when it is the last turn: its content
/// (as the template writes it: trimmed, or after `</think>`), the text after the content
/// (the end of turn: `<|im_end|>\n`, `<|eot_id|>`, `</s>`, `<end_of_turn>\n`), the text
/// between the generation prompt and the content where the rendering still has it (a
/// `<think>` block), and the generation prompt (`<|im_start|>assistant\n`), which must come
/// right before the span, so that a user message with the same text is never taken for it.
/// The turn's tokens are those overlapping that text. Text is searched rather than
/// `{% generation %}` blocks followed (transformers' `return_assistant_tokens_mask`) because
/// the templates that rewrite turns (Qwen3's, Mistral's, reasoning models') have no such
/// blocks, and a template that has them writes the same text either way.
struct Rendering {
    text: String,
    offsets: Vec<ByteRange>,
}

impl Rendering {
    fn new(
        tokenizer: &ChatTokenizer,
        messages: &[Message],
        tools: Option<&[Value]>,
        input_ids: &[u32],
    ) -> Result<Self, TokenizeError> {
        let text = chat_text(tokenizer, messages, tools, false, "messages")?;
        let (ids, offsets) = tokenizer.encode_chat_with_offsets(&text)?;
        if ids != input_ids {
            return Err(TokenizeError::Record(FieldError::new(
                "messages",
                "the tokenizer encodes the rendered conversation differently when asked for \
                 offsets; assistant turns cannot be located in it",
            )));
        }
        Ok(Rendering { text, offsets })
    }

    /// The tokens of assistant turn `i`, looked for after token `after`.
    fn turn_span(
        &self,
        tokenizer: &ChatTokenizer,
        messages: &[Message],
        i: usize,
        tools: Option<&[Value]>,
        after: usize,
        field: &str,
    ) -> Result<Range<usize>, TokenizeError> {
        let render = |upto: usize, generation_prompt: bool| {
            chat_text(
                tokenizer,
                &messages[..upto],
                tools,
                generation_prompt,
                field,
            )
        };
        let prompt = render(i, true)?;
        let before = render(i, false)?;
        let through = render(i + 1, false)?;
        let generation_prompt = prompt.strip_prefix(before.as_str()).unwrap_or("");
        // The turn as the template writes it when it is the last one, when the prompt is a
        // text prefix (not where an earlier message moves, as Mistral's system message).
        let own = through.strip_prefix(prompt.as_str());
        let from = match after {
            0 => 0,
            after => self.offsets[after - 1].1,
        };
        // Where the prompt is a text prefix, the turn is after it: content that also occurs in
        // the prompt (or in its markup) is not taken for the turn's.
        let turn_from = if own.is_some() { prompt.len() } else { 0 };
        // The content ends where the end of turn begins, wherever else its text occurs (in the
        // end-of-turn markup itself, say: `im` in `<|im_end|>`); else its latest occurrence.
        let content_end = end_of_turn(tokenizer, messages, i, tools, field)
            .and_then(|end| through.strip_suffix(end.as_str()).map(str::len));
        let starts = content_end
            .map(|end| written_content(&messages[i], &through, turn_from, Some(end)))
            .filter(|starts| !starts.is_empty())
            .unwrap_or_else(|| written_content(&messages[i], &through, turn_from, None));
        let anchors: Vec<(Option<&str>, &str)> = if starts.is_empty() {
            // No content to look for (a tool call only): the whole turn, where it is known, or
            // what follows its `<think>` block (which Qwen3 writes only for the last turn).
            let own = own.unwrap_or("");
            let after_think = own
                .rsplit_once("</think>")
                .map(|(_, rest)| rest.trim_start_matches('\n'));
            [Some(own), after_think]
                .into_iter()
                .flatten()
                .map(|anchor| (Some(""), anchor))
                .collect()
        } else {
            starts
                .into_iter()
                .map(|at| {
                    let anchor = &through[at..];
                    (own.and_then(|own| own.strip_suffix(anchor)), anchor)
                })
                .collect()
        };
        anchors
            .into_iter()
            .filter(|(_, anchor)| !anchor.is_empty())
            .find_map(|(lead, anchor)| self.find(lead, anchor, generation_prompt, from))
            .ok_or_else(|| {
                TokenizeError::Record(FieldError::new(
                    field,
                    "the chat template renders this assistant turn differently once later \
                     turns follow, and the turn (its content and end of turn) cannot be found \
                     in the rendering of the whole conversation",
                ))
            })
    }

    /// The tokens of the first `anchor` at or after byte `from` that follows the generation
    /// prompt, extended back over `lead` where the text has it.
    fn find(
        &self,
        lead: Option<&str>,
        anchor: &str,
        generation_prompt: &str,
        from: usize,
    ) -> Option<Range<usize>> {
        let mut search = from;
        while let Some(found) = self.text[search..].find(anchor).map(|at| search + at) {
            let mut start = found;
            if let Some(lead) = lead.filter(|lead| self.text[from..found].ends_with(lead)) {
                start -= lead.len();
            }
            if self.text[..start].ends_with(generation_prompt) {
                return Some(self.tokens_overlapping(start..found + anchor.len()));
            }
            search = found + anchor.chars().next().map_or(1, char::len_utf8);
        }
        None
    }

    /// Tokens whose text overlaps the byte range `text`.
    fn tokens_overlapping(&self, text: Range<usize>) -> Range<usize> {
        let first = self.offsets.partition_point(|&(_, end)| end <= text.start);
        let last = self.offsets.partition_point(|&(start, _)| start < text.end);
        first..last.max(first)
    }
}

/// What the template writes after turn `i`'s content when the turn is the last one (its end of
/// turn: `<|im_end|>\n`, `<|eot_id|>`), learnt by rendering the turn with a placeholder content
/// no template changes; `None` where the placeholder is not written as given.
fn end_of_turn(
    tokenizer: &ChatTokenizer,
    messages: &[Message],
    i: usize,
    tools: Option<&[Value]>,
    field: &str,
) -> Option<String> {
    const PLACEHOLDER: &str = "\u{E000}temper-turn\u{E001}";
    let mut probe = messages[..=i].to_vec();
    probe[i].content = PLACEHOLDER.to_string();
    probe[i].reasoning_content = None;
    let text = chat_text(tokenizer, &probe, tools, false, field).ok()?;
    let (_, end) = text.rsplit_once(PLACEHOLDER)?;
    Some(end.to_string())
}

/// Where the turn's content, and then its end-of-turn text, may begin in `through` (a
/// rendering that ends with the turn), longest first: the content as given, or as templates
/// change it (trimmed; after `</think>`, which reasoning templates split off as reasoning
/// and may drop), at or after byte `from` and, when `ends_at` is given, ending there. Empty for
/// no content.
fn written_content(
    message: &Message,
    through: &str,
    from: usize,
    ends_at: Option<usize>,
) -> Vec<usize> {
    let content = message.content.as_str();
    let after_think = content
        .rsplit_once("</think>")
        .map(|(_, answer)| answer.trim_start_matches('\n'));
    let found: Vec<(usize, usize)> = [
        Some(content),
        Some(content.trim_start_matches('\n')),
        Some(content.trim()),
        after_think,
        after_think.map(str::trim),
    ]
    .into_iter()
    .flatten()
    .filter(|variant| !variant.is_empty())
    .filter_map(|variant| {
        let at = match ends_at {
            Some(end) => {
                let at = end.checked_sub(variant.len()).filter(|&at| at >= from)?;
                (through.get(at..end)? == variant).then_some(at)?
            }
            None => from + through.get(from..)?.rfind(variant)?,
        };
        Some((at, at + variant.len()))
    })
    .collect();
    // The turn is the last thing `through` writes, so its content is a match that ends
    // latest: a user message holding the untrimmed text is never taken for it.
    let latest = found.iter().map(|&(_, end)| end).max();
    let mut starts: Vec<usize> = found
        .into_iter()
        .filter(|&(_, end)| Some(end) == latest)
        .map(|(at, _)| at)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    starts
}

/// A pair, and whether its prompt merged into an answer. As TRL 1.16's DPO tokenisation, the
/// prompt keeps the ids it shares with both `prompt + chosen` and `prompt + rejected`, and each
/// answer is the rest of its whole; a pair whose prompt ids are a prefix of both is unchanged.
fn preference_pair(
    tokenizer: &ChatTokenizer,
    preference: &Preference,
) -> Result<(TokenizedPair, bool), TokenizeError> {
    let (prompt_ids, chosen_whole, rejected_whole, eos) = match preference {
        Preference::Text {
            prompt,
            chosen,
            rejected,
        } => {
            let prompt_ids = tokenizer.encode(prompt, true)?;
            let whole = |answer: &str| tokenizer.encode(&format!("{prompt}{answer}"), true);
            let eos = tokenizer.eos_id()?;
            (prompt_ids, whole(chosen)?, whole(rejected)?, Some(eos))
        }
        Preference::Chat {
            prompt,
            chosen,
            rejected,
            tools,
        } => {
            let tools = tools.as_deref();
            let mut memo = PieceMemo::default();
            let prompt_ids = chat_ids(tokenizer, &mut memo, prompt, tools, true, "prompt")?;
            let mut whole = |answer: &[Message], field: &str| {
                let whole: Vec<&Message> = prompt.iter().chain(answer).collect();
                chat_ids(tokenizer, &mut memo, &whole, tools, false, field)
            };
            let chosen_whole = whole(chosen, "chosen")?;
            let rejected_whole = whole(rejected, "rejected")?;
            (prompt_ids, chosen_whole, rejected_whole, None)
        }
    };
    let prompt_len = common_prefix_len(&prompt_ids, &chosen_whole)
        .min(common_prefix_len(&prompt_ids, &rejected_whole));
    let answer = |whole: &[u32]| {
        let mut ids = whole[prompt_len..].to_vec();
        // Plain-string answers end with eos, as TRL appends it to their text.
        if let Some(eos) = eos.filter(|&eos| ids.last() != Some(&eos)) {
            ids.push(eos);
        }
        ids
    };
    let pair = TokenizedPair {
        chosen_ids: answer(&chosen_whole),
        rejected_ids: answer(&rejected_whole),
        prompt_ids: prompt_ids[..prompt_len].to_vec(),
    };
    Ok((pair, prompt_len < prompt_ids.len()))
}

/// One unpaired completion, and whether its prompt merged into it: tokenised as TRL 1.16's
/// `KTOTrainer` does, as one side of a pair (see [`preference_pair`]).
fn unpaired_completion(
    tokenizer: &ChatTokenizer,
    unpaired: &Unpaired,
) -> Result<(TokenizedUnpaired, bool), TokenizeError> {
    let (prompt_ids, prompt_len, completion_ids) = match unpaired {
        Unpaired::Text {
            prompt, completion, ..
        } => {
            let prompt_ids = tokenizer.encode(prompt, true)?;
            let (prompt_len, completion_ids) =
                text_answer(tokenizer, prompt, &prompt_ids, completion)?;
            (prompt_ids, prompt_len, completion_ids)
        }
        Unpaired::Chat {
            prompt,
            completion,
            tools,
            ..
        } => {
            let tools = tools.as_deref();
            let mut memo = PieceMemo::default();
            let prompt_ids = chat_ids(tokenizer, &mut memo, prompt, tools, true, "prompt")?;
            let whole: Vec<&Message> = prompt.iter().chain(completion).collect();
            let whole = chat_ids(tokenizer, &mut memo, &whole, tools, false, "completion")?;
            let prompt_len = common_prefix_len(&prompt_ids, &whole);
            (prompt_ids, prompt_len, whole[prompt_len..].to_vec())
        }
    };
    let one = TokenizedUnpaired {
        prompt_ids: prompt_ids[..prompt_len].to_vec(),
        completion_ids,
        kl_completion_ids: Vec::new(),
        desirable: unpaired.desirable(),
    };
    Ok((one, prompt_len < prompt_ids.len()))
}

/// A plain-string answer after its prompt's ids: (where the answer starts, its ids + eos). The
/// answer is what `prompt + answer` tokenises to after the ids it shares with the prompt's,
/// as TRL 1.16 (see [`TokenizeOutcome::prompt_merged`]).
fn text_answer(
    tokenizer: &ChatTokenizer,
    prompt: &str,
    prompt_ids: &[u32],
    answer: &str,
) -> Result<(usize, Vec<u32>), TokenizeError> {
    let whole = tokenizer.encode(&format!("{prompt}{answer}"), true)?;
    let prompt_len = common_prefix_len(prompt_ids, &whole);
    let mut answer_ids = whole[prompt_len..].to_vec();
    let eos = tokenizer.eos_id()?;
    if answer_ids.last() != Some(&eos) {
        answer_ids.push(eos);
    }
    Ok((prompt_len, answer_ids))
}

/// How many leading ids `a` and `b` share (TRL's `common_prefix_length`).
fn common_prefix_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Renders with the chat template and tokenises without adding special tokens (the template
/// writes them), as `apply_chat_template(..., tokenize=True)` does.
fn chat_ids<M: Serialize>(
    tokenizer: &ChatTokenizer,
    memo: &mut PieceMemo,
    messages: &[M],
    tools: Option<&[Value]>,
    add_generation_prompt: bool,
    field: &str,
) -> Result<Vec<u32>, TokenizeError> {
    let text = chat_text(tokenizer, messages, tools, add_generation_prompt, field)?;
    Ok(tokenizer.encode_chat(&text, memo)?)
}

/// Renders with the chat template, as `apply_chat_template(..., tokenize=False)` does.
fn chat_text<M: Serialize>(
    tokenizer: &ChatTokenizer,
    messages: &[M],
    tools: Option<&[Value]>,
    add_generation_prompt: bool,
    field: &str,
) -> Result<String, TokenizeError> {
    let template = tokenizer.template(tools.is_some())?;
    template
        .render_with(
            messages,
            tools,
            add_generation_prompt,
            &serde_json::Map::new(),
        )
        .map_err(|e| TokenizeError::Record(FieldError::new(field, e.to_string())))
}

fn truncate_sequence(sequence: &mut TokenizedSequence, options: &TokenizeOptions) -> Truncation {
    let mut truncation = Truncation::default();
    if let Some(limit) = options
        .max_prompt_length
        .filter(|&l| sequence.prompt_len > l)
    {
        let cut = sequence.prompt_len - limit;
        sequence.input_ids.drain(..cut);
        sequence.loss_mask.drain(..cut);
        sequence.prompt_len = limit;
        truncation.prompt = true;
    }
    if let Some(limit) = options.max_length.filter(|&l| sequence.input_ids.len() > l) {
        let len = sequence.input_ids.len();
        match options.truncation {
            TruncationSide::KeepStart => {
                sequence.input_ids.truncate(limit);
                sequence.loss_mask.truncate(limit);
                sequence.prompt_len = sequence.prompt_len.min(limit);
            }
            TruncationSide::KeepEnd => {
                sequence.input_ids.drain(..len - limit);
                sequence.loss_mask.drain(..len - limit);
                sequence.prompt_len = sequence.prompt_len.saturating_sub(len - limit);
            }
        }
        truncation.sequence = true;
    }
    truncation
}

/// Pairs share their prompt: `max_prompt_length` keeps the prompt's end; `max_length` bounds
/// prompt + each answer, cutting answers' ends (keep-start) or the prompt's start first and
/// then answers' starts (keep-end).
fn truncate_pair(pair: &mut TokenizedPair, options: &TokenizeOptions) -> Truncation {
    let mut truncation = Truncation::default();
    if let Some(limit) = options
        .max_prompt_length
        .filter(|&l| pair.prompt_ids.len() > l)
    {
        pair.prompt_ids.drain(..pair.prompt_ids.len() - limit);
        truncation.prompt = true;
    }
    let Some(limit) = options.max_length else {
        return truncation;
    };
    let longest = pair.chosen_ids.len().max(pair.rejected_ids.len());
    if pair.prompt_ids.len() + longest <= limit {
        return truncation;
    }
    truncation.sequence = true;
    match options.truncation {
        TruncationSide::KeepStart => {
            pair.prompt_ids.truncate(limit);
            let room = limit - pair.prompt_ids.len();
            pair.chosen_ids.truncate(room);
            pair.rejected_ids.truncate(room);
        }
        TruncationSide::KeepEnd => {
            let excess = pair.prompt_ids.len() + longest - limit;
            let from_prompt = excess.min(pair.prompt_ids.len());
            pair.prompt_ids.drain(..from_prompt);
            if from_prompt > 0 {
                truncation.prompt = true;
            }
            let room = limit - pair.prompt_ids.len();
            for answer in [&mut pair.chosen_ids, &mut pair.rejected_ids] {
                if answer.len() > room {
                    answer.drain(..answer.len() - room);
                }
            }
        }
    }
    truncation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(ids: Vec<u32>, prompt_len: usize) -> TokenizedSequence {
        let loss_mask = (0..ids.len()).map(|i| i >= prompt_len).collect();
        TokenizedSequence {
            input_ids: ids,
            loss_mask,
            prompt_len,
        }
    }

    #[test]
    fn prompt_truncation_keeps_the_prompt_end() {
        let mut s = sequence((0..10).collect(), 6);
        let options = TokenizeOptions {
            max_prompt_length: Some(4),
            ..Default::default()
        };
        assert_eq!(
            truncate_sequence(&mut s, &options),
            Truncation {
                prompt: true,
                sequence: false
            }
        );
        assert_eq!(s.input_ids, vec![2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(s.prompt_len, 4);
        assert_eq!(s.trained_tokens(), 4);
    }

    #[test]
    fn max_length_cuts_the_chosen_side() {
        for (side, expected) in [
            (TruncationSide::KeepStart, vec![0, 1, 2, 3]),
            (TruncationSide::KeepEnd, vec![6, 7, 8, 9]),
        ] {
            let mut s = sequence((0..10).collect(), 3);
            let options = TokenizeOptions {
                max_length: Some(4),
                truncation: side,
                ..Default::default()
            };
            assert!(truncate_sequence(&mut s, &options).sequence);
            assert_eq!(s.input_ids, expected);
            assert_eq!(s.loss_mask.len(), 4);
        }
    }

    #[test]
    fn pair_truncation_bounds_every_sequence() {
        let pair = TokenizedPair {
            prompt_ids: (0..6).collect(),
            chosen_ids: (10..15).collect(),
            rejected_ids: (20..22).collect(),
        };
        for side in [TruncationSide::KeepStart, TruncationSide::KeepEnd] {
            let mut p = pair.clone();
            let options = TokenizeOptions {
                max_length: Some(8),
                truncation: side,
                ..Default::default()
            };
            assert!(truncate_pair(&mut p, &options).sequence);
            assert!(p.prompt_ids.len() + p.chosen_ids.len() <= 8);
            assert!(p.prompt_ids.len() + p.rejected_ids.len() <= 8);
            match side {
                TruncationSide::KeepStart => assert_eq!(
                    (p.prompt_ids.len(), p.chosen_ids, p.rejected_ids),
                    (6, vec![10, 11], vec![20, 21])
                ),
                TruncationSide::KeepEnd => assert_eq!(
                    (p.prompt_ids, p.chosen_ids),
                    ((3..6).collect(), (10..15).collect())
                ),
            }
        }
    }
}
