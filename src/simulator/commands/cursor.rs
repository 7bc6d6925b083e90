//! Reading a command's tokens: scalars, `key=value` arguments, `k=v`/`k~v` conditions, a
//! `set`/`remove` target and `[find ...]` selections.

use super::lex::{lex, Tok};
use super::request::{Cond, Op, Target, Value};
use super::{end_expected, syntax, CmdError};

pub(super) struct Cursor {
    pub(super) toks: Vec<(Tok, usize)>,
    pub(super) pos: usize,
    pub(super) end_col: usize,
}

impl Cursor {
    pub(super) fn peek(&self) -> Option<&(Tok, usize)> {
        self.toks.get(self.pos)
    }

    pub(super) fn col(&self) -> usize {
        self.peek().map(|t| t.1).unwrap_or(self.end_col)
    }

    pub(super) fn next(&mut self) -> Option<(Tok, usize)> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    pub(super) fn done(&self) -> bool {
        self.pos >= self.toks.len()
    }

    pub(super) fn scalar(&mut self) -> Result<String, CmdError> {
        let col = self.col();
        match self.next() {
            Some((Tok::Word(w), _)) | Some((Tok::Quoted(w), _)) => Ok(w),
            _ => Err(syntax(col)),
        }
    }

    /// A key (a bare word) and the column it starts at.
    fn key(&mut self) -> Result<(usize, String), CmdError> {
        let col = self.col();
        match self.next() {
            Some((Tok::Word(w), _)) => Ok((col, w)),
            _ => Err(syntax(col)),
        }
    }

    /// `key=value` pairs until the end; keys outside `allowed` end the command.
    pub(super) fn args(&mut self, allowed: &[&str]) -> Result<Vec<(String, Value)>, CmdError> {
        let mut args = Vec::new();
        while !self.done() {
            let (col, key) = self.key()?;
            if !allowed.contains(&key.as_str()) {
                return Err(end_expected(col));
            }
            if !matches!(self.next(), Some((Tok::Eq, _))) {
                return Err(syntax(col + key.chars().count()));
            }
            let vcol = self.col();
            let value = match self.next() {
                Some((Tok::Word(w), _)) | Some((Tok::Quoted(w), _)) => Value::Text(w),
                Some((Tok::Bracket(inner, c), _)) => Value::Find(parse_find(&inner, c)?),
                _ => return Err(syntax(vcol)),
            };
            if args.iter().any(|(k, _)| *k == key) {
                return Err(syntax(col));
            }
            args.push((key, value));
        }
        Ok(args)
    }

    /// `k=v` / `k~v` conditions until the end.
    pub(super) fn conds(&mut self) -> Result<Vec<Cond>, CmdError> {
        let mut conds = Vec::new();
        while !self.done() {
            let (col, key) = self.key()?;
            let op = match self.next() {
                Some((Tok::Eq, _)) => Op::Eq,
                Some((Tok::Tilde, _)) => Op::Match,
                _ => return Err(syntax(col + key.chars().count())),
            };
            let value = self.scalar()?;
            conds.push(Cond { key, op, value });
        }
        Ok(conds)
    }

    pub(super) fn target(&mut self) -> Result<Target, CmdError> {
        let col = self.col();
        match self.next() {
            Some((Tok::Bracket(inner, c), _)) => Ok(Target::Find(parse_find(&inner, c)?)),
            Some((Tok::Word(w), _)) | Some((Tok::Quoted(w), _)) => Ok(Target::Name(w)),
            _ => Err(syntax(col)),
        }
    }
}

/// `find k=v ...` inside brackets.
fn parse_find(inner: &str, base_col: usize) -> Result<Vec<Cond>, CmdError> {
    let toks = lex(inner, base_col)?;
    let end_col = base_col + inner.chars().count();
    let mut c = Cursor {
        toks,
        pos: 0,
        end_col,
    };
    let col = c.col();
    match c.next() {
        Some((Tok::Word(w), _)) if w == "find" => {}
        Some((Tok::Word(w), col)) => {
            return Err(CmdError(format!(
                "bad command name {w} (line 1 column {col})"
            )))
        }
        _ => return Err(syntax(col)),
    }
    if matches!(c.peek(), Some((Tok::Word(w), _)) if w == "where") {
        c.next();
    }
    c.conds()
}
