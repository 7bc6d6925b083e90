//! The NVMe host identity (host NQN and host ID) this node presents to the RDS.
//!
//! Read from /etc/nvme/hostnqn and /etc/nvme/hostid (what nvme-cli and the kernel tools use),
//! or generated once and persisted. Cloned machine images share one host NQN, which makes two
//! nodes indistinguishable to the target — fencing and host ACLs then protect nothing — so
//! well-known shared values are refused at start with a message saying how to fix it.

use std::path::Path;

use crate::node::error::NodeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    pub host_nqn: String,
    pub host_id: String,
}

/// Values seen shared across many machines: an all-zero UUID, and the SMBIOS placeholder UUID
/// that many boards ship (hostnqn derived from DMI product_uuid), and the discovery NQN.
const SHARED_UUIDS: &[&str] = &[
    "00000000-0000-0000-0000-000000000000",
    "03000200-0400-0500-0006-000700080009",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
];
const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Why `nqn` cannot identify this host, or Ok.
pub fn check_host_nqn(nqn: &str, file: &Path) -> Result<(), NodeError> {
    let fix = format!(
        "give every node its own: remove {} (rds-csi then generates a unique one) or write `nqn.2014-08.org.nvmexpress:uuid:$(cat /proc/sys/kernel/random/uuid)` into it",
        file.display()
    );
    let lower = nqn.to_ascii_lowercase();
    if lower == DISCOVERY_NQN || SHARED_UUIDS.iter().any(|u| lower.ends_with(u)) {
        return Err(NodeError::SharedHostNqn {
            nqn: nqn.to_owned(),
            file: file.to_owned(),
            fix,
        });
    }
    // The one NQN rule (node_io::nqn), the same the connect string is built with.
    if node_io::nqn::Nqn::new(nqn).is_err() {
        return Err(NodeError::BadHostNqn {
            nqn: nqn.to_owned(),
            file: file.to_owned(),
            fix,
        });
    }
    Ok(())
}

fn random_uuid() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn read_trimmed(path: &Path) -> Result<Option<String>, NodeError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(NodeError::Io {
            what: "cannot read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Loads the host identity, generating and persisting whatever is missing.
pub fn load_or_create(nqn_file: &Path, id_file: &Path) -> Result<HostIdentity, NodeError> {
    let persist = |p: &Path, v: &str| {
        crate::node::durable::write(p, format!("{v}\n").as_bytes()).map_err(|source| {
            NodeError::Io {
                what: "cannot write (is the directory writable? hostPath /etc/nvme)",
                path: p.to_owned(),
                source,
            }
        })
    };
    let mut host_nqn = read_trimmed(nqn_file)?;
    let mut host_id = read_trimmed(id_file)?;
    if host_nqn.is_none() {
        // Derive both from one UUID when both are missing, as nvme-cli does.
        let uuid = match &host_id {
            Some(id) if is_uuid(id) => id.clone(),
            _ => random_uuid().map_err(|source| NodeError::Syscall {
                what: "cannot generate a host NQN".into(),
                source,
            })?,
        };
        let nqn = format!("nqn.2014-08.org.nvmexpress:uuid:{uuid}");
        persist(nqn_file, &nqn)?;
        tracing::info!(file = %nqn_file.display(), host_nqn = %nqn, "generated and persisted a host NQN");
        host_nqn = Some(nqn);
    }
    let host_nqn = host_nqn.expect("set above");
    check_host_nqn(&host_nqn, nqn_file)?;
    if host_id.is_none() {
        // Kernels ≥ 6.12 refuse a host NQN paired with another host's ID: derive it from the NQN.
        let id = host_nqn
            .rsplit(':')
            .next()
            .filter(|s| is_uuid(s))
            .map(str::to_owned)
            .map_or_else(random_uuid, Ok)
            .map_err(|source| NodeError::Syscall {
                what: "cannot generate a host ID".into(),
                source,
            })?;
        persist(id_file, &id)?;
        host_id = Some(id);
    }
    let host_id = host_id.expect("set above");
    if !is_uuid(&host_id) {
        return Err(NodeError::BadHostId {
            id: host_id,
            file: id_file.to_owned(),
        });
    }
    Ok(HostIdentity { host_nqn, host_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_keeps_it() {
        let d = tempfile::tempdir().unwrap();
        let (n, i) = (d.path().join("nvme/hostnqn"), d.path().join("nvme/hostid"));
        let a = load_or_create(&n, &i).unwrap();
        assert!(a.host_nqn.starts_with("nqn.2014-08.org.nvmexpress:uuid:"));
        assert!(a.host_nqn.ends_with(&a.host_id), "NQN and ID are paired");
        let b = load_or_create(&n, &i).unwrap();
        assert_eq!(a, b);
    }

    /// A directory whose `hostnqn` holds `nqn` (and a line end); the paths of `hostnqn` and
    /// `hostid` in it.
    fn with_hostnqn(nqn: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let (n, i) = (d.path().join("hostnqn"), d.path().join("hostid"));
        std::fs::write(&n, format!("{nqn}\n")).unwrap();
        (d, n, i)
    }

    #[test]
    fn reads_existing_files() {
        let (_d, n, i) =
            with_hostnqn("nqn.2014-08.org.nvmexpress:uuid:6f1c0a4e-8a3b-4c1d-9e2f-0123456789ab");
        std::fs::write(&i, "6f1c0a4e-8a3b-4c1d-9e2f-0123456789ab\n").unwrap();
        let h = load_or_create(&n, &i).unwrap();
        assert_eq!(h.host_id, "6f1c0a4e-8a3b-4c1d-9e2f-0123456789ab");
    }

    #[test]
    fn refuses_a_default_shared_by_cloned_images_and_says_how_to_fix() {
        let (_d, n, i) =
            with_hostnqn("nqn.2014-08.org.nvmexpress:uuid:03000200-0400-0500-0006-000700080009");
        let e = load_or_create(&n, &i).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(
            msg.contains("cloned") && msg.contains(n.to_str().unwrap()) && msg.contains("remove"),
            "{msg}"
        );
    }
}
