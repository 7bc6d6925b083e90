//! Parser for RouterOS `print detail` output: key=value tokens, never regexes over joined
//! text (a regex over joined text reads a wrapped or quoted value wrong).
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
//! `failure: no such item`) must never read as "zero disks". A key printed twice in one item
//! is an error too.
//!
//! [`visit_items`] is the scanner: it lends each item ([`ItemRef`]) with keys and values
//! borrowed from the input, allocating nothing per field (a 10,000-disk listing is ~7 MB).
//! [`parse_items`] builds owned [`Item`]s on top of it.

use std::fmt;

use thiserror::Error;

use super::size::{parse_grouped_u64, parse_routeros_bytes};

mod scan;
#[cfg(test)]
mod tests;

use scan::{RawField, Span};

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

/// Calls `visit` with each item of a `print detail` output, in order, then returns `Ok`; or
/// returns the first error (by line). Items are lent, not kept: keys and values borrow the
/// input (or, for the few values that are not a slice of it, one buffer reused from item to
/// item), so nothing is allocated per field. On an error, whatever `visit` saw must be
/// dropped: the output as a whole is unreadable.
pub fn visit_items(text: &str, mut visit: impl FnMut(&ItemRef<'_>)) -> Result<(), ParseError> {
    scan::scan(text, &mut visit)
}

/// Parses the whole output of a `print detail` command into owned items.
pub fn parse_items(text: &str) -> Result<Vec<Item>, ParseError> {
    let mut items = Vec::new();
    visit_items(text, |item| items.push(item.to_item()))?;
    Ok(items)
}

/// The typed getters [`Item`] and [`ItemRef`] share, each over the type's own `get_str`.
macro_rules! typed_getters {
    () => {
        /// An integer, plain or space-grouped (`53 687 091 200`).
        pub fn get_u64(&self, key: &str) -> Result<u64, FieldError> {
            typed_u64(key, self.get_str(key))
        }

        /// A byte count: a plain or grouped integer, or an exact human size (`50.0GiB`).
        pub fn get_bytes(&self, key: &str) -> Result<u64, FieldError> {
            typed_bytes(key, self.get_str(key))
        }

        /// `yes`/`no`/`true`/`false`, in any case.
        pub fn get_bool(&self, key: &str) -> Result<bool, FieldError> {
            typed_bool(key, self.get_str(key))
        }
    };
}

/// One printed item, lent by [`visit_items`]: its list number (if numbered), flag letters,
/// comment, and fields in the order printed (keys unique).
pub struct ItemRef<'a> {
    text: &'a str,
    scratch: &'a str,
    number: Option<u64>,
    flags: Option<Span>,
    comment: Option<Span>,
    fields: &'a [RawField],
}

impl<'a> ItemRef<'a> {
    fn resolve(&self, span: Span) -> &'a str {
        match span {
            Span::Input(a, b) => &self.text[a..b],
            Span::Scratch(a, b) => &self.scratch[a..b],
        }
    }

    pub fn number(&self) -> Option<u64> {
        self.number
    }

    /// Flag letters in the order printed, e.g. `"X"` for a disabled item.
    pub fn flags(&self) -> &'a str {
        self.flags.map_or("", |f| self.resolve(f))
    }

    pub fn comment(&self) -> Option<&'a str> {
        self.comment.map(|c| self.resolve(c))
    }

    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.fields
            .iter()
            .map(|f| (&self.text[f.key.0..f.key.1], self.resolve(f.value)))
    }

    /// The raw value (unquoted, unescaped); `-` and `""` are returned as they are.
    pub fn get_str(&self, key: &str) -> Option<&'a str> {
        self.fields().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// An owned copy.
    pub fn to_item(&self) -> Item {
        Item {
            number: self.number,
            flags: self.flags().to_string(),
            comment: self.comment().map(str::to_string),
            fields: self
                .fields()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    typed_getters!();
}

/// One printed item, owned: its list number (if numbered), flag letters, comment, and fields
/// in the order printed (keys unique).
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

    typed_getters!();
}

// The typed getters, shared by `Item` and `ItemRef`: `value` is the field's raw value, if
// the item has the field.

fn require<'v>(key: &str, value: Option<&'v str>) -> Result<&'v str, FieldError> {
    value.ok_or_else(|| FieldError::Missing {
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

pub(super) fn typed_u64(key: &str, value: Option<&str>) -> Result<u64, FieldError> {
    let value = require(key, value)?;
    parse_grouped_u64(value).ok_or_else(|| {
        invalid(
            key,
            value,
            "not an unsigned 64-bit integer (digits, optionally grouped in threes)",
        )
    })
}

pub(super) fn typed_bytes(key: &str, value: Option<&str>) -> Result<u64, FieldError> {
    let value = require(key, value)?;
    parse_routeros_bytes(value).map_err(|e| invalid(key, value, e))
}

pub(super) fn typed_bool(key: &str, value: Option<&str>) -> Result<bool, FieldError> {
    let value = require(key, value)?;
    if value.eq_ignore_ascii_case("yes") || value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("no") || value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(invalid(key, value, "not yes/no/true/false"))
    }
}
