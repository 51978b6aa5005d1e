//! svcplane's admission webhook.
//!
//! - [`review`]: AdmissionReview decoding and denials worded like kube-apiserver's.
//! - [`validate`]: pure admission of user-written Endpoints, EndpointSlices and Services.
#![warn(missing_docs)]

pub mod review;
pub mod validate;
