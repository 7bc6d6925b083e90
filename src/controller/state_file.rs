//! The attachment table's durable file for `--no-kubernetes` (`<state-dir>/attachments.json`):
//! written whole on every change that the table keeps, atomically (a temporary file in the
//! same directory, fsync'd, renamed over the old one, then the directory fsync'd so the rename
//! itself survives a power cut), and read back at start. A file that cannot be read or parsed
//! stops the controller: starting with an empty table would fence nothing.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::attachment::persist::{AttachmentStore, TableDocument};

/// The file's name under the state directory.
pub const FILE_NAME: &str = "attachments.json";

pub struct StateFile {
    dir: PathBuf,
}

impl StateFile {
    /// The state file under `dir`, created (mode 0700) if missing.
    pub fn new(dir: &Path) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create the state directory {}: {e}; check --state-dir and its permissions",
                dir.display()
            )
        })?;
        Ok(StateFile {
            dir: dir.to_owned(),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }
}

impl AttachmentStore for StateFile {
    fn load(&self) -> Result<Option<TableDocument>, String> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            format!(
                "{} is not a valid attachment state file: {e}",
                path.display()
            )
        })
    }

    fn save(&self, doc: &TableDocument) -> Result<(), String> {
        let path = self.path();
        let tmp = self.dir.join(format!(".{FILE_NAME}.tmp"));
        let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
        let body = serde_json::to_vec_pretty(doc).map_err(|e| format!("cannot encode: {e}"))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| fail("write (temporary file)", e))?;
        f.write_all(&body).map_err(|e| fail("write", e))?;
        f.sync_all().map_err(|e| fail("fsync", e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| fail("replace", e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("fsync the directory of", e))
    }

    fn describe(&self) -> String {
        self.path().display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attachment::persist::{SavedAttachment, SavedMode, FORMAT_VERSION};

    #[test]
    fn saves_atomically_and_loads_back_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(&dir.path().join("state")).unwrap();
        assert_eq!(f.load().unwrap(), None);
        let doc = TableDocument {
            version: FORMAT_VERSION,
            attachments: vec![SavedAttachment {
                volume: "pvc-1".into(),
                node: "node-a".into(),
                mode: SavedMode::ReadWriteOnce,
                migration_timeout_seconds: 300,
                attached_at_unix_ms: 1_800_000_000_000,
            }],
        };
        f.save(&doc).unwrap();
        assert_eq!(f.load().unwrap(), Some(doc));
        let names: Vec<_> = fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [FILE_NAME], "no temporary file left behind");
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path()).unwrap();
        fs::write(f.path(), "{\"version\": 1, \"attachments\": [tru").unwrap();
        let e = f.load().unwrap_err();
        assert!(e.contains(&f.path().display().to_string()), "{e}");
    }
}
