//! # temper-verifiers
//!
//! The reward functions of reinforcement learning with verifiable rewards, as Tülu 3 uses
//! them: a response and its row's ground truth in, a score in [0, 1] out. Plain Rust, no
//! tensors; [`Registry::score_all`] scores batches on all cores.
//!
//! - [`gsm8k`]: open-instruct's last-number rule and a strict `#### answer` mode.
//! - [`math`]: boxed / Minerva / `$...$` answers, Hendrycks' and Minerva's normalisation, and
//!   bounded numeric evaluation in place of sympy.
//! - [`ifeval`]: the 25 IFEval instructions, strict and loose, with NLTK's Punkt sentence
//!   splitting and word tokenisation reproduced; [`ifeval_old`]: open-instruct's `func_name`
//!   form of the same checks.
//! - [`format`] and [`shaping`]: R1's `<think>/<answer>` format and open-instruct's reward
//!   scale, format reward and truncation penalty.
//! - [`registry`]: verifiers by dataset name, weighted sums for rows that name several.
//!
//! ```
//! use serde_json::json;
//! use temper_verifiers::{Registry, Row, Shaping};
//!
//! let registry = Registry::default();
//! let ground_truths = [json!("72")];
//! let datasets = ["gsm8k".to_string()];
//! let row = Row { response: "48 + 24 = 72", ground_truths: &ground_truths, datasets: &datasets, finished: true };
//! let scored = registry.score(&row, &Shaping::default())?;
//! assert_eq!(scored.score, 1.0);
//! assert_eq!(scored.reward, 10.0); // open-instruct's default verification reward
//! # Ok::<(), temper_verifiers::VerifyError>(())
//! ```

pub mod error;
pub mod format;
pub mod gsm8k;
pub mod ifeval;
pub mod ifeval_old;
pub mod math;
pub mod python;
pub mod registry;
pub mod shaping;
pub mod verifier;

pub use error::{InstructionError, VerifyError};
pub use ifeval::{Following, Instructions};
pub use registry::{Registry, Row, RowScore};
pub use shaping::{FormatReward, Shaping};
pub use verifier::{Verdict, Verifier};
