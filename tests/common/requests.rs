//! CSI request builders the tests share: capabilities, and the requests of the controller.

use csi_proto::v1 as csi;

pub fn mount_cap(mode: csi::volume_capability::access_mode::Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(
            csi::volume_capability::MountVolume {
                fs_type: "ext4".into(),
                ..Default::default()
            },
        )),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

pub fn block_cap(mode: csi::volume_capability::access_mode::Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Block(
            csi::volume_capability::BlockVolume {},
        )),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

pub fn rwo() -> csi::VolumeCapability {
    mount_cap(csi::volume_capability::access_mode::Mode::SingleNodeWriter)
}

pub fn rwx_block() -> csi::VolumeCapability {
    block_cap(csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter)
}

pub fn create_req(name: &str, bytes: i64, cap: csi::VolumeCapability) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap],
        ..Default::default()
    }
}

/// `r` with the StorageClass parameter `key` set to `value`.
pub fn with_param(
    mut r: csi::CreateVolumeRequest,
    key: &str,
    value: &str,
) -> csi::CreateVolumeRequest {
    r.parameters.insert(key.into(), value.into());
    r
}

/// `r` as a clone of the volume `source`.
pub fn from_volume(mut r: csi::CreateVolumeRequest, source: &str) -> csi::CreateVolumeRequest {
    r.volume_content_source = Some(csi::VolumeContentSource {
        r#type: Some(csi::volume_content_source::Type::Volume(
            csi::volume_content_source::VolumeSource {
                volume_id: source.into(),
            },
        )),
    });
    r
}

/// `r` as a restore of the snapshot `snapshot_id`.
pub fn from_snapshot(
    mut r: csi::CreateVolumeRequest,
    snapshot_id: &str,
) -> csi::CreateVolumeRequest {
    r.volume_content_source = Some(csi::VolumeContentSource {
        r#type: Some(csi::volume_content_source::Type::Snapshot(
            csi::volume_content_source::SnapshotSource {
                snapshot_id: snapshot_id.into(),
            },
        )),
    });
    r
}

pub fn publish_req(
    vol: &csi::Volume,
    node: &str,
    cap: csi::VolumeCapability,
) -> csi::ControllerPublishVolumeRequest {
    csi::ControllerPublishVolumeRequest {
        volume_id: vol.volume_id.clone(),
        node_id: node.into(),
        volume_capability: Some(cap),
        volume_context: vol.volume_context.clone(),
        ..Default::default()
    }
}

pub fn unpublish_req(vol: &csi::Volume, node: &str) -> csi::ControllerUnpublishVolumeRequest {
    csi::ControllerUnpublishVolumeRequest {
        volume_id: vol.volume_id.clone(),
        node_id: node.into(),
        ..Default::default()
    }
}

pub fn delete_req(id: &str) -> csi::DeleteVolumeRequest {
    csi::DeleteVolumeRequest {
        volume_id: id.into(),
        ..Default::default()
    }
}

pub fn snap_req(name: &str, source: &str) -> csi::CreateSnapshotRequest {
    csi::CreateSnapshotRequest {
        name: name.into(),
        source_volume_id: source.into(),
        ..Default::default()
    }
}

pub fn expand_req(id: &str, bytes: i64) -> csi::ControllerExpandVolumeRequest {
    csi::ControllerExpandVolumeRequest {
        volume_id: id.into(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        ..Default::default()
    }
}

pub fn validate_req(
    id: &str,
    caps: Vec<csi::VolumeCapability>,
) -> csi::ValidateVolumeCapabilitiesRequest {
    csi::ValidateVolumeCapabilitiesRequest {
        volume_id: id.into(),
        volume_capabilities: caps,
        ..Default::default()
    }
}

pub fn list_volumes_req(max: i32, token: &str) -> csi::ListVolumesRequest {
    csi::ListVolumesRequest {
        max_entries: max,
        starting_token: token.into(),
    }
}

pub fn list_snapshots_req(max: i32, token: &str) -> csi::ListSnapshotsRequest {
    csi::ListSnapshotsRequest {
        max_entries: max,
        starting_token: token.into(),
        ..Default::default()
    }
}
