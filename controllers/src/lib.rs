//! Endpoints and EndpointSlice controllers for svcplane.
