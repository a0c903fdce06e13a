//! Decoder-only transformers configured from Hugging Face `config.json`: Llama 3, Qwen2.5,
//! Qwen3, Mistral and OLMo 2 with transformers' logits.
//!
//! It reads and validates the configs of the supported families ([`config`]), opens a model
//! directory's safetensors, single or sharded, checking every tensor against the config by name
//! and shape ([`weights`]), runs the forward pass over any Burn backend ([`model`], loaded by
//! [`load_model`]), trains with per-layer gradient checkpointing on or off
//! ([`gradient_checkpointing`]), generates with a KV cache ([`generate`]), carries PEFT LoRA
//! adapters ([`lora`]), and saves model directories and adapters that transformers and PEFT load
//! ([`save`]). The same model with a `score` head instead of the LM head is transformers'
//! `*ForSequenceClassification`, a reward model ([`reward`]).
//!
//! ```
//! let json = r#"{"model_type": "qwen2", "vocab_size": 32, "hidden_size": 16,
//!   "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
//!   "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0}"#;
//! let config = temper_model::ModelConfig::from_json(json)?;
//! assert_eq!(config.head_dim, 4);
//! assert!(config.attention_bias); // Qwen2 projects q, k, v with a bias
//! # Ok::<(), temper_model::ConfigError>(())
//! ```

pub mod attention;
pub mod config;
pub mod generate;
pub mod gradient_checkpointing;
pub mod hf_names;
pub mod init;
pub mod layers;
pub mod load;
pub mod lora;
pub mod model;
pub mod reward;
pub mod rope;
pub mod save;
pub mod score;
pub mod weights;

pub use config::{
    ConfigError, Family, HeadKind, MAX_PARAMETERS, ModelConfig, NormPlacement, QkNorm, RopeScaling,
    TooLong,
};
pub use generate::{
    Decoding, Generation, GenerationConfig, InvalidSampling, check_sampling, generate,
    generate_streaming,
};
pub use gradient_checkpointing::{Backward, GradientCheckpointing, loss_and_gradients};
pub use init::random_model;
pub use load::{LoadError, load_model};
pub use lora::{LoraConfig, add_lora, load_adapter, merge_adapters, set_adapters_enabled};
pub use model::{CausalLm, Head, HeadInput, HeadRef, KvCache, ScoreHead};
pub use reward::{
    NotOneLabel, ScoreHeadInit, add_score_head, last_token_indices, last_token_rewards,
    last_token_scores, load_reward_model,
};
pub use save::{SaveDtype, SaveError, SaveOptions, save_adapter, save_model};
pub use score::{ScoredSequence, score_sequences};
pub use weights::{WeightFiles, WeightsError};
