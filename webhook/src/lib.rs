//! svcplane's admission webhook.
//!
//! - [`manifests`]: the CRD, webhook configurations and RBAC, generated from the code.
//! - [`review`]: AdmissionReview decoding and denials worded like kube-apiserver's.
//! - [`validate`]: pure admission of user-written Endpoints, EndpointSlices and Services.
//! - [`services`]: Service admission: allocation and the allocated values' patch.
//! - [`state`]: the allocation state shared by replicas through a CRD.
//! - [`runtime`]: the webhook process: store, watches, repair and servers wired together.
//! - [`server`]: the HTTPS server (hot-reloaded certificates) and the admin port around them.
#![warn(missing_docs)]

pub mod manifests;
pub mod review;
pub mod runtime;
pub mod server;
pub mod services;
pub mod state;
pub mod validate;
