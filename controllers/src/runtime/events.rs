//! Publishing the Events the controllers record, the same way for each: an Event only
//! informs, so a failure to publish one is logged and never fails a sync.

use k8s_openapi::api::core::v1::{Endpoints, ObjectReference};
use kube::runtime::events::{Event, EventType, Recorder};

/// Publishes an Event of `type_` about `regarding`, recorded while doing `action` (`Sync`,
/// `Mirror`), with the in-tree controller's `reason` and `note`.
pub(super) async fn publish(
    recorder: &Recorder,
    regarding: &ObjectReference,
    type_: EventType,
    action: &str,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, regarding).await {
        tracing::warn!(%error, reason, "could not publish an event");
    }
}

/// What an Event about `endpoints` regards.
pub(super) fn endpoints_reference(endpoints: &Endpoints) -> ObjectReference {
    let meta = &endpoints.metadata;
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Endpoints".into()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        ..Default::default()
    }
}
