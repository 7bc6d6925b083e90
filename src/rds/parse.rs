//! Parser for RouterOS `print detail` output (DESIGN rule 3): key=value tokens, never
//! regexes over joined text.
//!
//! Shapes accepted (see `/work/shared/reference/routeros.md`):
//! - a `Flags: ...` (or `Columns: ...`) header line, skipped;
//! - items either unnumbered (starting at column 0) or numbered (` 0  type=file ...`, the
//!   number indented at most 3 columns); blank lines end an item;
//! - continuation lines: any indented line that does not start a numbered item;
//! - flag letters (`X`, `XR`, `X R`) and a `;;; comment` between the number and the first
//!   field;
//! - values quoted (`slot="pvc-1"`, backslash escapes) or bare (`fs=-`);
//! - bare words without `=` extend the previous value with one space, which covers both
//!   space-grouped integers (`size=53 687 091 200`) and values with spaces
//!   (`type=.img file`, `last-modified=2025-11-11 16:47:07`).
//!
//! Anything else is an error rather than a guess: a stray word before the first field (as in
//! `failure: no such item`) must never read as "zero disks".

use std::fmt;

use thiserror::Error;

use super::size::{parse_grouped_u64, parse_routeros_bytes};

/// Numbered items put their number in a narrow right-aligned column; continuation lines are
/// indented further (5 or 15 columns in real output). This is what tells ` 1  type=...`
/// (a new item) from a wrapped line that happens to start with a digit group.
const MAX_NUMBER_INDENT: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("line {line}: quoted value of {key:?} is not terminated on its line")]
    UnterminatedQuote { line: usize, key: String },
    #[error("line {line}: {key:?} is not a valid key (letters, digits, '-', '_', '.')")]
    InvalidKey { line: usize, key: String },
    #[error("line {line}: unexpected {word:?} before the first key=value field")]
    UnexpectedWord { line: usize, word: String },
    #[error("line {line}: stray quote in {token:?}")]
    StrayQuote { line: usize, token: String },
    #[error("line {line}: text right after the closing quote of {key:?}")]
    TextAfterQuote { line: usize, key: String },
    #[error("line {line}: key {key:?} appears twice in one item")]
    DuplicateKey { line: usize, key: String },
    #[error("line {line}: quoted value of {key:?} is not UTF-8 once unescaped")]
    InvalidUtf8 { line: usize, key: String },
}

/// Why a typed getter could not produce a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldError {
    #[error("field {key:?} is missing")]
    Missing { key: String },
    #[error("field {key}={value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

impl FieldError {
    pub fn is_missing(&self) -> bool {
        matches!(self, FieldError::Missing { .. })
    }
}

/// One printed item: its list number (if numbered), flag letters, comment, and fields in the
/// order printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Item {
    number: Option<u64>,
    flags: String,
    comment: Option<String>,
    fields: Vec<(String, String)>,
}

impl Item {
    pub fn number(&self) -> Option<u64> {
        self.number
    }

    /// Flag letters in the order printed, e.g. `"X"` for a disabled item.
    pub fn flags(&self) -> &str {
        &self.flags
    }

    pub fn has_flag(&self, flag: char) -> bool {
        self.flags.contains(flag)
    }

    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The raw value (unquoted, unescaped); `-` and `""` are returned as they are.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn require(&self, key: &str) -> Result<&str, FieldError> {
        self.get_str(key).ok_or_else(|| FieldError::Missing {
            key: key.to_string(),
        })
    }

    fn invalid(key: &str, value: &str, reason: impl fmt::Display) -> FieldError {
        FieldError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }

    /// An integer, plain or space-grouped (`53 687 091 200`).
    pub fn get_u64(&self, key: &str) -> Result<u64, FieldError> {
        let value = self.require(key)?;
        parse_grouped_u64(value).ok_or_else(|| {
            Self::invalid(
                key,
                value,
                "not an unsigned 64-bit integer (digits, optionally grouped in threes)",
            )
        })
    }

    /// A byte count: a plain or grouped integer, or an exact human size (`50.0GiB`).
    pub fn get_bytes(&self, key: &str) -> Result<u64, FieldError> {
        let value = self.require(key)?;
        parse_routeros_bytes(value).map_err(|e| Self::invalid(key, value, e))
    }

    /// `yes`/`no`/`true`/`false`, in any case.
    pub fn get_bool(&self, key: &str) -> Result<bool, FieldError> {
        let value = self.require(key)?;
        match value.to_ascii_lowercase().as_str() {
            "yes" | "true" => Ok(true),
            "no" | "false" => Ok(false),
            _ => Err(Self::invalid(key, value, "not yes/no/true/false")),
        }
    }
}

/// Parses the whole output of a `print detail` command into items.
pub fn parse_items(text: &str) -> Result<Vec<Item>, ParseError> {
    let mut items = Vec::new();
    let mut current: Option<Item> = None;
    let mut after_blank = true;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim_end_matches(['\r', ' ', '\t']);
        let body = line.trim_start_matches([' ', '\t']);
        if body.is_empty() {
            after_blank = true;
            continue;
        }
        if body.starts_with("Flags:") || body.starts_with("Columns:") {
            continue;
        }
        let indent = line.len() - body.len();
        let mut tokens = tokenize_line(body, line_no)?.into_iter().peekable();
        let number = match tokens.peek() {
            Some(Token::Word(w)) if indent <= MAX_NUMBER_INDENT && is_digits(w) => {
                // A number too large for u64 cannot be an item number; leave it to the
                // "unexpected word" check below.
                w.parse::<u64>().ok()
            }
            _ => None,
        };
        if number.is_some() {
            tokens.next();
        }
        if number.is_some() || indent == 0 || after_blank || current.is_none() {
            items.extend(current.take());
            current = Some(Item {
                number,
                ..Item::default()
            });
        }
        after_blank = false;
        let Some(item) = current.as_mut() else {
            continue;
        };
        for token in tokens {
            add_token(item, token, line_no)?;
        }
    }
    items.extend(current);
    Ok(items)
}

fn add_token(item: &mut Item, token: Token, line: usize) -> Result<(), ParseError> {
    match token {
        Token::Comment(text) => match &mut item.comment {
            Some(existing) => {
                existing.push(' ');
                existing.push_str(&text);
            }
            None => item.comment = Some(text),
        },
        Token::Word(word) => match item.fields.last_mut() {
            Some((_, value)) => {
                value.push(' ');
                value.push_str(&word);
            }
            None if is_flag_group(&word) => item.flags.push_str(&word),
            None => return Err(ParseError::UnexpectedWord { line, word }),
        },
        Token::Field(key, value) => {
            if item.fields.iter().any(|(k, _)| *k == key) {
                return Err(ParseError::DuplicateKey { line, key });
            }
            item.fields.push((key, value));
        }
    }
    Ok(())
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_flag_group(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Field(String, String),
    Word(String),
    Comment(String),
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

/// Splits one line into tokens. Delimiters are ASCII, so every slice boundary below falls on
/// a UTF-8 character boundary.
fn tokenize_line(line: &str, line_no: usize) -> Result<Vec<Token>, ParseError> {
    let bytes = line.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if is_blank(bytes[i]) {
            i += 1;
            continue;
        }
        if line[i..].starts_with(";;;") {
            tokens.push(Token::Comment(line[i + 3..].trim().to_string()));
            break;
        }
        let start = i;
        while i < bytes.len() && !is_blank(bytes[i]) && bytes[i] != b'=' {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'=' {
            let key = &line[start..i];
            if key.is_empty() || !key.bytes().all(is_key_byte) {
                return Err(ParseError::InvalidKey {
                    line: line_no,
                    key: key.to_string(),
                });
            }
            i += 1;
            let value = if i < bytes.len() && bytes[i] == b'"' {
                let (value, end) = read_quoted(line, i + 1, key, line_no)?;
                if end < bytes.len() && !is_blank(bytes[end]) {
                    return Err(ParseError::TextAfterQuote {
                        line: line_no,
                        key: key.to_string(),
                    });
                }
                i = end;
                value
            } else {
                let value_start = i;
                while i < bytes.len() && !is_blank(bytes[i]) {
                    i += 1;
                }
                let value = &line[value_start..i];
                if value.contains('"') {
                    return Err(ParseError::StrayQuote {
                        line: line_no,
                        token: line[start..i].to_string(),
                    });
                }
                value.to_string()
            };
            tokens.push(Token::Field(key.to_string(), value));
        } else {
            let word = &line[start..i];
            if word.contains('"') {
                return Err(ParseError::StrayQuote {
                    line: line_no,
                    token: word.to_string(),
                });
            }
            tokens.push(Token::Word(word.to_string()));
        }
    }
    Ok(tokens)
}

/// Reads a quoted value starting just after the opening quote; returns the unescaped value
/// and the index just past the closing quote. RouterOS escapes: `\"`, `\\`, `\n`, `\r`, `\t`,
/// `\a`, `\b`, `\f`, `\v`, `\_` (space), `\$`, `\?`, and two hex digits for a byte.
fn read_quoted(
    line: &str,
    mut i: usize,
    key: &str,
    line_no: usize,
) -> Result<(String, usize), ParseError> {
    let bytes = line.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    loop {
        let Some(&b) = bytes.get(i) else {
            return Err(ParseError::UnterminatedQuote {
                line: line_no,
                key: key.to_string(),
            });
        };
        match b {
            b'"' => {
                let value = String::from_utf8(out).map_err(|_| ParseError::InvalidUtf8 {
                    line: line_no,
                    key: key.to_string(),
                })?;
                return Ok((value, i + 1));
            }
            b'\\' => {
                let Some(&e) = bytes.get(i + 1) else {
                    return Err(ParseError::UnterminatedQuote {
                        line: line_no,
                        key: key.to_string(),
                    });
                };
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(match e {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'v' => 0x0b,
                    b'_' => b' ',
                    // `\"`, `\\`, `\$`, `\?` and anything else stand for themselves.
                    other => other,
                });
                i += 2;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Item {
        let items = parse_items(text).unwrap();
        assert_eq!(items.len(), 1, "{items:?}");
        items.into_iter().next().unwrap()
    }

    #[test]
    fn quoted_and_bare_values() {
        let item = one(r#"type=file slot="pvc-1" slot-default="" fs=- a="x\"y\\z\_w\41""#);
        assert_eq!(item.get_str("type"), Some("file"));
        assert_eq!(item.get_str("slot"), Some("pvc-1"));
        assert_eq!(item.get_str("slot-default"), Some(""));
        assert_eq!(item.get_str("fs"), Some("-"));
        assert_eq!(item.get_str("a"), Some("x\"y\\z wA"));
        assert_eq!(item.get_str("absent"), None);
        let keys: Vec<&str> = item.fields().map(|(k, _)| k).collect();
        assert_eq!(keys, ["type", "slot", "slot-default", "fs", "a"]);
    }

    #[test]
    fn quoted_values_keep_spaces_and_equals() {
        let item = one(r#"comment="a b=c" next=1"#);
        assert_eq!(item.get_str("comment"), Some("a b=c"));
        assert_eq!(item.get_u64("next"), Ok(1));
    }

    #[test]
    fn grouped_integers_and_values_with_spaces() {
        let item = one("size=53 687 091 200 type=.img file last-modified=2025-11-11 14:32:41");
        assert_eq!(item.get_str("size"), Some("53 687 091 200"));
        assert_eq!(item.get_u64("size"), Ok(53_687_091_200));
        assert_eq!(item.get_str("type"), Some(".img file"));
        assert_eq!(item.get_str("last-modified"), Some("2025-11-11 14:32:41"));
        assert!(item.get_u64("type").is_err());
    }

    #[test]
    fn a_value_wrapped_across_lines_is_joined() {
        let item = one("size=53 687\n               091 200 free=1");
        assert_eq!(item.get_u64("size"), Ok(53_687_091_200));
        assert_eq!(item.get_u64("free"), Ok(1));
    }

    #[test]
    fn flags_header_numbers_and_flags() {
        let text = "Flags: X - disabled; R - running\n \
                    0 X type=file slot=\"a\"\n\n \
                    1 XR type=file slot=\"b\"\n \
                    2 X R type=file slot=\"c\"\n \
                    3   type=file slot=\"d\"\n";
        let items = parse_items(text).unwrap();
        assert_eq!(items.len(), 4);
        let summary: Vec<(Option<u64>, &str, Option<&str>)> = items
            .iter()
            .map(|i| (i.number(), i.flags(), i.get_str("slot")))
            .collect();
        assert_eq!(
            summary,
            [
                (Some(0), "X", Some("a")),
                (Some(1), "XR", Some("b")),
                (Some(2), "XR", Some("c")),
                (Some(3), "", Some("d")),
            ]
        );
        assert!(items[0].has_flag('X'));
        assert!(!items[3].has_flag('X'));
    }

    #[test]
    fn comments_are_captured() {
        let items = parse_items(" 0   ;;; made by csi\n     type=file slot=\"a\"\n").unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].comment(), Some("made by csi"));
        assert_eq!(items[0].get_str("slot"), Some("a"));
    }

    #[test]
    fn unnumbered_items_split_on_blank_lines_and_column_zero() {
        let items = parse_items("a=1\n   b=2\n\n   c=3\nd=4\n").unwrap();
        let fields: Vec<Vec<(&str, &str)>> = items.iter().map(|i| i.fields().collect()).collect();
        assert_eq!(
            fields,
            [
                vec![("a", "1"), ("b", "2")],
                vec![("c", "3")],
                vec![("d", "4")]
            ]
        );
    }

    #[test]
    fn deep_indented_digit_line_is_a_continuation_not_an_item() {
        let items = parse_items(" 9  size=1 000\n               200 x=1\n10  y=2\n").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].get_u64("size"), Ok(1_000_200));
        assert_eq!(items[0].get_str("x"), Some("1"));
        assert_eq!(items[1].number(), Some(10));
    }

    #[test]
    fn typed_getters() {
        let item =
            one("a=yes b=no c=true d=FALSE e=maybe f=50.0GiB g=1.3KiB h=7 949 127 950 336 i=-");
        assert_eq!(item.get_bool("a"), Ok(true));
        assert_eq!(item.get_bool("b"), Ok(false));
        assert_eq!(item.get_bool("c"), Ok(true));
        assert_eq!(item.get_bool("d"), Ok(false));
        assert!(matches!(
            item.get_bool("e"),
            Err(FieldError::Invalid { .. })
        ));
        assert_eq!(item.get_bytes("f"), Ok(50 << 30));
        assert!(matches!(
            item.get_bytes("g"),
            Err(FieldError::Invalid { .. })
        ));
        assert_eq!(item.get_bytes("h"), Ok(7_949_127_950_336));
        assert!(item.get_u64("i").is_err());
        assert!(item.get_bytes("zzz").unwrap_err().is_missing());
        assert!(!item.get_bytes("i").unwrap_err().is_missing());
    }

    #[test]
    fn error_text_is_not_read_as_an_empty_list() {
        for text in [
            "failure: no such item",
            "bad command name x (line 1 column 7)",
            "syntax error (line 1 column 5)",
        ] {
            assert!(
                matches!(
                    parse_items(text),
                    Err(ParseError::UnexpectedWord { line: 1, .. })
                ),
                "{text}"
            );
        }
        assert_eq!(parse_items("").unwrap(), Vec::<Item>::new());
        assert_eq!(
            parse_items("Flags: X - disabled\n\n").unwrap(),
            Vec::<Item>::new()
        );
    }

    #[test]
    fn malformed_tokens_are_errors() {
        assert!(matches!(
            parse_items("slot=\"abc"),
            Err(ParseError::UnterminatedQuote { line: 1, .. })
        ));
        assert!(matches!(
            parse_items("slot=\"abc\\"),
            Err(ParseError::UnterminatedQuote { .. })
        ));
        assert!(matches!(
            parse_items("=x"),
            Err(ParseError::InvalidKey { .. })
        ));
        assert!(matches!(
            parse_items("a/b=x"),
            Err(ParseError::InvalidKey { .. })
        ));
        assert!(matches!(
            parse_items("a=b\"c"),
            Err(ParseError::StrayQuote { .. })
        ));
        assert!(matches!(
            parse_items("a=1 \"b\""),
            Err(ParseError::StrayQuote { .. })
        ));
        assert!(matches!(
            parse_items("a=\"x\"y"),
            Err(ParseError::TextAfterQuote { .. })
        ));
        assert!(matches!(
            parse_items("a=1\n  a=2"),
            Err(ParseError::DuplicateKey { line: 2, .. })
        ));
        assert!(matches!(
            parse_items("a=\"\\ff\""),
            Err(ParseError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn crlf_and_tabs_are_tolerated() {
        let items = parse_items("a=1\r\n\tb=\"2\"\r\n").unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].get_str("b"), Some("2"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "(?s).{0,200}") {
            let _ = parse_items(&text);
        }

        #[test]
        fn never_panics_on_routeros_like_text(
            text in "[ 0-9a-zA-Z=\"\\\\;:.\n\t-]{0,300}"
        ) {
            if let Ok(items) = parse_items(&text) {
                for item in &items {
                    for (key, _) in item.fields() {
                        let _ = item.get_bytes(key);
                        let _ = item.get_u64(key);
                        let _ = item.get_bool(key);
                    }
                }
            }
        }
    }
}
