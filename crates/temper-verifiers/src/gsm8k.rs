//! GSM8K: open-instruct's rule (drop the commas between digits, take the last number, compare
//! as lowercase strings) and a strict mode that reads only the `#### answer` line GSM8K's
//! reference solutions end with.

use serde_json::{Value, json};

use crate::error::VerifyError;
use crate::python::is_decimal;
use crate::verifier::{Verdict, Verifier, ground_truth_text};

/// `re.sub(r"(\d),(\d)", r"\1\2", text)`: left to right, a digit used once.
pub fn drop_thousands_separators(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if i + 2 < chars.len()
            && is_decimal(chars[i])
            && chars[i + 1] == ','
            && is_decimal(chars[i + 2])
        {
            out.push(chars[i]);
            out.push(chars[i + 2]);
            i += 3;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The last match of `[-+]?\d*\.\d+|\d+` (a sign only with a decimal point, as the pattern
/// reads), or `None`.
pub fn last_number(text: &str) -> Option<&str> {
    let bytes: Vec<(usize, char)> = text.char_indices().collect();
    let n = bytes.len();
    let end_of = |i: usize| if i < n { bytes[i].0 } else { text.len() };
    let digits_from = |mut i: usize| {
        while i < n && is_decimal(bytes[i].1) {
            i += 1;
        }
        i
    };
    let mut last = None;
    let mut i = 0;
    while i < n {
        // Alternative 1: [-+]?\d*\.\d+
        let mut j = i;
        if matches!(bytes[j].1, '-' | '+') {
            j += 1;
        }
        let after_int = digits_from(j);
        if after_int < n && bytes[after_int].1 == '.' {
            let after_frac = digits_from(after_int + 1);
            if after_frac > after_int + 1 {
                last = Some(&text[bytes[i].0..end_of(after_frac)]);
                i = after_frac;
                continue;
            }
        }
        // Alternative 2: \d+
        let after_digits = digits_from(i);
        if after_digits > i {
            last = Some(&text[bytes[i].0..end_of(after_digits)]);
            i = after_digits;
            continue;
        }
        i += 1;
    }
    last
}

/// The `#### answer` of a GSM8K-style solution: the number after the last `####`, with `,`,
/// `$` and a final `.` removed.
pub fn hash_answer(text: &str) -> Option<String> {
    let (_, after) = text.rsplit_once("####")?;
    let token = crate::python::split_whitespace(after).next()?;
    let cleaned: String = token.chars().filter(|&c| c != ',' && c != '$').collect();
    let cleaned = cleaned.strip_suffix('.').unwrap_or(&cleaned).to_string();
    let numeric = !cleaned.is_empty()
        && cleaned
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || c == '.' || (i == 0 && c == '-'));
    numeric.then_some(cleaned)
}

/// GSM8K answer checking.
pub struct Gsm8k {
    /// Only the `#### answer` counts (GSM8K's own format) instead of the last number.
    pub strict: bool,
}

impl Verifier for Gsm8k {
    fn name(&self) -> &'static str {
        if self.strict { "gsm8k_strict" } else { "gsm8k" }
    }

    fn verify(&self, response: &str, ground_truth: &Value) -> Result<Verdict, VerifyError> {
        let label = ground_truth_text(ground_truth);
        if self.strict {
            let extracted = hash_answer(response);
            let expected = hash_answer(&format!("#### {label}")).unwrap_or_else(|| label.clone());
            let correct = extracted.as_deref() == Some(expected.as_str());
            return Ok(Verdict::pass_fail(
                correct,
                json!({"extracted": extracted, "ground_truth": label}),
            ));
        }
        let without_separators = drop_thousands_separators(response);
        let extracted = last_number(&without_separators).unwrap_or(&without_separators);
        let correct = extracted.to_lowercase() == label.to_lowercase();
        Ok(Verdict::pass_fail(
            correct,
            json!({"extracted": extracted, "ground_truth": label}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_instruct_rule() {
        assert_eq!(
            drop_thousands_separators("1,234,567 and 1,2,3"),
            "1234567 and 12,3"
        );
        assert_eq!(last_number("x -5 then +.5 and 3.25."), Some("3.25"));
        assert_eq!(last_number("minus -7"), Some("7"));
        assert_eq!(last_number("none"), None);
        let v = Gsm8k { strict: false };
        assert_eq!(
            v.verify("So 1,000 apples.", &json!("1000")).unwrap().score,
            1.0
        );
        assert_eq!(v.verify("It is 72", &json!(72)).unwrap().score, 1.0);
        assert_eq!(v.verify("abc", &json!("ABC")).unwrap().score, 1.0);
        let strict = Gsm8k { strict: true };
        assert_eq!(
            strict
                .verify("... 70 + 2\n#### 72", &json!("72"))
                .unwrap()
                .score,
            1.0
        );
        assert_eq!(
            strict
                .verify("the answer is 72", &json!("72"))
                .unwrap()
                .score,
            0.0
        );
        assert_eq!(
            strict.verify("#### $1,000.", &json!("1000")).unwrap().score,
            1.0
        );
    }
}
