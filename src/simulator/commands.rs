//! Parser for the RouterOS CLI subset the driver emits (src/rds/command/), plus the
//! simulator's own `/simulator` menu. Values may be double-quoted (as the builder always
//! does, numbers included) or bare; `[find k=v ...]` selects items. Errors use RouterOS's
//! wording and 1-based columns: `bad command name x (line 1 column N)`,
//! `syntax error (line 1 column N)`, `expected end of command (line 1 column N)`.

use std::fmt;

/// A command line RouterOS would refuse; the text is what it prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdError(pub String);

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn syntax(col: usize) -> CmdError {
    CmdError(format!("syntax error (line 1 column {col})"))
}

fn end_expected(col: usize) -> CmdError {
    CmdError(format!("expected end of command (line 1 column {col})"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    Eq,
    Tilde,
    /// `[ ... ]`: the inner text and the column where it starts.
    Bracket(String, usize),
}

fn lex(line: &str, base_col: usize) -> Result<Vec<(Tok, usize)>, CmdError> {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Match,
}

/// `key=value` (exact) or `key~value` (regex subset, see [`matches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub key: String,
    pub op: Op,
    pub value: String,
}

impl Cond {
    pub fn holds(&self, actual: Option<&str>) -> bool {
        let actual = actual.unwrap_or("");
        match self.op {
            Op::Eq => actual == self.value,
            Op::Match => matches(&self.value, actual),
        }
    }
}

/// A subset of RouterOS's (POSIX) regexes, enough for what the driver sends: `^` and `$`
/// anchors, `.` as any character, `\x` as a literal `x`; everything else is literal.
pub fn matches(pattern: &str, text: &str) -> bool {
    let (anchored, rest) = match pattern.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, pattern),
    };
    let (rest, at_end) = match rest.strip_suffix('$') {
        Some(r) if !r.ends_with('\\') => (r, true),
        _ => (rest, false),
    };
    let mut pat: Vec<Option<char>> = Vec::new();
    let mut it = rest.chars();
    while let Some(c) = it.next() {
        pat.push(match c {
            '\\' => it.next(),
            '.' => None,
            c => Some(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    let at = |start: usize| {
        start + pat.len() <= text.len()
            && pat
                .iter()
                .zip(&text[start..])
                .all(|(p, t)| p.is_none_or(|p| p == *t))
            && (!at_end || start + pat.len() == text.len())
    };
    if anchored {
        at(0)
    } else {
        (0..=text.len()).any(at)
    }
}

/// Which items a `set`/`remove` applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Find(Vec<Cond>),
    /// A bare item name or number.
    Name(String),
}

/// An argument value: text, or a `[find ...]` selection (for `copy-from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Find(Vec<Cond>),
}

impl Value {
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            Value::Find(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    DiskAdd(Vec<(String, Value)>),
    DiskSet {
        target: Target,
        args: Vec<(String, Value)>,
    },
    DiskRemove(Target),
    DiskPrint(Vec<Cond>),
    FilePrint(Vec<Cond>),
    FileRemove(Target),
    IdentityPrint,
    ResourcePrint,
    /// `/simulator fault <spec>`: the raw spec after `fault`.
    SimFault(String),
    SimPrint,
}

impl Request {
    /// The menu path joined by `-`, as fault `only=` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::DiskAdd(_) => "disk-add",
            Request::DiskSet { .. } => "disk-set",
            Request::DiskRemove(_) => "disk-remove",
            Request::DiskPrint(_) => "disk-print",
            Request::FilePrint(_) => "file-print",
            Request::FileRemove(_) => "file-remove",
            Request::IdentityPrint => "system-identity-print",
            Request::ResourcePrint => "system-resource-print",
            Request::SimFault(_) => "simulator-fault",
            Request::SimPrint => "simulator-print",
        }
    }
}

#[derive(Clone, Copy)]
enum Verb {
    DiskAdd,
    DiskSet,
    DiskRemove,
    DiskPrint,
    FilePrint,
    FileRemove,
    IdentityPrint,
    ResourcePrint,
    SimFault,
    SimPrint,
}

/// The menu tree: a path of words to a verb.
fn resolve(path: &[&str]) -> Result<Option<Verb>, usize> {
    use Verb::*;
    const TREE: &[(&[&str], Verb)] = &[
        (&["disk", "add"], DiskAdd),
        (&["disk", "set"], DiskSet),
        (&["disk", "remove"], DiskRemove),
        (&["disk", "print"], DiskPrint),
        (&["file", "print"], FilePrint),
        (&["file", "remove"], FileRemove),
        (&["system", "identity", "print"], IdentityPrint),
        (&["system", "resource", "print"], ResourcePrint),
        (&["simulator", "fault"], SimFault),
        (&["simulator", "print"], SimPrint),
    ];
    // The first word that extends no known path is the bad command name.
    for (depth, _) in path.iter().enumerate() {
        let prefix = &path[..=depth];
        if !TREE.iter().any(|(p, _)| p.starts_with(prefix)) {
            return Err(depth);
        }
    }
    Ok(TREE.iter().find(|(p, _)| *p == path).map(|(_, v)| *v))
}

const ADD_KEYS: &[&str] = &[
    "type",
    "file-path",
    "file-size",
    "slot",
    "copy-from",
    "nvme-tcp-export",
    "nvme-tcp-server-port",
    "nvme-tcp-server-nqn",
];
const SET_KEYS: &[&str] = &["file-size"];
const FAULT_KEYS: &[&str] = &[
    "latency",
    "fail-next",
    "drop-next",
    "drop-after-exec",
    "disk-full",
    "refuse-connections",
    "only",
];

struct Cursor {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end_col: usize,
}

impl Cursor {
    fn peek(&self) -> Option<&(Tok, usize)> {
        self.toks.get(self.pos)
    }

    fn col(&self) -> usize {
        self.peek().map(|t| t.1).unwrap_or(self.end_col)
    }

    fn next(&mut self) -> Option<(Tok, usize)> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn done(&self) -> bool {
        self.pos >= self.toks.len()
    }

    fn scalar(&mut self) -> Result<String, CmdError> {
        let col = self.col();
        match self.next() {
            Some((Tok::Word(w), _)) | Some((Tok::Quoted(w), _)) => Ok(w),
            _ => Err(syntax(col)),
        }
    }

    /// `key=value` pairs until the end; keys outside `allowed` end the command.
    fn args(&mut self, allowed: &[&str]) -> Result<Vec<(String, Value)>, CmdError> {
        let mut args = Vec::new();
        while !self.done() {
            let col = self.col();
            let key = match self.next() {
                Some((Tok::Word(w), _)) => w,
                _ => return Err(syntax(col)),
            };
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
    fn conds(&mut self) -> Result<Vec<Cond>, CmdError> {
        let mut conds = Vec::new();
        while !self.done() {
            let col = self.col();
            let key = match self.next() {
                Some((Tok::Word(w), _)) => w,
                _ => return Err(syntax(col)),
            };
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

    fn target(&mut self) -> Result<Target, CmdError> {
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

/// Parses one command line.
pub fn parse(line: &str) -> Result<Request, CmdError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let toks = lex(line, 1)?;
    let end_col = line.chars().count() + 1;
    let mut c = Cursor {
        toks,
        pos: 0,
        end_col,
    };
    // Menu words: `/disk add`, `/disk/add`, `/system identity print`.
    let first_col = c.col();
    let first = match c.next() {
        Some((Tok::Word(w), _)) if w.starts_with('/') => w,
        Some((Tok::Word(w), col)) => {
            return Err(CmdError(format!(
                "bad command name {w} (line 1 column {col})"
            )))
        }
        _ => return Err(syntax(first_col)),
    };
    let mut words: Vec<(String, usize)> = Vec::new();
    let mut offset = first_col + 1;
    for part in first[1..].split('/') {
        words.push((part.to_string(), offset));
        offset += part.chars().count() + 1;
    }
    let verb = loop {
        let path: Vec<&str> = words.iter().map(|(w, _)| w.as_str()).collect();
        match resolve(&path) {
            Err(bad) => {
                let (w, col) = &words[bad];
                return Err(CmdError(format!(
                    "bad command name {w} (line 1 column {col})"
                )));
            }
            Ok(Some(verb)) => break verb,
            Ok(None) => match c.peek().cloned() {
                Some((Tok::Word(w), col)) => {
                    c.next();
                    words.push((w, col));
                }
                _ => {
                    return Err(CmdError(format!(
                        "expected command name (line 1 column {})",
                        c.col()
                    )))
                }
            },
        }
    };
    let request = match verb {
        Verb::DiskAdd => Request::DiskAdd(c.args(ADD_KEYS)?),
        Verb::DiskSet => {
            let target = c.target()?;
            Request::DiskSet {
                target,
                args: c.args(SET_KEYS)?,
            }
        }
        Verb::DiskRemove | Verb::FileRemove => {
            let target = c.target()?;
            if !c.done() {
                return Err(end_expected(c.col()));
            }
            if matches!(verb, Verb::DiskRemove) {
                Request::DiskRemove(target)
            } else {
                Request::FileRemove(target)
            }
        }
        Verb::DiskPrint | Verb::FilePrint => {
            if matches!(c.peek(), Some((Tok::Word(w), _)) if w == "detail") {
                c.next();
            }
            let conds = match c.peek() {
                None => Vec::new(),
                Some((Tok::Word(w), _)) if w == "where" => {
                    c.next();
                    c.conds()?
                }
                Some(_) => return Err(end_expected(c.col())),
            };
            if matches!(verb, Verb::DiskPrint) {
                Request::DiskPrint(conds)
            } else {
                Request::FilePrint(conds)
            }
        }
        Verb::IdentityPrint | Verb::ResourcePrint | Verb::SimPrint => {
            if !c.done() {
                return Err(end_expected(c.col()));
            }
            match verb {
                Verb::IdentityPrint => Request::IdentityPrint,
                Verb::ResourcePrint => Request::ResourcePrint,
                _ => Request::SimPrint,
            }
        }
        Verb::SimFault => {
            // Validate the shape here; the values are checked by the fault parser.
            if matches!(c.peek(), Some((Tok::Word(w), _)) if w == "clear") {
                c.next();
                if !c.done() {
                    return Err(end_expected(c.col()));
                }
                Request::SimFault("clear".into())
            } else {
                let args = c.args(FAULT_KEYS)?;
                let spec: Vec<String> = args
                    .into_iter()
                    .map(|(k, v)| format!("{k}={}", v.text().unwrap_or_default()))
                    .collect();
                Request::SimFault(spec.join(" "))
            }
        }
    };
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(key: &str, value: &str) -> Target {
        Target::Find(vec![Cond {
            key: key.into(),
            op: Op::Eq,
            value: value.into(),
        }])
    }

    #[test]
    fn the_builders_exact_strings_parse() {
        let add = parse(
            "/disk add type=file file-path=\"/storage-pool/csi/pvc-1.img\" file-size=\"1G\" \
             slot=\"pvc-1\" nvme-tcp-export=yes nvme-tcp-server-port=\"4420\" \
             nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\"",
        )
        .unwrap();
        let Request::DiskAdd(args) = add else {
            panic!("{add:?}")
        };
        assert_eq!(args.len(), 7);
        assert_eq!(args[2], ("file-size".into(), Value::Text("1G".into())));
        let copy = parse(
            "/disk add type=file copy-from=[find slot=\"pvc-1\"] \
             file-path=\"/storage-pool/csi/snap-1.img\" slot=\"snap-1\"",
        )
        .unwrap();
        let Request::DiskAdd(args) = copy else {
            panic!()
        };
        assert_eq!(
            args[1],
            (
                "copy-from".into(),
                Value::Find(vec![Cond {
                    key: "slot".into(),
                    op: Op::Eq,
                    value: "pvc-1".into()
                }])
            )
        );
        assert_eq!(
            parse("/disk set [find slot=\"pvc-1\"] file-size=\"2G\"").unwrap(),
            Request::DiskSet {
                target: find("slot", "pvc-1"),
                args: vec![("file-size".into(), Value::Text("2G".into()))]
            }
        );
        assert_eq!(
            parse("/disk remove [find slot=\"pvc-1\"]").unwrap(),
            Request::DiskRemove(find("slot", "pvc-1"))
        );
        assert_eq!(
            parse("/file remove [find name=\"storage-pool/csi/pvc-1.img\"]").unwrap(),
            Request::FileRemove(find("name", "storage-pool/csi/pvc-1.img"))
        );
        assert_eq!(
            parse("/disk print detail where slot~\"^pvc-\"").unwrap(),
            Request::DiskPrint(vec![Cond {
                key: "slot".into(),
                op: Op::Match,
                value: "^pvc-".into()
            }])
        );
        assert_eq!(
            parse("/disk/print detail where mount-point=storage-pool").unwrap(),
            Request::DiskPrint(vec![Cond {
                key: "mount-point".into(),
                op: Op::Eq,
                value: "storage-pool".into()
            }])
        );
        assert_eq!(
            parse("/system identity print").unwrap(),
            Request::IdentityPrint
        );
        assert_eq!(
            parse("/system resource print").unwrap(),
            Request::ResourcePrint
        );
        assert_eq!(
            parse("/simulator fault latency=200ms fail-next=\"2\"").unwrap(),
            Request::SimFault("latency=200ms fail-next=2".into())
        );
        assert_eq!(
            parse("/simulator fault clear").unwrap(),
            Request::SimFault("clear".into())
        );
    }

    #[test]
    fn malformed_input_gets_routeros_errors() {
        let err = |s: &str| parse(s).unwrap_err().0;
        assert_eq!(err("/disk frob"), "bad command name frob (line 1 column 7)");
        assert_eq!(err("/dsk print"), "bad command name dsk (line 1 column 2)");
        assert_eq!(err("disk print"), "bad command name disk (line 1 column 1)");
        assert_eq!(
            err("/disk add slot=\"unterminated"),
            "syntax error (line 1 column 16)"
        );
        assert_eq!(err("/disk add slot="), "syntax error (line 1 column 16)");
        assert_eq!(
            err("/disk add slot=a; /system reboot"),
            "syntax error (line 1 column 17)"
        );
        assert_eq!(
            err("/disk add bogus=1"),
            "expected end of command (line 1 column 11)"
        );
        assert_eq!(
            err("/disk remove [find slot=\"a\"] extra"),
            "expected end of command (line 1 column 30)"
        );
        assert_eq!(
            err("/disk remove [find slot=\"a\""),
            "syntax error (line 1 column 14)"
        );
        assert_eq!(err("/disk"), "expected command name (line 1 column 6)");
    }

    #[test]
    fn regex_subset() {
        assert!(matches("^pvc-", "pvc-1"));
        assert!(!matches("^pvc-", "xpvc-1"));
        assert!(matches("pvc", "xpvc-1"));
        assert!(matches("^storage-pool/csi/", "storage-pool/csi/a.img"));
        assert!(matches("^a.c$", "abc"));
        assert!(!matches("^a\\.c$", "abc"));
        assert!(matches("^a\\.c$", "a.c"));
        assert!(!matches("^a.c$", "abcd"));
    }
}
