//! Files on the RDS as `/file print detail` shows them (routeros.md: names carry no leading
//! `/`; `type=directory`, or `type=.img file` for a file).

use super::parse::Item;

/// One entry of `/file print detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdsFile {
    /// The path without its leading `/`, e.g. `storage-pool/csi/pvc-1.img`.
    pub name: String,
    pub is_directory: bool,
}

impl RdsFile {
    /// The entries that carry a `name=`; others (headers, blank items) are skipped.
    pub fn from_items(items: &[Item]) -> Vec<Self> {
        items
            .iter()
            .filter_map(|i| {
                let name = i.get_str("name")?.trim_start_matches('/').to_owned();
                let is_directory = i.get_str("type") == Some("directory");
                Some(RdsFile { name, is_directory })
            })
            .collect()
    }

    /// The path with its leading `/`, as disks' `file-path=` prints it.
    pub fn path(&self) -> String {
        format!("/{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rds::parse_items;

    #[test]
    fn the_sample_listing_reads_as_a_directory_and_a_file() {
        // routeros.md, `/file print detail where name~"storage-pool/metal-csi"`.
        let text = " 0   name=storage-pool/metal-csi type=directory\n     last-modified=2025-11-11 16:47:07\n\n \
                    1   name=storage-pool/metal-csi/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img\n     \
                    type=.img file size=10.0GiB last-modified=2025-11-11 14:32:41\n";
        let files = RdsFile::from_items(&parse_items(text).unwrap());
        assert_eq!(
            files,
            [
                RdsFile {
                    name: "storage-pool/metal-csi".into(),
                    is_directory: true
                },
                RdsFile {
                    name: "storage-pool/metal-csi/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img"
                        .into(),
                    is_directory: false
                },
            ]
        );
        assert_eq!(
            files[1].path(),
            "/storage-pool/metal-csi/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img"
        );
    }
}
