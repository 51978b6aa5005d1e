use super::*;
use crate::state::unconfirmed::UnconfirmedConfig;
use allocator::{ClusterIpAllocator, NodePortAllocator};

fn allocators() -> Allocators {
    Allocators::new(
        vec![ClusterIpAllocator::new("10.96.0.0/24".parse().unwrap())],
        NodePortAllocator::new(allocator::PortRange::default()),
    )
    .unwrap()
}

fn ip(s: &str) -> Value {
    Value::ClusterIp(s.parse().unwrap())
}

fn allocate(allocators: &mut Allocators, values: &[Value]) {
    for &value in values {
        allocators.allocate(value).unwrap();
    }
}

/// Allocators whose pool holds `pooled`, as the refiller leaves it.
fn with_pool(pooled: &[Value]) -> Allocators {
    let mut allocators = allocators();
    allocate(&mut allocators, pooled);
    for &value in pooled {
        allocators.add_to_pool(value);
    }
    allocators
}

fn unconfirmed(per_namespace: usize) -> Unconfirmed {
    Unconfirmed::new(UnconfirmedConfig {
        per_namespace,
        ..UnconfirmedConfig::default()
    })
}

fn given(outcome: &Outcome) -> &[Value] {
    &outcome.as_ref().expect("admitted").1
}

fn plan(allocators: &mut Allocators, admits: &[AdmitRequest], limit: usize) -> Planned {
    plan_batch(
        allocators,
        &Recent::default(),
        &unconfirmed(limit),
        admits,
        &[],
        &[],
        Vec::new(),
    )
}

#[test]
fn a_delta_replays_on_a_copy_others_changed() {
    // Another replica allocated .7 and freed .9 since this one read the range.
    let mut fresher = allocators();
    allocate(&mut fresher, &[ip("10.96.0.7"), ip("10.96.0.8")]);
    let delta = RangeDelta {
        released: vec![ip("10.96.0.8"), ip("10.96.0.9")],
        marked: vec![ip("10.96.0.7"), ip("10.96.0.20")],
        reserved: vec![ip("10.96.0.30"), ip("10.96.0.8")],
    };
    assert!(replay(&mut fresher, &delta));
    let held: Vec<String> = fresher.cluster_ips()[0]
        .iter()
        .map(|ip| ip.to_string())
        .collect();
    assert_eq!(held, ["10.96.0.7", "10.96.0.8", "10.96.0.20", "10.96.0.30"]);
}

#[test]
fn a_reservation_taken_meanwhile_fails_the_replay() {
    let mut fresher = allocators();
    allocate(&mut fresher, &[ip("10.96.0.30")]);
    let delta = RangeDelta {
        reserved: vec![ip("10.96.0.30")],
        ..RangeDelta::default()
    };
    assert!(!replay(&mut fresher, &delta));
}

#[test]
fn pooled_values_need_no_write_and_others_are_in_the_delta() {
    let pooled = [ip("10.96.0.40"), ip("10.96.0.41")];
    let mut allocators = with_pool(&pooled);
    let planned = plan(
        &mut allocators,
        &[
            AdmitRequest::test_create("a"),
            AdmitRequest::test_create("b"),
            AdmitRequest::test_create("c"),
        ],
        256,
    );
    assert_eq!(given(&planned.outcomes[0]), [pooled[0]]);
    assert_eq!(given(&planned.outcomes[1]), [pooled[1]]);
    let third = given(&planned.outcomes[2]).to_vec();
    assert_eq!(planned.from_pool, pooled);
    let kind = RangeKind::of(pooled[0]);
    assert_eq!(planned.deltas[&kind].reserved, third);
    assert_eq!(planned.pending, BTreeSet::from([kind]));
}

/// The leak this guards against: a batch planned again after a conflict had taken values
/// from the pool in its abandoned attempt. Those values are allocated in the stored state
/// and were in no delta; unless they go back to the pool, nothing frees them before repair.
#[test]
fn an_abandoned_batch_puts_its_pooled_values_back() {
    let pooled = [ip("10.96.0.40"), ip("10.96.0.41")];
    let mut allocators = with_pool(&pooled);
    let stored = allocators.clone();
    let admits = [
        AdmitRequest::test_create("a"),
        AdmitRequest::test_create("b"),
        AdmitRequest::test_create("c"),
    ];
    let first = plan(&mut allocators, &admits, 256);
    assert!(allocators.pooled().is_empty());
    let unanswered = first.unanswered(Vec::new());
    first.abandon(&mut allocators);
    assert_eq!(allocators.pooled(), pooled);
    // The third value's range was not written: nothing of it is in the stored state.
    assert!(unanswered.is_empty());

    // Planned again (after a reload of the stored state), the same pool serves it.
    let mut reloaded = stored;
    for value in allocators.pooled() {
        reloaded.add_to_pool(value);
    }
    let again = plan(&mut reloaded, &admits, 256);
    assert_eq!(again.from_pool, pooled);
    assert!(again.outcomes.iter().all(Result::is_ok));
}

#[test]
fn an_abandoned_batch_puts_back_only_what_is_still_allocated() {
    let pooled = ip("10.96.0.40");
    let mut allocators = with_pool(&[pooled]);
    let planned = plan(&mut allocators, &[AdmitRequest::test_create("a")], 256);
    assert_eq!(planned.from_pool, [pooled]);
    // A fresher copy read after the conflict no longer has it (freed by repair).
    allocators.release(pooled);
    planned.abandon(&mut allocators);
    assert!(allocators.pooled().is_empty());
    assert!(!allocators.has(pooled));
}

#[test]
fn a_namespace_over_its_unconfirmed_limit_is_refused_and_its_values_freed() {
    let pooled = ip("10.96.0.40");
    let mut allocators = with_pool(&[pooled]);
    let planned = plan(
        &mut allocators,
        &[
            AdmitRequest::test_create("a"),
            AdmitRequest::test_create("b"),
        ],
        1,
    );
    assert_eq!(given(&planned.outcomes[0]), [pooled]);
    assert!(matches!(
        planned.outcomes[1],
        Err(StoreError::TooManyUnconfirmed { limit: 1, .. })
    ));
    assert_eq!(planned.from_pool, [pooled]);
    assert!(planned.deltas.is_empty());
    assert_eq!(allocators.cluster_ips()[0].used(), 1);
}

#[test]
fn a_reinvocation_is_answered_alike_without_allocating() {
    let mut allocators = allocators();
    let first = plan(&mut allocators, &[AdmitRequest::test_create("a")], 256);
    let (filled, _) = first.outcomes[0].as_ref().unwrap();
    let mut recent = Recent::default();
    recent.remember("a", filled);
    let again = plan_batch(
        &mut allocators,
        &recent,
        &unconfirmed(256),
        &[AdmitRequest::test_create("a")],
        &[],
        &[],
        Vec::new(),
    );
    let (refilled, values) = again.outcomes[0].as_ref().unwrap();
    assert_eq!(refilled, filled);
    assert!(values.is_empty() && again.deltas.is_empty());
}

#[test]
fn releases_and_marks_are_in_the_delta_only_when_they_change_something() {
    let mut allocators = allocators();
    allocate(&mut allocators, &[ip("10.96.0.5")]);
    let planned = plan_batch(
        &mut allocators,
        &Recent::default(),
        &unconfirmed(256),
        &[],
        &[ip("10.96.0.5"), ip("10.96.0.6")],
        &[ip("10.96.0.7")],
        vec![ip("10.96.0.5")],
    );
    let delta = &planned.deltas[&RangeKind::of(ip("10.96.0.5"))];
    assert_eq!(delta.released, [ip("10.96.0.5")]);
    assert_eq!(delta.marked, [ip("10.96.0.7")]);
    assert!(delta.reserved.is_empty());
}

#[test]
fn recent_admissions_are_found_by_uid_and_the_oldest_forgotten_beyond_the_bound() {
    let mut recent = Recent::default();
    let spec = |ip: &str| ServiceSpec {
        cluster_ips: vec![ip.to_string()],
        ..ServiceSpec::default()
    };
    recent.remember("uid-0", &spec("10.96.0.1"));
    // A reinvocation remembers the same uid again: one entry, the latest answer.
    recent.remember("uid-0", &spec("10.96.0.2"));
    assert_eq!(recent.get("uid-0"), Some(&spec("10.96.0.2")));
    for i in 1..=RECENT_ADMISSIONS {
        recent.remember(&format!("uid-{i}"), &spec("10.96.0.3"));
    }
    assert_eq!(recent.get("uid-0"), None, "the oldest is forgotten");
    assert_eq!(recent.get("uid-1"), Some(&spec("10.96.0.3")));
    assert_eq!(
        recent.get(&format!("uid-{RECENT_ADMISSIONS}")),
        Some(&spec("10.96.0.3"))
    );
}
