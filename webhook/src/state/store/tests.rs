//! The store's conflict paths against a fake `rangeallocations` API: what another replica
//! writes lands just before one of this store's writes, so that it conflicts.

use super::*;
use crate::state::fake_api::FakeRanges;
use allocator::{ClusterIpAllocator, IpFamily, NodePortAllocator, PortRange};
use k8s_openapi::ByteString;

const V4: RangeKind = RangeKind::ClusterIps(IpFamily::V4);

fn allocators() -> Allocators {
    Allocators::new(
        vec![ClusterIpAllocator::new("10.96.0.0/28".parse().unwrap())],
        NodePortAllocator::new(PortRange::default()),
    )
    .unwrap()
}

async fn start(fake: &FakeRanges) -> AllocationStore {
    let (expired, _) = mpsc::unbounded_channel();
    let pool = PoolConfig {
        size: 4,
        lifetime: Duration::from_secs(600),
    };
    AllocationStore::start(
        fake.client(),
        allocators(),
        pool,
        "replica-a".to_string(),
        UnconfirmedConfig::default(),
        expired,
    )
    .await
    .unwrap()
}

/// Changes the stored IPv4 range as another writer would.
fn change_stored(object: &mut RangeAllocation, change: impl FnOnce(&mut ClusterIpAllocator)) {
    let mut ips = ClusterIpAllocator::from_snapshot(&object.spec.snapshot()).unwrap();
    change(&mut ips);
    object.spec.data = ByteString(ips.snapshot().data);
    object.spec.used = ips.used();
}

fn stored_ips(fake: &FakeRanges) -> ClusterIpAllocator {
    ClusterIpAllocator::from_snapshot(&fake.object(V4.name()).unwrap().spec.snapshot()).unwrap()
}

/// The regression behind a leak once seen after a fault-free two-replica burst: a batch
/// that took a value from the pool and was then planned again (a value it reserved was
/// taken by another replica meanwhile) must still hand that pooled value out, not lose it.
#[tokio::test]
async fn a_batch_planned_again_after_a_conflict_keeps_its_pooled_value() {
    let fake = FakeRanges::default();
    let store = start(&fake).await;
    // The refiller's write: one address allocated and pooled.
    let pooled: std::net::IpAddr = "10.96.0.9".parse().unwrap();
    let mut object = fake.object(V4.name()).unwrap();
    change_stored(&mut object, |ips| ips.allocate(pooled).unwrap());
    fake.put_object(object);
    store
        .pooled(V4, vec![Value::ClusterIp(pooled)], Instant::now())
        .await
        .unwrap();
    // Another replica takes every free address just before this store writes its batch.
    fake.interfere(
        V4.name(),
        Box::new(|other| change_stored(other, |ips| while ips.allocate_next().is_ok() {})),
    );

    let (first, second) = tokio::join!(
        store.admit(AdmitRequest::test_create("a")),
        store.admit(AdmitRequest::test_create("b"))
    );
    let first = first.expect("the pooled address");
    assert_eq!(first.cluster_ips, [pooled.to_string()]);
    assert!(
        matches!(&second, Err(StoreError::Allocation(error)) if *error.reason() == allocator::Error::Full),
        "{second:?}"
    );
    // Nothing was lost: every stored address is either the other replica's or answered.
    let stored = stored_ips(&fake);
    assert_eq!(stored.used(), stored.size());
    let view = store.snapshot().await.unwrap();
    assert!(view.allocators.has(Value::ClusterIp(pooled)));
}

/// A conflict on a value nobody else took is replayed on the fresh copy: the batch is
/// written once more, with the other replica's allocation kept.
#[tokio::test]
async fn a_conflict_replays_the_batch_on_a_fresh_copy() {
    let fake = FakeRanges::default();
    let store = start(&fake).await;
    let theirs: std::net::IpAddr = "10.96.0.2".parse().unwrap();
    fake.interfere(
        V4.name(),
        Box::new(move |other| change_stored(other, |ips| ips.allocate(theirs).unwrap())),
    );
    let filled = store.admit(AdmitRequest::test_create("a")).await.unwrap();
    let ours: std::net::IpAddr = filled.cluster_ips[0].parse().unwrap();
    let stored = stored_ips(&fake);
    assert_ne!(ours, theirs, "an address another replica holds");
    assert!(stored.has(ours) && stored.has(theirs));
    assert_eq!(stored.used(), 2);
}

/// The store's own writes renew its pool entry: a refiller that cannot keep up with a busy
/// store (as under CPU starvation) does not make the pool expire while batches are written.
#[tokio::test]
async fn a_write_of_the_store_renews_its_pool_entry() {
    let fake = FakeRanges::default();
    let store = start(&fake).await;
    let pooled: std::net::IpAddr = "10.96.0.9".parse().unwrap();
    let mut object = fake.object(V4.name()).unwrap();
    change_stored(&mut object, |ips| ips.allocate(pooled).unwrap());
    let old = SystemTime::now() - Duration::from_secs(3600);
    let old = humantime::parse_rfc3339(&humantime::format_rfc3339_millis(old).to_string()).unwrap();
    object.spec.reservations.insert(
        "replica-a".to_string(),
        Reservation::new([Value::ClusterIp(pooled)], old),
    );
    object.spec.reservations.insert(
        "replica-b".to_string(),
        Reservation::new([Value::ClusterIp("10.96.0.10".parse().unwrap())], old),
    );
    fake.put_object(object);
    store
        .pooled(V4, vec![Value::ClusterIp(pooled)], Instant::now())
        .await
        .unwrap();
    // Not from the pool: a requested address, so that the batch writes the range.
    let mut request = AdmitRequest::test_create("a");
    request.new.cluster_ips = vec!["10.96.0.3".to_string()];
    store.admit(request).await.unwrap();
    let entries = fake.object(V4.name()).unwrap().spec.reservations;
    let renewed = |holder: &str| humantime::parse_rfc3339(&entries[holder].renew_time).unwrap();
    assert!(
        renewed("replica-a") > old,
        "this replica's entry is renewed: {entries:?}, {:?} GETs and PUTs",
        fake.counts()
    );
    assert_eq!(
        renewed("replica-b"),
        old,
        "another replica's entry is left alone"
    );
    assert_eq!(entries["replica-a"].values, ["10.96.0.9"]);
}

/// A value another replica freed (its Service was deleted and that replica released it) is
/// refused by a copy that has not seen the change only until a watch reports a newer
/// stored object: then the store reads the range again before refusing, and allocates.
#[tokio::test]
async fn a_refusal_is_checked_on_a_fresh_copy_once_another_replica_wrote() {
    let fake = FakeRanges::default();
    let store = start(&fake).await;
    let wanted = "10.96.0.5";
    let request = |uid: &str| {
        let mut request = AdmitRequest::test_create(uid);
        request.new.cluster_ips = vec![wanted.to_string()];
        request
    };
    store.admit(request("first")).await.unwrap();
    // The other replica releases it: the stored object changes, this copy does not.
    let mut object = fake.object(V4.name()).unwrap();
    change_stored(&mut object, |ips| {
        ips.release(wanted.parse().unwrap());
    });
    fake.put_object(object);

    let (gets, _) = fake.counts();
    let unaware = store.admit(request("unaware")).await;
    assert!(
        matches!(&unaware, Err(StoreError::Allocation(error)) if *error.reason() == allocator::Error::IpAllocated),
        "{unaware:?}"
    );
    assert_eq!(fake.counts().0, gets, "no read without a sign of change");

    let version = fake.object(V4.name()).unwrap().metadata.resource_version;
    store.observed(V4, version.unwrap()).await.unwrap();
    let filled = store.admit(request("aware")).await.unwrap();
    assert_eq!(filled.cluster_ips, [wanted]);
    assert!(stored_ips(&fake).has(wanted.parse().unwrap()));
}
