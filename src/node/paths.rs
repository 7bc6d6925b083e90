//! The rule for every path the node acts on — from a CO request or from its own records:
//! absolute, plain components (no `.`, `..` or empty ones), no control characters, at most
//! PATH_MAX; and, where the path already exists, no symbolic link anywhere along it.
//!
//! Why no symlinks: the kubelet creates these paths under its own directory, where nothing
//! but the kubelet and this plugin writes. A link along one means something else planted it,
//! and following it would make a mount, a device node or an unlink land elsewhere on the
//! host (a pod's hostPath, /etc). mountinfo also shows resolved paths only, so a path through
//! a link would never match the mounts the node checks. The kubelet directory itself must be
//! a real directory (docs/configuration.md, "Node paths").

use std::path::{Path, PathBuf};

use crate::node::error::NodeError;

/// PATH_MAX (4096) less the terminating NUL.
pub const MAX_PATH_BYTES: usize = 4095;

/// `p` if it is absolute, of plain components, without control characters and short enough.
/// `field` names the request field (or record field) in the error.
pub fn checked_path(field: &'static str, p: &str) -> Result<PathBuf, NodeError> {
    if p.is_empty() {
        return Err(NodeError::Missing { field });
    }
    // One trailing '/' is harmless; the raw text is split because Path::components()
    // silently drops an inner "." and empty components.
    let body = p.strip_suffix('/').unwrap_or(p);
    let plain = body
        .split('/')
        .skip(1)
        .all(|c| !c.is_empty() && c != "." && c != "..");
    if !body.starts_with('/')
        || !plain
        || p.len() > MAX_PATH_BYTES
        || p.chars().any(char::is_control)
    {
        return Err(NodeError::BadPath {
            field,
            path: p.to_owned(),
        });
    }
    Ok(PathBuf::from(body))
}

/// Refuses `path` if any existing component of it is a symbolic link (checked with lstat
/// from the root down; components that do not exist yet are fine: the node creates them).
pub fn no_symlinks(field: &'static str, path: &Path) -> Result<(), NodeError> {
    let mut at = PathBuf::from("/");
    for c in path.components().skip(1) {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(NodeError::ThroughSymlink {
                    field,
                    path: path.to_owned(),
                    link: at,
                })
            }
            Ok(_) => {}
            // Missing from here on: nothing below can be a link yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // A dead filesystem (EIO/ENOTCONN/ESTALE) at or under this component: not a link;
            // what to do with a dead path is the caller's decision (it reads mountinfo).
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// [`checked_path`] then [`no_symlinks`].
pub fn request_path(field: &'static str, p: &str) -> Result<PathBuf, NodeError> {
    let path = checked_path(field, p)?;
    no_symlinks(field, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_the_co_are_checked() {
        assert!(checked_path("target_path", "/var/lib/kubelet/pods/x/mount").is_ok());
        assert_eq!(
            checked_path("target_path", "/var/lib/kubelet/x/").unwrap(),
            Path::new("/var/lib/kubelet/x")
        );
        for bad in [
            "",
            "/",
            "relative",
            "/a/../b",
            "/a/./b",
            "//a",
            "/a//b",
            "/a/b\n/c",
            "/a//",
            "/a\u{7f}",
            &format!("/{}", "x".repeat(4095)),
        ] {
            assert!(checked_path("target_path", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_symlink_anywhere_along_an_existing_path_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(root.join("real/pods")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        assert!(no_symlinks("target_path", &root.join("real/pods/new/mount")).is_ok());
        let e = no_symlinks("target_path", &root.join("link/pods/x")).unwrap_err();
        assert!(
            matches!(&e, NodeError::ThroughSymlink { link, .. } if *link == root.join("link")),
            "{e}"
        );
        std::os::unix::fs::symlink("/etc", root.join("real/pods/target")).unwrap();
        assert!(no_symlinks("target_path", &root.join("real/pods/target")).is_err());
    }
}
