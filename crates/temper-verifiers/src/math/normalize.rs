//! Answer normalisation: Lewkowycz et al.'s `normalize_final_answer` (Minerva, appendix D) and
//! Hendrycks et al.'s `strip_string` (MATH), reproduced with their quirks, because a verdict
//! is "the normalised strings are equal". Where the Python raises (an `\sqrt` at the very end,
//! `a/b` with a non-integer side), `strip_string` returns `None` and [`hendrycks_is_equiv`]
//! falls back, like the reference, to comparing the raw strings.

use std::sync::LazyLock;

use regex::Regex;

use crate::python;

const SUBSTITUTIONS: [(&str, &str); 10] = [
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    ("\\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
];

const REMOVED_EXPRESSIONS: [&str; 42] = [
    "square",
    "ways",
    "integers",
    "dollars",
    "mph",
    "inches",
    "ft",
    "hours",
    "km",
    "units",
    "\\ldots",
    "sue",
    "points",
    "feet",
    "minutes",
    "digits",
    "cents",
    "degrees",
    "cm",
    "gm",
    "pounds",
    "meters",
    "meals",
    "edges",
    "students",
    "childrentickets",
    "multiples",
    "\\text{s}",
    "\\text{.}",
    "\\text{\ns}",
    "\\text{}^2",
    "\\text{}^3",
    "\\text{\n}",
    "\\text{}",
    "\\mathrm{th}",
    "^\\circ",
    "^{\\circ}",
    "\\;",
    ",\\!",
    "{,}",
    "\"",
    "\\dots",
];

static DOLLARS: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"(.*?)(\$)(.*?)(\$)(.*)"));
static TEXT: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"(\\text\{)(.*?)(\})"));
static TEXTBF: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"(\\textbf\{)(.*?)(\})"));
static OVERLINE: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"(\\overline\{)(.*?)(\})"));
static BOXED: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"(\\boxed\{)(.*)(\})"));
static SHORT_FRAC: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"(frac)([^{])(.)"));
static SHORT_SQRT: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"(sqrt)([^{])"));

/// `normalize_final_answer` (Lewkowycz et al. 2022, appendix D).
pub fn normalize_final_answer(answer: &str) -> String {
    let mut s = answer.rsplit('=').next().unwrap_or("").to_string();
    for (before, after) in SUBSTITUTIONS {
        s = s.replace(before, after);
    }
    for expression in REMOVED_EXPRESSIONS {
        s = s.replace(expression, "");
    }
    s = DOLLARS.replace_all(&s, "$$${3}$$").into_owned();
    s = TEXT.replace_all(&s, "${2}").into_owned();
    s = TEXTBF.replace_all(&s, "${2}").into_owned();
    s = OVERLINE.replace_all(&s, "${2}").into_owned();
    s = BOXED.replace_all(&s, "${2}").into_owned();
    s = SHORT_FRAC.replace_all(&s, "frac{${2}}{${3}}").into_owned();
    s = SHORT_SQRT.replace_all(&s, "sqrt{${2}}").into_owned();
    s = s.replace('$', "");
    if python::str_is_digit(&s.replace(',', "")) {
        s = s.replace(',', "");
    }
    s
}

/// `fix_fracs`: `\frac12` → `\frac{1}{2}`, `\frac1b` → `\frac{1}{b}`. `None` where the
/// reference raises (`\frac` at the very end).
fn fix_fracs(string: &str) -> Option<String> {
    let mut parts = string.split("\\frac");
    let mut out = parts.next().unwrap_or("").to_string();
    for part in parts {
        out.push_str("\\frac");
        let mut chars = part.chars();
        let a = chars.next()?;
        if a == '{' {
            out.push_str(part);
            continue;
        }
        let Some(b) = chars.next() else {
            return Some(string.to_string());
        };
        let rest = chars.as_str();
        if b != '{' {
            out.push_str(&format!("{{{a}}}{{{b}}}{rest}"));
        } else {
            out.push_str(&format!("{{{a}}}{b}{rest}"));
        }
    }
    Some(out)
}

/// `fix_a_slash_b`: `3/4` → `\frac{3}{4}` for plain integers. `None` where `int()` raises.
fn fix_a_slash_b(string: &str) -> Option<String> {
    let parts: Vec<&str> = string.split('/').collect();
    let [a, b] = parts[..] else {
        return Some(string.to_string());
    };
    if !python::int_parses(a) || !python::int_parses(b) {
        return None;
    }
    let canonical = |s: &str| {
        let digits = s.strip_prefix('-').unwrap_or(s);
        !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && s != "-0"
    };
    if canonical(a) && canonical(b) {
        Some(format!("\\frac{{{a}}}{{{b}}}"))
    } else {
        Some(string.to_string())
    }
}

/// `remove_right_units`: drop `\text{ ...}`; `None` where it occurs more than once.
fn remove_right_units(string: &str) -> Option<String> {
    if !string.contains("\\text{ ") {
        return Some(string.to_string());
    }
    let parts: Vec<&str> = string.split("\\text{ ").collect();
    (parts.len() == 2).then(|| parts[0].to_string())
}

/// `fix_sqrt`: `\sqrt3` → `\sqrt{3}`; `None` where `\sqrt` ends the string.
fn fix_sqrt(string: &str) -> Option<String> {
    if !string.contains("\\sqrt") {
        return Some(string.to_string());
    }
    let mut parts = string.split("\\sqrt");
    let mut out = parts.next().unwrap_or("").to_string();
    for part in parts {
        let mut chars = part.chars();
        let first = chars.next()?;
        if first != '{' {
            out.push_str(&format!("\\sqrt{{{first}}}{}", chars.as_str()));
        } else {
            out.push_str("\\sqrt");
            out.push_str(part);
        }
    }
    Some(out)
}

/// Hendrycks et al.'s `strip_string`; `None` where the reference raises.
pub fn strip_string(string: &str) -> Option<String> {
    let mut s = string.replace('\n', "");
    s = s.replace("\\!", "");
    s = s.replace("\\\\", "\\");
    s = s.replace("tfrac", "frac").replace("dfrac", "frac");
    s = s.replace("\\left", "").replace("\\right", "");
    s = s.replace("^{\\circ}", "").replace("^\\circ", "");
    s = s.replace("\\$", "");
    s = remove_right_units(&s)?;
    s = s.replace("\\%", "");
    s = s.replace(" .", " 0.").replace("{.", "{0.");
    if s.is_empty() {
        return Some(s);
    }
    if s.starts_with('.') {
        s.insert(0, '0');
    }
    let halves: Vec<&str> = s.split('=').collect();
    if halves.len() == 2 && python::len(halves[0]) <= 2 {
        s = halves[1].to_string();
    }
    s = fix_sqrt(&s)?;
    s = s.replace(' ', "");
    s = fix_fracs(&s)?;
    if s == "0.5" {
        s = "\\frac{1}{2}".to_string();
    }
    fix_a_slash_b(&s)
}

/// `hendrycks_is_equiv`: equal after `strip_string`, or, where that raises, equal as given.
pub fn hendrycks_is_equiv(a: &str, b: &str) -> bool {
    match (strip_string(a), strip_string(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minerva_normalisation() {
        assert_eq!(normalize_final_answer("x = \\frac{1}{2}"), "\\frac{1}{2}");
        assert_eq!(normalize_final_answer("10,000 dollars"), "10000");
        assert_eq!(normalize_final_answer("\\text{(B)}"), "(B)");
        assert_eq!(normalize_final_answer("$\\boxed{5}$."), "5");
        assert_eq!(normalize_final_answer("\\frac12"), "\\frac{1}{2}");
        assert_eq!(normalize_final_answer("\\sqrt2"), "\\sqrt{2}");
    }

    #[test]
    fn hendrycks_normalisation() {
        assert_eq!(
            strip_string("\\dfrac{1}{2}").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(strip_string("0.5").as_deref(), Some("\\frac{1}{2}"));
        assert_eq!(strip_string("3/4").as_deref(), Some("\\frac{3}{4}"));
        assert_eq!(strip_string("x/4"), None);
        assert_eq!(strip_string("03/4").as_deref(), Some("03/4"));
        assert_eq!(strip_string("\\sqrt3").as_deref(), Some("\\sqrt{3}"));
        assert_eq!(strip_string("2\\sqrt"), None);
        assert_eq!(strip_string("k = 7").as_deref(), Some("7"));
        assert_eq!(strip_string("50\\%").as_deref(), Some("50"));
        assert_eq!(strip_string("5 \\text{ cm}").as_deref(), Some("5"));
        assert!(hendrycks_is_equiv("\\tfrac{1}{2}", "0.5"));
        assert!(hendrycks_is_equiv("x/4", "x/4") && !hendrycks_is_equiv("x/4", "x / 4"));
    }
}
