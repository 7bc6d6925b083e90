//! SSH host key pinning (docs/architecture.md, "Correctness rules", rule 4). A pin is either a whole public key (a known_hosts
//! line, with or without the host field, or an `authorized_keys`-style `alg base64 comment`)
//! or a `SHA256:<base64>` fingerprint. A mismatch names both fingerprints, so an operator can
//! tell a rotated key from a man in the middle and knows exactly what to pin.

use russh::keys::{HashAlg, PublicKey};

/// How the RDS's host key is checked at every connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// `host ssh-ed25519 AAAA...`, `ssh-ed25519 AAAA...` or `SHA256:<base64>`.
    Pinned(String),
    /// Accept any key; a warning is logged at every connect. Development only.
    InsecureSkip,
}

/// A parsed pin.
#[derive(Debug, Clone)]
pub(crate) enum Pin {
    Key(Box<PublicKey>),
    Fingerprint(String),
    Skip,
}

/// The SHA256 fingerprint as OpenSSH prints it (`SHA256:...`, unpadded base64).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl Pin {
    /// Parses a policy; the error says what a valid pin looks like.
    pub(crate) fn parse(policy: &HostKeyPolicy) -> Result<Pin, String> {
        let text = match policy {
            HostKeyPolicy::InsecureSkip => return Ok(Pin::Skip),
            HostKeyPolicy::Pinned(text) => text.trim(),
        };
        if let Some(b64) = text.strip_prefix("SHA256:") {
            let ok = !b64.is_empty()
                && b64
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
            if !ok {
                return Err(format!(
                    "pinned host key {text:?} is not a SHA256:<base64> fingerprint"
                ));
            }
            // OpenSSH prints fingerprints unpadded; accept a padded copy too.
            return Ok(Pin::Fingerprint(format!(
                "SHA256:{}",
                b64.trim_end_matches('=')
            )));
        }
        // Try every adjacent pair of fields as `alg base64`, so a known_hosts host field,
        // `[host]:port`, markers and trailing comments are all skipped.
        let fields: Vec<&str> = text.split_whitespace().collect();
        for pair in fields.windows(2) {
            if let Ok(key) = PublicKey::from_openssh(&format!("{} {}", pair[0], pair[1])) {
                return Ok(Pin::Key(Box::new(key)));
            }
        }
        Err(format!(
            "pinned host key {text:?} is neither a known_hosts-style line \
             (\"[host] ssh-ed25519 AAAA...\") nor a SHA256:<fingerprint>; \
             print the right one with `rds-csi simulator --print-host-key` or \
             `ssh-keyscan <rds> | ssh-keygen -lf -`"
        ))
    }

    /// Checks the key the server presented. `Ok(true)` when skipped (to warn the caller).
    pub(crate) fn check(&self, address: &str, presented: &PublicKey) -> Result<bool, String> {
        let got = fingerprint(presented);
        let expected = match self {
            Pin::Skip => return Ok(true),
            Pin::Key(key) if key.key_data() == presented.key_data() => return Ok(false),
            Pin::Fingerprint(fp) if *fp == got => return Ok(false),
            Pin::Key(key) => fingerprint(key),
            Pin::Fingerprint(fp) => fp.clone(),
        };
        Err(format!(
            "host key of the RDS at {address} does not match the pinned key: the server \
             presented {got} ({}), the pin expects {expected}; if the RDS key was rotated on \
             purpose, update --rds-host-key, otherwise treat this as a man-in-the-middle \
             attempt",
            presented.algorithm()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIILNkQ4AIqQFHFKn5zBls6OM2C9F4FzwzywxTjPjXIS9";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINBIHaFDO21Pug5dZNO4w5d7TdZ6qxayw+k7yz4tAElY";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    #[test]
    fn every_pin_form_accepts_the_right_key() {
        let k = key(KEY);
        let fp = fingerprint(&k);
        assert!(fp.starts_with("SHA256:"), "{fp}");
        for pin in [
            KEY.to_string(),
            format!("rds.example {KEY}"),
            format!("[10.0.0.1]:2222 {KEY} root@rds"),
            format!("{KEY} comment with spaces"),
            fp.clone(),
            format!("{fp}="),
        ] {
            let p = Pin::parse(&HostKeyPolicy::Pinned(pin.clone())).unwrap();
            assert_eq!(p.check("rds:22", &k), Ok(false), "{pin}");
        }
    }

    #[test]
    fn a_mismatch_names_both_fingerprints() {
        let p = Pin::parse(&HostKeyPolicy::Pinned(KEY.into())).unwrap();
        let err = p.check("rds:22", &key(OTHER)).unwrap_err();
        assert!(err.contains(&fingerprint(&key(OTHER))), "{err}");
        assert!(err.contains(&fingerprint(&key(KEY))), "{err}");
        assert!(err.contains("rds:22"), "{err}");
        let p = Pin::parse(&HostKeyPolicy::Pinned(fingerprint(&key(KEY)))).unwrap();
        assert!(p.check("rds:22", &key(OTHER)).is_err());
    }

    #[test]
    fn malformed_pins_are_refused_and_skip_is_reported() {
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-ed25519 not-base64!",
            "SHA256:",
            "SHA256:a b",
        ] {
            assert!(
                Pin::parse(&HostKeyPolicy::Pinned(bad.into())).is_err(),
                "{bad}"
            );
        }
        let p = Pin::parse(&HostKeyPolicy::InsecureSkip).unwrap();
        assert_eq!(p.check("rds:22", &key(OTHER)), Ok(true));
    }
}
