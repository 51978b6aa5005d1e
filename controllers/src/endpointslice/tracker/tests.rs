use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::*;
use crate::endpointslice::desired::new_slice;
use crate::fixtures::{service, time};
use crate::service::IpFamily;

fn written(name: &str, generation: i64) -> EndpointSlice {
    let mut slice = new_slice(&service("web").build(), IpFamily::V4, vec![], "svcplane");
    slice.metadata.name = Some(name.into());
    slice.metadata.uid = Some(format!("uid-{name}"));
    slice.metadata.generation = Some(generation);
    slice
}

#[test]
fn a_created_slice_missing_from_the_cache_makes_it_stale() {
    // kubernetes#93374: acting before the cache shows a fresh slice creates a duplicate.
    let svc = service("web").build();
    let mut tracker = SliceTracker::default();
    tracker.record_write(&written("web-a", 1));
    assert!(tracker.is_stale::<EndpointSlice>(&svc, &[]));
    assert!(!tracker.is_stale(&svc, &[written("web-a", 1)]));
}

#[test]
fn an_older_generation_in_the_cache_makes_it_stale() {
    let svc = service("web").build();
    let mut tracker = SliceTracker::default();
    tracker.record_write(&written("web-a", 3));
    assert!(tracker.is_stale(&svc, &[written("web-a", 2)]));
    assert!(!tracker.is_stale(&svc, &[written("web-a", 3)]));
    assert!(
        !tracker.is_stale(&svc, &[written("web-a", 4)]),
        "someone else wrote it since"
    );
}

#[test]
fn a_deleted_slice_still_cached_makes_it_stale() {
    let svc = service("web").build();
    let mut tracker = SliceTracker::default();
    let slice = written("web-a", 1);
    tracker.record_write(&slice);
    tracker.record_deletion(&slice);
    assert!(tracker.is_stale(&svc, std::slice::from_ref(&slice)));
    assert!(!tracker.is_stale::<EndpointSlice>(&svc, &[]));

    let mut marked = slice.clone();
    marked.metadata.deletion_timestamp = Some(time(1));
    assert!(
        !tracker.is_stale(&svc, &[marked]),
        "a slice already marked for deletion is gone enough"
    );
}

#[test]
fn a_recreated_service_starts_afresh() {
    let mut tracker = SliceTracker::default();
    assert!(!tracker.is_stale::<EndpointSlice>(&service("web").build(), &[]));
    tracker.record_write(&written("web-a", 1));
    let recreated = service("web").uid("new-uid").build();
    assert!(!tracker.is_stale::<EndpointSlice>(&recreated, &[]));
}

#[test]
fn other_services_do_not_interfere() {
    let mut tracker = SliceTracker::default();
    tracker.record_write(&written("web-a", 1));
    assert!(!tracker.is_stale::<EndpointSlice>(&service("db").build(), &[]));
}

#[test]
fn events_echoing_own_writes_are_not_news() {
    let mut tracker = SliceTracker::default();
    assert!(
        tracker.is_news(&written("web-a", 1)),
        "unknown slices are news"
    );
    tracker.record_write(&written("web-a", 2));
    assert!(!tracker.is_news(&written("web-a", 1)));
    assert!(!tracker.is_news(&written("web-a", 2)));
    assert!(tracker.is_news(&written("web-a", 3)));
    tracker.record_deletion(&written("web-a", 2));
    assert!(!tracker.is_news(&written("web-a", 3)));
}

#[test]
fn deletions_made_by_someone_else_call_for_a_sync() {
    let svc = service("web").build();
    let mut tracker = SliceTracker::default();
    let ours = written("web-a", 1);
    let theirs = written("web-b", 1);
    tracker.record_write(&ours);
    tracker.record_write(&theirs);
    tracker.record_deletion(&ours);

    assert!(tracker.handle_deletion(&ours));
    assert!(!tracker.handle_deletion(&theirs));
    assert!(
        !tracker.is_stale::<EndpointSlice>(&svc, &[]),
        "nothing is expected any more"
    );
}

#[test]
fn forgetting_a_service_drops_its_expectations() {
    let svc = service("web").build();
    let mut tracker = SliceTracker::default();
    tracker.record_write(&written("web-a", 1));
    tracker.forget_service("default", "web");
    assert!(!tracker.is_stale::<EndpointSlice>(&svc, &[]));
}
