//! The tokens of a command line: words, quoted values, `=`, `~` and `[ ... ]` brackets,
//! each with its 1-based column.

use super::{syntax, CmdError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Word(String),
    Quoted(String),
    Eq,
    Tilde,
    /// `[ ... ]`: the inner text and the column where it starts.
    Bracket(String, usize),
}

pub(super) fn lex(line: &str, base_col: usize) -> Result<Vec<(Tok, usize)>, CmdError> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = base_col + i;
        match c {
            ' ' | '\t' | '\r' | '\n' => i += 1,
            '=' => {
                out.push((Tok::Eq, col));
                i += 1;
            }
            '~' => {
                out.push((Tok::Tilde, col));
                i += 1;
            }
            '"' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(syntax(col)),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let escaped = *chars.get(i + 1).ok_or_else(|| syntax(col))?;
                            value.push(match escaped {
                                'n' => '\n',
                                'r' => '\r',
                                't' => '\t',
                                other => other,
                            });
                            i += 2;
                        }
                        Some(&ch) => {
                            value.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push((Tok::Quoted(value), col));
            }
            '[' => {
                // Find the matching `]`, skipping quoted text.
                let (mut j, mut depth, mut quoted) = (i + 1, 1, false);
                while j < chars.len() {
                    match chars[j] {
                        '\\' if quoted => j += 1,
                        '"' => quoted = !quoted,
                        '[' if !quoted => depth += 1,
                        ']' if !quoted => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(syntax(col));
                }
                let inner: String = chars[i + 1..j].iter().collect();
                out.push((Tok::Bracket(inner, col + 1), col));
                i = j + 1;
            }
            ']' | ';' | '{' | '}' | '$' | '`' | '\\' => return Err(syntax(col)),
            _ => {
                let start = i;
                while i < chars.len()
                    && !matches!(
                        chars[i],
                        ' ' | '\t' | '\r' | '\n' | '=' | '~' | '"' | '[' | ']' | ';' | '{' | '}'
                    )
                {
                    i += 1;
                }
                out.push((Tok::Word(chars[start..i].iter().collect()), col));
            }
        }
    }
    Ok(out)
}
