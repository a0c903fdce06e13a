//! Hugging Face `config.json` → one validated [`ModelConfig`] for every supported family.
//!
//! Defaults are transformers' per family (e.g. Qwen3's `head_dim` of 128, OLMo 2's RMSNorm eps
//! of 1e-5), so a config that omits a field means what it means to transformers. Both RoPE
//! spellings are read: `rope_theta` + `rope_scaling` (files written before transformers 5) and
//! `rope_parameters` (transformers 5).

use serde::Deserialize;
use serde_json::Value;

/// A decoder-only family, by `model_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Llama,
    Qwen2,
    Qwen3,
    Mistral,
    Olmo2,
}

impl Family {
    /// Every supported family, by the `model_type` that selects it.
    pub const ALL: [(&'static str, Family); 5] = [
        ("llama", Family::Llama),
        ("qwen2", Family::Qwen2),
        ("qwen3", Family::Qwen3),
        ("mistral", Family::Mistral),
        ("olmo2", Family::Olmo2),
    ];

    pub fn model_type(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(name, _)| *name)
            .unwrap_or("llama")
    }

    /// transformers' causal LM class (`LlamaForCausalLM`, ...).
    pub fn causal_lm_class(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Olmo2 => "Olmo2ForCausalLM",
        }
    }

    /// transformers' sequence-classification class (`LlamaForSequenceClassification`, ...):
    /// the same decoder with a `score` head instead of the LM head.
    pub fn sequence_classification_class(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForSequenceClassification",
            Family::Qwen2 => "Qwen2ForSequenceClassification",
            Family::Qwen3 => "Qwen3ForSequenceClassification",
            Family::Mistral => "MistralForSequenceClassification",
            Family::Olmo2 => "Olmo2ForSequenceClassification",
        }
    }

    fn from_model_type(name: &str) -> Result<Self, ConfigError> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| ConfigError::UnknownModelType {
                found: name.to_string(),
                supported: Self::ALL
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// Where the RMSNorms sit in a decoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormPlacement {
    /// `x + attn(norm(x))`, `x + mlp(norm(x))`: Llama, Qwen, Mistral.
    Pre,
    /// `x + norm(attn(x))`, `x + norm(mlp(x))`: OLMo 2.
    Post,
}

/// RMSNorm applied to queries and keys before RoPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// One norm of width `head_dim`, shared by every head (Qwen3).
    PerHead,
    /// One norm over all heads at once, width `heads × head_dim` (OLMo 2).
    AllHeads,
}

/// What sits on the final norm: transformers' `*ForCausalLM` or `*ForSequenceClassification`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadKind {
    /// The LM head (`lm_head`, or the embeddings when `tie_word_embeddings`): logits over the
    /// vocabulary.
    LanguageModel,
    /// A `score` linear layer without bias, `[num_labels, hidden]` in the weight files: one score
    /// per label at every position (a reward model has one label). Chosen by an
    /// `architectures` entry ending in `ForSequenceClassification`; `num_labels` is the length
    /// of `id2label` as transformers counts it (else `num_labels`, else transformers' default 2).
    SequenceClassification { num_labels: usize },
}

impl HeadKind {
    /// The number of outputs per position for a sequence-classification head.
    pub fn num_labels(self) -> Option<usize> {
        match self {
            HeadKind::LanguageModel => None,
            HeadKind::SequenceClassification { num_labels } => Some(num_labels),
        }
    }
}

/// Llama 3.x frequency scaling (`rope_type: "llama3"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// Everything the model needs from `config.json`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on the q, k and v projections (Qwen2 always; others when `attention_bias`).
    pub attention_bias: bool,
    /// Bias on the output projection (only with `attention_bias`, never for Qwen2).
    pub output_bias: bool,
    pub mlp_bias: bool,
    pub qk_norm: QkNorm,
    pub norm_placement: NormPlacement,
    /// The attention window of each layer: `None` is full causal attention.
    pub layer_windows: Vec<Option<usize>>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// `pad_token_id`: where a sequence-classification model reads each row's score (the last
    /// token that is not padding).
    pub pad_token_id: Option<u32>,
    /// The standard deviation transformers draws fresh linear weights from (a new `score` head).
    pub initializer_range: f64,
    /// LM head or score head, from `architectures`.
    pub head: HeadKind,
}

/// Why a `config.json` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("config.json is not valid JSON: {0}")]
    Json(String),
    #[error("config.json has no `model_type`; supported: llama, qwen2, qwen3, mistral, olmo2")]
    MissingModelType,
    #[error("unsupported model_type `{found}`; supported: {supported}")]
    UnknownModelType { found: String, supported: String },
    #[error("config.json: `{field}` {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    #[error(
        "config.json describes {parameters} parameters, more than any model temper can hold \
         (at most {MAX_PARAMETERS})"
    )]
    TooLarge { parameters: u128 },
}

/// 2⁴¹ ≈ 2.2 trillion parameters: past every open model, and refused before anything sized by
/// the configuration (a per-layer list, a weight) is allocated.
pub const MAX_PARAMETERS: u128 = 1 << 41;

/// The weights of a decoder with these sizes: embeddings (twice when the LM head is its own),
/// and per layer the four attention projections and the three MLP projections. Norms and
/// biases are left out (they are a rounding error next to these).
fn weight_count(
    vocab: usize,
    hidden: usize,
    intermediate: usize,
    layers: usize,
    attention_width: u128,
    kv_width: u128,
    tied: bool,
) -> u128 {
    let [v, h, i, l] = [vocab, hidden, intermediate, layers].map(|n| n as u128);
    let (q, kv) = (attention_width, kv_width);
    let embeddings = v * h * if tied { 1 } else { 2 };
    let per_layer = 2 * h * q + 2 * h * kv + 3 * h * i;
    embeddings + l * per_layer
}

/// A sequence longer than the model's positions (`max_position_embeddings`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {tokens} tokens, more than the model's max_position_embeddings ({limit})")]
pub struct TooLong {
    pub what: String,
    pub tokens: usize,
    pub limit: usize,
}

impl ModelConfig {
    /// Refuses `tokens` positions beyond the model's: attention over them costs memory and
    /// time quadratic in a length nothing bounds, and the model was never trained there.
    /// About how many weights the model has (see [`MAX_PARAMETERS`]): what `temper init`
    /// checks against the memory it can have.
    pub fn parameter_count(&self) -> u128 {
        weight_count(
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_layers,
            self.num_heads as u128 * self.head_dim as u128,
            self.num_kv_heads as u128 * self.head_dim as u128,
            self.tie_word_embeddings,
        )
    }

    pub fn check_positions(&self, what: impl Into<String>, tokens: usize) -> Result<(), TooLong> {
        if tokens > self.max_position_embeddings {
            return Err(TooLong {
                what: what.into(),
                tokens,
                limit: self.max_position_embeddings,
            });
        }
        Ok(())
    }

    /// Parses and validates the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ConfigError::Json(e.to_string()))?;
        let model_type = value
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or(ConfigError::MissingModelType)?;
        let family = Family::from_model_type(model_type)?;
        let raw: RawConfig =
            serde_json::from_value(value.clone()).map_err(|e| ConfigError::Json(e.to_string()))?;
        raw.resolve(family)
    }
}

/// The fields as transformers names them; absent ones take the family's default.
#[derive(Deserialize)]
struct RawConfig {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
    layer_types: Option<Vec<String>>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<Value>,
    pad_token_id: Option<Value>,
    initializer_range: Option<f64>,
    architectures: Option<Vec<String>>,
    id2label: Option<serde_json::Map<String, Value>>,
    num_labels: Option<usize>,
}

fn required(field: &'static str, value: Option<usize>) -> Result<usize, ConfigError> {
    match value {
        Some(v) if v > 0 => Ok(v),
        Some(_) => Err(field_error(field, "must be positive")),
        None => Err(field_error(field, "is missing")),
    }
}

fn field_error(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field,
        problem: problem.into(),
    }
}

impl RawConfig {
    fn resolve(self, family: Family) -> Result<ModelConfig, ConfigError> {
        let hidden_size = required("hidden_size", self.hidden_size)?;
        let num_layers = required("num_hidden_layers", self.num_hidden_layers)?;
        let num_heads = required("num_attention_heads", self.num_attention_heads)?;
        let num_kv_heads = required(
            "num_key_value_heads",
            self.num_key_value_heads.or(Some(num_heads)),
        )?;
        if num_heads % num_kv_heads != 0 {
            return Err(field_error(
                "num_key_value_heads",
                format!("({num_kv_heads}) must divide num_attention_heads ({num_heads})"),
            ));
        }
        let default_head_dim = match family {
            Family::Qwen3 => Some(128),
            _ if hidden_size % num_heads == 0 => Some(hidden_size / num_heads),
            _ => None,
        };
        let head_dim = match self.head_dim.or(default_head_dim) {
            None => {
                return Err(field_error(
                    "num_attention_heads",
                    format!(
                        "({num_heads}) must divide hidden_size ({hidden_size}) when head_dim is not given"
                    ),
                ));
            }
            given => required("head_dim", given)?,
        };
        if head_dim % 2 != 0 {
            return Err(field_error(
                "head_dim",
                format!("({head_dim}) must be even for RoPE"),
            ));
        }
        if let Some(act) = &self.hidden_act
            && act != "silu"
        {
            return Err(field_error(
                "hidden_act",
                format!("`{act}` is not supported (only silu)"),
            ));
        }
        let (rope_theta, rope_scaling) = self.rope()?;
        let max_position_embeddings = self.max_position_embeddings.unwrap_or(2048);
        let rope_scaling = rope_scaling.map(|mut s| {
            if s.original_max_position_embeddings == 0 {
                s.original_max_position_embeddings = max_position_embeddings;
            }
            s
        });
        let explicit_bias = self.attention_bias.unwrap_or(false);
        let vocab_size = required("vocab_size", self.vocab_size)?;
        let intermediate_size = required("intermediate_size", self.intermediate_size)?;
        let tie_word_embeddings = self.tie_word_embeddings.unwrap_or(false);
        let parameters = weight_count(
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads as u128 * head_dim as u128,
            num_kv_heads as u128 * head_dim as u128,
            tie_word_embeddings,
        );
        if parameters > MAX_PARAMETERS {
            return Err(ConfigError::TooLarge { parameters });
        }
        let layer_windows = self.layer_windows(family, num_layers)?;
        Ok(ModelConfig {
            family,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: self.rms_norm_eps.unwrap_or(match family {
                Family::Olmo2 => 1e-5,
                _ => 1e-6,
            }),
            rope_theta,
            rope_scaling,
            max_position_embeddings,
            tie_word_embeddings,
            attention_bias: family == Family::Qwen2 || explicit_bias,
            output_bias: family != Family::Qwen2 && explicit_bias,
            mlp_bias: family == Family::Llama && self.mlp_bias.unwrap_or(false),
            qk_norm: match family {
                Family::Qwen3 => QkNorm::PerHead,
                Family::Olmo2 => QkNorm::AllHeads,
                _ => QkNorm::None,
            },
            norm_placement: match family {
                Family::Olmo2 => NormPlacement::Post,
                _ => NormPlacement::Pre,
            },
            layer_windows,
            bos_token_id: self.bos_token_id,
            eos_token_ids: eos_ids(self.eos_token_id.as_ref())?,
            pad_token_id: pad_id(self.pad_token_id.as_ref()),
            initializer_range: match self.initializer_range {
                Some(std) if !(std.is_finite() && std >= 0.0) => {
                    return Err(field_error(
                        "initializer_range",
                        "must be a non-negative number",
                    ));
                }
                // transformers: `config.initializer_range or 0.02`.
                Some(std) if std > 0.0 => std,
                _ => 0.02,
            },
            head: self.head()?,
        })
    }

    /// `*ForSequenceClassification` in `architectures` selects the score head, with
    /// transformers' label count: `len(id2label)`, else `num_labels`, else 2.
    fn head(&self) -> Result<HeadKind, ConfigError> {
        let classifier = self
            .architectures
            .iter()
            .flatten()
            .any(|a| a.ends_with("ForSequenceClassification"));
        if !classifier {
            return Ok(HeadKind::LanguageModel);
        }
        let num_labels = match (&self.id2label, self.num_labels) {
            (Some(labels), _) => labels.len(),
            (None, Some(n)) => n,
            (None, None) => 2,
        };
        if num_labels == 0 {
            return Err(field_error(
                "id2label",
                "a sequence-classification model needs at least one label",
            ));
        }
        Ok(HeadKind::SequenceClassification { num_labels })
    }

    /// `rope_parameters` (transformers 5) wins over `rope_theta` + `rope_scaling`.
    fn rope(&self) -> Result<(f64, Option<RopeScaling>), ConfigError> {
        let params = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref());
        let theta = params
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .or(self.rope_theta)
            .unwrap_or(10_000.0);
        if !(theta.is_finite() && theta > 0.0) {
            return Err(field_error("rope_theta", "must be a positive number"));
        }
        let Some(params) = params.filter(|p| !p.is_null()) else {
            return Ok((theta, None));
        };
        let kind = params
            .get("rope_type")
            .or_else(|| params.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        match kind {
            "default" => Ok((theta, None)),
            "llama3" => {
                let number = |key: &'static str| {
                    params
                        .get(key)
                        .and_then(Value::as_f64)
                        .ok_or_else(|| field_error("rope_scaling", format!("llama3 needs `{key}`")))
                };
                Ok((
                    theta,
                    Some(RopeScaling {
                        factor: number("factor")?,
                        low_freq_factor: number("low_freq_factor")?,
                        high_freq_factor: number("high_freq_factor")?,
                        original_max_position_embeddings: params
                            .get("original_max_position_embeddings")
                            .and_then(Value::as_u64)
                            .map_or(0, |v| v as usize),
                    }),
                ))
            }
            other => Err(field_error(
                "rope_scaling",
                format!("rope_type `{other}` is not supported (supported: default, llama3)"),
            )),
        }
    }

    /// Per-layer sliding windows as transformers derives them: explicit `layer_types`; Qwen's
    /// `use_sliding_window` from `max_window_layers` on; Mistral's `sliding_window` on every layer.
    fn layer_windows(
        &self,
        family: Family,
        num_layers: usize,
    ) -> Result<Vec<Option<usize>>, ConfigError> {
        let window = match family {
            Family::Qwen2 | Family::Qwen3 if self.use_sliding_window == Some(true) => {
                self.sliding_window
            }
            Family::Mistral => self.sliding_window,
            _ => None,
        };
        if let Some(types) = &self.layer_types {
            if types.len() != num_layers {
                return Err(field_error(
                    "layer_types",
                    format!("has {} entries for {num_layers} layers", types.len()),
                ));
            }
            return types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" => Ok(None),
                    "sliding_attention" => {
                        window.or(self.sliding_window).map(Some).ok_or_else(|| {
                            field_error("sliding_window", "is needed by sliding_attention layers")
                        })
                    }
                    other => Err(field_error(
                        "layer_types",
                        format!("`{other}` is not supported"),
                    )),
                })
                .collect();
        }
        let first_sliding = match family {
            Family::Qwen2 | Family::Qwen3 => self.max_window_layers.unwrap_or(28),
            _ => 0,
        };
        Ok((0..num_layers)
            .map(|layer| window.filter(|_| layer >= first_sliding))
            .collect())
    }
}

/// `pad_token_id` as a token id. Anything else (absent, null, or a value no tokenizer id can be,
/// such as the -1 of some older configs) is no pad id: it never stops a causal LM from loading,
/// and a score model then reads each row at its last attended token.
fn pad_id(value: Option<&Value>) -> Option<u32> {
    value
        .and_then(Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
}

/// `eos_token_id` is an id, a list of ids, or absent.
fn eos_ids(value: Option<&Value>) -> Result<Vec<u32>, ConfigError> {
    let as_id = |v: &Value| {
        v.as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| field_error("eos_token_id", format!("`{v}` is not a token id")))
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(ids)) => ids.iter().map(as_id).collect(),
        Some(id) => Ok(vec![as_id(id)?]),
    }
}
