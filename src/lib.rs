//! rds-csi: a Kubernetes CSI driver for MikroTik ROSE Data Server (RDS) volumes served over
//! NVMe/TCP. The binary (`src/main.rs`) is a thin CLI over the modules here.

pub mod attachment;
pub mod controller;
pub mod csi;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod k8s;
pub mod node;
pub mod observability;
pub mod rds;
pub mod runtime;
pub mod scenario;
pub mod simulator;
pub mod volume;
