//! The local control plane and helpers of svcplane's e2e suite.
//!
//! Each e2e test binary starts one [`TestEnv`] (a local etcd + kube-apiserver, or the
//! cluster `KUBECONFIG` names) and gives every test its own namespace.

pub mod bench;
pub mod bins;
pub mod certs;
pub mod control_plane;
pub mod controllers;
pub mod env;
pub mod harness;
pub mod kubelet;
pub mod load;
pub mod process;
pub mod proxy;
pub mod svcplane;
pub mod view;
pub mod wait;
pub mod writes;

pub use control_plane::{ControlPlane, ControlPlaneConfig, ENDPOINT_CONTROLLERS};
pub use env::{TestEnv, TestNamespace, create_namespace};
