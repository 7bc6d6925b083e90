//! The `/file` commands: remove, print, find a base's or a slot's files.

use super::path::{BasePath, RdsPath};
use super::slot::Slot;
use super::validation::quote;
use super::Command;

impl Command {
    /// `/file remove [find name="<path without leading />"]`
    pub fn remove_file(path: &RdsPath) -> Self {
        Command(format!(
            "/file remove [find name={}]",
            quote(path.file_name())
        ))
    }

    /// `/file print detail where name~"^<base without leading />/"`. A `.` in the base is a
    /// regex wildcard, so this can over-match; filter with [`BasePath::contains_file_name`].
    pub fn list_files(base: &BasePath) -> Self {
        Command(format!(
            "/file print detail where name~{}",
            quote(&format!("^{}/", &base.as_str()[1..]))
        ))
    }

    /// `/file print detail where name~"/<slot>\."`: the files whose name continues a path
    /// component with `<slot>.` (a volume's backing files, wherever they live). Over-matches
    /// (other components, other bases) are the caller's to filter.
    pub fn find_files_of_slot(slot: &Slot) -> Self {
        Command(format!(
            "/file print detail where name~{}",
            quote(&format!("/{slot}\\."))
        ))
    }

    /// `/file print detail where name="<path without leading />"`
    pub fn print_file(path: &RdsPath) -> Self {
        Command(format!(
            "/file print detail where name={}",
            quote(path.file_name())
        ))
    }
}
