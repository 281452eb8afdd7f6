//! Just enough TOML to edit containerd's config as text: the structure of a
//! document (table headers, key/value pairs with their full key paths, line
//! numbers and value spans), never a re-serialisation. Install appends one
//! block and uninstall removes exactly that block, so every byte the user
//! wrote (comments, layout, CRLF) stays as it was.
//!
//! The scanner accepts TOML 1.0 and is lenient where containerd's parser is
//! (newlines inside inline tables). Byte-wise scanning is safe on UTF-8: every
//! structural character is ASCII and never part of a multi-byte sequence.

use std::ops::Range;

/// One table header or key/value pair of a document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    /// 1-based line of the header or key.
    pub line: usize,
    pub kind: ItemKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ItemKind {
    /// `[a.b]`, or `[[a.b]]` when `array`.
    Table { path: Vec<String>, array: bool },
    /// `key = value`; `path` is the table's path followed by the (dotted) key.
    Pair {
        path: Vec<String>,
        value: Value,
        /// Where the value's text is in the document.
        span: Range<usize>,
    },
}

/// A value, as far as the edits need it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A one-line basic or literal string, unescaped.
    String(String),
    Array(Vec<Value>),
    InlineTable(Vec<(Vec<String>, Value)>),
    /// Anything else (numbers, booleans, dates, multi-line strings): its text.
    Other(String),
}

/// Why a document is not TOML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanError {
    pub line: usize,
    pub detail: String,
}

/// Scans `text` into its items, in document order.
pub(crate) fn scan(text: &str) -> Result<Vec<Item>, ScanError> {
    let mut cursor = Cursor {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut items = Vec::new();
    let mut table: Vec<String> = Vec::new();
    loop {
        cursor.skip_blank_lines();
        match cursor.peek() {
            None => break,
            Some(b'[') => {
                let line = cursor.line;
                cursor.pos += 1;
                let array = cursor.eat(b'[');
                cursor.skip_spaces();
                let path = cursor.key()?;
                cursor.skip_spaces();
                cursor.expect(b']', "`]` closing the table header")?;
                if array {
                    cursor.expect(b']', "`]]` closing the array-of-tables header")?;
                }
                cursor.end_of_line()?;
                table.clone_from(&path);
                items.push(Item {
                    line,
                    kind: ItemKind::Table { path, array },
                });
            }
            Some(_) => {
                let line = cursor.line;
                let key = cursor.key()?;
                cursor.skip_spaces();
                cursor.expect(b'=', "`=` after the key")?;
                cursor.skip_spaces();
                let start = cursor.pos;
                let value = cursor.value()?;
                let span = start..cursor.pos;
                cursor.end_of_line()?;
                let mut path = table.clone();
                path.extend(key);
                items.push(Item {
                    line,
                    kind: ItemKind::Pair { path, value, span },
                });
            }
        }
    }
    Ok(items)
}

/// The pair at exactly `path`, if any.
pub(crate) fn find_pair<'a>(items: &'a [Item], path: &[&str]) -> Option<(&'a Item, &'a Value)> {
    items.iter().find_map(|item| match &item.kind {
        ItemKind::Pair { path: p, value, .. } if p.iter().map(String::as_str).eq(path.iter().copied()) => {
            Some((item, value))
        }
        _ => None,
    })
}

/// Writes a key for a table header: bare when it can be, else a basic string.
pub(crate) fn format_key(key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { key.to_owned() } else { basic_string(key) }
}

/// `value` as a TOML basic string, escaped.
pub(crate) fn basic_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn starts_with(&self, prefix: &[u8]) -> bool {
        self.bytes[self.pos..].starts_with(prefix)
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn error<T>(&self, detail: impl Into<String>) -> Result<T, ScanError> {
        Err(ScanError {
            line: self.line,
            detail: detail.into(),
        })
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), ScanError> {
        if self.eat(byte) {
            Ok(())
        } else {
            self.error(format!("expected {what}"))
        }
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_comment(&mut self) {
        if self.peek() == Some(b'#') {
            while !matches!(self.peek(), None | Some(b'\n')) && !self.starts_with(b"\r\n") {
                self.pos += 1;
            }
        }
    }

    fn newline(&mut self) -> bool {
        let len = if self.peek() == Some(b'\n') {
            1
        } else if self.starts_with(b"\r\n") {
            2
        } else {
            return false;
        };
        self.pos += len;
        self.line += 1;
        true
    }

    /// Spaces, comments and newlines.
    fn skip_blank_lines(&mut self) {
        loop {
            self.skip_spaces();
            self.skip_comment();
            if !self.newline() {
                return;
            }
        }
    }

    /// The rest of a line after a header or a pair: spaces, a comment, then
    /// a newline or the end.
    fn end_of_line(&mut self) -> Result<(), ScanError> {
        self.skip_spaces();
        self.skip_comment();
        if self.peek().is_none() || self.newline() {
            Ok(())
        } else {
            self.error("expected the end of the line")
        }
    }

    fn key(&mut self) -> Result<Vec<String>, ScanError> {
        let mut parts = Vec::new();
        loop {
            self.skip_spaces();
            parts.push(self.simple_key()?);
            self.skip_spaces();
            if !self.eat(b'.') {
                return Ok(parts);
            }
        }
    }

    fn simple_key(&mut self) -> Result<String, ScanError> {
        match self.peek() {
            Some(b'"') if !self.starts_with(b"\"\"\"") => self.basic_string(),
            Some(b'\'') if !self.starts_with(b"'''") => self.literal_string(),
            _ => {
                let start = self.pos;
                while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                    self.pos += 1;
                }
                if self.pos == start {
                    return self.error("expected a key");
                }
                Ok(self.text[start..self.pos].to_owned())
            }
        }
    }

    fn basic_string(&mut self) -> Result<String, ScanError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while !matches!(self.peek(), None | Some(b'"' | b'\\' | b'\n' | b'\r')) {
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    out.push(self.escape()?);
                }
                _ => return self.error("unterminated string"),
            }
        }
    }

    fn escape(&mut self) -> Result<char, ScanError> {
        let Some(byte) = self.peek() else {
            return self.error("unterminated string");
        };
        self.pos += 1;
        let digits = match byte {
            b'b' => return Ok('\u{8}'),
            b't' => return Ok('\t'),
            b'n' => return Ok('\n'),
            b'f' => return Ok('\u{c}'),
            b'r' => return Ok('\r'),
            b'"' => return Ok('"'),
            b'\\' => return Ok('\\'),
            b'u' => 4,
            b'U' => 8,
            _ => return self.error("invalid escape in a string"),
        };
        let hex = self.text.get(self.pos..self.pos + digits).unwrap_or("");
        match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
            Some(c) if hex.len() == digits && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                self.pos += digits;
                Ok(c)
            }
            _ => self.error("invalid unicode escape in a string"),
        }
    }

    fn literal_string(&mut self) -> Result<String, ScanError> {
        self.pos += 1;
        let start = self.pos;
        while !matches!(self.peek(), None | Some(b'\'' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        if !self.eat(b'\'') {
            return self.error("unterminated string");
        }
        Ok(self.text[start..self.pos - 1].to_owned())
    }

    /// A multi-line string delimited by `quote` three times; a closing
    /// delimiter may be followed by up to two more quotes (part of the content).
    fn multiline_string(&mut self, quote: u8) -> Result<Value, ScanError> {
        let start = self.pos;
        self.pos += 3;
        let delimiter = [quote; 3];
        loop {
            if self.starts_with(&delimiter) {
                self.pos += 3;
                for _ in 0..2 {
                    self.eat(quote);
                }
                return Ok(Value::Other(self.text[start..self.pos].to_owned()));
            }
            match self.peek() {
                None => return self.error("unterminated multi-line string"),
                Some(b'\\') if quote == b'"' => {
                    self.pos += 1;
                    if !self.newline() && self.peek().is_some() {
                        self.pos += 1;
                    }
                }
                Some(_) => {
                    if !self.newline() {
                        self.pos += 1;
                    }
                }
            }
        }
    }

    fn value(&mut self) -> Result<Value, ScanError> {
        match self.peek() {
            Some(b'"') if self.starts_with(b"\"\"\"") => self.multiline_string(b'"'),
            Some(b'\'') if self.starts_with(b"'''") => self.multiline_string(b'\''),
            Some(b'"') => self.basic_string().map(Value::String),
            Some(b'\'') => self.literal_string().map(Value::String),
            Some(b'[') => self.array(),
            Some(b'{') => self.inline_table(),
            _ => self.scalar(),
        }
    }

    fn array(&mut self) -> Result<Value, ScanError> {
        self.pos += 1;
        let mut values = Vec::new();
        loop {
            self.skip_blank_lines();
            if self.eat(b']') {
                return Ok(Value::Array(values));
            }
            values.push(self.value()?);
            self.skip_blank_lines();
            if self.eat(b']') {
                return Ok(Value::Array(values));
            }
            self.expect(b',', "`,` or `]` in an array")?;
        }
    }

    fn inline_table(&mut self) -> Result<Value, ScanError> {
        self.pos += 1;
        let mut pairs = Vec::new();
        self.skip_blank_lines();
        if self.eat(b'}') {
            return Ok(Value::InlineTable(pairs));
        }
        loop {
            self.skip_blank_lines();
            let key = self.key()?;
            self.skip_spaces();
            self.expect(b'=', "`=` after the key")?;
            self.skip_spaces();
            pairs.push((key, self.value()?));
            self.skip_blank_lines();
            if self.eat(b'}') {
                return Ok(Value::InlineTable(pairs));
            }
            self.expect(b',', "`,` or `}` in an inline table")?;
        }
    }

    /// Numbers, booleans, dates and times (which may hold one space).
    fn scalar(&mut self) -> Result<Value, ScanError> {
        let start = self.pos;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.' | b':'))
            || (self.peek() == Some(b' ')
                && self.pos > start
                && self.bytes[self.pos - 1].is_ascii_digit()
                && self.bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit))
        {
            self.pos += 1;
        }
        if self.pos == start {
            return self.error("expected a value");
        }
        Ok(Value::Other(self.text[start..self.pos].to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(text: &str) -> Vec<Vec<String>> {
        scan(text)
            .unwrap()
            .into_iter()
            .filter_map(|item| match item.kind {
                ItemKind::Table { path, .. } => Some(path),
                ItemKind::Pair { .. } => None,
            })
            .collect()
    }

    #[test]
    fn quoted_keys_and_spaces_around_dots_name_the_same_table() {
        let text =
            "[plugins.\"io.containerd.grpc.v1.cri\" . containerd]\n[ plugins.'io.containerd.grpc.v1.cri'.cni ]\n";
        assert_eq!(
            tables(text),
            [
                vec!["plugins", "io.containerd.grpc.v1.cri", "containerd"],
                vec!["plugins", "io.containerd.grpc.v1.cri", "cni"]
            ]
        );
    }

    #[test]
    fn pairs_carry_their_table_and_dotted_key_and_line() {
        let text = "version = 2\r\n# c\r\n[a]\r\n  b.c = \"x\\\"y\" # trailing\r\n";
        let items = scan(text).unwrap();
        assert_eq!(items.len(), 3);
        let (item, value) = find_pair(&items, &["a", "b", "c"]).unwrap();
        assert_eq!(item.line, 4);
        assert_eq!(value, &Value::String("x\"y".into()));
        let (_, version) = find_pair(&items, &["version"]).unwrap();
        assert_eq!(version, &Value::Other("2".into()));
    }

    #[test]
    fn multi_line_arrays_with_comments_and_trailing_commas() {
        let text = "imports = [\n  \"/a.toml\", # one\n  # between\n  '/b.toml',\n]\nx = 1\n";
        let items = scan(text).unwrap();
        let (_, value) = find_pair(&items, &["imports"]).unwrap();
        assert_eq!(
            value,
            &Value::Array(vec![Value::String("/a.toml".into()), Value::String("/b.toml".into())])
        );
        assert_eq!(find_pair(&items, &["x"]).unwrap().0.line, 6);
    }

    #[test]
    fn multi_line_strings_may_hold_brackets_and_quotes() {
        let text = "a = \"\"\"\n[not.a.table]\n\\\"\"\" \"\"\"\"\nb = '''\n[x]'''''\n[t]\n";
        assert_eq!(tables(text), [vec!["t"]]);
    }

    #[test]
    fn inline_tables_dates_and_numbers() {
        let text = "t = { a = 1, b.c = [1, 2], d = {} }\nd = 1979-05-27 07:32:00Z\nf = -1.5e3\n";
        let items = scan(text).unwrap();
        assert_eq!(items.len(), 3);
        let (_, date) = find_pair(&items, &["d"]).unwrap();
        assert_eq!(date, &Value::Other("1979-05-27 07:32:00Z".into()));
    }

    #[test]
    fn broken_documents_name_the_line() {
        for (text, line) in [
            ("a = \"open\n", 1),
            ("ok = 1\n[a\n", 2),
            ("a = 1 b = 2\n", 1),
            ("a = [1, 2\n", 2),
            ("= 1\n", 1),
            ("a = \"\\q\"\n", 1),
        ] {
            let err = scan(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err:?}");
        }
    }

    #[test]
    fn keys_are_written_bare_or_quoted() {
        assert_eq!(format_key("runcvm"), "runcvm");
        assert_eq!(format_key("io.containerd.grpc.v1.cri"), "\"io.containerd.grpc.v1.cri\"");
        assert_eq!(basic_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
