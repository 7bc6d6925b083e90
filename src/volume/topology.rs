//! Where volumes are accessible from (CSI `VOLUME_ACCESSIBILITY_CONSTRAINTS`).
//!
//! The plugin always declares the capability, so the controller and every node always speak
//! topology: with `--topology` both use the configured segments (set the same ones on the
//! controller and the nodes that reach the RDS); without it both use [`DEFAULT_KEY`] =
//! [`DEFAULT_VALUE`], a segment every node plugin reports and every volume is accessible
//! from. NodeGetInfo is therefore never empty, and the scheduler can always match a volume's
//! `accessible_topology` to the nodes that run the plugin (docs/architecture.md, "Topology").

use std::collections::BTreeMap;

/// The topology key used when `--topology` is not set (domain-prefixed, as CSI asks).
pub const DEFAULT_KEY: &str = "rds.csi.mikrotik.com/rds";
/// Its value: every node plugin reaches the one RDS.
pub const DEFAULT_VALUE: &str = "default";

/// The configured segments, or the default segment when none are configured.
pub fn segments_or_default(configured: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    if configured.is_empty() {
        [(DEFAULT_KEY.to_owned(), DEFAULT_VALUE.to_owned())].into()
    } else {
        configured.clone()
    }
}

/// Whether a volume accessible from `ours` is accessible from the CO's `requisite` topology:
/// they share a key, and every key they share has the same value.
pub fn accessible_from<'a>(
    ours: &BTreeMap<String, String>,
    requisite: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> bool {
    let mut shared = false;
    for (k, v) in requisite {
        match ours.get(k) {
            Some(o) if o == v => shared = true,
            Some(_) => return false,
            None => {}
        }
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_default_segment_fills_in_for_no_configuration() {
        assert_eq!(
            segments_or_default(&BTreeMap::new()),
            m(&[(DEFAULT_KEY, DEFAULT_VALUE)])
        );
        let zone = m(&[("topology.kubernetes.io/zone", "a")]);
        assert_eq!(segments_or_default(&zone), zone);
    }

    #[test]
    fn a_requisite_topology_matches_on_the_keys_it_shares() {
        let ours = m(&[(DEFAULT_KEY, DEFAULT_VALUE)]);
        assert!(accessible_from(&ours, &m(&[(DEFAULT_KEY, DEFAULT_VALUE)])));
        assert!(accessible_from(
            &ours,
            &m(&[
                (DEFAULT_KEY, DEFAULT_VALUE),
                ("kubernetes.io/hostname", "n1")
            ])
        ));
        assert!(!accessible_from(&ours, &m(&[(DEFAULT_KEY, "other")])));
        assert!(!accessible_from(&ours, &m(&[("zone", "a")])));
    }
}
