//! Numeric equivalence without a computer algebra system: both answers are read as
//! arithmetic over LaTeX (`\frac`, `\sqrt[n]{}`, `^`, `\pi`, `\cdot`, `%`, implicit
//! products, comma-separated tuples) and compared as numbers. Letters are variables: both
//! sides are evaluated at two fixed points, so `2x+1` and `1+2x` agree as sympy's
//! `simplify(a - b) == 0` would say. Input length, nesting depth and exponents are capped,
//! so evaluation is linear in the input and cannot run away.

/// Longest answer evaluated, in characters.
pub const MAX_LEN: usize = 1_000;
/// Deepest nesting of groups and operators.
pub const MAX_DEPTH: usize = 64;
/// Largest exponent magnitude.
pub const MAX_EXPONENT: f64 = 1_000.0;
/// Relative tolerance of the comparison (round-off of the float evaluation, not more).
const TOLERANCE: f64 = 1e-9;

/// Do `a` and `b` evaluate to the same number (or tuple of numbers, with the same brackets)
/// at every test point? `false` when either cannot be evaluated.
pub fn numerically_equal(a: &str, b: &str) -> bool {
    if a.chars().count() > MAX_LEN || b.chars().count() > MAX_LEN {
        return false;
    }
    let (a, b) = (clean(a), clean(b));
    (0..2).all(|point| match (evaluate(&a, point), evaluate(&b, point)) {
        (Some(x), Some(y)) => {
            x.brackets == y.brackets
                && x.items.len() == y.items.len()
                && x.items
                    .iter()
                    .zip(&y.items)
                    .all(|(p, q)| (p - q).abs() <= TOLERANCE * 1f64.max(p.abs()).max(q.abs()))
        }
        _ => false,
    })
}

/// The value of an answer: one number, or a tuple/interval with its brackets.
#[derive(Debug, PartialEq)]
pub struct Evaluated {
    pub brackets: Option<(char, char)>,
    pub items: Vec<f64>,
}

/// Evaluate `text` (an expression, a comma-separated tuple, or one in brackets) at test point
/// `point` (0 or 1); `None` if it is not arithmetic this evaluator reads.
pub fn evaluate(text: &str, point: usize) -> Option<Evaluated> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() || chars.len() > MAX_LEN * 2 {
        return None;
    }
    if let Some(items) = tuple(&chars, point) {
        return Some(Evaluated {
            brackets: None,
            items,
        });
    }
    let (&open, &close) = (chars.first()?, chars.last()?);
    if matches!(open, '(' | '[') && matches!(close, ')' | ']') && chars.len() >= 2 {
        let items = tuple(&chars[1..chars.len() - 1], point)?;
        return (items.len() > 1).then_some(Evaluated {
            brackets: Some((open, close)),
            items,
        });
    }
    None
}

fn tuple(chars: &[char], point: usize) -> Option<Vec<f64>> {
    let mut parser = Parser {
        chars,
        pos: 0,
        point,
        depth: 0,
    };
    let mut values = vec![parser.expression()?];
    while parser.eat(',') {
        values.push(parser.expression()?);
    }
    (parser.pos == chars.len() && values.iter().all(|v| v.is_finite())).then_some(values)
}

/// Remove what does not change the value: spacing commands, `\left`/`\right`, `\displaystyle`,
/// dollar signs, degree marks; spell `\dfrac`/`\tfrac` as `\frac`.
fn clean(text: &str) -> String {
    let mut s = text.to_string();
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\displaystyle", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\ ", ""),
        ("\\%", "%"),
        ("$", ""),
    ] {
        s = s.replace(from, to);
    }
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
    point: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.chars.len() >= self.pos + n
            && self.chars[self.pos..self.pos + n]
                .iter()
                .copied()
                .eq(s.chars())
        {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn expression(&mut self) -> Option<f64> {
        self.nested(|p| {
            let mut value = p.term()?;
            loop {
                if p.eat('+') {
                    value += p.term()?;
                } else if p.eat('-') {
                    value -= p.term()?;
                } else {
                    return Some(value);
                }
            }
        })
    }

    fn term(&mut self) -> Option<f64> {
        let mut value = self.unary()?;
        loop {
            if self.eat('*') || self.eat_str("\\cdot") || self.eat_str("\\times") {
                value *= self.unary()?;
            } else if self.eat('/') || self.eat_str("\\div") {
                value /= self.unary()?;
            } else if self.starts_atom() {
                value *= self.power()?;
            } else {
                return Some(value);
            }
        }
    }

    fn unary(&mut self) -> Option<f64> {
        self.nested(|p| {
            if p.eat('-') {
                Some(-p.unary()?)
            } else if p.eat('+') {
                p.unary()
            } else {
                p.power()
            }
        })
    }

    fn power(&mut self) -> Option<f64> {
        let base = self.postfix()?;
        if !self.eat('^') {
            return Some(base);
        }
        let exponent = self.nested(|p| {
            if p.peek() == Some('{') {
                p.atom()
            } else {
                p.unary()
            }
        })?;
        if exponent.abs() > MAX_EXPONENT {
            return None;
        }
        let value = base.powf(exponent);
        value.is_finite().then_some(value)
    }

    fn postfix(&mut self) -> Option<f64> {
        let mut value = self.atom()?;
        while self.eat('%') {
            value /= 100.0;
        }
        Some(value)
    }

    fn starts_atom(&self) -> bool {
        match self.peek() {
            Some(c) => {
                c.is_ascii_alphanumeric()
                    || matches!(c, '(' | '{' | '.')
                    || (c == '\\' && !self.at_operator())
            }
            None => false,
        }
    }

    fn at_operator(&self) -> bool {
        let rest: String = self.chars[self.pos..self.chars.len().min(self.pos + 7)]
            .iter()
            .collect();
        rest.starts_with("\\cdot") || rest.starts_with("\\times") || rest.starts_with("\\div")
    }

    /// A `{...}` group, or a single character (`\frac12`).
    fn argument(&mut self) -> Option<f64> {
        if self.peek() == Some('{') {
            return self.atom();
        }
        let c = self.peek()?;
        self.pos += 1;
        if let Some(digit) = c.to_digit(10) {
            return Some(f64::from(digit));
        }
        c.is_ascii_alphabetic()
            .then(|| variable_value(&c.to_string(), self.point))
    }

    fn atom(&mut self) -> Option<f64> {
        self.nested(|p| {
            let c = p.peek()?;
            if c.is_ascii_digit() || c == '.' {
                return p.number();
            }
            for (open, close) in [('(', ')'), ('{', '}'), ('[', ']')] {
                if p.eat(open) {
                    let value = p.expression()?;
                    return p.eat(close).then_some(value);
                }
            }
            if c == '\\' {
                return p.command();
            }
            if c.is_ascii_alphabetic() {
                p.pos += 1;
                if c == 'p' && p.eat('i') {
                    return Some(std::f64::consts::PI);
                }
                return Some(variable_value(&c.to_string(), p.point));
            }
            None
        })
    }

    /// A number as sympy's LaTeX grammar reads it: `\d+(,\d{3})*(\.\d+)?` or `\.\d+` (a comma
    /// before three digits groups thousands; a trailing `.` is not part of a number).
    fn number(&mut self) -> Option<f64> {
        let digit_at = |p: &Self, i: usize| p.chars.get(i).is_some_and(char::is_ascii_digit);
        let mut text = String::new();
        while digit_at(self, self.pos) {
            text.push(self.chars[self.pos]);
            self.pos += 1;
            let grouped = self.peek() == Some(',')
                && (1..=3).all(|k| digit_at(self, self.pos + k))
                && !digit_at(self, self.pos + 4)
                && !text.is_empty();
            if grouped {
                self.pos += 1;
            }
        }
        if self.peek() == Some('.') && digit_at(self, self.pos + 1) {
            text.push('.');
            self.pos += 1;
            while digit_at(self, self.pos) {
                text.push(self.chars[self.pos]);
                self.pos += 1;
            }
        }
        text.parse().ok()
    }

    /// A LaTeX command. Spaces are gone by now, so `\pi r` reads `\pir`: the longest known
    /// command name that starts the letters is taken, the rest is parsed after it.
    fn command(&mut self) -> Option<f64> {
        const NAMES: [&str; 12] = [
            "frac", "sqrt", "lambda", "alpha", "theta", "gamma", "sigma", "omega", "beta", "phi",
            "mu", "pi",
        ];
        self.pos += 1;
        let name = NAMES.into_iter().find(|name| self.eat_str(name))?;
        match name {
            "frac" => {
                let numerator = self.argument()?;
                let denominator = self.argument()?;
                Some(numerator / denominator)
            }
            "sqrt" => {
                let index = if self.eat('[') {
                    let index = self.expression()?;
                    if !self.eat(']') {
                        return None;
                    }
                    index
                } else {
                    2.0
                };
                let radicand = self.argument()?;
                root(radicand, index)
            }
            "pi" => Some(std::f64::consts::PI),
            greek => Some(variable_value(greek, self.point)),
        }
    }
}

fn root(radicand: f64, index: f64) -> Option<f64> {
    if index == 0.0 || index.abs() > MAX_EXPONENT {
        return None;
    }
    let odd_integer = index.fract() == 0.0 && (index as i64) % 2 != 0;
    let value = if radicand < 0.0 && odd_integer {
        -(-radicand).powf(1.0 / index)
    } else {
        radicand.powf(1.0 / index)
    };
    value.is_finite().then_some(value)
}

/// A fixed irrational-looking value per variable name and test point.
fn variable_value(name: &str, point: usize) -> f64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let hash = hash.wrapping_add(point as u64 * 0x9e37_79b9_7f4a_7c15);
    1.0 + (hash % 1_000_003) as f64 / 1_000_003.0 * std::f64::consts::E
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalences() {
        assert!(numerically_equal("\\frac{1}{2}", "0.5"));
        assert!(numerically_equal(
            "\\dfrac{\\sqrt{3}}{2}",
            "\\frac{1}{2}\\sqrt{3}"
        ));
        assert!(numerically_equal("2x+1", "1+2x"));
        assert!(numerically_equal("\\sqrt[3]{-8}", "-2"));
        assert!(numerically_equal("2^{10}", "1024"));
        assert!(numerically_equal("50\\%", "0.5"));
        assert!(numerically_equal("(1,2)", "(1,2)") && !numerically_equal("1,2", "2,1"));
        assert!(numerically_equal("\\pi r^2", "r^2\\pi"));
        assert!(!numerically_equal("0.333", "\\frac{1}{3}"));
        assert!(!numerically_equal("x", "y"));
        assert!(!numerically_equal("2^{100000}", "2^{100000}"));
        assert!(!numerically_equal("\\text{yes}", "\\text{yes}"));
        assert!(!numerically_equal(&"(".repeat(500), "1"));
    }
}
