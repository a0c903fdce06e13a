//! GSM8K: open-instruct's rule (drop the commas between digits, take the last number, compare
//! as lowercase strings) and a strict mode that reads only the `#### answer` line GSM8K's
//! reference solutions end with.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::error::VerifyError;
use crate::python::is_decimal;
use crate::verifier::{Verdict, Verifier, ground_truth_text};

/// `re.sub(r"(\d),(\d)", r"\1\2", text)`: left to right, a digit used once.
pub fn drop_thousands_separators(text: &str) -> Cow<'_, str> {
    if !text.contains(',') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if !is_decimal(c) {
            continue;
        }
        // `c` opens a match when a comma and a digit follow; the digit is then consumed too.
        let mut ahead = chars.clone();
        if ahead.next() == Some(',')
            && let Some(d) = ahead.next().filter(|&d| is_decimal(d))
        {
            out.push(d);
            chars = ahead;
        }
    }
    Cow::Owned(out)
}

/// The last match of `[-+]?\d*\.\d+|\d+` (a sign only with a decimal point, as the pattern
/// reads), or `None`. One forward scan, as `re.findall` does.
pub fn last_number(text: &str) -> Option<&str> {
    let mut last = None;
    let mut i = 0;
    let digits_from = |mut j: usize| {
        while let Some(c) = text[j..].chars().next().filter(|&c| is_decimal(c)) {
            j += c.len_utf8();
        }
        j
    };
    while let Some(c) = text[i..].chars().next() {
        // Alternative 1: [-+]?\d*\.\d+
        let j = if matches!(c, '-' | '+') { i + 1 } else { i };
        let after_int = digits_from(j);
        if text[after_int..].starts_with('.') {
            let after_frac = digits_from(after_int + 1);
            if after_frac > after_int + 1 {
                last = Some(&text[i..after_frac]);
                i = after_frac;
                continue;
            }
        }
        // Alternative 2: \d+
        let after_digits = digits_from(i);
        if after_digits > i {
            last = Some(&text[i..after_digits]);
            i = after_digits;
            continue;
        }
        i += c.len_utf8();
    }
    last
}

/// What open-instruct compares: the last number of the response once thousands separators
/// are dropped, or the whole response when it has no digit.
///
/// Only the tail that can hold that number is rewritten: a character other than a digit, `.`,
/// `+`, `-` or `,` can be part of neither a separator match nor a number, so both regexes
/// restart after it, and the last number lies in the run of such characters that ends with the
/// response's last digit. The rest of the response is only scanned backwards, once.
pub fn extract(response: &str) -> Cow<'_, str> {
    let numeric = |c: char| is_decimal(c) || matches!(c, '.' | '+' | '-' | ',');
    let mut chars = response.char_indices().rev();
    let Some((last_digit, digit)) = chars.by_ref().find(|&(_, c)| is_decimal(c)) else {
        return Cow::Borrowed(response);
    };
    let end = last_digit + digit.len_utf8();
    let start = chars
        .find(|&(_, c)| !numeric(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    match drop_thousands_separators(&response[start..end]) {
        Cow::Borrowed(tail) => Cow::Borrowed(last_number(tail).unwrap_or(tail)),
        Cow::Owned(tail) => Cow::Owned(last_number(&tail).unwrap_or(&tail).to_string()),
    }
}

/// `str(a).lower() == str(b).lower()` without allocating for ASCII text.
fn equal_lowercase(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
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

impl Gsm8k {
    /// What is compared, and whether it matches.
    fn check<'a>(&self, response: &'a str, label: &str) -> (Option<Cow<'a, str>>, bool) {
        if self.strict {
            let extracted = hash_answer(response);
            let expected =
                hash_answer(&format!("#### {label}")).unwrap_or_else(|| label.to_string());
            let correct = extracted.as_deref() == Some(expected.as_str());
            return (extracted.map(Cow::Owned), correct);
        }
        let extracted = extract(response);
        let correct = equal_lowercase(&extracted, label);
        (Some(extracted), correct)
    }
}

impl Verifier for Gsm8k {
    fn name(&self) -> &'static str {
        if self.strict { "gsm8k_strict" } else { "gsm8k" }
    }

    fn verify(&self, response: &str, ground_truth: &Value) -> Result<Verdict, VerifyError> {
        let label = ground_truth_text(ground_truth);
        let (extracted, correct) = self.check(response, &label);
        Ok(Verdict::pass_fail(
            correct,
            json!({"extracted": extracted, "ground_truth": label}),
        ))
    }

    fn score(&self, response: &str, ground_truth: &Value) -> Result<f64, VerifyError> {
        let label = ground_truth_text(ground_truth);
        if self.strict {
            return Ok(if self.check(response, &label).1 {
                1.0
            } else {
                0.0
            });
        }
        Ok(if equal_lowercase(&extract(response), &label) {
            1.0
        } else {
            0.0
        })
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
        for text in [
            "a 1,234,567 b",
            "1,2,3",
            "x -5.5 y",
            "1.2.3 end",
            "a+.5",
            "none",
            "9, 10",
            "٣,٤",
        ] {
            let full = drop_thousands_separators(text);
            assert_eq!(extract(text), last_number(&full).unwrap_or(&full), "{text}");
        }
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
