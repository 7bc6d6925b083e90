//! CSI Identity service: who we are, what we offer, and whether we are ready.

use std::sync::Arc;

use csi_proto::v1 as csi;
use csi_proto::v1::identity_server::Identity;
use parking_lot::RwLock;
use tonic::{Request, Response, Status};

pub const DEFAULT_DRIVER_NAME: &str = "rds.csi.mikrotik.com";

/// The readiness of the process, as reported by Probe and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub ready: bool,
    /// Why not ready (empty when ready); logged and shown on `/readyz`.
    pub detail: String,
}

impl Health {
    pub fn ready() -> Self {
        Health {
            ready: true,
            detail: String::new(),
        }
    }
    pub fn not_ready(detail: impl Into<String>) -> Self {
        Health {
            ready: false,
            detail: detail.into(),
        }
    }
}

/// Something that can tell whether the process can serve requests (the RDS is reachable,
/// the node's kernel has what it needs...). The controller and node provide their own.
#[tonic::async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    async fn check(&self) -> Health;
}

/// A readiness value set by whoever knows it (e.g. the RDS client after connecting).
#[derive(Clone)]
pub struct ReadinessFlag(Arc<RwLock<Health>>);

impl ReadinessFlag {
    pub fn new(initial: Health) -> Self {
        ReadinessFlag(Arc::new(RwLock::new(initial)))
    }
    pub fn set(&self, h: Health) {
        *self.0.write() = h;
    }
}

#[tonic::async_trait]
impl HealthCheck for ReadinessFlag {
    async fn check(&self) -> Health {
        self.0.read().clone()
    }
}

/// Validates a CSI driver name: domain notation, at most 63 characters, alphanumeric at both
/// ends, `-` and `.` allowed between (CSI GetPluginInfo rules).
pub fn validate_driver_name(name: &str) -> Result<String, String> {
    let ok_ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 63 {
        return Err(
            "expected 1 to 63 characters in domain notation, e.g. rds.csi.mikrotik.com".into(),
        );
    }
    if !ok_ends(name.chars().next()) || !ok_ends(name.chars().last()) {
        return Err(
            "expected an alphanumeric first and last character, e.g. rds.csi.mikrotik.com".into(),
        );
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err("expected only letters, digits, '-' and '.', e.g. rds.csi.mikrotik.com".into());
    }
    Ok(name.to_owned())
}

pub struct IdentityService {
    name: String,
    controller: bool,
    health: Arc<dyn HealthCheck>,
}

impl IdentityService {
    /// `controller`: whether this process serves the Controller service.
    pub fn new(name: String, controller: bool, health: Arc<dyn HealthCheck>) -> Self {
        IdentityService {
            name,
            controller,
            health,
        }
    }
}

fn service_cap(t: csi::plugin_capability::service::Type) -> csi::PluginCapability {
    csi::PluginCapability {
        r#type: Some(csi::plugin_capability::Type::Service(
            csi::plugin_capability::Service { r#type: t as i32 },
        )),
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _req: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: self.name.clone(),
            vendor_version: env!("CARGO_PKG_VERSION").to_owned(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _req: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        use csi::plugin_capability::service::Type as Svc;
        let mut caps = Vec::new();
        if self.controller {
            caps.push(service_cap(Svc::ControllerService));
        }
        caps.push(service_cap(Svc::VolumeAccessibilityConstraints));
        caps.push(csi::PluginCapability {
            r#type: Some(csi::plugin_capability::Type::VolumeExpansion(
                csi::plugin_capability::VolumeExpansion {
                    r#type: csi::plugin_capability::volume_expansion::Type::Online as i32,
                },
            )),
        });
        Ok(Response::new(csi::GetPluginCapabilitiesResponse {
            capabilities: caps,
        }))
    }

    async fn probe(
        &self,
        _req: Request<csi::ProbeRequest>,
    ) -> Result<Response<csi::ProbeResponse>, Status> {
        let h = self.health.check().await;
        if !h.ready {
            tracing::info!(detail = %h.detail, "probe: not ready");
        }
        Ok(Response::new(csi::ProbeResponse {
            ready: Some(h.ready),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_follow_csi_rules() {
        assert!(validate_driver_name(DEFAULT_DRIVER_NAME).is_ok());
        assert!(validate_driver_name("a").is_ok());
        for bad in ["", "-x", "x-", "x_y", "x y", &"a".repeat(64)] {
            assert!(validate_driver_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
