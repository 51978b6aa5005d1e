//! svcplane's admission webhook.
