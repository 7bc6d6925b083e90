//! Parser for the RouterOS CLI subset the driver emits (src/rds/command/), plus the
//! simulator's own `/simulator` menu. Values may be double-quoted (as the builder always
//! does, numbers included) or bare; `[find k=v ...]` selects items. Errors use RouterOS's
//! wording and 1-based columns: `bad command name x (line 1 column N)`,
//! `syntax error (line 1 column N)`, `expected end of command (line 1 column N)`.
//!
//! Here: the menu tree and [`parse`]; the parsed form ([`Request`], its conditions and the
//! regex subset they match with) in `request`; the tokens in `lex`; the argument and
//! `[find ...]` readers in `cursor`.

mod cursor;
mod lex;
mod request;

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

use cursor::Cursor;
use lex::{lex, Tok};
pub use request::{matches, Cond, Op, Request, Target, Value};

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
}
