//! Answer candidates from a MATH-style response, as open-instruct's `MathVerifier` finds them:
//! the last `\boxed{}` (braces balanced), Minerva's "Final Answer: The final answer is ... I
//! hope it is correct.", and the text between the last two `$`. Each is one linear scan.

use std::sync::LazyLock;

use regex::Regex;

/// `last_boxed_only_string`: the last `\boxed{...}` (or `\fbox{...}`) with balanced braces,
/// or everything after the last `\boxed ` up to a `$` when the text has the spaced form.
pub fn last_boxed_only_string(text: &str) -> Option<String> {
    if text.contains("\\boxed ") {
        let after = text.rsplit("\\boxed ").next().unwrap_or("");
        return Some(format!("\\boxed {}", after.split('$').next().unwrap_or("")));
    }
    let start = text.rfind("\\boxed").or_else(|| text.rfind("\\fbox"))?;
    let mut open: i64 = 0;
    for (offset, c) in text[start..].char_indices() {
        match c {
            '{' => open += 1,
            '}' => {
                open -= 1;
                if open == 0 {
                    return Some(text[start..start + offset + 1].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// `remove_boxed`: the inside of `\boxed{...}` or what follows `\boxed `; `None` where the
/// reference's assertions fail (an `\fbox{}`, or a spaced `\boxed ` nested inside braces).
pub fn remove_boxed(boxed: &str) -> Option<&str> {
    if boxed.contains("\\boxed ") {
        return boxed.strip_prefix("\\boxed ");
    }
    boxed.strip_prefix("\\boxed{")?.strip_suffix('}')
}

/// The content of the last `\boxed{}`, as open-instruct extracts it.
pub fn boxed_answer(text: &str) -> Option<String> {
    let boxed = last_boxed_only_string(text)?;
    remove_boxed(&boxed).map(str::to_string)
}

static MINERVA: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"Final Answer: The final answer is(.*?). I hope it is correct.")
        .expect("a fixed pattern")
});

/// `get_unnormalized_answer`: Minerva's final-answer sentence (the closing "I hope it is
/// correct." may be missing at the very end), or `None` (the reference's "[invalidanswer]").
pub fn minerva_answer(text: &str) -> Option<String> {
    let text = format!("{text}I hope it is correct.");
    let captures = MINERVA.captures(&text)?;
    Some(crate::python::strip(captures.get(1).map_or("", |m| m.as_str())).to_string())
}

/// The text between the last two `$` signs, if there are two.
pub fn last_dollar_answer(text: &str) -> Option<&str> {
    let last = text.rfind('$')?;
    let before = text[..last].rfind('$')?;
    Some(&text[before + 1..last])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_rules() {
        assert_eq!(
            boxed_answer(r"so \boxed{\frac{1}{2}} and \boxed{3}"),
            Some("3".into())
        );
        assert_eq!(boxed_answer(r"\boxed{a{b}c}"), Some("a{b}c".into()));
        assert_eq!(boxed_answer(r"\boxed 5$ done"), Some("5".into()));
        assert_eq!(boxed_answer(r"\fbox{5}"), None);
        assert_eq!(boxed_answer(r"\boxed{unclosed"), None);
        assert_eq!(
            minerva_answer("Final Answer: The final answer is $7$. I hope it is correct."),
            Some("$7$".into())
        );
        assert_eq!(
            minerva_answer("Final Answer: The final answer is 7. "),
            Some("7".into())
        );
        assert_eq!(minerva_answer("Final Answer: The final answer is 7."), None);
        assert_eq!(minerva_answer("no"), None);
        assert_eq!(last_dollar_answer("a $1$ b $x+2$"), Some("x+2"));
        assert_eq!(last_dollar_answer("a $1"), None);
    }
}
