//! The RouterOS `print detail` parser as it was before the borrowing scanner (commit
//! c55604c, `src/rds/parse.rs` and `Disk::from_item` in `src/rds/model.rs`), kept verbatim
//! as an oracle: tests/routeros_parse_oracle.rs checks that today's parser gives exactly the
//! same items, disks and errors, and benches/rds.rs measures both side by side.
//!
//! Only the error types are shared (the crate's `ParseError` / `FieldError`), so results
//! compare with `==`.
#![allow(dead_code)]

use std::fmt;

use rds_csi::rds::size::{parse_routeros_bytes, SizeError};
use rds_csi::rds::{Disk, FieldError, ParseError};

/// The old `parse_grouped_u64` (it collected the groups into a Vec).
pub fn parse_grouped_u64(input: &str) -> Option<u64> {
    let mut groups = input.split(' ');
    let first = groups.next()?;
    let rest: Vec<&str> = groups.collect();
    let first_ok = !first.is_empty()
        && first.bytes().all(|b| b.is_ascii_digit())
        && (rest.is_empty() || first.len() <= 3);
    if !first_ok {
        return None;
    }
    if !rest
        .iter()
        .all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut value: u64 = 0;
    for b in first.bytes().chain(rest.iter().flat_map(|g| g.bytes())) {
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

/// Numbered items put their number in a narrow right-aligned column; continuation lines are
/// indented further (5 or 15 columns in real output). This is what tells ` 1  type=...`
/// (a new item) from a wrapped line that happens to start with a digit group.
const MAX_NUMBER_INDENT: usize = 3;

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
        // The old parse_routeros_bytes: grouped integers through the old grouped parser.
        let input = value.trim();
        if input.contains(' ') {
            return parse_grouped_u64(input).ok_or_else(|| {
                let e = SizeError::Malformed {
                    input: input.to_string(),
                };
                Self::invalid(key, value, e)
            });
        }
        parse_routeros_bytes(input).map_err(|e| Self::invalid(key, value, e))
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

/// The old `Disk::from_item` errors that the oracle can produce (the crate's `ModelError`
/// has the same variants; compared through it in the tests).
pub use rds_csi::rds::ModelError;

fn optional<T>(result: Result<T, FieldError>) -> Result<Option<T>, FieldError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_missing() => Ok(None),
        Err(e) => Err(e),
    }
}

/// `None` for a missing, empty or `-` value: RouterOS prints unset values either way.
fn non_empty<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get_str(key).filter(|v| !v.is_empty() && *v != "-")
}

pub fn disk_from_item(item: &Item) -> Result<Disk, ModelError> {
    let slot = item
        .get_str("slot")
        .ok_or(FieldError::Missing { key: "slot".into() })?
        .to_string();
    let disk_type = item
        .get_str("type")
        .ok_or(FieldError::Missing { key: "type".into() })?
        .to_string();
    // `get_bytes` also takes a human `size=` in case a RouterOS version prints one; it is
    // then no less exact than `file-size=`.
    let size_bytes = match optional(item.get_bytes("size"))? {
        Some(size) => size,
        None => item.get_bytes("file-size").map_err(|e| match e {
            FieldError::Missing { .. } => FieldError::Missing { key: "size".into() },
            other => other,
        })?,
    };
    let nvme_tcp_export = optional(item.get_bool("nvme-tcp-export"))?.unwrap_or(false);
    let nvme_tcp_port = match optional(item.get_u64("nvme-tcp-server-port"))? {
        None => None,
        Some(p) => Some(u16::try_from(p).map_err(|_| ModelError::BadPort {
            key: "nvme-tcp-server-port",
            value: p,
        })?),
    };
    Ok(Disk {
        slot,
        disk_type,
        file_path: non_empty(item, "file-path").map(str::to_string),
        size_bytes,
        nvme_tcp_export,
        nvme_tcp_port,
        nvme_tcp_nqn: non_empty(item, "nvme-tcp-server-nqn").map(str::to_string),
        flags: item.flags().to_string(),
    })
}

pub fn disks_from_items(items: &[Item]) -> Result<Vec<Disk>, ModelError> {
    items.iter().map(disk_from_item).collect()
}
