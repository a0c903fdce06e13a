//! Does `json.loads(text)` accept `text`? Python's decoder is not RFC 8259: it takes `NaN`,
//! `Infinity`, lone surrogate escapes and numbers of any size, and refuses control characters
//! in strings. `detectable_format:json_format` hinges on exactly this, so this validator
//! follows CPython's `_json` scanner. Nesting deeper than CPython's recursion limit (where the
//! reference raises `RecursionError` instead of answering) counts as invalid.

const MAX_DEPTH: usize = 1000;

/// `json.loads(text)` would return a value.
pub fn python_json_loads_ok(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut parser = Parser { bytes, pos: 0 };
    parser.skip_ws();
    if !parser.value(0) {
        return false;
    }
    parser.skip_ws();
    parser.pos == bytes.len()
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, literal: &[u8]) -> bool {
        if self.bytes[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'n') => self.eat(b"null"),
            Some(b't') => self.eat(b"true"),
            Some(b'f') => self.eat(b"false"),
            Some(b'N') => self.eat(b"NaN"),
            Some(b'I') => self.eat(b"Infinity"),
            Some(b'-') if self.bytes[self.pos..].starts_with(b"-Infinity") => {
                self.pos += 9;
                true
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?`; a fraction or exponent without digits is
    /// left unconsumed (the reference then fails on the trailing text).
    fn number(&mut self) -> bool {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return false,
        }
        if self.peek() == Some(b'.') && matches!(self.bytes.get(self.pos + 1), Some(b'0'..=b'9')) {
            self.pos += 1;
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                self.pos = save;
            }
        }
        true
    }

    fn string(&mut self) -> bool {
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => return true,
                b'\\' => match self.peek() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
                    Some(b'u') => {
                        let hex = self.bytes.get(self.pos + 1..self.pos + 5);
                        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                            return false;
                        }
                        self.pos += 5;
                    }
                    _ => return false,
                },
                0..=0x1f => return false,
                _ => {}
            }
        }
        false
    }

    fn array(&mut self, depth: usize) -> bool {
        self.pos += 1;
        self.skip_ws();
        if self.eat(b"]") {
            return true;
        }
        loop {
            self.skip_ws();
            if !self.value(depth + 1) {
                return false;
            }
            self.skip_ws();
            if self.eat(b"]") {
                return true;
            }
            if !self.eat(b",") {
                return false;
            }
        }
    }

    fn object(&mut self, depth: usize) -> bool {
        self.pos += 1;
        self.skip_ws();
        if self.eat(b"}") {
            return true;
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') || !self.string() {
                return false;
            }
            self.skip_ws();
            if !self.eat(b":") {
                return false;
            }
            self.skip_ws();
            if !self.value(depth + 1) {
                return false;
            }
            self.skip_ws();
            if self.eat(b"}") {
                return true;
            }
            if !self.eat(b",") {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::python_json_loads_ok as ok;

    #[test]
    fn python_json_quirks() {
        assert!(ok(" {\"a\": [1, 2.5e3, NaN, -Infinity, \"\\ud800\"]} \n"));
        assert!(ok("1e400") && ok("-0") && ok("\"x\""));
        assert!(!ok("{'a': 1}") && !ok("[1,]") && !ok("01") && !ok("1.") && !ok("\"a\nb\""));
        assert!(!ok("{} {}") && !ok("") && !ok(&"[".repeat(5000)));
    }
}
