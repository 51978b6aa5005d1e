//! ServiceCIDRs as kube-apiserver v1.37.2 serves them, with two webhook replicas: one added
//! when the range is full lets creates go on within seconds, without a restart, and
//! user-written endpoints may not point into it; one being deleted gives out nothing new and
//! keeps what Services hold.

use std::net::IpAddr;
use std::time::Duration;

use allocator::{ClusterIpAllocator, IpRange};
use anyhow::{Context, Result};
use e2e::{ControlPlaneConfig, wait};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use webhook::state::{RangeAllocation, RangeKind};

use crate::setup::Setup;

const PRIMARY: &str = "10.96.0.0/28";
const GROWN: &str = "10.100.0.0/28";
/// Keeps the added ServiceCIDR terminating once deleted, as kube-controller-manager's
/// finalizer does while addresses lie in it only (no kube-controller-manager runs here).
const HOLD: &str = "svcplane.io/test-hold";

/// A control plane whose only range is the /28 [`PRIMARY`].
fn plane() -> ControlPlaneConfig {
    ControlPlaneConfig {
        service_cluster_ip_range: PRIMARY.to_string(),
        ..ControlPlaneConfig::default()
    }
}

fn say(what: impl std::fmt::Display) {
    eprintln!("[service-cidrs] {what}");
}

fn service(name: &str, cluster_ip: Option<IpAddr>) -> Service {
    let mut spec = json!({ "ports": [{ "port": 80 }] });
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip.to_string());
    }
    serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec }))
        .expect("a valid Service")
}

/// Creates `name`; its ClusterIP, or the apiserver's refusal.
async fn create(api: &Api<Service>, name: &str, ip: Option<IpAddr>) -> Result<IpAddr, String> {
    match api.create(&PostParams::default(), &service(name, ip)).await {
        Ok(created) => Ok(created
            .spec
            .and_then(|spec| spec.cluster_ip)
            .and_then(|ip| ip.parse().ok())
            .expect("a created Service has a ClusterIP")),
        Err(error) => Err(error.to_string()),
    }
}

/// The IPv4 state svcplane stored.
async fn stored(client: &Client) -> Result<ClusterIpAllocator> {
    let api: Api<RangeAllocation> = Api::all(client.clone());
    let kind = RangeKind::ClusterIps(allocator::IpFamily::V4);
    let object = api.get(kind.name()).await?;
    Ok(ClusterIpAllocator::from_snapshot(&object.spec.snapshot())?)
}

pub async fn a_service_cidr_grows_a_full_range_and_its_deletion_stops_it(
    _: std::sync::Arc<()>,
) -> Result<()> {
    let setup = Setup::start_on(plane(), Duration::from_secs(180), |_| {}).await?;
    let namespace = setup.namespace("cidrs").await?;
    let services: Api<Service> = Api::namespaced(setup.client.clone(), &namespace);
    let primary: IpRange = PRIMARY.parse()?;
    let grown: IpRange = GROWN.parse()?;

    // 1. Fill the /28: 14 addresses, the `kubernetes` Service holds one. A replica whose
    // pool is empty refuses while the other's pool still holds some; both give all in the end.
    let mut given = Vec::new();
    let mut attempt = 0;
    while given.len() < 13 {
        attempt += 1;
        anyhow::ensure!(attempt <= 60, "only {} of 13 addresses given", given.len());
        match create(&services, &format!("fill-{attempt}"), None).await {
            Ok(ip) => given.push(ip),
            Err(error) if error.contains("range is full") => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(error) => anyhow::bail!("create {attempt} refused: {error}"),
        }
    }
    anyhow::ensure!(given.iter().all(|&ip| primary.contains(ip)), "{given:?}");
    for replica in 0..2 {
        setup.only_through(replica).await;
        let refused = create(&services, &format!("full-{replica}"), None).await;
        anyhow::ensure!(
            matches!(&refused, Err(e) if e.contains("range is full")),
            "replica {replica}: a full range should refuse, got {refused:?}"
        );
    }
    say(format!(
        "{PRIMARY} full after {attempt} creates: both replicas refuse as full"
    ));

    // 2. The operator adds a ServiceCIDR: creates go on from it, through both replicas.
    let cidrs: Api<ServiceCIDR> = Api::all(setup.client.clone());
    let object: ServiceCIDR = serde_json::from_value(json!({
        "metadata": { "name": "grown", "finalizers": [HOLD] },
        "spec": { "cidrs": [GROWN] },
    }))?;
    cidrs.create(&PostParams::default(), &object).await?;
    let added = tokio::time::Instant::now();
    let mut attempt = 0;
    let first = wait::until("a create given an address of the new ServiceCIDR", || {
        attempt += 1;
        let name = format!("grown-{attempt}");
        let services = services.clone();
        async move {
            Ok(match create(&services, &name, None).await {
                Ok(ip) => Ok(ip),
                Err(error) => Err(error),
            })
        }
    })
    .await?;
    say(format!(
        "first address of {GROWN} given {:?} after the ServiceCIDR was created: {first}",
        added.elapsed()
    ));
    // Each replica in turn (the apiserver keeps its connection to one).
    let mut in_grown = vec![first];
    for replica in 0..2 {
        setup.only_through(replica).await;
        let before = setup.answered().await?;
        for index in 0..2 {
            let name = format!("more-{replica}-{index}");
            let ip = create(&services, &name, None)
                .await
                .map_err(|e| anyhow::anyhow!("{name} after the ServiceCIDR: {e}"))?;
            in_grown.push(ip);
        }
        let after = setup.answered().await?;
        anyhow::ensure!(
            after[replica] >= before[replica] + 2.0,
            "replica {replica} should have answered: {before:?} -> {after:?}"
        );
    }
    anyhow::ensure!(
        in_grown.iter().all(|&ip| grown.contains(ip)),
        "addresses outside {GROWN}: {in_grown:?}"
    );
    // kube-apiserver took them as its own: an IPAddress object each.
    let addresses: Api<IPAddress> = Api::all(setup.client.clone());
    for ip in &in_grown {
        addresses
            .get(&ip.to_string())
            .await
            .with_context(|| format!("no IPAddress for {ip}"))?;
    }
    let state = stored(&setup.client).await?;
    let shown: Vec<String> = state
        .ranges()
        .iter()
        .map(|r| format!("{} {}/{}", r.range, r.used, r.size))
        .collect();
    say(format!(
        "{} given from {GROWN}; stored: {}",
        in_grown.len(),
        shown.join(", ")
    ));
    anyhow::ensure!(
        in_grown.iter().all(|&ip| state.has(ip)),
        "the stored state lacks addresses of {GROWN}"
    );

    // A user's Endpoints may not point at a ClusterIP of the new range, through either
    // replica (the endpoint check follows the ServiceCIDRs as allocation does).
    let endpoints: Api<Endpoints> = Api::namespaced(setup.client.clone(), &namespace);
    for replica in 0..2 {
        setup.only_through(replica).await;
        let object: Endpoints = serde_json::from_value(json!({
            "metadata": { "name": format!("at-a-vip-{replica}") },
            "subsets": [{ "addresses": [{ "ip": first.to_string() }], "ports": [{ "port": 80 }] }],
        }))?;
        let refused = endpoints.create(&PostParams::default(), &object).await;
        anyhow::ensure!(
            matches!(&refused, Err(e) if e.to_string().contains(&format!("may not be in the service IP range {GROWN}"))),
            "replica {replica}: an Endpoints object pointing at {first} should be refused, got {refused:?}"
        );
    }
    say(format!(
        "Endpoints pointing at {first} refused by both replicas: it lies in {GROWN}"
    ));

    // 3. The ServiceCIDR is deleted while Services hold addresses of it: nothing new comes
    // from it, a requested address of it is refused as kube-apiserver refuses it, and what
    // the Services hold stays allocated.
    cidrs.delete("grown", &DeleteParams::default()).await?;
    let free = (0..grown.size())
        .map(|offset| grown.ip_at(offset))
        .find(|ip| !in_grown.contains(ip))
        .expect("a free address in the new range");
    for replica in 0..2 {
        setup.only_through(replica).await;
        let mut attempt = 0;
        wait::until(
            format!("replica {replica} refusing addresses of the deleted ServiceCIDR"),
            || {
                attempt += 1;
                let services = services.clone();
                async move {
                    let name = format!("asked-{replica}-{attempt}");
                    let asked = create(&services, &name, Some(free)).await;
                    let name = format!("dynamic-{replica}-{attempt}");
                    let dynamic = create(&services, &name, None).await;
                    let asked_ok = matches!(&asked, Err(e) if e.contains(
                        "the provided network does not match the current range"));
                    let dynamic_ok = matches!(&dynamic, Err(e) if e.contains("range is full"));
                    Ok(if asked_ok && dynamic_ok {
                        Ok(())
                    } else {
                        Err(format!("asked {free}: {asked:?}; dynamic: {dynamic:?}"))
                    })
                }
            },
        )
        .await?;
    }
    let state = stored(&setup.client).await?;
    anyhow::ensure!(
        in_grown.iter().all(|&ip| state.has(ip)),
        "addresses Services hold in the deleted ServiceCIDR were freed"
    );
    say("deleted ServiceCIDR: nothing new from it, its Services' addresses kept");

    // 4. A Service of it deleted: its address is released as any other.
    services
        .delete("more-0-0", &DeleteParams::default())
        .await?;
    wait::until("the deleted Service's address freed", || async {
        let state = stored(&setup.client).await?;
        Ok(if state.has(in_grown[1]) {
            Err(format!("{} still allocated", in_grown[1]))
        } else {
            Ok(())
        })
    })
    .await?;

    // 5. The finalizer goes: the ServiceCIDR is gone and so is the range.
    cidrs
        .patch(
            "grown",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await?;
    wait::until("the range dropped from the stored state", || async {
        let state = stored(&setup.client).await?;
        Ok(if state.ranges().len() == 1 {
            Ok(())
        } else {
            Err(format!("{} ranges stored", state.ranges().len()))
        })
    })
    .await?;
    say("ServiceCIDR gone: range dropped");
    Ok(())
}

/// An IPAddress object kube-apiserver holds for no Service svcplane sees (written by hand
/// here; a Service being created, elsewhere) keeps its address: repair marks it, and the
/// range fills without it, and an event regarding the IPAddress says so. Pools are off so
/// that none holds the address beforehand.
pub async fn an_ip_address_object_keeps_its_address_from_being_given(
    _: std::sync::Arc<()>,
) -> Result<()> {
    let setup = Setup::start_on(plane(), Duration::from_secs(2), |config| {
        config.pool.size = 0;
    })
    .await?;
    let taken: IpAddr = "10.96.0.9".parse()?;
    ip_address(&setup.client, taken, "elsewhere", "reserved").await?;
    wait::until("repair marking the IPAddress's address", || async {
        let state = stored(&setup.client).await?;
        Ok(if state.has(taken) {
            Ok(())
        } else {
            Err(format!("{taken} not stored as allocated"))
        })
    })
    .await?;
    // The event regards the IPAddress (cluster-scoped: its events live in `default`).
    repair_event(&setup.client, "default", |event| {
        let regarding = event.regarding.as_ref();
        regarding.and_then(|r| r.kind.as_deref()) == Some("IPAddress")
            && regarding.and_then(|r| r.name.as_deref()) == Some(&taken.to_string())
    })
    .await?;
    let namespace = setup.namespace("reserved").await?;
    let services: Api<Service> = Api::namespaced(setup.client.clone(), &namespace);
    // 14 addresses: `kubernetes` holds one, the IPAddress another.
    let mut given = Vec::new();
    for index in 0..12 {
        let ip = create(&services, &format!("fill-{index}"), None)
            .await
            .map_err(|e| anyhow::anyhow!("create {index}: {e}"))?;
        given.push(ip);
    }
    anyhow::ensure!(!given.contains(&taken), "{taken} was given: {given:?}");
    let refused = create(&services, "one-more", None).await;
    anyhow::ensure!(
        matches!(&refused, Err(e) if e.contains("range is full")),
        "the range should be full: {refused:?}"
    );
    say(format!(
        "{taken} held by an IPAddress only: marked by repair, never given; 12 others given"
    ));
    Ok(())
}

/// The same for an IPv6 address on a dual-stack plane: an IPAddress's name there (its
/// colons) cannot begin an event's name, so the event regards the parent Service, in its
/// namespace, with the IPAddress as the related object.
pub async fn an_ipv6_ip_address_objects_event_regards_its_parent_service(
    _: std::sync::Arc<()>,
) -> Result<()> {
    let setup = Setup::start_on(
        ControlPlaneConfig::default(),
        Duration::from_secs(2),
        |config| {
            config.pool.size = 0;
        },
    )
    .await?;
    let namespace = setup.namespace("reserved6").await?;
    let taken: IpAddr = "fd00:10:96::99".parse()?;
    ip_address(&setup.client, taken, &namespace, "held").await?;
    repair_event(&setup.client, &namespace, |event| {
        let regarding = event.regarding.as_ref();
        let related = event.related.as_ref();
        regarding.and_then(|r| r.kind.as_deref()) == Some("Service")
            && regarding.and_then(|r| r.name.as_deref()) == Some("held")
            && related.and_then(|r| r.kind.as_deref()) == Some("IPAddress")
            && related.and_then(|r| r.name.as_deref()) == Some(&taken.to_string())
    })
    .await?;
    say(format!(
        "{taken} held by an IPAddress only: its event regards the parent Service {namespace}/held"
    ));
    Ok(())
}

/// Waits for the repair event in `namespace` that `about` picks, and checks its reason.
async fn repair_event(
    client: &Client,
    namespace: &str,
    about: impl Fn(&Event) -> bool,
) -> Result<()> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    wait::until(format!("the repair event in {namespace}"), || async {
        let listed = events.list(&Default::default()).await?;
        Ok(match listed.items.iter().find(|event| about(event)) {
            Some(event) if event.reason.as_deref() == Some("ClusterIPNotAllocated") => Ok(()),
            Some(event) => Err(format!("reason {:?}", event.reason)),
            None => Err(format!("none of the {} events", listed.items.len())),
        })
    })
    .await
}

/// Writes kube-apiserver's IPAddress object for `ip`, its parent the Service
/// `namespace/name` (which need not exist).
async fn ip_address(client: &Client, ip: IpAddr, namespace: &str, name: &str) -> Result<()> {
    let object: IPAddress = serde_json::from_value(json!({
        "metadata": { "name": ip.to_string() },
        "spec": { "parentRef": { "group": "", "resource": "services",
                                 "namespace": namespace, "name": name } },
    }))?;
    let addresses: Api<IPAddress> = Api::all(client.clone());
    addresses.create(&PostParams::default(), &object).await?;
    Ok(())
}
