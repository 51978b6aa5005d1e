//! ClusterIP and NodePort allocation for svcplane.
