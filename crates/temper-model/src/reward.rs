//! Reward models: transformers' `*ForSequenceClassification`, the decoder with a `score` head
//! (a linear layer without bias to `num_labels` outputs) in place of the LM head. The model is
//! still a [`CausalLm`] with a [`ScoreHead`], so training, parameter names, the optimizer,
//! saving and LoRA treat it as any other model.
//!
//! A sequence's score is the head's output at its last token. transformers finds that token
//! with `config.pad_token_id`: the rightmost position whose id is not the pad id
//! (`GenericForSequenceClassification.forward`); [`last_token_indices`] is that rule, restricted
//! to attended positions (see there for when the two differ).
//!
//! A causal LM becomes a fresh reward model as TRL's `RewardTrainer` makes one
//! (`AutoModelForSequenceClassification.from_pretrained(causal_lm, num_labels=1)`): the LM head
//! is dropped and `score` is drawn from a normal distribution with the config's
//! `initializer_range` as standard deviation ([`add_score_head`], [`load_reward_model`]).

use std::path::Path;

use burn::module::Param;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::WeightFiles;
use crate::config::{HeadKind, ModelConfig};
use crate::load::{LoadError, build_model, read_config};
use crate::model::{CausalLm, Head, ScoreHead};

/// How a causal LM becomes a reward model (and what a sequence-classification model must
/// have to be used as one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreHeadInit {
    /// Outputs of the `score` head (TRL's reward models: 1).
    pub num_labels: usize,
    /// The padding id written as the model's `pad_token_id` (where transformers reads each
    /// row's score); `None` keeps the model's. TRL sets the tokenizer's pad token (or its
    /// eos token when it has none).
    pub pad_token_id: Option<u32>,
    /// Seed of the fresh head's weights.
    pub seed: u64,
}

impl Default for ScoreHeadInit {
    fn default() -> Self {
        Self {
            num_labels: 1,
            pad_token_id: None,
            seed: 42,
        }
    }
}

/// Scores with a label count other than one cannot be rewards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a reward is one score per sequence, but the model has {0} labels (num_labels must be 1)")]
pub struct NotOneLabel(pub usize);

/// The position of each row's last token, `[batch]`: the rightmost position that is attended
/// (`attention_mask` 1) and, when `pad_token_id` is given, whose id is not the pad id; 0 for a
/// row with no such position (transformers' `argmax` of all zeros).
///
/// transformers (5.x, `GenericForSequenceClassification`) takes the rightmost position whose id
/// is not `pad_token_id`, ignoring the attention mask, or the last position when the config has
/// no pad id (and then refuses batches of more than one row). When the batch is padded with
/// `pad_token_id`, as transformers' and TRL's collators pad, the two rules pick the same
/// position. They differ only where a padding position holds another id (padding with an id
/// other than the model's pad id: transformers would read the padding, this reads the last real
/// token) or, without a pad id, for padded rows (transformers reads the last position, padding
/// included). Note that a real token equal to the pad id (e.g. a trailing eos when pad = eos,
/// which TRL sets when a tokenizer has no pad token) is skipped by both rules: the score is read
/// before it.
pub fn last_token_indices<B: Backend>(
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Tensor<B, 2>,
    pad_token_id: Option<u32>,
) -> Tensor<B, 1, Int> {
    let [batch, seq] = input_ids.dims();
    let device = input_ids.device();
    let mut keep = attention_mask.greater_elem(0.5).int();
    if let Some(pad) = pad_token_id {
        keep = keep * input_ids.not_equal_elem(i64::from(pad)).int();
    }
    let positions = Tensor::<B, 1, Int>::arange(0..seq as i64, &device).unsqueeze::<2>();
    (keep * positions).max_dim(1).reshape([batch])
}

/// Each row's scores at its last token ([`last_token_indices`]): `[batch, seq, num_labels]` →
/// `[batch, num_labels]`, what transformers' sequence-classification forward returns as
/// `logits`.
pub fn last_token_scores<B: Backend>(
    scores: Tensor<B, 3>,
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Tensor<B, 2>,
    pad_token_id: Option<u32>,
) -> Tensor<B, 2> {
    let [batch, _, labels] = scores.dims();
    let index = last_token_indices(input_ids, attention_mask, pad_token_id)
        .reshape([batch, 1, 1])
        .repeat_dim(2, labels);
    scores.gather(1, index).reshape([batch, labels])
}

/// A reward model's reward per row, `[batch]`: [`last_token_scores`] of its single label.
pub fn last_token_rewards<B: Backend>(
    scores: Tensor<B, 3>,
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Tensor<B, 2>,
    pad_token_id: Option<u32>,
) -> Result<Tensor<B, 1>, NotOneLabel> {
    let [batch, _, labels] = scores.dims();
    if labels != 1 {
        return Err(NotOneLabel(labels));
    }
    Ok(last_token_scores(scores, input_ids, attention_mask, pad_token_id).reshape([batch]))
}

/// Replaces the LM head (tied or not) by a fresh `score` head as transformers initialises one:
/// every weight ~ N(0, `initializer_range`²), drawn from `init.seed` (the same seed gives the
/// same head on every backend; torch's generator is not reproduced). The decoder is unchanged.
pub fn add_score_head<B: Backend>(
    mut model: CausalLm<B>,
    init: &ScoreHeadInit,
    initializer_range: f64,
    device: &B::Device,
) -> CausalLm<B> {
    let hidden = model.norm.weight.dims()[0];
    let labels = init.num_labels;
    // Drawn in HF's `[num_labels, hidden]` order, stored transposed as `[hidden, num_labels]`.
    let mut rng = ChaCha8Rng::seed_from_u64(init.seed);
    let drawn: Vec<f32> = (0..labels * hidden)
        .map(|_| (standard_normal(&mut rng) * initializer_range) as f32)
        .collect();
    let mut weight = vec![0.0f32; drawn.len()];
    for label in 0..labels {
        for h in 0..hidden {
            weight[h * labels + label] = drawn[label * hidden + h];
        }
    }
    let pad_token_id = init
        .pad_token_id
        .or_else(|| model.score_head().and_then(|s| s.pad_token_id));
    model.set_head(Head::Score(ScoreHead {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [hidden, labels]),
            device,
        )),
        pad_token_id,
    }));
    model
}

/// Box–Muller: one N(0, 1) draw.
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Loads a reward (sequence-classification) model from `dir`, as TRL's `RewardTrainer` does with
/// `AutoModelForSequenceClassification.from_pretrained(dir, num_labels=...)`:
///
/// - a `*ForSequenceClassification` model (`score.weight`, no `lm_head`) loads as it is;
///   its label count must be `init.num_labels`;
/// - a causal LM loads its decoder, drops the LM head without reading it, and gets a
///   fresh head ([`add_score_head`]).
///
/// The returned config describes the reward model (`head`, `pad_token_id`):
/// `init.pad_token_id` if given, else the model's.
pub fn load_reward_model<B: Backend>(
    dir: &Path,
    init: &ScoreHeadInit,
    device: &B::Device,
) -> Result<(ModelConfig, CausalLm<B>), LoadError> {
    if init.num_labels == 0 {
        return Err(LoadError::NoLabels);
    }
    let mut config = read_config(dir)?;
    let files = WeightFiles::open(dir)?;
    files.verify(&config)?;
    let model = match config.head {
        HeadKind::SequenceClassification { num_labels } if num_labels != init.num_labels => {
            return Err(LoadError::Labels {
                path: dir.join("config.json"),
                found: num_labels,
                wanted: init.num_labels,
            });
        }
        HeadKind::SequenceClassification { .. } => {
            let mut model = build_model(&config, &files, device, true)?;
            if let (Some(score), Some(pad)) = (model.score_head_mut(), init.pad_token_id) {
                score.pad_token_id = Some(pad);
            }
            model
        }
        HeadKind::LanguageModel => {
            let backbone = build_model(&config, &files, device, false)?;
            let init = ScoreHeadInit {
                pad_token_id: init.pad_token_id.or(config.pad_token_id),
                ..init.clone()
            };
            add_score_head(backbone, &init, config.initializer_range, device)
        }
    };
    config.head = HeadKind::SequenceClassification {
        num_labels: init.num_labels,
    };
    config.pad_token_id = model.score_head().and_then(|s| s.pad_token_id);
    Ok((config, model))
}
