//! open-instruct's reward shaping around the verifiers: the verification reward scale, the
//! R1 format reward (added, or required), and the penalty that replaces the reward of a
//! response cut off before its stop token.

use serde::{Deserialize, Serialize};

use crate::format::r1_format_matches;

/// How a response's verifier scores become its reward (`grpo_fast.py`'s `reward_fn`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shaping {
    /// `--verification_reward`: each verifier adds `weight × score × verification_reward`.
    pub verification_reward: f64,
    /// `--apply_r1_style_format_reward`, with `--r1_style_format_reward` and
    /// `--additive_format_reward`.
    pub format: Option<FormatReward>,
    /// `--non_stop_penalty_value` when `--non_stop_penalty` is on: the whole reward of a
    /// truncated response.
    pub non_stop_penalty: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FormatReward {
    /// Reward for matching the R1 format.
    pub reward: f64,
    /// Add it to the verifiable reward; otherwise the verifiable reward counts only when the
    /// format matches.
    pub additive: bool,
}

impl Default for Shaping {
    /// open-instruct's defaults: scale 10, no format reward, no truncation penalty.
    fn default() -> Self {
        Shaping {
            verification_reward: 10.0,
            format: None,
            non_stop_penalty: None,
        }
    }
}

impl Shaping {
    /// Scale 1 and nothing else: the reward is the (weighted) verifier score.
    pub fn unscaled() -> Self {
        Shaping {
            verification_reward: 1.0,
            ..Shaping::default()
        }
    }

    /// The reward of one response: `weighted_score` is Σ weight × score over its verifiers,
    /// `finished` whether generation ended on a stop token (finish reason "stop").
    pub fn reward(&self, weighted_score: f64, response: &str, finished: bool) -> f64 {
        let verifiable = weighted_score * self.verification_reward;
        let mut reward = match self.format {
            None => verifiable,
            Some(format) => {
                let matched = r1_format_matches(response);
                let format_score = if matched { format.reward } else { 0.0 };
                if format.additive {
                    verifiable + format_score
                } else if matched {
                    verifiable
                } else {
                    0.0
                }
            }
        };
        if let (Some(penalty), false) = (self.non_stop_penalty, finished) {
            reward = penalty;
        }
        reward
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_instruct_reward_fn() {
        let formatted = "<think>t</think><answer>4</answer>";
        assert_eq!(Shaping::default().reward(1.0, "4", true), 10.0);
        let additive = Shaping {
            format: Some(FormatReward {
                reward: 1.0,
                additive: true,
            }),
            ..Shaping::default()
        };
        assert_eq!(additive.reward(1.0, formatted, true), 11.0);
        assert_eq!(additive.reward(1.0, "4", true), 10.0);
        let gated = Shaping {
            format: Some(FormatReward {
                reward: 1.0,
                additive: false,
            }),
            ..Shaping::default()
        };
        assert_eq!(gated.reward(1.0, "4", true), 0.0);
        assert_eq!(gated.reward(1.0, formatted, true), 10.0);
        let penalised = Shaping {
            non_stop_penalty: Some(-1.0),
            ..Shaping::default()
        };
        assert_eq!(penalised.reward(1.0, "4", false), -1.0);
        assert_eq!(penalised.reward(1.0, "4", true), 10.0);
    }
}
