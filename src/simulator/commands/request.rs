//! A parsed command: the [`Request`], its argument [`Value`]s, `set`/`remove` [`Target`]s,
//! and the [`Cond`]itions items are selected by, with the regex subset `~` matches with.

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

#[cfg(test)]
mod tests {
    use super::*;

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
