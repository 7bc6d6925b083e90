//! The attachment table as a versioned document, for controllers that have no VolumeAttachments
//! to rebuild from (`--no-kubernetes`). Pure: the document and its conversions; where it is
//! stored is an injected [`AttachmentStore`].
//!
//! What is kept: every (volume, node) attachment with its access mode, migration timeout and
//! attach time. Restoring re-applies them in attach-time order through the same rules as a
//! publish, so a volume on two nodes resumes its migration with its original start and
//! deadline. Not kept: grace windows after a detach (they only describe handoffs) and whether
//! a migration was already found timed out (it is found again at its deadline).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::model::{AccessMode, MigrationTimeout, RestoreRecord};
use super::state::VolumeState;

/// The document's format version; a document of another version is refused, never guessed.
pub const FORMAT_VERSION: u32 = 1;

/// The whole table. Unknown fields are refused (a newer writer's document is not half-read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDocument {
    pub version: u32,
    pub attachments: Vec<SavedAttachment>,
}

/// One attachment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedAttachment {
    pub volume: String,
    pub node: String,
    /// `ReadWriteOnce` or `ReadWriteManyBlock`.
    pub mode: SavedMode,
    pub migration_timeout_seconds: u64,
    /// Wall-clock attach time, milliseconds since the Unix epoch.
    pub attached_at_unix_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SavedMode {
    ReadWriteOnce,
    ReadWriteManyBlock,
}

/// Why a document cannot be restored. The messages name what is wrong; the caller names the
/// file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    #[error("format version {found} is not one this controller reads ({FORMAT_VERSION})")]
    Version { found: u32 },
    #[error("attachment of volume {volume:?} on node {node:?}: {why}")]
    Invalid {
        volume: String,
        node: String,
        why: String,
    },
}

/// Where the document is kept. `load` is `Ok(None)` when nothing was ever saved; any other
/// failure to read is an error (the controller must not start unfenced).
pub trait AttachmentStore: Send + Sync + 'static {
    fn load(&self) -> Result<Option<TableDocument>, String>;
    fn save(&self, doc: &TableDocument) -> Result<(), String>;
    /// Where it is kept, for messages.
    fn describe(&self) -> String;
}

/// Both clocks read together: `Instant`s (the table's) map to wall-clock times (the
/// document's) and back.
#[derive(Clone, Copy, Debug)]
pub struct ClockPair {
    pub instant: Instant,
    pub wall: SystemTime,
}

impl ClockPair {
    pub fn now() -> Self {
        ClockPair {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn wall_of(&self, at: Instant) -> SystemTime {
        self.wall - self.instant.saturating_duration_since(at)
            + at.saturating_duration_since(self.instant)
    }

    /// A wall-clock time in the future (clock stepped back) maps to now.
    fn instant_of(&self, wall: SystemTime) -> Instant {
        let age = self.wall.duration_since(wall).unwrap_or_default();
        self.instant.checked_sub(age).unwrap_or(self.instant)
    }
}

/// The document of a table snapshot (`AttachmentTable::snapshot`).
pub fn document<'a>(
    volumes: impl IntoIterator<Item = &'a VolumeState>,
    clock: &ClockPair,
) -> TableDocument {
    let mut attachments = Vec::new();
    for st in volumes {
        for a in st.nodes() {
            let wall = clock.wall_of(a.attached_at);
            attachments.push(SavedAttachment {
                volume: st.id().to_owned(),
                node: a.node.clone(),
                mode: match st.mode() {
                    AccessMode::Rwo => SavedMode::ReadWriteOnce,
                    AccessMode::RwxBlock => SavedMode::ReadWriteManyBlock,
                },
                migration_timeout_seconds: st.migration_timeout().as_secs(),
                attached_at_unix_ms: wall
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis()
                    .try_into()
                    .unwrap_or(u64::MAX),
            });
        }
    }
    TableDocument {
        version: FORMAT_VERSION,
        attachments,
    }
}

/// The restore records of a document, checked field by field as a request would be.
pub fn records(
    doc: &TableDocument,
    clock: &ClockPair,
) -> Result<Vec<RestoreRecord>, DocumentError> {
    if doc.version != FORMAT_VERSION {
        return Err(DocumentError::Version { found: doc.version });
    }
    doc.attachments
        .iter()
        .map(|a| {
            let invalid = |why: String| DocumentError::Invalid {
                volume: a.volume.chars().take(64).collect(),
                node: a.node.chars().take(64).collect(),
                why,
            };
            if a.volume.is_empty() || a.node.is_empty() {
                return Err(invalid("empty volume or node".into()));
            }
            let timeout = MigrationTimeout::from_secs(a.migration_timeout_seconds)
                .map_err(|e| invalid(e.to_string()))?;
            Ok(RestoreRecord {
                volume: a.volume.clone(),
                node: a.node.clone(),
                mode: match a.mode {
                    SavedMode::ReadWriteOnce => AccessMode::Rwo,
                    SavedMode::ReadWriteManyBlock => AccessMode::RwxBlock,
                },
                migration_timeout: timeout,
                attached_at: clock
                    .instant_of(UNIX_EPOCH + Duration::from_millis(a.attached_at_unix_ms)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attachment::{AttachmentTable, PublishRequest, RequestedAccess};

    #[test]
    fn a_migration_survives_the_round_trip_with_its_deadline() {
        let t = AttachmentTable::default();
        let t0 = Instant::now() - Duration::from_secs(60);
        let req = |node| PublishRequest {
            volume: "pvc-vm",
            node,
            access: RequestedAccess::MultiNodeBlock,
            migration_timeout: MigrationTimeout::from_secs(120).unwrap(),
        };
        t.publish(&req("node-a"), t0).result.unwrap();
        t.publish(&req("node-b"), t0 + Duration::from_secs(5))
            .result
            .unwrap();
        let deadline = t.snapshot()["pvc-vm"].migration().unwrap().deadline;
        let clock = ClockPair::now();
        let doc = document(t.snapshot().values(), &clock);
        let json = serde_json::to_string(&doc).unwrap();
        let back: TableDocument = serde_json::from_str(&json).unwrap();
        let restored = AttachmentTable::default();
        let _ = restored.restore(records(&back, &clock).unwrap());
        let st = &restored.snapshot()["pvc-vm"];
        let m = st.migration().unwrap();
        assert_eq!((m.source, m.target), ("node-a", "node-b"));
        // Milliseconds on disk: the deadline moves by less than one.
        let drift = m.deadline.max(deadline) - m.deadline.min(deadline);
        assert!(drift < Duration::from_millis(1), "{drift:?}");
    }

    #[test]
    fn other_versions_unknown_fields_and_bad_values_are_refused() {
        let clock = ClockPair::now();
        let doc = TableDocument {
            version: 2,
            attachments: vec![],
        };
        assert_eq!(
            records(&doc, &clock).unwrap_err(),
            DocumentError::Version { found: 2 }
        );
        let e = serde_json::from_str::<TableDocument>(r#"{"version":1,"attachments":[],"x":1}"#)
            .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let doc = TableDocument {
            version: 1,
            attachments: vec![SavedAttachment {
                volume: "pvc-1".into(),
                node: "node-a".into(),
                mode: SavedMode::ReadWriteManyBlock,
                migration_timeout_seconds: 5,
                attached_at_unix_ms: 0,
            }],
        };
        let e = records(&doc, &clock).unwrap_err().to_string();
        assert!(
            e.contains("pvc-1") && e.contains("migrationTimeoutSeconds"),
            "{e}"
        );
    }
}
