//! A small JSON reader for the output of `cargo metadata` (xtask has no dependencies). It reads
//! any valid JSON document into objects, arrays and strings; numbers, `true`, `false` and `null`
//! are kept as their text.

/// A JSON value. Objects keep their members in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number, `true`, `false` or `null`, as written.
    Scalar(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object (`None` for anything else or a missing key).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of an array; nothing for any other value.
    pub fn items(&self) -> &[Value] {
        match self {
            Value::Array(items) => items,
            _ => &[],
        }
    }
}

/// Parses a whole document (surrounding whitespace allowed, nothing else).
pub fn parse(text: &str) -> Result<Value, String> {
    let mut parser = Parser { text, at: 0 };
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.at < text.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

/// Deeper nesting is refused rather than overflowing the stack.
const MAX_DEPTH: usize = 256;

struct Parser<'a> {
    text: &'a str,
    /// A byte offset into `text`, always at a character boundary.
    at: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.at)
    }

    /// The text not read yet.
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_whitespace(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start_matches([' ', '\t', '\n', '\r']).len();
    }

    /// Skips whitespace, then takes `token` if it comes next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_whitespace();
        let found = self.rest().starts_with(token);
        if found {
            self.at += token.len();
        }
        found
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        match self.eat(token) {
            true => Ok(()),
            false => Err(self.error(&format!("expected `{token}`"))),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        if self.eat("{") {
            let members = self.list("}", |p| {
                let key = p.string()?;
                p.expect(":")?;
                Ok((key, p.value(depth + 1)?))
            })?;
            Ok(Value::Object(members))
        } else if self.eat("[") {
            Ok(Value::Array(self.list("]", |p| p.value(depth + 1))?))
        } else if self.rest().starts_with('"') {
            Ok(Value::String(self.string()?))
        } else {
            self.scalar()
        }
    }

    /// The comma-separated items of an object or array up to `close` (the opening bracket read).
    fn list<T>(
        &mut self,
        close: &str,
        mut item: impl FnMut(&mut Self) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            if self.eat(close) {
                return Ok(items);
            }
            self.expect(",")?;
        }
    }

    /// `true`, `false`, `null` or a number. Numbers are checked loosely (Rust's float syntax,
    /// minus `inf` and `NaN`): enough to tell a number from anything else.
    fn scalar(&mut self) -> Result<Value, String> {
        let rest = self.rest();
        let token = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.')))
            .map_or(rest, |end| &rest[..end]);
        let number = token.starts_with(|c: char| c == '-' || c.is_ascii_digit())
            && token.bytes().all(|b| b"0123456789+-.eE".contains(&b))
            && token.parse::<f64>().is_ok();
        if !number && !matches!(token, "true" | "false" | "null") {
            return Err(self.error("expected a value"));
        }
        self.at += token.len();
        Ok(Value::Scalar(token.to_owned()))
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect("\"")?;
        let mut out = String::new();
        loop {
            let rest = self.rest();
            let Some(end) = rest.find(|c: char| matches!(c, '"' | '\\' | '\0'..='\u{1f}')) else {
                return Err(self.error("unterminated string"));
            };
            out.push_str(&rest[..end]);
            self.at += end + 1;
            let escape = match rest.as_bytes()[end] {
                b'"' => return Ok(out),
                b'\\' => self.rest().bytes().next(),
                _ => return Err(self.error("control character in a string")),
            };
            self.at += 1;
            let decoded = match escape {
                Some(b'"') => '"',
                Some(b'\\') => '\\',
                Some(b'/') => '/',
                Some(b'b') => '\u{8}',
                Some(b'f') => '\u{c}',
                Some(b'n') => '\n',
                Some(b'r') => '\r',
                Some(b't') => '\t',
                Some(b'u') => self.unicode_escape()?,
                _ => return Err(self.error("unknown escape")),
            };
            out.push(decoded);
        }
    }

    /// The character of a `\uXXXX` escape (the `\u` read), or of a surrogate pair of two.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let mut units = vec![self.hex4()?];
        if (0xD800..0xDC00).contains(&units[0]) && self.rest().starts_with("\\u") {
            self.at += 2;
            units.push(self.hex4()?);
        }
        match char::decode_utf16(units).collect::<Result<Vec<char>, _>>() {
            Ok(chars) if chars.len() == 1 => Ok(chars[0]),
            _ => Err(self.error("a lone surrogate")),
        }
    }

    fn hex4(&mut self) -> Result<u16, String> {
        let hex = self.rest().get(..4).unwrap_or_default();
        if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("expected four hex digits"));
        }
        self.at += 4;
        u16::from_str_radix(hex, 16).map_err(|e| self.error(&e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::{Value, parse};

    #[test]
    fn reads_every_kind_of_value() {
        let doc = parse(
            r#" {"a": [1, -2.5e3, true, false, null], "b": {"c": "x\"\\\/\n\u00e9\ud83d\ude00"}, "d": []} "#,
        )
        .unwrap();
        let scalar = |text: &str| Value::Scalar(text.to_owned());
        assert_eq!(
            doc.get("a").unwrap().items(),
            [
                scalar("1"),
                scalar("-2.5e3"),
                scalar("true"),
                scalar("false"),
                scalar("null")
            ]
        );
        let c = doc.get("b").and_then(|b| b.get("c")).unwrap();
        assert_eq!(c.as_str(), Some("x\"\\/\né😀"));
        assert!(doc.get("d").unwrap().items().is_empty());
        assert_eq!(doc.get("missing"), None);
        assert_eq!(parse("\"ünï\"").unwrap().as_str(), Some("ünï"));
        assert_eq!(parse("[[[]],{}]").unwrap().items().len(), 2);
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "{1: 2}",
            "01x",
            "\"open",
            "\"a\nb\"",
            "tru",
            "[1] 2",
            "\"\\ud800\"",
            "\"\\ud800\\u0041\"",
            "\"\\ud800 \\udc00\"",
            "\"\\u+123\"",
            "\"\\x\"",
            "-",
            "inf",
            "-inf",
            "NaN",
            "'a'",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse(&"[".repeat(300)).is_err());
    }
}
