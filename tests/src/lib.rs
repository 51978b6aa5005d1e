//! The local control plane and helpers of the e2e suite.
