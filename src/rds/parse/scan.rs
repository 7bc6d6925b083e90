//! The scanner behind [`super::visit_items`]: one pass over the text, line by line, that keeps
//! keys and almost every value as slices of the input. One scratch buffer, cleared from item
//! to item, holds the few values that are not a slice of the input: quoted values with
//! escapes (unescaped) and values joined from words that are not one space apart (a value
//! wrapped onto a continuation line, or words separated by a tab or several blanks).
//!
//! The rules are those of the module docs of [`super`]; the order in which errors are found is
//! kept too: a line is tokenized whole before its tokens join the item, so a malformed token
//! anywhere on a line is reported before a duplicate key or a stray word on that same line.

use super::{ItemRef, ParseError};

/// Numbered items put their number in a narrow right-aligned column; continuation lines are
/// indented further (5 or 15 columns in real output). This is what tells ` 1  type=...`
/// (a new item) from a wrapped line that happens to start with a digit group.
const MAX_NUMBER_INDENT: usize = 3;

/// Where a piece of text lives: `Input(a, b)` is `text[a..b]`, `Scratch(a, b)` is
/// `scratch[a..b]`.
#[derive(Clone, Copy, Debug)]
pub(super) enum Span {
    Input(usize, usize),
    Scratch(usize, usize),
}

/// One field of the open item: the key is always a slice of the input.
#[derive(Clone, Copy, Debug)]
pub(super) struct RawField {
    pub(super) key: (usize, usize),
    pub(super) value: Span,
}

/// One token of a line, before it joins the item.
#[derive(Clone, Copy, Debug)]
enum Token {
    Field { key: (usize, usize), value: Span },
    Word(usize, usize),
    Comment(usize, usize),
}

struct Scanner<'t> {
    text: &'t str,
    /// Values of the open item that are not slices of `text`.
    scratch: String,
    /// Reused while unescaping one quoted value (bytes: `\ff` may make it invalid UTF-8).
    unescaped: Vec<u8>,
    /// Tokens of the current line.
    line: Vec<Token>,
    open: bool,
    number: Option<u64>,
    flags: Option<Span>,
    comment: Option<Span>,
    fields: Vec<RawField>,
    /// A 256-bit Bloom filter of the open item's keys: a key whose bit is clear is new, so the
    /// duplicate-key rule costs a linear scan only on a (rare) bit collision.
    seen: [u64; 4],
}

/// Scans `text`, calling `visit` with each complete item in order. On an error the items
/// visited so far are meaningless: the caller drops them.
pub(super) fn scan(text: &str, visit: &mut impl FnMut(&ItemRef<'_>)) -> Result<(), ParseError> {
    let mut s = Scanner {
        text,
        scratch: String::new(),
        unescaped: Vec::new(),
        line: Vec::new(),
        open: false,
        number: None,
        flags: None,
        comment: None,
        fields: Vec::new(),
        seen: [0; 4],
    };
    let bytes = text.as_bytes();
    let mut after_blank = true;
    let mut start = 0;
    let mut line_no = 0;
    // The same lines as `str::lines` (a final newline opens no extra line).
    while start < text.len() {
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(text.len(), |i| start + i);
        line_no += 1;
        let line_start = start;
        let line = trim_end_blanks(&text[start..end]);
        start = end + 1;
        let body = trim_start_indent(line);
        if body.is_empty() {
            after_blank = true;
            continue;
        }
        if body.starts_with("Flags:") || body.starts_with("Columns:") {
            continue;
        }
        let indent = line.len() - body.len();
        let base = line_start + indent;
        let (number, from) = item_number(body, indent);
        if number.is_some() || indent == 0 || after_blank || !s.open {
            s.emit(visit);
            s.open = true;
            s.number = number;
        }
        after_blank = false;
        s.tokenize_line(body, base, from, line_no)?;
        s.add_line(line_no)?;
    }
    s.emit(visit);
    Ok(())
}

/// The item number a line starts with, and where its tokens start after it: the first token
/// is a word of digits that fits in a u64, on a line indented at most [`MAX_NUMBER_INDENT`].
/// A number too large for u64 is not an item number: it stays a word.
fn item_number(body: &str, indent: usize) -> (Option<u64>, usize) {
    if indent > MAX_NUMBER_INDENT {
        return (None, 0);
    }
    let b = body.as_bytes();
    let first = b.iter().position(|&c| !is_blank(c)).unwrap_or(b.len());
    let run = b[first..]
        .iter()
        .position(|&c| is_blank(c) || c == b'=')
        .map_or(b.len(), |n| first + n);
    let is_word = b.get(run) != Some(&b'=');
    if !is_word || !is_digits(&b[first..run]) {
        return (None, 0);
    }
    match body[first..run].parse::<u64>() {
        Ok(n) => (Some(n), run),
        Err(_) => (None, 0),
    }
}

impl<'t> Scanner<'t> {
    /// Hands the open item (if any) to `visit` and clears it.
    fn emit(&mut self, visit: &mut impl FnMut(&ItemRef<'_>)) {
        if !self.open {
            return;
        }
        visit(&ItemRef {
            text: self.text,
            scratch: &self.scratch,
            number: self.number,
            flags: self.flags,
            comment: self.comment,
            fields: &self.fields,
        });
        self.open = false;
        self.scratch.clear();
        self.flags = None;
        self.comment = None;
        self.fields.clear();
        self.seen = [0; 4];
    }

    fn slice(&self, (a, b): (usize, usize)) -> &'t str {
        &self.text[a..b]
    }

    /// Splits `body` (which starts at `base` in the text) into tokens from byte `from` on.
    /// Delimiters are ASCII, so every slice boundary falls on a UTF-8 character boundary.
    fn tokenize_line(
        &mut self,
        body: &'t str,
        base: usize,
        from: usize,
        line_no: usize,
    ) -> Result<(), ParseError> {
        self.line.clear();
        let bytes = body.as_bytes();
        let mut i = from;
        while i < bytes.len() {
            if is_blank(bytes[i]) {
                i += 1;
                continue;
            }
            if bytes[i..].starts_with(b";;;") {
                let rest = &body[i + 3..];
                let lead = rest.len() - rest.trim_start().len();
                let start = base + i + 3 + lead;
                self.line
                    .push(Token::Comment(start, start + rest.trim().len()));
                break;
            }
            // One pass over the token: where it stops (a blank or `=`), whether every byte
            // may be in a key, whether any is a quote.
            let start = i;
            let (mut all, mut any) = (KEY, 0);
            while i < bytes.len() {
                let class = CLASS[usize::from(bytes[i])];
                if class & (BLANK | EQUALS) != 0 {
                    break;
                }
                all &= class;
                any |= class;
                i += 1;
            }
            if i == bytes.len() || bytes[i] != b'=' {
                if any & QUOTE != 0 {
                    return Err(ParseError::StrayQuote {
                        line: line_no,
                        token: body[start..i].to_string(),
                    });
                }
                self.line.push(Token::Word(base + start, base + i));
                continue;
            }
            let key = &body[start..i];
            if key.is_empty() || all & KEY == 0 {
                return Err(ParseError::InvalidKey {
                    line: line_no,
                    key: key.to_string(),
                });
            }
            i += 1;
            let value = if bytes.get(i) == Some(&b'"') {
                let (value, end) = self.read_quoted(body, base, i + 1, key, line_no)?;
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
                let mut any = 0;
                while i < bytes.len() {
                    let class = CLASS[usize::from(bytes[i])];
                    if class & BLANK != 0 {
                        break;
                    }
                    any |= class;
                    i += 1;
                }
                if any & QUOTE != 0 {
                    return Err(ParseError::StrayQuote {
                        line: line_no,
                        token: body[start..i].to_string(),
                    });
                }
                Span::Input(base + value_start, base + i)
            };
            self.line.push(Token::Field {
                key: (base + start, base + start + key.len()),
                value,
            });
        }
        Ok(())
    }

    /// Reads a quoted value starting just after the opening quote; returns where the value is
    /// and the index just past the closing quote. Without a backslash the value is a slice of
    /// the input; with one it is unescaped into the scratch buffer. RouterOS escapes: `\"`,
    /// `\\`, `\n`, `\r`, `\t`, `\a`, `\b`, `\f`, `\v`, `\_` (space), `\$`, `\?`, and two hex
    /// digits for a byte (tried first, so `\ab` is the byte 0xab).
    fn read_quoted(
        &mut self,
        body: &str,
        base: usize,
        start: usize,
        key: &str,
        line_no: usize,
    ) -> Result<(Span, usize), ParseError> {
        let bytes = body.as_bytes();
        let unterminated = || ParseError::UnterminatedQuote {
            line: line_no,
            key: key.to_string(),
        };
        let Some(stop) = memchr::memchr2(b'"', b'\\', &bytes[start..]).map(|n| start + n) else {
            return Err(unterminated());
        };
        if bytes[stop] == b'"' {
            return Ok((Span::Input(base + start, base + stop), stop + 1));
        }
        let out = &mut self.unescaped;
        out.clear();
        out.extend_from_slice(&bytes[start..stop]);
        let mut i = stop;
        loop {
            let Some(&b) = bytes.get(i) else {
                return Err(unterminated());
            };
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = bytes.get(i + 1) else {
                        return Err(unterminated());
                    };
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| Some(hex_digit(h[0])? << 4 | hex_digit(h[1])?));
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
        let value = std::str::from_utf8(out).map_err(|_| ParseError::InvalidUtf8 {
            line: line_no,
            key: key.to_string(),
        })?;
        let at = self.scratch.len();
        self.scratch.push_str(value);
        Ok((Span::Scratch(at, self.scratch.len()), i + 1))
    }

    /// Adds the current line's tokens to the open item.
    fn add_line(&mut self, line_no: usize) -> Result<(), ParseError> {
        for t in 0..self.line.len() {
            match self.line[t] {
                Token::Comment(a, b) => {
                    self.comment = Some(match self.comment {
                        Some(c) => self.append(c, " ", (a, b)),
                        None => Span::Input(a, b),
                    });
                }
                Token::Word(a, b) => {
                    if let Some(last) = self.fields.len().checked_sub(1) {
                        let joined = self.append(self.fields[last].value, " ", (a, b));
                        self.fields[last].value = joined;
                    } else if is_flag_group(self.slice((a, b)).as_bytes()) {
                        self.flags = Some(match self.flags {
                            Some(f) => self.append(f, "", (a, b)),
                            None => Span::Input(a, b),
                        });
                    } else {
                        return Err(ParseError::UnexpectedWord {
                            line: line_no,
                            word: self.slice((a, b)).to_string(),
                        });
                    }
                }
                Token::Field { key, value } => {
                    if self.is_duplicate(key) {
                        return Err(ParseError::DuplicateKey {
                            line: line_no,
                            key: self.slice(key).to_string(),
                        });
                    }
                    self.fields.push(RawField { key, value });
                }
            }
        }
        Ok(())
    }

    /// Whether the open item already has `key`; records it if not.
    fn is_duplicate(&mut self, key: (usize, usize)) -> bool {
        let k = self.slice(key).as_bytes();
        let bit = bloom_bit(k);
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        if self.seen[word] & mask == 0 {
            self.seen[word] |= mask;
            return false;
        }
        self.fields
            .iter()
            .any(|f| self.text.as_bytes()[f.key.0..f.key.1] == *k)
    }

    /// `span` followed by `sep` and `text[add]`. Stays a slice of the input when the input
    /// already reads exactly so (a grouped integer on one line); otherwise the joined value is
    /// built at the end of the scratch buffer, in place when `span` already ends it.
    fn append(&mut self, span: Span, sep: &str, add: (usize, usize)) -> Span {
        let extra = &self.text[add.0..add.1];
        match span {
            Span::Input(a, b) if add.0 == b + sep.len() && &self.text[b..add.0] == sep => {
                Span::Input(a, add.1)
            }
            Span::Scratch(a, b) if b == self.scratch.len() => {
                self.scratch.push_str(sep);
                self.scratch.push_str(extra);
                Span::Scratch(a, self.scratch.len())
            }
            other => {
                let at = self.scratch.len();
                match other {
                    Span::Input(a, b) => self.scratch.push_str(&self.text[a..b]),
                    Span::Scratch(a, b) => self.scratch.extend_from_within(a..b),
                }
                self.scratch.push_str(sep);
                self.scratch.push_str(extra);
                Span::Scratch(at, self.scratch.len())
            }
        }
    }
}

/// A bit in 0..256 from a key's length and its first and last eight bytes (keys are short
/// ASCII words; a collision only costs a linear scan).
fn bloom_bit(key: &[u8]) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let n = key.len();
    let (head, tail) = if n >= 8 {
        let head: [u8; 8] = key[..8].try_into().expect("8 bytes");
        let tail: [u8; 8] = key[n - 8..].try_into().expect("8 bytes");
        (u64::from_le_bytes(head), u64::from_le_bytes(tail))
    } else {
        let mut head = [0u8; 8];
        head[..n].copy_from_slice(key);
        (u64::from_le_bytes(head), 0)
    };
    let h = (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(K);
    (h >> 56) as usize
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Byte classes, so the token loops do one table look-up per byte.
const BLANK: u8 = 1;
const EQUALS: u8 = 2;
const QUOTE: u8 = 4;
/// Letters, digits, `-`, `_`, `.`: the bytes of a key.
const KEY: u8 = 8;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if matches!(c, b' ' | b'\t' | b'\r') {
            BLANK
        } else if c == b'=' {
            EQUALS
        } else if c == b'"' {
            QUOTE
        } else if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.') {
            KEY
        } else {
            0
        };
        b += 1;
    }
    t
};

fn is_blank(b: u8) -> bool {
    CLASS[usize::from(b)] == BLANK
}

/// `s` without trailing spaces, tabs and carriage returns (bytes, so no UTF-8 decoding:
/// these are ASCII and never part of a multi-byte character).
fn trim_end_blanks(s: &str) -> &str {
    let n = s.bytes().rev().take_while(|&b| is_blank(b)).count();
    &s[..s.len() - n]
}

/// `s` without leading spaces and tabs: the indent (a leading `\r` is not indent, only a
/// token delimiter).
fn trim_start_indent(s: &str) -> &str {
    let n = s.bytes().take_while(|&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

fn is_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

pub(super) fn is_flag_group(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_uppercase)
}
