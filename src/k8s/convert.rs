//! Pure conversions from Kubernetes objects to the driver's types: a VolumeAttachment and its
//! PersistentVolume → a [`RestoreRecord`], a PV → the claim its events go on, and the node
//! watch's decision of which nodes are gone. No I/O and no clock reads: `now` is passed in, so
//! every decision here is unit-tested on JSON fixtures shaped like real API objects.
//!
//! Decisions worth knowing:
//!
//! - **Attach time.** A VolumeAttachment records no attach time: `status` has `attached` but no
//!   timestamp. `metadata.creationTimestamp` is used instead. The attach/detach controller
//!   creates the object just before the external-attacher calls ControllerPublish, so it is
//!   never later than the real attach: a restored migration's deadline is never later than the
//!   original one (a migration may time out a little early after a restart, never late).
//!   Kubernetes serialises these times in **whole seconds** (RFC 3339 without fractions), so a
//!   restored attach time is also up to one second earlier than the true one.
//! - **Wall clock → `Instant`.** `attached_at = now_instant - (now_wall - attach_wall)`. An attach
//!   time in the future (clock skew between the API server and this node) maps to `now`; an age
//!   too large for `Instant` saturates at the earliest representable instant.
//! - **Access mode.** The external-attacher asks for MULTI_NODE_MULTI_WRITER whenever the PV
//!   lists ReadWriteMany; ControllerPublish treats that as RWX only for `volumeMode: Block`. So a
//!   PV with ReadWriteMany and `volumeMode: Block` is [`AccessMode::RwxBlock`]; everything else
//!   (including filesystem RWX, which publish refuses and so can never have been attached by
//!   this driver) is [`AccessMode::Rwo`] — the stricter fence.
//! - **Migration timeout.** Absent `migrationTimeoutSeconds` → the default (300 s), exactly as
//!   ControllerPublish does. A value that is present but invalid or out of range (30–3600) is
//!   NOT a reason to drop the attachment: dropping it would unfence a volume that is attached
//!   right now. The attachment is restored with the default timeout and the conversion carries a
//!   warning naming the PV, the value and the next step (the timeout only matters to an RWX
//!   block volume on two nodes; ControllerPublish refuses such a volume with INVALID_ARGUMENT, so
//!   the value can only come from an older driver with a different range).
//! - **Skips.** Attachments of other drivers, not (yet) attached ones, inline (ephemeral) ones,
//!   and ones whose PV is missing or not this driver's are skipped with a [`Skip`] that says why.
//!   A VolumeAttachment with `attached: true` whose PV is gone cannot be mapped to a volume id;
//!   its [`Skip`] message tells the operator to detach it.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::attachment::{AccessMode, MigrationTimeout, RestoreRecord};
use crate::volume::keys::MIGRATION_TIMEOUT_SECONDS;

/// Volume attribute the external-provisioner adds (`--extra-create-metadata`): the claim name.
pub const PVC_NAME_ATTRIBUTE: &str = "csi.storage.k8s.io/pvc/name";
/// Volume attribute the external-provisioner adds (`--extra-create-metadata`): its namespace.
pub const PVC_NAMESPACE_ATTRIBUTE: &str = "csi.storage.k8s.io/pvc/namespace";

/// One reading of both clocks, taken together, so wall-clock times from the API server can be
/// placed on the monotonic clock the attachment table uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub instant: Instant,
    pub wall: SystemTime,
}

impl Clock {
    pub fn now() -> Self {
        Clock {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The `Instant` at which `wall` happened: `instant - (wall_now - wall)`, saturating. A
    /// time in the future (clock skew) is `instant` itself.
    pub fn instant_of(&self, wall: SystemTime) -> Instant {
        match self.wall.duration_since(wall) {
            Ok(age) => saturating_sub(self.instant, age),
            Err(_) => self.instant,
        }
    }
}

/// `at - d`, or the earliest instant `Instant` can represent on the way there.
pub fn saturating_sub(at: Instant, d: Duration) -> Instant {
    if let Some(t) = at.checked_sub(d) {
        return t;
    }
    let (mut t, mut step) = (at, d);
    while !step.is_zero() {
        match t.checked_sub(step) {
            Some(earlier) => t = earlier,
            None => step /= 2,
        }
    }
    t
}

/// A Kubernetes `Time` (whole seconds on the wire) as a `SystemTime`; times before 1970 work.
pub fn wall_time(t: &Time) -> SystemTime {
    let secs = t.0.as_second();
    let nanos = u32::try_from(t.0.subsec_nanosecond()).unwrap_or(0);
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nanos)
    } else {
        // subsec is 0 or negative for times before the epoch.
        let back = Duration::from_secs(secs.unsigned_abs());
        let nanos_back = Duration::from_nanos(u64::from(t.0.subsec_nanosecond().unsigned_abs()));
        UNIX_EPOCH - back - nanos_back
    }
}

/// Why a VolumeAttachment was not turned into a [`RestoreRecord`]. The message names the object
/// and, where the operator has something to do, the next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Another CSI driver's attachment (normal; logged at debug level).
    OtherDriver {
        attachment: String,
        attacher: String,
    },
    /// Not attached (yet, or any more): nothing to fence.
    NotAttached { attachment: String },
    /// An inline (ephemeral or migrated in-tree) volume: it names no PersistentVolume.
    Inline { attachment: String },
    /// The PersistentVolume the attachment names does not exist.
    PvMissing {
        attachment: String,
        node: String,
        pv: String,
    },
    /// The PersistentVolume exists but is not a CSI volume of this driver.
    PvNotOurs {
        attachment: String,
        pv: String,
        driver: Option<String>,
    },
}

impl Skip {
    /// Whether the skip is worth a warning (something is inconsistent) rather than debug noise.
    pub fn is_warning(&self) -> bool {
        matches!(self, Skip::PvMissing { .. } | Skip::PvNotOurs { .. })
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::OtherDriver {
                attachment,
                attacher,
            } => write!(
                f,
                "VolumeAttachment {attachment} belongs to driver {attacher:?}; not restored"
            ),
            Skip::NotAttached { attachment } => write!(
                f,
                "VolumeAttachment {attachment} is not attached (status.attached is not true); not restored"
            ),
            Skip::Inline { attachment } => write!(
                f,
                "VolumeAttachment {attachment} names no PersistentVolume (an inline volume); not restored"
            ),
            Skip::PvMissing {
                attachment,
                node,
                pv,
            } => write!(
                f,
                "VolumeAttachment {attachment} says PersistentVolume {pv} is attached to node {node}, \
                 but that PersistentVolume does not exist, so its volume id is unknown and the \
                 attachment is not fenced. If the volume is no longer used on {node}, delete \
                 VolumeAttachment {attachment}; otherwise restore PersistentVolume {pv} and restart \
                 the controller"
            ),
            Skip::PvNotOurs {
                attachment,
                pv,
                driver,
            } => write!(
                f,
                "VolumeAttachment {attachment} was attached by this driver, but PersistentVolume \
                 {pv} is {}; not restored. Check that the PersistentVolume was not replaced while \
                 attached",
                match driver {
                    Some(d) => format!("a CSI volume of driver {d:?}"),
                    None => "not a CSI volume".to_owned(),
                }
            ),
        }
    }
}

/// A restored attachment, with a warning when the PV's migration timeout had to fall back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub record: RestoreRecord,
    pub warning: Option<String>,
}

/// The PersistentVolume name a VolumeAttachment refers to, if it names one.
pub fn pv_name(va: &VolumeAttachment) -> Option<&str> {
    va.spec.source.persistent_volume_name.as_deref()
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_else(|| "<unnamed>".to_owned())
}

/// Whether `pv` is a CSI volume of `driver` (any volume handle).
pub fn pv_is_ours(pv: &PersistentVolume, driver: &str) -> bool {
    pv_csi(pv).is_some_and(|c| c.driver == driver)
}

/// The volume id (`spec.csi.volumeHandle`) of a PV of `driver`.
pub fn volume_id<'a>(pv: &'a PersistentVolume, driver: &str) -> Option<&'a str> {
    pv_csi(pv)
        .filter(|c| c.driver == driver)
        .map(|c| c.volume_handle.as_str())
}

fn pv_csi(pv: &PersistentVolume) -> Option<&k8s_openapi::api::core::v1::CSIPersistentVolumeSource> {
    pv.spec.as_ref().and_then(|s| s.csi.as_ref())
}

/// The access mode the table keeps for a PV (see the module notes).
pub fn access_mode(pv: &PersistentVolume) -> AccessMode {
    let Some(spec) = pv.spec.as_ref() else {
        return AccessMode::Rwo;
    };
    let rwx = spec
        .access_modes
        .as_ref()
        .is_some_and(|m| m.iter().any(|m| m == "ReadWriteMany"));
    let block = spec.volume_mode.as_deref() == Some("Block");
    if rwx && block {
        AccessMode::RwxBlock
    } else {
        AccessMode::Rwo
    }
}

/// The PV's migration timeout: the default when absent; the default plus a warning when
/// invalid (see the module notes).
pub fn migration_timeout(pv: &PersistentVolume) -> (MigrationTimeout, Option<String>) {
    let value = pv_csi(pv)
        .and_then(|c| c.volume_attributes.as_ref())
        .and_then(|a| a.get(MIGRATION_TIMEOUT_SECONDS));
    match MigrationTimeout::from_parameter(value.map(String::as_str)) {
        Ok(t) => (t, None),
        Err(e) => (
            MigrationTimeout::default(),
            Some(format!(
                "PersistentVolume {}: {e}; its attachments are restored (fencing stays on) with the \
                 default live-migration timeout of {}s. Volume attributes cannot be changed on an \
                 existing PersistentVolume: fix the StorageClass parameter for new volumes",
                name_of(&pv.metadata),
                MigrationTimeout::DEFAULT_SECS
            )),
        ),
    }
}

/// Turns one VolumeAttachment (and the PV it names, `None` when that PV does not exist) into a
/// restore record for `driver`'s attachment table.
pub fn restore_record(
    va: &VolumeAttachment,
    pv: Option<&PersistentVolume>,
    driver: &str,
    clock: &Clock,
) -> Result<Restored, Skip> {
    let attachment = name_of(&va.metadata);
    if va.spec.attacher != driver {
        return Err(Skip::OtherDriver {
            attachment,
            attacher: va.spec.attacher.clone(),
        });
    }
    if !va.status.as_ref().is_some_and(|s| s.attached) {
        return Err(Skip::NotAttached { attachment });
    }
    let Some(pv_name) = pv_name(va) else {
        return Err(Skip::Inline { attachment });
    };
    let node = va.spec.node_name.clone();
    let Some(pv) = pv else {
        return Err(Skip::PvMissing {
            attachment,
            node,
            pv: pv_name.to_owned(),
        });
    };
    let Some(volume) = volume_id(pv, driver) else {
        return Err(Skip::PvNotOurs {
            attachment,
            pv: pv_name.to_owned(),
            driver: pv_csi(pv).map(|c| c.driver.clone()),
        });
    };
    let (migration_timeout, mut warning) = migration_timeout(pv);
    let attached_at = match va.metadata.creation_timestamp.as_ref() {
        Some(t) => clock.instant_of(wall_time(t)),
        None => {
            // Never the case for an object read from an API server; keep the fence anyway.
            let w = format!(
                "VolumeAttachment {attachment} has no creationTimestamp; restored as attached now"
            );
            warning = Some(warning.map_or(w.clone(), |prev| format!("{prev}; {w}")));
            clock.instant
        }
    };
    Ok(Restored {
        record: RestoreRecord {
            volume: volume.to_owned(),
            mode: access_mode(pv),
            migration_timeout,
            node,
            attached_at,
        },
        warning,
    })
}

/// The claim a volume's events go on: the PV's `spec.claimRef`, else the
/// `csi.storage.k8s.io/pvc/{namespace,name}` volume attributes. `None` for an unbound PV.
pub fn claim_of(pv: &PersistentVolume) -> Option<ObjectReference> {
    if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        if let (Some(ns), Some(name)) = (r.namespace.as_ref(), r.name.as_ref()) {
            return Some(ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("PersistentVolumeClaim".to_owned()),
                namespace: Some(ns.clone()),
                name: Some(name.clone()),
                uid: r.uid.clone(),
                ..ObjectReference::default()
            });
        }
    }
    let attrs = pv_csi(pv).and_then(|c| c.volume_attributes.as_ref())?;
    let (ns, name) = (
        attrs.get(PVC_NAMESPACE_ATTRIBUTE)?,
        attrs.get(PVC_NAME_ATTRIBUTE)?,
    );
    (!ns.is_empty() && !name.is_empty()).then(|| ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("PersistentVolumeClaim".to_owned()),
        namespace: Some(ns.clone()),
        name: Some(name.clone()),
        ..ObjectReference::default()
    })
}

/// A reference to the PV itself (events of a volume with no claim go there).
pub fn pv_reference(pv: &PersistentVolume) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("PersistentVolume".to_owned()),
        name: pv.metadata.name.clone(),
        uid: pv.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
