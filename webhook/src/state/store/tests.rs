//! The store's conflict paths against a fake `rangeallocations` API: what another replica
//! writes lands just before one of this store's writes, so that it conflicts.

use std::time::SystemTime;

use super::wanted::WANTED_ANNOTATION;
use super::*;
use crate::state::crd::Reservation;
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
    start_as(fake, Holder::named("replica-a")).await
}

async fn start_as(fake: &FakeRanges, holder: Holder) -> AllocationStore {
    let pool = PoolConfig {
        size: 4,
        lifetime: Duration::from_secs(600),
    };
    start_with(fake, holder, pool).await
}

async fn start_with(fake: &FakeRanges, holder: Holder, pool: PoolConfig) -> AllocationStore {
    let (expired, _) = mpsc::unbounded_channel();
    AllocationStore::start(
        fake.client(),
        allocators(),
        pool,
        holder,
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
    change_stored(&mut object, |ips| {
        ips.allocate(pooled).unwrap();
        ips.allocate("10.96.0.10".parse().unwrap()).unwrap();
    });
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
/// not refused by a copy that has not seen the change: the store reads the range again
/// before refusing, at once when a watch reported a newer stored object, and otherwise
/// once per REFUSAL_RECHECK (the watch may lag the write), so that a flood of refused
/// requests is not a flood of reads.
#[tokio::test]
async fn a_refusal_is_checked_on_a_fresh_copy() {
    let fake = FakeRanges::default();
    let store = start(&fake).await;
    let (first, second) = ("10.96.0.5", "10.96.0.6");
    store.admit(asking_for("a", first)).await.unwrap();
    store.admit(asking_for("b", second)).await.unwrap();
    // The other replica releases a value: the stored object changes, this copy does not.
    let release = |value: &str| {
        let mut object = fake.object(V4.name()).unwrap();
        change_stored(&mut object, |ips| {
            ips.release(value.parse().unwrap());
        });
        fake.put_object(object);
    };
    release(first);
    let filled = store.admit(asking_for("unannounced", first)).await.unwrap();
    assert_eq!(filled.cluster_ips, [first], "checked on a fresh copy");

    release(second);
    let (gets, _) = fake.counts();
    let refused = store.admit(asking_for("too-soon", second)).await;
    assert!(
        matches!(&refused, Err(StoreError::Allocation(error)) if *error.reason() == allocator::Error::IpAllocated),
        "{refused:?}"
    );
    assert_eq!(
        fake.counts().0,
        gets,
        "no second unannounced read within the bound"
    );

    let version = fake.object(V4.name()).unwrap().metadata.resource_version;
    store.observed(V4, version.unwrap()).await.unwrap();
    let filled = store.admit(asking_for("announced", second)).await.unwrap();
    assert_eq!(filled.cluster_ips, [second]);
    assert!(stored_ips(&fake).has(second.parse().unwrap()));
}

/// A time long enough ago for any entry renewed then to be dead.
fn an_hour_ago() -> SystemTime {
    let old = SystemTime::now() - Duration::from_secs(3600);
    humantime::parse_rfc3339(&humantime::format_rfc3339_millis(old).to_string()).unwrap()
}

/// Returns once the store has written what it was sent before: an admission (a dry run) is
/// answered after the write of the batch it is in.
async fn settle(store: &AllocationStore) {
    let mut request = AdmitRequest::test_create("settle");
    request.dry_run = true;
    store.admit(request).await.unwrap();
}

/// Allocates `allocated` in the stored IPv4 range, as `holder`'s entry renewed at `renewed`
/// that lists them and `listed`.
fn put_entry(
    fake: &FakeRanges,
    holder: &str,
    allocated: &[&str],
    listed: &[&str],
    renewed: SystemTime,
) {
    let mut object = fake.object(V4.name()).unwrap();
    change_stored(&mut object, |ips| {
        for text in allocated {
            ips.allocate(text.parse().unwrap()).unwrap();
        }
    });
    let values = allocated.iter().chain(listed).map(|text| ip(text));
    object
        .spec
        .reservations
        .insert(holder.to_string(), Reservation::new(values, renewed));
    fake.put_object(object);
}

/// Stored objects created by a first store (returned, to keep it running), then `holder`'s
/// entry renewed at `renewed` allocating and listing `value`: what a store started next reads.
async fn with_entry(
    holder: &str,
    value: &str,
    renewed: SystemTime,
) -> (FakeRanges, AllocationStore) {
    let fake = FakeRanges::default();
    let first = start(&fake).await;
    put_entry(&fake, holder, &[value], &[], renewed);
    (fake, first)
}

fn ip(text: &str) -> Value {
    Value::ClusterIp(text.parse().unwrap())
}

/// Another replica's entry dies a pool lifetime after its last renewal, unless its replica
/// may have handed out a value since that kube-apiserver has not stored yet: it stops
/// handing out half a lifetime after renewing, and a create reaches storage within the
/// unconfirmed-allocation timeout of its admission or never.
#[test]
fn an_entry_dies_once_what_its_replica_handed_out_is_stored_or_never_will_be() {
    let pool = PoolConfig {
        size: 128,
        lifetime: Duration::from_secs(60),
    };
    assert_eq!(
        pool.dead_after(Duration::from_secs(75)),
        Duration::from_secs(105)
    );
    assert_eq!(
        pool.dead_after(Duration::from_secs(30)),
        Duration::from_secs(60)
    );
}

/// An entry renewed a pool lifetime ago, whose replica stopped handing its pool out less
/// than an unconfirmed-allocation timeout ago, is not dead yet: what it lists counts as
/// pooled, neither reclaimed nor a leak for repair.
#[tokio::test]
async fn an_entry_a_lifetime_old_is_live_until_its_admissions_are_stored() {
    let fake = FakeRanges::default();
    let _first = start(&fake).await;
    let seventy_seconds_ago = SystemTime::now() - Duration::from_secs(70);
    put_entry(
        &fake,
        "replica-b",
        &["10.96.0.10"],
        &[],
        seventy_seconds_ago,
    );
    let pool = PoolConfig {
        size: 4,
        lifetime: Duration::from_secs(60),
    };
    // Unconfirmed values wait 75 s (the default): replica-b's entry dies 105 s after its
    // renewal.
    let store = start_with(&fake, Holder::named("replica-a"), pool).await;
    let state = store.snapshot().await.unwrap();
    assert!(state.dead.is_empty(), "{:?}", state.dead);
    assert!(state.pooled.contains(&ip("10.96.0.10")));

    put_entry(&fake, "replica-c", &["10.96.0.11"], &[], an_hour_ago());
    let store = start_with(&fake, Holder::named("replica-a"), pool).await;
    let dead = store.snapshot().await.unwrap().dead;
    assert_eq!(
        dead.iter()
            .map(|entry| entry.holder.as_str())
            .collect::<Vec<_>>(),
        ["replica-c"]
    );
}

/// The entry of a replica gone for a pool lifetime is dropped and what it lists that no
/// Service holds is freed, in one write; a second reclaim of the same value, after someone
/// allocated it again, frees nothing (the entry no longer lists it).
#[tokio::test]
async fn a_dead_replicas_entry_is_reclaimed_once() {
    let fake = FakeRanges::default();
    // A first store creates the objects; the one under test reads them as changed below.
    let _first = start(&fake).await;
    put_entry(
        &fake,
        "replica-b",
        &["10.96.0.10", "10.96.0.11"],
        &["10.96.0.12"],
        an_hour_ago(),
    );
    let store = start(&fake).await;

    let dead = store.snapshot().await.unwrap().dead;
    assert_eq!(
        dead,
        [DeadEntry {
            kind: V4,
            holder: "replica-b".to_string(),
            values: vec![ip("10.96.0.10"), ip("10.96.0.11")],
        }],
        "only allocated values count"
    );
    // 10.96.0.11 is held by a Service: the reclaimer leaves it out.
    let mut entry = dead[0].clone();
    entry.values = vec![ip("10.96.0.10")];
    store.reclaim(vec![entry.clone()]).await.unwrap();
    settle(&store).await;
    let stored = fake.object(V4.name()).unwrap();
    assert!(!stored.spec.reservations.contains_key("replica-b"));
    let ips = stored_ips(&fake);
    assert!(!ips.has("10.96.0.10".parse().unwrap()) && ips.has("10.96.0.11".parse().unwrap()));

    // Given out again by another replica; a late second reclaim must not free it.
    let mut object = fake.object(V4.name()).unwrap();
    change_stored(&mut object, |ips| {
        ips.allocate("10.96.0.10".parse().unwrap()).unwrap();
    });
    fake.put_object(object);
    // This store's next write reads that copy.
    let mut request = AdmitRequest::test_create("b");
    request.new.cluster_ips = vec!["10.96.0.4".to_string()];
    store.admit(request).await.unwrap();
    store.reclaim(vec![entry]).await.unwrap();
    settle(&store).await;
    assert!(stored_ips(&fake).has("10.96.0.10".parse().unwrap()));
}

/// The regression behind a Service whose ClusterIP was missing from the stored state on a
/// two-replica cluster: this store's copy showed the other replica's entry dead (a copy
/// read long before), but that replica had renewed its entry since and was handing its pool
/// out. Dead entries are judged on a fresh copy, and a reclaim's write checks again on the
/// copy it writes: it frees nothing, nor drops the entry.
#[tokio::test]
async fn an_entry_renewed_since_the_copy_that_showed_it_dead_is_left_alone() {
    let (fake, _first) = with_entry("replica-b", "10.96.0.10", an_hour_ago()).await;
    let store = start(&fake).await;
    let dead = store.snapshot().await.unwrap().dead;
    assert_eq!(dead.len(), 1, "the copy shows replica-b's entry dead");

    let mut object = fake.object(V4.name()).unwrap();
    let entry = object.spec.reservations.get_mut("replica-b").unwrap();
    *entry = Reservation::new(entry.values(V4).collect::<Vec<_>>(), SystemTime::now());
    fake.put_object(object);
    // Judged on a fresh copy once the watch showed the write, the entry is alive; a
    // reclaim decided on the old copy still frees nothing.
    let version = fake.object(V4.name()).unwrap().metadata.resource_version;
    store.observed(V4, version.unwrap()).await.unwrap();
    assert_eq!(store.fresh_snapshot().await.unwrap().dead, []);
    store.reclaim(dead).await.unwrap();
    settle(&store).await;

    let stored = fake.object(V4.name()).unwrap();
    assert!(
        stored_ips(&fake).has("10.96.0.10".parse().unwrap()),
        "a value of a live replica's pool was freed"
    );
    assert!(stored.spec.reservations.contains_key("replica-b"));
}

/// A replica that gives back an unconfirmed value after the releasing replica took it for
/// dead and reclaimed its entry frees nothing: the value may belong to someone else now.
/// While its entry is stored, the give-back frees the value.
#[tokio::test]
async fn a_give_back_after_the_entry_was_reclaimed_frees_nothing() {
    let fake = FakeRanges::default();
    let store = start(&fake).await;
    let mine = ip("10.96.0.10");
    put_entry(
        &fake,
        "replica-a",
        &["10.96.0.10", "10.96.0.11"],
        &[],
        SystemTime::now(),
    );
    // The store reads the range (and sees its entry) on its next write of it.
    let mut request = AdmitRequest::test_create("a");
    request.new.cluster_ips = vec!["10.96.0.3".to_string()];
    store.admit(request).await.unwrap();

    store.give_back(vec![mine]).await.unwrap();
    settle(&store).await;
    assert!(
        !stored_ips(&fake).has("10.96.0.10".parse().unwrap()),
        "freed while listed"
    );

    // The releasing replica drops this replica's entry (freeing 10.96.0.11), and another
    // replica gives 10.96.0.11 out again.
    let mut object = fake.object(V4.name()).unwrap();
    object.spec.reservations.remove("replica-a");
    fake.put_object(object);
    store.give_back(vec![ip("10.96.0.11")]).await.unwrap();
    settle(&store).await;
    assert!(
        stored_ips(&fake).has("10.96.0.11".parse().unwrap()),
        "a value of a reclaimed entry is left alone"
    );
}

/// A Service created and deleted at once: the watch marks its values, then releases them,
/// and both commands can land in one batch. The watch's release wins, so the value ends
/// free; in the other order it ends allocated.
#[tokio::test]
async fn a_mark_then_a_release_in_one_batch_leave_the_value_free() {
    let fake = FakeRanges::default();
    let store = start(&fake).await;
    let address: std::net::IpAddr = "10.96.0.7".parse().unwrap();
    let value = Value::ClusterIp(address);
    // Queued without the actor running in between (one thread): one batch.
    store.mark(vec![value]).await.unwrap();
    store.release_observed(vec![value]).await.unwrap();
    settle(&store).await;
    assert!(!stored_ips(&fake).has(address), "marked after its release");

    store.release_observed(vec![value]).await.unwrap();
    store.mark(vec![value]).await.unwrap();
    settle(&store).await;
    assert!(stored_ips(&fake).has(address));
}

/// Repair's release comes from a list older than the watch's mark: a Service was seen
/// holding the value since, so in one batch the mark wins and the value stays allocated.
#[tokio::test]
async fn a_mark_wins_over_repairs_release_in_one_batch() {
    let fake = FakeRanges::default();
    let store = start(&fake).await;
    let address: std::net::IpAddr = "10.96.0.8".parse().unwrap();
    let value = Value::ClusterIp(address);
    store.mark(vec![value]).await.unwrap();
    settle(&store).await;
    assert!(stored_ips(&fake).has(address));
    store.mark(vec![value]).await.unwrap();
    store.release(vec![value]).await.unwrap();
    settle(&store).await;
    assert!(
        stored_ips(&fake).has(address),
        "freed while a Service holds it"
    );
}

/// The entry of an earlier life of this replica's pod is neither a live pool nor waiting to
/// age: it is shown apart, however recently renewed, and reclaimed like a dead one. The
/// entry of another pod whose name extends this one's stays a live pool.
#[tokio::test]
async fn an_earlier_life_of_the_pod_is_shown_apart_and_reclaimed() {
    let fake = FakeRanges::default();
    let _first = start(&fake).await;
    let now = SystemTime::now();
    put_entry(&fake, "pod-a-00000001", &["10.96.0.10"], &[], now);
    put_entry(&fake, "pod-a-b-00000002", &["10.96.0.11"], &[], now);
    let store = start_as(&fake, Holder::of_pod("pod-a", 3)).await;

    let view = store.snapshot().await.unwrap();
    assert_eq!(
        view.previous_lives,
        [DeadEntry {
            kind: V4,
            holder: "pod-a-00000001".to_string(),
            values: vec![ip("10.96.0.10")],
        }]
    );
    assert!(view.dead.is_empty());
    assert!(!view.pooled.contains(&ip("10.96.0.10")));
    assert!(view.pooled.contains(&ip("10.96.0.11")));

    store.reclaim(view.previous_lives).await.unwrap();
    settle(&store).await;
    let stored = fake.object(V4.name()).unwrap();
    assert!(!stored.spec.reservations.contains_key("pod-a-00000001"));
    assert!(stored.spec.reservations.contains_key("pod-a-b-00000002"));
    let ips = stored_ips(&fake);
    assert!(!ips.has("10.96.0.10".parse().unwrap()) && ips.has("10.96.0.11".parse().unwrap()));
}

/// A create asking for cluster IP `ip`.
fn asking_for(uid: &str, ip: &str) -> AdmitRequest {
    let mut request = AdmitRequest::test_create(uid);
    request.new.cluster_ips = vec![ip.to_string()];
    request
}

/// `refused` is a refusal for `reason`, and `asked` is what was marked wanted (`None`:
/// nobody was asked to give anything up).
fn assert_refused(
    fake: &FakeRanges,
    refused: &Result<ServiceSpec, StoreError>,
    reason: allocator::Error,
    asked: Option<&str>,
) {
    assert!(
        matches!(refused, Err(StoreError::Allocation(error)) if *error.reason() == reason),
        "{refused:?}"
    );
    let annotations = fake
        .object(V4.name())
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default();
    assert_eq!(
        annotations.get(WANTED_ANNOTATION).map(String::as_str),
        asked
    );
}

/// A store whose pool holds `addresses`, oldest first, allocated in the stored range as
/// its refiller would have written them.
async fn pooling(addresses: &[&str]) -> (FakeRanges, AllocationStore) {
    let fake = FakeRanges::default();
    let store = start(&fake).await;
    let mut object = fake.object(V4.name()).unwrap();
    change_stored(&mut object, |ips| {
        for address in addresses {
            ips.allocate(address.parse().unwrap()).unwrap();
        }
    });
    fake.put_object(object);
    let values = addresses.iter().map(|address| ip(address)).collect();
    store.pooled(V4, values, Instant::now()).await.unwrap();
    (fake, store)
}

/// Another replica asked for two pooled values: the one still pooled is freed, the one an
/// admission took from the pool before is kept (a Service may hold it).
#[tokio::test]
async fn a_wanted_value_is_given_up_only_while_pooled() {
    let (first, second) = ("10.96.0.9", "10.96.0.10");
    let (fake, store) = pooling(&[first, second]).await;
    let given = store.admit(AdmitRequest::test_create("a")).await.unwrap();
    assert_eq!(given.cluster_ips, [first], "the oldest pooled value");

    store.unpool(vec![ip(first), ip(second)]).await.unwrap();
    settle(&store).await;
    let ips = stored_ips(&fake);
    assert!(ips.has(first.parse().unwrap()), "handed out: kept");
    assert!(!ips.has(second.parse().unwrap()), "still pooled: given up");
}

/// A requested value listed in another replica's live entry is marked wanted on the
/// range's object; once that replica frees it (and a watch shows the newer copy), the
/// admission gets it. Nobody freeing it, it is refused as taken after the wait.
#[tokio::test]
async fn a_requested_value_of_another_replicas_pool_is_asked_for() {
    let wanted = "10.96.0.10";
    let (fake, _first) = with_entry("replica-b", wanted, SystemTime::now()).await;
    let store = start(&fake).await;

    let refused = store.admit(asking_for("nobody-frees-it", wanted)).await;
    assert_refused(&fake, &refused, allocator::Error::IpAllocated, Some(wanted));

    // Replica b gives it up as soon as it sees the mark again; its write reaches this
    // store through the watch.
    let owner = {
        let (fake, store) = (fake.clone(), store.clone());
        tokio::spawn(async move {
            loop {
                let object = fake.object(V4.name()).unwrap();
                if object
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(WANTED_ANNOTATION))
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut object = fake.object(V4.name()).unwrap();
            change_stored(&mut object, |ips| {
                ips.release(wanted.parse().unwrap());
            });
            object.spec.reservations.remove("replica-b");
            object.metadata.annotations = None;
            fake.put_object(object);
            let version = fake
                .object(V4.name())
                .unwrap()
                .metadata
                .resource_version
                .unwrap();
            store.observed(V4, version).await.unwrap();
        })
    };
    // The mark of the first admission is cleared by nothing here: clear it, so that the
    // owner above waits for the second admission's own mark.
    let mut object = fake.object(V4.name()).unwrap();
    object.metadata.annotations = None;
    fake.put_object(object);
    let filled = store
        .admit(asking_for("freed-meanwhile", wanted))
        .await
        .unwrap();
    owner.await.unwrap();
    assert_eq!(filled.cluster_ips, [wanted]);
    assert!(stored_ips(&fake).has(wanted.parse().unwrap()));
}

/// A dry run asking for a value of another replica's pool marks nothing: it changes
/// nothing anywhere, and is answered as taken at once.
#[tokio::test]
async fn a_dry_run_asks_nobody_for_their_pooled_value() {
    let wanted = "10.96.0.10";
    let (fake, _first) = with_entry("replica-b", wanted, SystemTime::now()).await;
    let store = start(&fake).await;
    let mut request = asking_for("dry", wanted);
    request.dry_run = true;
    assert_refused(
        &fake,
        &store.admit(request).await,
        allocator::Error::IpAllocated,
        None,
    );
}

/// A value listed by an earlier life of this replica's pod is not asked for: that life
/// owns no pool any more, nobody would answer. It is refused as taken at once.
#[tokio::test]
async fn a_value_of_an_earlier_life_is_not_asked_for() {
    let listed = "10.96.0.10";
    let (fake, _first) = with_entry("pod-a-00000001", listed, SystemTime::now()).await;
    let store = start_as(&fake, Holder::of_pod("pod-a", 2)).await;
    let refused = store.admit(asking_for("earlier", listed)).await;
    assert_refused(&fake, &refused, allocator::Error::IpAllocated, None);
}

/// A range full but for what another replica's live entry lists: those values are marked
/// wanted, as a requested one would be (kube-apiserver would give them); nobody freeing
/// them, the create is refused as full after the wait.
#[tokio::test]
async fn a_full_range_asks_for_what_another_replica_pools() {
    let pooled = "10.96.0.14";
    let (fake, _first) = with_entry("replica-b", pooled, SystemTime::now()).await;
    let mut object = fake.object(V4.name()).unwrap();
    change_stored(&mut object, |ips| while ips.allocate_next().is_ok() {});
    fake.put_object(object);
    let store = start(&fake).await;

    let refused = store.admit(AdmitRequest::test_create("full")).await;
    assert_refused(&fake, &refused, allocator::Error::Full, Some(pooled));
}

/// kube-apiserver gave a Service a value this replica pools (the webhook was not called):
/// once the watch shows the Service holding it, the value leaves the pool, stays allocated,
/// and the next admission gets another one, for the releasing replica (a mark) and the others
/// (a confirmation) alike.
#[tokio::test]
async fn a_pooled_value_a_service_holds_leaves_the_pool() {
    for releaser in [true, false] {
        let (held, other) = ("10.96.0.9", "10.96.0.10");
        let (fake, store) = pooling(&[held, other]).await;
        if releaser {
            store.mark(vec![ip(held)]).await.unwrap();
        } else {
            store.confirm(vec![ip(held)]).await.unwrap();
        }
        let given = store.admit(AdmitRequest::test_create("a")).await.unwrap();
        assert_eq!(given.cluster_ips, [other], "releaser: {releaser}");
        let view = store.snapshot().await.unwrap();
        assert!(view.allocators.has(ip(held)), "releaser: {releaser}");
        assert!(!view.pooled.contains(&ip(held)), "releaser: {releaser}");
        assert!(stored_ips(&fake).has(held.parse().unwrap()));
    }
}

/// An admission whose caller gave up before the actor took it (its request timed out behind
/// a slow batch) is not planned: nothing is allocated or stored for it.
#[tokio::test]
async fn an_admission_whose_caller_is_gone_is_not_planned() {
    let fake = FakeRanges::default();
    let store = start(&fake).await;
    settle(&store).await;
    let before = stored_ips(&fake).used();
    // Sent, then dropped before the actor runs (this test's runtime has one thread).
    let mut gone = Box::pin(store.admit(AdmitRequest::test_create("gone")));
    assert!(
        futures::poll!(gone.as_mut()).is_pending(),
        "sent, not answered"
    );
    drop(gone);
    settle(&store).await;
    assert_eq!(stored_ips(&fake).used(), before);
    let view = store.snapshot().await.unwrap();
    assert_eq!(view.allocators.cluster_ips()[0].used(), before);
}
