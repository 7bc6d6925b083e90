//! Backing files on the RDS: remove one, test for one, find a slot's files.

use tokio::time::Instant;

use super::{unparsable, RdsClient};
use crate::rds::command::{Command, RdsPath, Slot};
use crate::rds::error::{RdsError, RdsErrorKind};
use crate::rds::files::RdsFile;
use crate::rds::parse::parse_items;

impl RdsClient {
    /// Removes the file at `path`; an absent file is fine. The command is idempotent (see
    /// the module docs), so it is sent once more if its answer was lost.
    pub async fn remove_file(&self, path: &RdsPath, deadline: Instant) -> Result<(), RdsError> {
        let remove_file = Command::remove_file(path);
        for attempt in 1..=2 {
            match self.mutate(&remove_file, deadline).await {
                Ok(_) => return Ok(()),
                Err(e) if e.err.kind() == RdsErrorKind::NotFound => return Ok(()),
                Err(e) if e.outcome_unknown && attempt == 1 => continue,
                Err(e) => return Err(e.err),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Whether a file (not a directory) exists at `path`.
    pub async fn file_exists(&self, path: &RdsPath, deadline: Instant) -> Result<bool, RdsError> {
        let cmd = Command::print_file(path);
        let out = self.read(&cmd, deadline).await?;
        let items = parse_items(&out).map_err(|e| unparsable(&cmd, e))?;
        Ok(RdsFile::from_items(&items)
            .iter()
            .any(|f| !f.is_directory && f.name == path.file_name()))
    }

    /// The files under the base path whose last component starts with `<slot>.` (a disk's
    /// backing files as the controller names them, in whatever directory they live).
    pub async fn files_of_slot(
        &self,
        slot: &Slot,
        deadline: Instant,
    ) -> Result<Vec<RdsPath>, RdsError> {
        let cmd = Command::find_files_of_slot(slot);
        let out = self.read(&cmd, deadline).await?;
        let items = parse_items(&out).map_err(|e| unparsable(&cmd, e))?;
        let base = &self.inner.cfg.base_path;
        let prefix = format!("{slot}.");
        Ok(RdsFile::from_items(&items)
            .into_iter()
            .filter(|f| !f.is_directory)
            .filter_map(|f| RdsPath::new(base, &f.path()).ok())
            .filter(|p| {
                p.as_str()
                    .rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect())
    }
}
