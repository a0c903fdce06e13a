//! R1-style format: `<think>...</think>` reasoning, then `<answer>...</answer>`.
//!
//! Two rules from open-instruct: the soft format reward (`soft_format_reward_func`: somewhere a
//! `</think>` is followed, after optional whitespace, by `<answer>...</answer>`), and
//! `remove_thinking_section`, which the IFEval verifiers apply before checking a response.

use std::sync::LazyLock;

use regex::Regex;

static SOFT_FORMAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)\A.*?</think>[\s\x1c-\x1f]*<answer>.*?</answer>").expect("a fixed pattern")
});

/// open-instruct's `soft_format_reward_func` test (`re.match(r".*?</think>\s*<answer>.*?</answer>", r, re.DOTALL)`).
pub fn r1_format_matches(response: &str) -> bool {
    SOFT_FORMAT.is_match(response)
}

/// open-instruct's `remove_thinking_section`: drop `<|assistant|>`, keep what follows the last
/// `</think>`, drop the answer tags, trim.
pub fn remove_thinking_section(response: &str) -> String {
    // Every tag starts with `<`: without one, only the trimming applies (and nothing is copied
    // three times over).
    if !response.contains('<') {
        return crate::python::strip(response).to_string();
    }
    let response = response.replace("<|assistant|>", "");
    let response = crate::python::strip(&response);
    let after_thinking = response.rsplit("</think>").next().unwrap_or(response);
    let answer = after_thinking
        .replace("<answer>", "")
        .replace("</answer>", "");
    crate::python::strip(&answer).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r1_format() {
        assert!(r1_format_matches("<think>a</think>\n<answer>4</answer>"));
        assert!(r1_format_matches(
            "x</think> y </think><answer>4</answer> tail"
        ));
        assert!(!r1_format_matches("<think>a</think> so <answer>4</answer>"));
        assert!(!r1_format_matches("<answer>4</answer>"));
        assert_eq!(
            remove_thinking_section("<|assistant|> <think>hm</think> <answer> 42 </answer>\n"),
            "42"
        );
        assert_eq!(remove_thinking_section("no tags"), "no tags");
    }
}
