//! Paths on the RDS: the configured base, paths strictly inside it, pool mount points.

use std::fmt;

use super::slot::Slot;
use super::validation::{check_chars, check_len, ValidationError};

pub const MAX_COMPONENT_LEN: usize = 255;
pub const MAX_PATH_LEN: usize = 1024;
const COMPONENT_ALLOWED: &str = "letters, digits, '.', '_', '-'";

fn check_component(value: &str, index: usize, component: &str) -> Result<(), ValidationError> {
    let bad = |reason| ValidationError::BadComponent {
        value: value.to_string(),
        index,
        component: component.to_string(),
        reason,
    };
    if component.is_empty() {
        return Err(bad("is empty (\"//\" or a trailing '/')"));
    }
    if component == "." || component == ".." {
        return Err(bad("is a relative step ('.' or '..')"));
    }
    if component.len() > MAX_COMPONENT_LEN {
        return Err(bad("is longer than 255 bytes"));
    }
    check_chars("path component", component, COMPONENT_ALLOWED, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    })
}

/// Checks an absolute path and returns its components.
fn split_path(value: &str) -> Result<Vec<&str>, ValidationError> {
    check_len("path", value, MAX_PATH_LEN)?;
    let rest = value
        .strip_prefix('/')
        .ok_or(ValidationError::NotAbsolute {
            value: value.to_string(),
        })?;
    let components: Vec<&str> = rest.split('/').collect();
    for (index, component) in components.iter().enumerate() {
        check_component(value, index, component)?;
    }
    Ok(components)
}

/// The configured directory on the RDS under which the driver's disk files live, e.g.
/// `/storage-pool/csi`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BasePath(String);
string_newtype!(BasePath);

impl BasePath {
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        split_path(value)?;
        Ok(BasePath(value.to_string()))
    }

    fn components(&self) -> impl Iterator<Item = &str> {
        self.0[1..].split('/')
    }

    /// The pool the base lives on: its first component (`storage-pool`).
    pub fn mount_point(&self) -> MountPoint {
        // The first component passed the same check as a MountPoint when self was built.
        MountPoint(self.components().next().unwrap_or_default().to_string())
    }

    /// Whether a RouterOS file name (no leading `/`) lies strictly inside this base. Used to
    /// filter `/file print` results exactly, since `name~` is a regex and `.` in the base
    /// would match any character.
    pub fn contains_file_name(&self, name: &str) -> bool {
        name.strip_prefix(&self.0[1..])
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty())
    }
}

/// A path on the RDS strictly inside a [`BasePath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RdsPath(String);

impl RdsPath {
    pub fn new(base: &BasePath, value: &str) -> Result<Self, ValidationError> {
        let components = split_path(value)?;
        let base_components: Vec<&str> = base.components().collect();
        let inside = components.len() > base_components.len()
            && components.iter().zip(&base_components).all(|(a, b)| a == b);
        if !inside {
            return Err(ValidationError::OutsideBase {
                value: value.to_string(),
                base: base.0.clone(),
            });
        }
        Ok(RdsPath(value.to_string()))
    }

    /// The backing file of a volume: `<base>/<slot>.img`.
    pub fn volume_file(base: &BasePath, slot: &Slot) -> Result<Self, ValidationError> {
        Self::new(base, &format!("{base}/{slot}.img"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form `/file` uses for names: no leading `/`.
    pub fn file_name(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for RdsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pool's mount point name (`storage-pool`): one path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountPoint(String);
string_newtype!(MountPoint);

impl MountPoint {
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        check_component(value, 0, value)?;
        Ok(MountPoint(value.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> BasePath {
        BasePath::new("/storage-pool/csi").unwrap()
    }

    #[test]
    fn paths_are_checked_component_wise_against_the_base() {
        let b = base();
        assert_eq!(
            RdsPath::new(&b, "/storage-pool/csi/x.img")
                .unwrap()
                .as_str(),
            "/storage-pool/csi/x.img"
        );
        assert!(RdsPath::new(&b, "/storage-pool/csi/sub/x.img").is_ok());
        for outside in [
            "/storage-pool/csi2/x.img",
            "/storage-pool/csi",
            "/storage-pool/x.img",
            "/other/csi/x.img",
        ] {
            assert!(
                matches!(
                    RdsPath::new(&b, outside),
                    Err(ValidationError::OutsideBase { .. })
                ),
                "{outside}"
            );
        }
        for bad in [
            "storage-pool/csi/x.img",
            "/storage-pool/csi/../csi/x.img",
            "/storage-pool/csi/./x.img",
            "/storage-pool/csi//x.img",
            "/storage-pool/csi/x.img/",
            "/storage-pool/csi/",
            "",
        ] {
            assert!(RdsPath::new(&b, bad).is_err(), "{bad}");
        }
        assert!(BasePath::new("/").is_err());
        assert!(BasePath::new("/a/../b").is_err());
        assert!(BasePath::new(&format!("/{}", "a".repeat(256))).is_err());
        assert_eq!(b.mount_point().as_str(), "storage-pool");
        assert!(b.contains_file_name("storage-pool/csi/x.img"));
        assert!(!b.contains_file_name("storage-pool/csi"));
        assert!(!b.contains_file_name("storage-pool/csi/"));
        assert!(!b.contains_file_name("storage-pool/csi2/x.img"));
    }
}
