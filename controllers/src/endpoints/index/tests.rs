use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;

use super::*;
use crate::endpoints::desired_endpoints;
use crate::fixtures::{PodState, Round, pod, pod_state, round, service, service_port};
use crate::well_known::ANNOTATION_OVER_CAPACITY;

const PARAMS: EndpointsParams<'static> = EndpointsParams {
    trigger_time: None,
    managed_by: Some("endpoints.svcplane.io"),
};

fn web_pod(i: usize, ready: bool) -> Arc<PodInfo> {
    let ip = format!("10.1.{}.{}", i / 250, i % 250 + 1);
    Arc::new(
        pod(&format!("pod{i:04}"), &ip)
            .label("app", "web")
            .ready(ready)
            .build(),
    )
}

fn indexed(svc: &Service, pods: &[Arc<PodInfo>]) -> EndpointsIndex {
    let mut index = EndpointsIndex::new(svc).unwrap();
    index.apply_pods(pods.iter().map(|p| (p.name.as_str(), Some(p))));
    index
}

/// A stand-in apiserver for one Endpoints object: applies a write, with a new resourceVersion.
fn apply(cached: &mut Option<Endpoints>, write: Option<EndpointsWrite>, version: &mut u64) {
    let (EndpointsWrite::Create(mut object) | EndpointsWrite::Update(mut object)) = match write {
        Some(write) => write,
        None => return,
    };
    *version += 1;
    object.metadata.resource_version = Some(version.to_string());
    *cached = Some(object);
}

fn sync(index: &mut EndpointsIndex, cached: &mut Option<Endpoints>, version: &mut u64) -> bool {
    let planned = index.plan(cached.as_ref(), &PARAMS);
    let wrote = planned.write.is_some();
    apply(cached, planned.write.clone(), version);
    let resource_version = cached
        .as_ref()
        .and_then(|c| c.metadata.resource_version.clone());
    index.synced(&planned, resource_version.as_deref());
    wrote
}

#[test]
fn a_change_beyond_the_kept_addresses_writes_nothing_and_writes_nothing_out() {
    let svc = service("web").build();
    let mut pods: Vec<Arc<PodInfo>> = (0..1500).map(|i| web_pod(i, true)).collect();
    let mut index = indexed(&svc, &pods);
    let (mut cached, mut version) = (None, 1);
    assert!(sync(&mut index, &mut cached, &mut version));
    let object = cached.clone().unwrap();
    let annotations = object.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[ANNOTATION_OVER_CAPACITY], "truncated");

    // pod1400 sorts after the 1,000 ready addresses kept.
    pods[1400] = web_pod(1400, false);
    index.apply_pods([(pods[1400].name.as_str(), Some(&pods[1400]))]);
    let planned = index.plan(cached.as_ref(), &PARAMS);
    assert_eq!(planned.write, None);
    assert!(planned.unchanged);
    let from_scratch = desired_endpoints(&svc, &pods, &PARAMS).unwrap();
    assert_eq!(plan_endpoints_write(cached.as_ref(), &from_scratch), None);
}

#[test]
fn a_kept_pod_that_changes_is_compared_in_full() {
    let svc = service("web").build();
    let mut pods: Vec<Arc<PodInfo>> = (0..10).map(|i| web_pod(i, true)).collect();
    let mut index = indexed(&svc, &pods);
    let (mut cached, mut version) = (None, 1);
    sync(&mut index, &mut cached, &mut version);

    // Same address, another node: only the full comparison sees it.
    let moved = pod("pod0003", "10.1.0.4")
        .label("app", "web")
        .node("node-2");
    pods[3] = Arc::new(moved.build());
    index.apply_pods([(pods[3].name.as_str(), Some(&pods[3]))]);
    let planned = index.plan(cached.as_ref(), &PARAMS);
    assert!(!planned.unchanged);
    assert!(matches!(planned.write, Some(EndpointsWrite::Update(_))));
}

#[test]
fn an_object_changed_by_someone_else_is_compared_in_full() {
    let svc = service("web").build();
    let pods: Vec<Arc<PodInfo>> = (0..10).map(|i| web_pod(i, true)).collect();
    let mut index = indexed(&svc, &pods);
    let (mut cached, mut version) = (None, 1);
    sync(&mut index, &mut cached, &mut version);
    let edited = cached.as_mut().unwrap();
    edited.subsets = None;
    edited.metadata.resource_version = Some("edited".into());
    let planned = index.plan(cached.as_ref(), &PARAMS);
    assert!(matches!(planned.write, Some(EndpointsWrite::Update(_))));
}

#[test]
fn failed_syncs_keep_the_changed_pods() {
    let svc = service("web").build();
    let mut pods: Vec<Arc<PodInfo>> = (0..3).map(|i| web_pod(i, true)).collect();
    let mut index = indexed(&svc, &pods);
    let (mut cached, mut version) = (None, 1);
    sync(&mut index, &mut cached, &mut version);
    assert_eq!(index.changed_pods().0.len(), 0);
    pods[1] = web_pod(1, false);
    index.apply_pods([(pods[1].name.as_str(), Some(&pods[1]))]);
    index.failed();
    assert_eq!(index.changed_pods(), (vec![("pod0001", None)], false));
    assert!(!index.plan(cached.as_ref(), &PARAMS).unchanged);
}

fn build(i: usize, state: &PodState) -> Arc<PodInfo> {
    Arc::new(state.build(i, "web"))
}

fn variant(which: u8) -> Service {
    let named = service_port("http", 80, IntOrString::String("http".into()));
    let numbered = service_port("metrics", 9100, IntOrString::Int(9100));
    let builder = service("web");
    match which {
        0 => builder.ports(vec![named]),
        1 => builder.ports(vec![named, numbered]),
        2 => builder.ports(vec![named, numbered]).publish_not_ready(),
        _ => builder.headless().no_ports(),
    }
    .build()
}

#[derive(Debug, Clone)]
enum Event {
    Set(usize, PodState),
    Delete(usize),
}

fn rounds(pods: usize) -> impl Strategy<Value = Vec<(Vec<Event>, Round)>> {
    let event = prop_oneof![
        4 => (0..pods, pod_state()).prop_map(|(i, s)| Event::Set(i, s)),
        1 => (0..pods).prop_map(Event::Delete),
    ];
    prop::collection::vec((prop::collection::vec(event, 0..6), round()), 1..10)
}

/// Runs the rounds over `base` (pods that never change) and checks every round: the index fed
/// the changes holds what one built from the pods as they are now holds, and plans the write
/// that the object written out from scratch calls for.
fn check(
    svc: &Service,
    base: &[Arc<PodInfo>],
    rounds: Vec<(Vec<Event>, Round)>,
) -> Result<(), TestCaseError> {
    let mut pods: BTreeMap<usize, PodState> = BTreeMap::new();
    let mut index = indexed(svc, base);
    let (mut cached, mut version): (Option<Endpoints>, u64) = (None, 1);
    for (events, round) in rounds {
        for event in events {
            let (i, state) = match event {
                Event::Set(i, state) => (i, Some(state)),
                Event::Delete(i) => (i, None),
            };
            let built = state.as_ref().map(|s| build(i, s));
            match state {
                Some(state) => pods.insert(i, state),
                None => pods.remove(&i),
            };
            index.apply_pods([(format!("pod{i:02}").as_str(), built.as_ref())]);
        }
        let now: Vec<Arc<PodInfo>> = base
            .iter()
            .cloned()
            .chain(pods.iter().map(|(i, s)| build(*i, s)))
            .collect();
        let from_scratch = desired_endpoints(svc, &now, &PARAMS).unwrap();
        prop_assert_eq!(&index.desired(&PARAMS), &from_scratch);

        if let (Round::Edited, Some(object)) = (round, cached.as_mut()) {
            object.subsets = None;
            object.metadata.resource_version = Some(format!("{version}-edited"));
        }
        let planned = index.plan(cached.as_ref(), &PARAMS);
        prop_assert_eq!(
            &planned.write,
            &plan_endpoints_write(cached.as_ref(), &from_scratch)
        );
        match round {
            Round::Fail => index.failed(),
            Round::Sync | Round::Edited => {
                apply(&mut cached, planned.write.clone(), &mut version);
                let resource_version = cached
                    .as_ref()
                    .and_then(|c| c.metadata.resource_version.clone());
                index.synced(&planned, resource_version.as_deref());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn incremental_plans_equal_plans_from_scratch(rounds in rounds(16), which in 0u8..4) {
        check(&variant(which), &[], rounds)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Around the capacity: 996 ready pods that never change, and a few that do.
    #[test]
    fn incremental_plans_equal_plans_from_scratch_at_capacity(rounds in rounds(10), which in 0u8..3) {
        let base: Vec<Arc<PodInfo>> = (10..1006)
            .map(|i| {
                let ip = format!("10.9.{}.{}", i / 250, i % 250 + 1);
                let mut builder = pod(&format!("base{i:04}"), &ip).label("app", "web");
                if i % 2 == 0 {
                    builder = builder.container_port("http", 8080, "TCP");
                }
                Arc::new(builder.build())
            })
            .collect();
        check(&variant(which), &base, rounds)?;
    }
}

/// An IPv4 address, often one whose text starts another's (`10.0.1.1`, `10.0.1.10`: what the
/// zero padding of a key's start orders), or an IPv6 one whose text shares its first 25 bytes
/// with every other (more than a key holds).
fn address_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["10.0.1.1", "10.0.1.10", "10.0.1.11", "10.0.1.2"])
            .prop_map(String::from),
        (0u16..3, 0u16..3, 0u16..0x1100)
            .prop_map(|(a, b, c)| format!("fd00:1111:2222:3333:4444:{a:x}:{b:x}:{c:x}")),
    ]
}

proptest! {
    /// Address keys order and compare as (IP text, UID), also where the texts agree beyond
    /// the start a key holds or one text starts the other.
    #[test]
    fn address_keys_order_as_text_then_uid(
        a in (address_text(), 0u8..2),
        b in (address_text(), 0u8..2),
    ) {
        let key = |(ip, uid): &(String, u8)| {
            let mut pod = pod("p", ip).build();
            pod.uid = Some(format!("uid-{uid}"));
            addresses::AddressKey::new(Arc::new(pod), 0)
        };
        let (x, y) = (key(&a), key(&b));
        prop_assert_eq!(x.cmp(&y), x.parts().cmp(&y.parts()));
        prop_assert_eq!(x == y, x.parts() == y.parts());
    }
}
