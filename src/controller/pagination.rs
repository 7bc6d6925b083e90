//! Pagination for ListVolumes and ListSnapshots: tokens, and listing generations kept for
//! a token's life so a paginated listing fetches and parses the RDS's disks once, not once
//! per page.
//!
//! A token names the last id returned (`after:<id>`), so concurrent creates and deletes never
//! make a page repeat or skip an entry that existed throughout. A listing that needs more
//! than one page is kept as a *generation* (sorted entries, the request's filter, its birth
//! time) and its tokens also name it (`gen:<16 hex digits>:after:<id>`); the next page is cut
//! from the generation by id (a binary search), without asking the RDS. A generation is
//! dropped after its last page, after [`MAX_AGE`], or when more than [`MAX_GENERATIONS`] are
//! kept (the oldest goes); a token whose generation is gone resumes after its id from a fresh
//! fetch, exactly as a plain `after:` token does.
//!
//! A token cannot be made to read anything else: a generation is only used by a request for
//! the same listing (volumes, or snapshots with the same filter), and its id is only a
//! position. A token we did not issue is ABORTED, as the CSI spec asks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::error::ControllerError;
use crate::error::Error;

const AFTER: &str = "after:";
const GEN: &str = "gen:";

/// How long a generation serves pages. A listing of 10,000 volumes in 100-entry pages takes
/// the CO well under a second per page; an entry is at most this stale (a volume deleted
/// meanwhile may still be listed, one created meanwhile only shows in the next listing — the
/// CSI spec lets a paginated listing be inconsistent).
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// How many listings are kept at once per kind (volumes, snapshots). Bounds memory: a
/// 10,000-disk generation is ~2–3 MB.
pub const MAX_GENERATIONS: usize = 4;

/// A parsed `starting_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// The generation the token was cut from, if any.
    pub generation: Option<u64>,
    /// The id after which the page starts.
    pub after: &'a str,
}

/// Parses a `starting_token`: `Ok(None)` for the first page; ABORTED for a token this
/// driver did not issue.
pub fn parse_token(token: &str) -> Result<Option<Token<'_>>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let (generation, rest) = match token.strip_prefix(GEN) {
        Some(rest) => match rest.split_at_checked(16) {
            Some((hex, rest)) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (u64::from_str_radix(hex, 16).ok(), rest.strip_prefix(':'))
            }
            _ => (None, None),
        },
        None => (None, Some(token)),
    };
    rest.and_then(|r| r.strip_prefix(AFTER))
        .filter(|s| !s.is_empty())
        .map(|after| Some(Token { generation, after }))
        .ok_or_else(|| {
            Error::Aborted(format!(
                "starting_token {} was not issued by this driver; restart the listing without a token",
                crate::error::echo(token)
            ))
        })
}

/// The id after which a page starts; `None` for the first page.
pub fn start_after(token: &str) -> Result<Option<&str>, Error> {
    Ok(parse_token(token)?.map(|t| t.after))
}

struct Generation<T> {
    id: u64,
    /// The listing and filter it holds (e.g. `volumes`, `snapshots source=pvc-1`).
    key: String,
    born: Instant,
    entries: Arc<Vec<T>>,
}

/// The listing generations of one kind of entry (see the module docs).
pub struct Listings<T> {
    kept: Mutex<VecDeque<Generation<T>>>,
    max_age: Duration,
    max_generations: usize,
    fetches: std::sync::atomic::AtomicU64,
}

impl<T> Default for Listings<T> {
    fn default() -> Self {
        Self::new(MAX_AGE, MAX_GENERATIONS)
    }
}

impl<T> Listings<T> {
    pub fn new(max_age: Duration, max_generations: usize) -> Self {
        Listings {
            kept: Mutex::new(VecDeque::new()),
            max_age,
            max_generations: max_generations.max(1),
            fetches: Default::default(),
        }
    }

    /// How many times a page had to fetch its listing (for tests and benches).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many generations are kept now.
    pub fn kept(&self) -> usize {
        self.kept.lock().len()
    }

    fn cached(&self, key: &str, generation: u64, now: Instant) -> Option<Arc<Vec<T>>> {
        let mut kept = self.kept.lock();
        kept.retain(|g| now.duration_since(g.born) < self.max_age);
        kept.iter()
            .find(|g| g.id == generation && g.key == key)
            .map(|g| g.entries.clone())
    }

    fn keep(&self, key: &str, entries: Arc<Vec<T>>, now: Instant) -> u64 {
        let id = rand::random::<u64>();
        let mut kept = self.kept.lock();
        kept.retain(|g| now.duration_since(g.born) < self.max_age);
        while kept.len() >= self.max_generations {
            kept.pop_front();
        }
        kept.push_back(Generation {
            id,
            key: key.to_owned(),
            born: now,
            entries,
        });
        id
    }

    fn forget(&self, generation: u64) {
        self.kept.lock().retain(|g| g.id != generation);
    }
}

impl<T: Clone> Listings<T> {
    /// One page of the listing `key`: at most `max_entries` (0: all) entries after
    /// `starting_token`, and the next token (empty after the last page). `fetch` gives the
    /// whole listing sorted ascending by `id` (ids unique); it is called only when no kept
    /// generation serves the token. Errors: a negative `max_entries` is INVALID_ARGUMENT, a
    /// foreign token ABORTED, and `fetch`'s own errors pass through.
    pub async fn page<F, Fut>(
        &self,
        key: &str,
        max_entries: i32,
        starting_token: &str,
        id: impl Fn(&T) -> &str,
        fetch: F,
    ) -> Result<(Vec<T>, String), ControllerError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>, ControllerError>>,
    {
        if max_entries < 0 {
            return Err(ControllerError::NegativeMaxEntries(max_entries));
        }
        let token = parse_token(starting_token).map_err(ControllerError::Pagination)?;
        let now = Instant::now();
        let hit = token
            .and_then(|t| t.generation)
            .and_then(|g| Some((g, self.cached(key, g, now)?)));
        let (generation, entries) = match hit {
            Some((g, entries)) => (Some(g), entries),
            None => {
                self.fetches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (None, Arc::new(fetch().await?))
            }
        };
        let start = match token {
            Some(t) => entries.partition_point(|e| id(e) <= t.after),
            None => 0,
        };
        let rest = &entries[start.min(entries.len())..];
        if max_entries == 0 || rest.len() <= max_entries as usize {
            if let Some(g) = generation {
                self.forget(g); // its last page: free it now
            }
            return Ok((rest.to_vec(), String::new()));
        }
        let page = rest[..max_entries as usize].to_vec();
        let generation = match generation {
            Some(g) => g,
            None => self.keep(key, entries.clone(), now),
        };
        let next = token_for(generation, id(page.last().expect("max_entries > 0")));
        Ok((page, next))
    }
}

fn token_for(generation: u64, last_id: &str) -> String {
    format!("{GEN}{generation:016x}:{AFTER}{last_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("v{i:05}")).collect()
    }

    #[test]
    fn foreign_tokens_are_aborted() {
        for bad in [
            "invalid-token",
            "after:",
            "gen:0123:after:v1",
            "gen:zzzzzzzzzzzzzzzz:after:v1",
            "gen:0123456789abcdef:v1",
        ] {
            let e = parse_token(bad).unwrap_err();
            assert_eq!(tonic::Status::from(e).code(), tonic::Code::Aborted, "{bad}");
        }
    }

    async fn walk(l: &Listings<String>, key: &str, all: &[String], per_page: i32) -> Vec<String> {
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let (p, next) = l
                .page(
                    key,
                    per_page,
                    &token,
                    |s| s.as_str(),
                    || async { Ok(all.to_vec()) },
                )
                .await
                .unwrap();
            seen.extend(p);
            if next.is_empty() {
                return seen;
            }
            token = next;
        }
    }

    #[tokio::test]
    async fn a_paginated_listing_fetches_once_and_is_then_forgotten() {
        let all = ids(10_000);
        let l: Listings<String> = Listings::default();
        assert_eq!(walk(&l, "volumes", &all, 100).await, all);
        assert_eq!(l.fetches(), 1, "100 pages, one fetch");
        assert_eq!(l.kept(), 0, "the last page frees its generation");
    }

    #[tokio::test]
    async fn a_token_resumes_by_id_when_its_generation_is_gone_or_belongs_elsewhere() {
        let all = ids(10);
        let l: Listings<String> = Listings::new(MAX_AGE, 1);
        let fetch = |v: Vec<String>| move || async move { Ok(v) };
        let (p, t) = l
            .page("volumes", 3, "", |s| s.as_str(), fetch(all.clone()))
            .await
            .unwrap();
        assert_eq!(p, all[..3]);
        assert!(t.starts_with("gen:"), "{t}");
        // The same token on another listing (another filter) does not read this generation:
        // that listing is fetched and resumed after the id.
        let other: Vec<String> = all.iter().filter(|s| s.ends_with('7')).cloned().collect();
        let (p, _) = l
            .page(
                "snapshots source=x",
                3,
                &t,
                |s| s.as_str(),
                fetch(other.clone()),
            )
            .await
            .unwrap();
        assert_eq!(p, other);
        assert_eq!(l.fetches(), 2);
        // Keeping at most one generation, a second listing evicts the first: its token then
        // resumes after its id from a fresh fetch, with nothing repeated or skipped.
        let (_, t2) = l
            .page("volumes", 2, "", |s| s.as_str(), fetch(all.clone()))
            .await
            .unwrap();
        let (p, _) = l
            .page("volumes", 3, &t, |s| s.as_str(), fetch(all.clone()))
            .await
            .unwrap();
        assert_eq!(p, all[3..6]);
        assert_eq!(l.fetches(), 4);
        assert!(!t2.is_empty());
        // A plain `after:` token still works.
        let (p, _) = l
            .page(
                "volumes",
                2,
                "after:v00008",
                |s| s.as_str(),
                fetch(all.clone()),
            )
            .await
            .unwrap();
        assert_eq!(p, all[9..]);
    }

    #[tokio::test]
    async fn generations_expire() {
        let all = ids(10);
        let l: Listings<String> = Listings::new(Duration::ZERO, 4);
        let (_, t) = l
            .page(
                "volumes",
                3,
                "",
                |s| s.as_str(),
                || async { Ok(all.clone()) },
            )
            .await
            .unwrap();
        let (p, _) = l
            .page(
                "volumes",
                3,
                &t,
                |s| s.as_str(),
                || async { Ok(all.clone()) },
            )
            .await
            .unwrap();
        assert_eq!(p, all[3..6]);
        assert_eq!(l.fetches(), 2, "an expired generation is fetched again");
    }
}
