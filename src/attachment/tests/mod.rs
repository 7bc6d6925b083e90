//! The attachment rules, told as operators meet them: the shared fixtures here, the stories
//! in one file per topic.

mod lifecycle;
mod mechanics;
mod rwo;
mod rwx;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tonic::{Code, Status};

use super::*;
use crate::error::Error;
use crate::observability::metrics::Metrics;

const V: &str = "pvc-0001";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn table() -> AttachmentTable {
    AttachmentTable::new(TableConfig::default())
}

fn req(volume: &str, node: &str, access: RequestedAccess) -> PublishRequest<'static> {
    // Leaked test strings keep the fixtures one-liners; a few bytes per test.
    PublishRequest {
        volume: Box::leak(volume.to_owned().into_boxed_str()),
        node: Box::leak(node.to_owned().into_boxed_str()),
        access,
        migration_timeout: MigrationTimeout::default(),
    }
}

fn rwo(volume: &str, node: &str) -> PublishRequest<'static> {
    req(volume, node, RequestedAccess::SingleNode)
}

fn rwx(volume: &str, node: &str) -> PublishRequest<'static> {
    req(volume, node, RequestedAccess::MultiNodeBlock)
}

fn status(e: AttachError) -> Status {
    Status::from(Error::from(e))
}

/// A fresh table in which `r` was published at the returned instant.
fn published(r: PublishRequest<'_>) -> (AttachmentTable, Instant) {
    let (t, now) = (table(), Instant::now());
    ok(&t, &r, now);
    (t, now)
}

/// A fresh table in which an RWX block volume `V` was published to `source`, then to
/// `target`, at the returned instant: a live migration under way.
fn migrating(source: &str, target: &str) -> (AttachmentTable, Instant) {
    let (t, now) = published(rwx(V, source));
    ok(&t, &rwx(V, target), now);
    (t, now)
}

/// Publishes and expects success; returns the effects.
fn ok(t: &AttachmentTable, r: &PublishRequest<'_>, now: Instant) -> Vec<Effect> {
    let out = t.publish(r, now);
    assert!(out.result.is_ok(), "{:?}", out.result);
    out.effects
}

/// Publishes and expects a refusal: check it with [`Refusal::with`].
fn refused(t: &AttachmentTable, r: &PublishRequest<'_>, now: Instant) -> Refusal {
    let out = t.publish(r, now);
    let e = out.result.expect_err("publish should be refused");
    Refusal(status(e), out.effects)
}

struct Refusal(Status, Vec<Effect>);

impl Refusal {
    /// Asserts the refusal's `code` and that its message names every one of `words`;
    /// returns the effects.
    fn with(self, code: Code, words: &[&str]) -> Vec<Effect> {
        assert_eq!(self.0.code(), code);
        assert_mentions(&self.0, words);
        self.1
    }
}

fn assert_mentions(s: &Status, words: &[&str]) {
    for w in words {
        assert!(
            s.message().contains(w),
            "{w:?} missing from {:?}",
            s.message()
        );
    }
}

fn attached(volume: &str, node: &str) -> Effect {
    Effect::Attached {
        volume: volume.into(),
        node: node.into(),
    }
}

fn detached(volume: &str, node: &str) -> Effect {
    Effect::Detached {
        volume: volume.into(),
        node: node.into(),
    }
}

/// The conflict of a publish to `requested` while `holders` hold `V`.
fn conflict(requested: &str, holders: &[&str]) -> Effect {
    Effect::Conflict {
        volume: V.into(),
        requested_node: requested.into(),
        holders: holders.iter().map(|h| h.to_string()).collect(),
    }
}

fn record(volume: &str, mode: AccessMode, node: &str, at: Instant) -> RestoreRecord {
    RestoreRecord {
        volume: volume.into(),
        mode,
        migration_timeout: MigrationTimeout::from_secs(600).unwrap(),
        node: node.into(),
        attached_at: at,
    }
}
