//! A Hugging Face tokenizer directory: `tokenizer.json` for the `tokenizers` crate, and
//! `tokenizer_config.json` (or `chat_template.jinja`) for the chat template and the special
//! tokens that TRL-style tokenisation needs (bos, eos, pad).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::Tokenizer;

use crate::pieces::{AddedTokenSplitter, PieceMemo};
use crate::template::{BuiltinTemplate, ChatTemplate, TemplateError};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("{path}: chat template `{name}` not found (available: {available})")]
    UnknownTemplate {
        path: PathBuf,
        name: String,
        available: String,
    },
    #[error("{path}: {source}")]
    Template {
        path: PathBuf,
        #[source]
        source: TemplateError,
    },
    #[error(
        "the tokenizer has no chat template; conversational data needs one (choose a built-in: chatml or llama3)"
    )]
    NoTemplate,
    #[error("the tokenizer has no eos token; plain-text data needs one to end completions")]
    NoEos,
    #[error("tokenizer failed: {0}")]
    Encode(String),
    #[error("the tokenizer has {tokens} tokens but the model's vocab_size is {vocab_size}")]
    LargerThanModel { tokens: usize, vocab_size: usize },
}

/// Where a token's text lies in the text it was encoded from: start and end, in bytes.
pub type ByteRange = (usize, usize);

/// A tokenizer with what TRL-style tokenisation needs beside it.
pub struct ChatTokenizer {
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    /// transformers picks a template named `tool_use`, when there is one, for calls with tools.
    tool_use_template: Option<ChatTemplate>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    pad_id: Option<u32>,
    special_tokens: BTreeMap<String, String>,
    /// `None` when the tokenizer's added tokens make piece-wise encoding inexact.
    splitter: Option<AddedTokenSplitter>,
    /// The normaliser only applies Unicode normal forms, which leave ASCII text as it is.
    normalizer_keeps_ascii: bool,
    /// See [`ChatTokenizer::longest_token_bytes`]; found on first use (a walk over the whole
    /// vocabulary that only runs with a length limit need).
    longest_token_bytes: std::sync::OnceLock<usize>,
}

impl std::fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokenizer")
            .field("vocab_size", &self.tokenizer.get_vocab_size(true))
            .field("has_template", &self.template.is_some())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

impl ChatTokenizer {
    /// Loads `dir/tokenizer.json` with `dir/tokenizer_config.json` and, when present,
    /// `dir/chat_template.jinja` (which newer transformers versions write instead of the
    /// config field). `template_name` picks one of several named templates; the default is
    /// `default`.
    pub fn from_dir(dir: &Path, template_name: Option<&str>) -> Result<Self, TokenizerError> {
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| TokenizerError::Load {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        let config_path = dir.join("tokenizer_config.json");
        let config = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str::<Value>(&text).map_err(|e| TokenizerError::Load {
                path: config_path.clone(),
                message: format!("not valid JSON: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Object(Default::default()),
            Err(e) => {
                return Err(TokenizerError::Load {
                    path: config_path,
                    message: e.to_string(),
                });
            }
        };
        let jinja_path = dir.join("chat_template.jinja");
        let jinja = match std::fs::read_to_string(&jinja_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(TokenizerError::Load {
                    path: jinja_path,
                    message: e.to_string(),
                });
            }
        };
        Self::from_parts(
            tokenizer,
            &config,
            jinja.as_deref(),
            template_name,
            &config_path,
        )
    }

    /// Builds from a loaded tokenizer and the parsed `tokenizer_config.json`.
    /// `config_path` only names the source in errors.
    pub fn from_parts(
        tokenizer: Tokenizer,
        config: &Value,
        jinja_template: Option<&str>,
        template_name: Option<&str>,
        config_path: &Path,
    ) -> Result<Self, TokenizerError> {
        let mut tokenizer = tokenizer;
        // transformers ignores the truncation and padding saved in tokenizer.json unless asked;
        // left on, they would cut or pad ids and break the prefix checks.
        tokenizer
            .with_truncation(None)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?
            .with_padding(None);
        let special_tokens: BTreeMap<String, String> =
            ["bos_token", "eos_token", "unk_token", "pad_token"]
                .into_iter()
                .filter_map(|name| {
                    token_text(config.get(name)).map(|text| (name.to_string(), text))
                })
                .collect();
        let id_of = |name: &str| {
            special_tokens
                .get(name)
                .and_then(|text| tokenizer.token_to_id(text))
        };
        let bos_id = id_of("bos_token");
        let eos_id = id_of("eos_token");
        let pad_id = id_of("pad_token").or(eos_id);
        let compile = |source: &str| {
            ChatTemplate::new(source, special_tokens.clone()).map_err(|source| {
                TokenizerError::Template {
                    path: config_path.to_path_buf(),
                    source,
                }
            })
        };
        let (template, tool_use_template) = match (jinja_template, config.get("chat_template")) {
            (Some(source), _) => (Some(compile(source)?), None),
            (None, Some(Value::String(source))) => (Some(compile(source)?), None),
            (None, Some(Value::Array(named))) => {
                let named: BTreeMap<&str, &str> = named
                    .iter()
                    .filter_map(|entry| {
                        Some((
                            entry.get("name")?.as_str()?,
                            entry.get("template")?.as_str()?,
                        ))
                    })
                    .collect();
                let wanted = template_name.unwrap_or("default");
                let source = named
                    .get(wanted)
                    .ok_or_else(|| TokenizerError::UnknownTemplate {
                        path: config_path.to_path_buf(),
                        name: wanted.to_string(),
                        available: named.keys().copied().collect::<Vec<_>>().join(", "),
                    })?;
                let tool_use = match (template_name, named.get("tool_use")) {
                    (None, Some(source)) => Some(compile(source)?),
                    _ => None,
                };
                (Some(compile(source)?), tool_use)
            }
            (None, None | Some(Value::Null)) => (None, None),
            (None, Some(other)) => {
                return Err(TokenizerError::Load {
                    path: config_path.to_path_buf(),
                    message: format!(
                        "chat_template must be a string or a list of named templates, not {other}"
                    ),
                });
            }
        };
        let splitter = AddedTokenSplitter::new(&tokenizer);
        let normalizer_keeps_ascii = tokenizer.get_normalizer().is_none_or(only_normal_forms);
        Ok(ChatTokenizer {
            splitter,
            normalizer_keeps_ascii,
            longest_token_bytes: std::sync::OnceLock::new(),
            tokenizer,
            template,
            tool_use_template,
            bos_id,
            eos_id,
            pad_id,
            special_tokens,
        })
    }

    /// Replaces the chat template with a built-in one (for tokenizers that ship none).
    pub fn use_builtin_template(&mut self, builtin: BuiltinTemplate) {
        self.template = Some(ChatTemplate::builtin(builtin, self.special_tokens.clone()));
        self.tool_use_template = None;
    }

    pub fn has_template(&self) -> bool {
        self.template.is_some()
    }

    /// The template for a conversation, as transformers picks it.
    pub fn template(&self, with_tools: bool) -> Result<&ChatTemplate, TokenizerError> {
        match (&self.tool_use_template, with_tools) {
            (Some(tool_use), true) => Ok(tool_use),
            _ => self.template.as_ref().ok_or(TokenizerError::NoTemplate),
        }
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        self.tokenizer
            .encode_fast(text, add_special_tokens)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|e| TokenizerError::Encode(e.to_string()))
    }

    /// Encodes a rendered chat without adding special tokens (the template wrote them), as
    /// `apply_chat_template(tokenize=True)` does. Pieces shared with earlier renders of the
    /// same example are taken from `memo` (see [`crate::pieces`]); the ids are the same.
    pub fn encode_chat(
        &self,
        text: &str,
        memo: &mut PieceMemo,
    ) -> Result<Vec<u32>, TokenizerError> {
        let Some(splitter) = &self.splitter else {
            return self.encode(text, false);
        };
        let mut ids = Vec::new();
        splitter.encode_into(text, memo, &mut ids, |piece| self.encode_piece(piece))?;
        Ok(ids)
    }

    /// Ids of text holding no added token: the stages `encode` runs on such text (normaliser,
    /// pre-tokeniser, model), without building an `Encoding` (token strings, offsets) that
    /// only the ids are wanted from.
    fn encode_piece(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        use tokenizers::{
            Model, NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString,
            PreTokenizer,
        };
        let failed = |e: tokenizers::Error| TokenizerError::Encode(e.to_string());
        let mut normalized = NormalizedString::from(text);
        let unchanged_by_normalizer = self.normalizer_keeps_ascii && text.is_ascii();
        if let Some(normalizer) = self
            .tokenizer
            .get_normalizer()
            .filter(|_| !unchanged_by_normalizer)
        {
            normalizer.normalize(&mut normalized).map_err(failed)?;
        }
        let mut words = PreTokenizedString::from(normalized);
        if let Some(pre_tokenizer) = self.tokenizer.get_pre_tokenizer() {
            pre_tokenizer.pre_tokenize(&mut words).map_err(failed)?;
        }
        let model = self.tokenizer.get_model();
        words
            .tokenize(|word| model.tokenize(word.get()))
            .map_err(failed)?;
        Ok(words
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .flat_map(|(_, _, tokens)| tokens.iter().flatten().map(|token| token.id))
            .collect())
    }

    /// [`encode_chat`](Self::encode_chat)'s ids with each token's byte range in `text`, to
    /// find which tokens a stretch of the rendered text became. Encodes the whole text (no
    /// memo): only templates that rewrite earlier turns need it.
    pub fn encode_chat_with_offsets(
        &self,
        text: &str,
    ) -> Result<(Vec<u32>, Vec<ByteRange>), TokenizerError> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok((encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Encode(e.to_string()))
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Result<u32, TokenizerError> {
        self.eos_id.ok_or(TokenizerError::NoEos)
    }

    /// The padding id: the tokenizer's pad token, else its eos token (as TRL does).
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The most bytes of text one token can stand for: the longest token's text in the
    /// vocabulary (UTF-8 bytes, added tokens included), which is at least what it decodes to
    /// for byte-level BPE (`Ġ` for a space), SentencePiece (`▁`) and byte-fallback tokens.
    pub fn longest_token_bytes(&self) -> usize {
        *self.longest_token_bytes.get_or_init(|| {
            self.tokenizer
                .get_vocab(true)
                .keys()
                .map(String::len)
                .max()
                .unwrap_or(1)
                .max(1)
        })
    }

    /// Refuses a model whose embedding table (`vocab_size` rows) is smaller than this
    /// tokenizer: an id past the table would fail deep inside the tensor backend, mid-run.
    pub fn check_fits(&self, vocab_size: usize) -> Result<(), TokenizerError> {
        let tokens = self.tokenizer.get_vocab_size(true);
        if tokens > vocab_size {
            return Err(TokenizerError::LargerThanModel { tokens, vocab_size });
        }
        Ok(())
    }
}

/// NFC, NFD, NFKC and NFKD (alone or in sequence) map every ASCII string to itself.
fn only_normal_forms(normalizer: &tokenizers::NormalizerWrapper) -> bool {
    use tokenizers::NormalizerWrapper as N;
    match normalizer {
        N::NFC(_) | N::NFD(_) | N::NFKC(_) | N::NFKD(_) => true,
        N::Sequence(sequence) => sequence.as_ref().iter().all(only_normal_forms),
        _ => false,
    }
}

/// A special token in `tokenizer_config.json`: a string or an AddedToken object.
fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Object(object) => object.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}
