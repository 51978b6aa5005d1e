use std::sync::{Mutex, RwLock};

use k8s_openapi::api::core::v1::PodIP;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::*;
use crate::SliceTracker;
use crate::fixtures::{self, NS};
use crate::runtime::queue::{Backoff, WorkQueue};
use crate::runtime::trim;
use crate::well_known::{
    ANNOTATION_TOPOLOGY_MODE, IN_TREE_ENDPOINTS_MANAGER, LABEL_ENDPOINTS_MANAGED_BY,
    LABEL_SERVICE_NAME, LABEL_SKIP_MIRROR, SVCPLANE_SLICE_MANAGER,
};

const BATCH: Duration = Duration::from_secs(3);

struct Fixture {
    router: Router,
    endpoints: Arc<WorkQueue<ObjectKey>>,
    slices: Arc<WorkQueue<ObjectKey>>,
    mirroring: Arc<WorkQueue<ObjectKey>>,
    tracker: Arc<Mutex<SliceTracker>>,
    mirroring_tracker: Arc<Mutex<SliceTracker>>,
    capacity: Arc<RwLock<ZoneCapacity>>,
}

fn fixture(batch: Duration) -> Fixture {
    let backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(10),
    };
    let endpoints = Arc::new(WorkQueue::new(backoff));
    let slices = Arc::new(WorkQueue::new(backoff));
    let mirroring = Arc::new(WorkQueue::new(backoff));
    let state = SharedState::default();
    let router = Router::new(
        Arc::new(Caches::default()),
        Queues {
            endpoints: endpoints.clone(),
            slices: slices.clone(),
            mirroring: mirroring.clone(),
            endpoints_batch: batch,
            slices_batch: batch,
            mirroring_batch: batch,
            slice_waiters: Arc::default(),
            mirroring_waiters: Arc::default(),
        },
        state.clone(),
        SVCPLANE_SLICE_MANAGER,
        EnabledControllers::default(),
    );
    Fixture {
        router,
        endpoints,
        slices,
        mirroring,
        tracker: state.slice_tracker,
        mirroring_tracker: state.mirroring_tracker,
        capacity: state.capacity,
    }
}

fn waiting(queue: &WorkQueue<ObjectKey>) -> Vec<(String, u64)> {
    queue
        .waiting()
        .into_iter()
        .map(|(k, d)| (k.name, d.as_secs()))
        .collect()
}

fn drain(fixture: &Fixture) {
    fixture.endpoints.clear();
    fixture.slices.clear();
    fixture.mirroring.clear();
}

impl Fixture {
    fn apply_pod(&mut self, pod: impl Into<PodInfo>) {
        self.router
            .handle(Update::Pod(Box::new(WatchEvent::Apply(pod.into()))));
    }
    fn apply_service(&mut self, service: Service) {
        self.router
            .handle(Update::Service(Box::new(WatchEvent::Apply(trim::service(
                service,
            )))));
    }
}

fn with_services(names: &[(&str, &[(&str, &str)])]) -> Fixture {
    let mut f = fixture(BATCH);
    for (name, selector) in names {
        f.apply_service(fixtures::service(name).selector(selector).build());
    }
    drain(&f);
    f
}

#[tokio::test(start_paused = true)]
async fn a_service_change_queues_it_for_both_controllers_at_once() {
    let mut f = fixture(BATCH);
    f.apply_service(fixtures::service("web").build());
    assert_eq!(waiting(&f.endpoints), vec![("web".into(), 0)]);
    assert_eq!(waiting(&f.slices), vec![("web".into(), 0)]);
    drain(&f);
    f.router.handle(Update::Service(Box::new(WatchEvent::Delete(
        fixtures::service("web").build(),
    ))));
    assert_eq!(waiting(&f.endpoints), vec![("web".into(), 0)]);
    assert!(f.router.caches.services.get(NS, "web").is_none());
}

#[tokio::test(start_paused = true)]
async fn pod_changes_queue_the_selecting_services_after_the_batch_period() {
    let mut f = with_services(&[("web", &[("app", "web")]), ("db", &[("app", "db")])]);
    let pod = fixtures::pod("web-1", "10.0.0.1").label("app", "web");
    f.apply_pod(pod.build());
    assert_eq!(waiting(&f.endpoints), vec![("web".into(), 3)]);
    assert_eq!(waiting(&f.slices), vec![("web".into(), 3)]);
}

#[tokio::test(start_paused = true)]
async fn irrelevant_pod_changes_queue_nothing() {
    let mut f = with_services(&[("web", &[("app", "web")])]);
    let mut pod = fixtures::pod("web-1", "10.0.0.1")
        .label("app", "web")
        .build_pod();
    f.apply_pod(pod.clone());
    drain(&f);
    pod.metadata.resource_version = Some("2".into());
    pod.metadata.annotations = Some([("touched".into(), "yes".into())].into());
    f.apply_pod(pod);
    assert!(waiting(&f.endpoints).is_empty());
    assert!(waiting(&f.slices).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_label_change_queues_the_services_it_joins_and_leaves_only() {
    let mut f = with_services(&[
        ("web", &[("app", "web")]),
        ("canary", &[("app", "web"), ("track", "canary")]),
        ("all", &[]),
        ("db", &[("app", "db")]),
    ]);
    f.apply_pod(
        fixtures::pod("p", "10.0.0.1")
            .label("app", "web")
            .label("track", "canary")
            .build(),
    );
    drain(&f);
    f.apply_pod(fixtures::pod("p", "10.0.0.1").label("app", "db").build());
    let queued: Vec<String> = waiting(&f.slices).into_iter().map(|(k, _)| k).collect();
    // "all" selects both versions and nothing it publishes changed.
    assert_eq!(queued, vec!["canary", "db", "web"]);
}

#[tokio::test(start_paused = true)]
async fn an_ip_change_queues_every_selecting_service() {
    let mut f = with_services(&[("web", &[("app", "web")]), ("all", &[])]);
    let pod = fixtures::pod("p", "10.0.0.1")
        .label("app", "web")
        .build_pod();
    f.apply_pod(pod.clone());
    drain(&f);
    let mut moved = pod;
    let status = moved.status.as_mut().unwrap();
    status.pod_ip = Some("10.0.0.2".into());
    status.pod_ips = Some(vec![PodIP {
        ip: "10.0.0.2".into(),
    }]);
    f.apply_pod(moved);
    let queued: Vec<String> = waiting(&f.endpoints).into_iter().map(|(k, _)| k).collect();
    assert_eq!(queued, vec!["all", "web"]);
}

#[tokio::test(start_paused = true)]
async fn node_changes_queue_services_of_its_pods_for_slices_only() {
    let mut f = with_services(&[("web", &[("app", "web")]), ("db", &[("app", "db")])]);
    f.apply_pod(
        fixtures::pod("p", "10.0.0.1")
            .label("app", "web")
            .node("node-a")
            .build(),
    );
    f.apply_pod(
        fixtures::pod("q", "10.0.0.2")
            .label("app", "db")
            .node("node-b")
            .build(),
    );
    drain(&f);

    let node = fixtures::node("node-a", Some("zone-1"));
    f.router
        .handle(Update::Node(Box::new(WatchEvent::Apply(trim::node(
            node.clone(),
        )))));
    assert_eq!(waiting(&f.slices), vec![("web".into(), 0)]);
    assert!(waiting(&f.endpoints).is_empty());
    drain(&f);

    let mut heartbeat = node.clone();
    heartbeat.metadata.resource_version = Some("9".into());
    f.router
        .handle(Update::Node(Box::new(WatchEvent::Apply(trim::node(
            heartbeat,
        )))));
    assert!(waiting(&f.slices).is_empty());

    let moved = fixtures::node("node-a", Some("zone-2"));
    f.router
        .handle(Update::Node(Box::new(WatchEvent::Apply(trim::node(
            moved.clone(),
        )))));
    assert_eq!(waiting(&f.slices), vec![("web".into(), 0)]);
    drain(&f);

    f.router
        .handle(Update::Node(Box::new(WatchEvent::Delete(trim::node(
            moved,
        )))));
    assert!(
        waiting(&f.slices).is_empty(),
        "a deleted Node queues nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pod_moving_nodes_is_reindexed() {
    let mut f = with_services(&[("web", &[("app", "web")])]);
    let pod = fixtures::pod("p", "10.0.0.1").label("app", "web");
    f.apply_pod(pod.node("node-a").build());
    f.apply_pod(
        fixtures::pod("p", "10.0.0.1")
            .label("app", "web")
            .node("node-b")
            .build(),
    );
    drain(&f);
    f.router
        .handle(Update::Node(Box::new(WatchEvent::Apply(trim::node(
            fixtures::node("node-a", None),
        )))));
    assert!(waiting(&f.slices).is_empty());
    f.router
        .handle(Update::Node(Box::new(WatchEvent::Apply(trim::node(
            fixtures::node("node-b", None),
        )))));
    assert_eq!(waiting(&f.slices), vec![("web".into(), 0)]);
}

#[tokio::test(start_paused = true)]
async fn only_deleted_endpoints_queue_their_service() {
    let mut f = fixture(BATCH);
    let endpoints = Endpoints {
        metadata: kube::api::ObjectMeta {
            name: Some("web".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        subsets: None,
    };
    f.router
        .handle(Update::Endpoints(Box::new(WatchEvent::Apply(
            endpoints.clone(),
        ))));
    assert!(waiting(&f.endpoints).is_empty());
    f.router
        .handle(Update::Endpoints(Box::new(WatchEvent::Delete(endpoints))));
    assert_eq!(waiting(&f.endpoints), vec![("web".into(), 0)]);
    assert!(waiting(&f.slices).is_empty());
}

fn slice(name: &str, service: &str, manager: &str, generation: i64) -> EndpointSlice {
    EndpointSlice {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(generation),
            labels: Some(
                [
                    (LABEL_SERVICE_NAME.to_string(), service.to_string()),
                    (LABEL_SLICE_MANAGED_BY.to_string(), manager.to_string()),
                ]
                .into(),
            ),
            owner_references: Some(vec![OwnerReference::default()]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: None,
        ports: None,
    }
}

#[tokio::test(start_paused = true)]
async fn slice_events_that_echo_own_writes_queue_nothing() {
    let mut f = fixture(Duration::ZERO);
    let ours = slice("web-abc", "web", SVCPLANE_SLICE_MANAGER, 1);
    f.tracker.lock().unwrap().record_write(&ours);
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Apply(ours.clone()))));
    assert!(waiting(&f.slices).is_empty());

    // Someone else changed it: a sync after the one-second minimum delay.
    let edited = slice("web-abc", "web", SVCPLANE_SLICE_MANAGER, 2);
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Apply(edited))));
    assert_eq!(waiting(&f.slices), vec![("web".into(), 1)]);
    drain(&f);

    // A slice of someone else entirely is none of our business.
    let foreign = slice("web-xyz", "web", "someone-else", 1);
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Apply(foreign))));
    assert!(waiting(&f.slices).is_empty());
}

#[tokio::test(start_paused = true)]
async fn slice_deletions_queue_a_sync_unless_we_made_them() {
    let mut f = fixture(BATCH);
    let ours = slice("web-abc", "web", SVCPLANE_SLICE_MANAGER, 1);
    f.tracker.lock().unwrap().record_write(&ours);
    f.tracker.lock().unwrap().record_deletion(&ours);
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Delete(ours))));
    assert!(waiting(&f.slices).is_empty());

    let in_tree = slice("web-def", "web", IN_TREE_SLICE_MANAGER, 1);
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Delete(in_tree))));
    assert_eq!(waiting(&f.slices), vec![("web".into(), 3)]);
}

#[tokio::test(start_paused = true)]
async fn a_relist_reports_what_was_deleted_meanwhile() {
    let mut f = with_services(&[("web", &[("app", "web")])]);
    f.router
        .handle(Update::Pod(Box::new(WatchEvent::RelistStart)));
    f.apply_pod(fixtures::pod("p", "10.0.0.1").label("app", "web").build());
    f.router
        .handle(Update::Pod(Box::new(WatchEvent::RelistDone)));
    drain(&f);

    f.router
        .handle(Update::Pod(Box::new(WatchEvent::RelistStart)));
    f.router
        .handle(Update::Pod(Box::new(WatchEvent::RelistDone)));
    assert_eq!(waiting(&f.endpoints), vec![("web".into(), 3)]);
    assert!(f.router.caches.pods.get(NS, "p").is_none());
}

#[test]
fn caches_are_synced_once_every_kind_listed() {
    let caches = Caches::default();
    assert!(!caches.synced());
    drop(caches.services.end_relist());
    drop(caches.pods.end_relist());
    drop(caches.nodes.end_relist());
    drop(caches.endpoints.end_relist());
    assert!(!caches.synced());
    drop(caches.slices.end_relist());
    assert!(caches.synced());
}

#[tokio::test(start_paused = true)]
async fn a_service_waiting_for_the_cache_is_queued_by_its_next_slice_event() {
    let mut f = fixture(BATCH);
    let waiters = f.router.queues.slice_waiters.clone();
    waiters.wait(&ObjectKey::new(NS, "web"));
    let ours = slice("web-abc", "web", SVCPLANE_SLICE_MANAGER, 1);
    f.tracker.lock().unwrap().record_write(&ours);
    // The echo of the controller's own write, which it was waiting for.
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Apply(ours.clone()))));
    assert_eq!(waiting(&f.slices), vec![("web".into(), 0)]);
    drain(&f);
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Apply(ours))));
    assert!(waiting(&f.slices).is_empty(), "no longer waiting");
}

fn apply_endpoints(f: &mut Fixture, endpoints: Endpoints) {
    f.router
        .handle(Update::Endpoints(Box::new(WatchEvent::Apply(endpoints))));
}

#[tokio::test(start_paused = true)]
async fn endpoints_changes_queue_mirroring_when_old_or_new_may_be_mirrored() {
    let mut f = fixture(BATCH);
    apply_endpoints(&mut f, fixtures::endpoints("ext").build());
    assert_eq!(waiting(&f.mirroring), vec![("ext".into(), 0)]);
    drain(&f);

    // Labelled skip-mirror: the old version could be mirrored, so its slices must go.
    let skipped = fixtures::endpoints("ext")
        .label(LABEL_SKIP_MIRROR, "true")
        .build();
    apply_endpoints(&mut f, skipped.clone());
    assert_eq!(waiting(&f.mirroring), vec![("ext".into(), 0)]);
    drain(&f);
    apply_endpoints(&mut f, skipped.clone());
    assert!(waiting(&f.mirroring).is_empty());
    f.router
        .handle(Update::Endpoints(Box::new(WatchEvent::Delete(skipped))));
    assert!(waiting(&f.mirroring).is_empty());

    // An Endpoints controller's object is never mirrored.
    let managed = fixtures::endpoints("web")
        .label(LABEL_ENDPOINTS_MANAGED_BY, IN_TREE_ENDPOINTS_MANAGER)
        .build();
    apply_endpoints(&mut f, managed.clone());
    f.router
        .handle(Update::Endpoints(Box::new(WatchEvent::Delete(managed))));
    assert!(waiting(&f.mirroring).is_empty());
}

#[tokio::test(start_paused = true)]
async fn selectorless_services_and_selector_flips_queue_mirroring() {
    let mut f = fixture(BATCH);
    f.apply_service(fixtures::service("web").selector(&[("app", "web")]).build());
    assert!(waiting(&f.mirroring).is_empty());
    f.apply_service(fixtures::service("ext").no_selector().build());
    assert_eq!(waiting(&f.mirroring), vec![("ext".into(), 0)]);
    drain(&f);

    // A label change keeps the selector as it was: nothing to mirror differently.
    f.apply_service(
        fixtures::service("ext")
            .no_selector()
            .label("a", "b")
            .build(),
    );
    assert!(waiting(&f.mirroring).is_empty());
    f.apply_service(fixtures::service("ext").selector(&[("app", "x")]).build());
    assert_eq!(waiting(&f.mirroring), vec![("ext".into(), 0)]);
    drain(&f);

    f.router.handle(Update::Service(Box::new(WatchEvent::Delete(
        fixtures::service("web").selector(&[("app", "web")]).build(),
    ))));
    assert!(waiting(&f.mirroring).is_empty());
    f.router.handle(Update::Service(Box::new(WatchEvent::Delete(
        fixtures::service("gone").no_selector().build(),
    ))));
    assert_eq!(waiting(&f.mirroring), vec![("gone".into(), 0)]);
}

#[tokio::test(start_paused = true)]
async fn mirrored_slices_queue_the_mirroring_controller_only() {
    let mut f = fixture(Duration::ZERO);
    let ours = slice("ext-abc", "ext", SVCPLANE_MIRRORING_MANAGER, 1);
    f.mirroring_tracker.lock().unwrap().record_write(&ours);
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Apply(ours.clone()))));
    assert!(waiting(&f.mirroring).is_empty(), "an echo of our own write");

    let edited = slice("ext-abc", "ext", SVCPLANE_MIRRORING_MANAGER, 2);
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Apply(edited.clone()))));
    assert_eq!(waiting(&f.mirroring), vec![("ext".into(), 0)]);
    assert!(waiting(&f.slices).is_empty(), "not the slice controller's");
    drain(&f);

    // Moved to another Service: both are synced.
    let moved = slice("ext-abc", "other", SVCPLANE_MIRRORING_MANAGER, 2);
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Apply(moved.clone()))));
    assert_eq!(
        waiting(&f.mirroring),
        vec![("ext".into(), 0), ("other".into(), 0)]
    );
    drain(&f);

    // An in-tree mirrored slice deleted by someone: a sync; our own deletion: none.
    let in_tree = slice("ext-def", "ext", IN_TREE_MIRRORING_MANAGER, 1);
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Delete(in_tree))));
    assert_eq!(waiting(&f.mirroring), vec![("ext".into(), 0)]);
    drain(&f);
    f.mirroring_tracker.lock().unwrap().record_deletion(&moved);
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Delete(moved))));
    assert!(waiting(&f.mirroring).is_empty());

    // The slice controller's slices do not concern the mirroring controller.
    let pod_driven = slice("web-abc", "web", SVCPLANE_SLICE_MANAGER, 1);
    f.router
        .handle(Update::Slice(Box::new(WatchEvent::Apply(pod_driven))));
    assert!(waiting(&f.mirroring).is_empty());
}

fn apply_node(f: &mut Fixture, node: Node) {
    f.router
        .handle(Update::Node(Box::new(WatchEvent::Apply(trim::node(node)))));
}

#[tokio::test(start_paused = true)]
async fn capacity_changes_queue_the_services_with_auto_hints() {
    let mut f = fixture(BATCH);
    f.apply_service(
        fixtures::service("auto")
            .selector(&[("app", "a")])
            .annotation(ANNOTATION_TOPOLOGY_MODE, "Auto")
            .build(),
    );
    f.apply_service(fixtures::service("plain").selector(&[("app", "p")]).build());
    // The first list: capacity is computed once, when it is complete.
    f.router
        .handle(Update::Node(Box::new(WatchEvent::RelistStart)));
    apply_node(&mut f, fixtures::worker_node("n1", Some("z1"), "4"));
    apply_node(&mut f, fixtures::worker_node("n2", Some("z2"), "4"));
    assert_eq!(
        *f.capacity.read().unwrap(),
        ZoneCapacity::from_nodes::<Node>(&[])
    );
    f.router
        .handle(Update::Node(Box::new(WatchEvent::RelistDone)));
    let ZoneCapacity::Zones(shares) = f.capacity.read().unwrap().clone() else {
        panic!("two zones")
    };
    assert_eq!(shares.len(), 2);
    assert_eq!(
        waiting(&f.slices),
        vec![("auto".into(), 0), ("plain".into(), 0)]
    );
    drain(&f);

    // More CPU in z1 is not noticed by itself, as in-tree (`updateNode`,
    // pkg/controller/endpointslice/endpointslice_controller.go)...
    apply_node(&mut f, fixtures::worker_node("n1", Some("z1"), "8"));
    assert!(waiting(&f.slices).is_empty());
    // ...but at the next Node added: the shares move, the Auto Service is synced.
    apply_node(&mut f, fixtures::worker_node("n3", Some("z1"), "4"));
    let ZoneCapacity::Zones(shares) = f.capacity.read().unwrap().clone() else {
        panic!("two zones")
    };
    assert_eq!(shares["z1"], 0.75);
    assert_eq!(waiting(&f.slices), vec![("auto".into(), 0)]);
    drain(&f);

    // An irrelevant change, and one that leaves the shares as they are.
    apply_node(
        &mut f,
        fixtures::node_label(fixtures::worker_node("n1", Some("z1"), "8"), "x", "y"),
    );
    assert!(waiting(&f.slices).is_empty());

    // A Node not ready: z2 has no CPU left, a single zone.
    apply_node(
        &mut f,
        fixtures::node_ready(fixtures::worker_node("n2", Some("z2"), "4"), false),
    );
    assert_eq!(*f.capacity.read().unwrap(), ZoneCapacity::SingleZone);
    assert_eq!(waiting(&f.slices), vec![("auto".into(), 0)]);
}
