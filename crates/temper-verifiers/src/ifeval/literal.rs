//! `ast.literal_eval` for the ground truths open-instruct writes for its `ifeval` rows: the
//! Python `repr` of a list of dicts (`"[{'instruction_id': [...], 'kwargs': [None]}]"`).
//! Strings (either quote, the usual escapes, `u`/`r` prefixes), numbers, `True`/`False`/
//! `None`, lists, tuples and dicts become JSON values; JSON itself parses too. Nesting is
//! capped, so hostile input cannot overflow the stack.

use serde_json::{Map, Number, Value};

const MAX_DEPTH: usize = 64;

/// Parse one Python literal (surrounding whitespace allowed).
pub fn literal_eval(text: &str) -> Option<Value> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        pos: 0,
    };
    let value = parser.value(0)?;
    parser.skip_ws();
    (parser.pos == parser.chars.len()).then_some(value)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_ws();
        match self.peek()? {
            '[' => self.sequence(']', depth).map(Value::Array),
            '(' => self.sequence(')', depth).map(Value::Array),
            '{' => self.dict(depth),
            '\'' | '"' => self.string(false).map(Value::String),
            'u' | 'U' | 'r' | 'R' if matches!(self.chars.get(self.pos + 1), Some('\'' | '"')) => {
                let raw = matches!(self.peek(), Some('r' | 'R'));
                self.pos += 1;
                self.string(raw).map(Value::String)
            }
            c if c == '-' || c == '+' || c == '.' || c.is_ascii_digit() => self.number(),
            _ => self.name(),
        }
    }

    fn name(&mut self) -> Option<Value> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        match self.chars[start..self.pos]
            .iter()
            .collect::<String>()
            .as_str()
        {
            "None" | "null" => Some(Value::Null),
            "True" | "true" => Some(Value::Bool(true)),
            "False" | "false" => Some(Value::Bool(false)),
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E' | '_'))
        {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos]
            .iter()
            .filter(|&&c| c != '_')
            .collect();
        if let Ok(int) = text.parse::<i64>() {
            return Some(Value::Number(int.into()));
        }
        let float: f64 = text.parse().ok()?;
        Number::from_f64(float).map(Value::Number)
    }

    fn hex(&mut self, digits: usize) -> Option<char> {
        let text: String = self
            .chars
            .get(self.pos..self.pos + digits)?
            .iter()
            .collect();
        self.pos += digits;
        char::from_u32(u32::from_str_radix(&text, 16).ok()?)
    }

    /// A quoted string; `raw` keeps backslashes (an `r'...'` literal).
    fn string(&mut self, raw: bool) -> Option<String> {
        let quote = self.peek()?;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            self.pos += 1;
            if c == quote {
                return Some(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            if raw {
                out.push(c);
                out.push(self.peek()?);
                self.pos += 1;
                continue;
            }
            let escaped = self.peek()?;
            self.pos += 1;
            match escaped {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                'a' => out.push('\x07'),
                '0' => out.push('\0'),
                '\n' => {}
                'x' => out.push(self.hex(2)?),
                'u' => out.push(self.hex(4)?),
                'U' => out.push(self.hex(8)?),
                '\\' | '\'' | '"' => out.push(escaped),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    fn sequence(&mut self, close: char, depth: usize) -> Option<Vec<Value>> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek()? == close {
                self.pos += 1;
                return Some(items);
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek()? {
                ',' => self.pos += 1,
                c if c == close => {}
                _ => return None,
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Option<Value> {
        self.pos += 1;
        let mut map = Map::new();
        loop {
            self.skip_ws();
            if self.peek()? == '}' {
                self.pos += 1;
                return Some(Value::Object(map));
            }
            let key = match self.value(depth + 1)? {
                Value::String(key) => key,
                other => other.to_string(),
            };
            self.skip_ws();
            if self.peek()? != ':' {
                return None;
            }
            self.pos += 1;
            let value = self.value(depth + 1)?;
            map.insert(key, value);
            self.skip_ws();
            match self.peek()? {
                ',' => self.pos += 1,
                '}' => {}
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_reprs() {
        let text = r#"[{'instruction_id': ['punctuation:no_comma', "x"], 'kwargs': [None, {'n': 3, 'f': -1.5, 'ok': True}]}]"#;
        assert_eq!(
            literal_eval(text),
            Some(
                json!([{"instruction_id": ["punctuation:no_comma", "x"], "kwargs": [null, {"n": 3, "f": -1.5, "ok": true}]}])
            )
        );
        assert_eq!(literal_eval("'it\\'s'"), Some(json!("it's")));
        assert_eq!(literal_eval("r'a\\nb'"), Some(json!("a\\nb")));
        assert_eq!(literal_eval("[1, 2"), None);
        assert_eq!(literal_eval(&"[".repeat(10_000)), None);
    }
}
