//! `svcplane status`: each range's usage read from the cluster, with the values no Service
//! holds (leaks repair will free) and the values several Services hold (conflicts). A
//! family's ClusterIP ranges are shown one by one, each with the ServiceCIDRs that list it.

use std::collections::{BTreeMap, HashSet};

use allocator::{Snapshot, Value};
use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;
use webhook::runtime::service_cidrs::ranges_of;
use webhook::services::spec::to_spec;
use webhook::state::RangeAllocation;
use webhook::state::held::held_values;

use crate::cli::{OutputFormat, StatusArgs};

/// The state of one range.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RangeStatus {
    /// The RangeAllocation object.
    pub name: String,
    /// The range.
    pub range: String,
    pub size: u64,
    pub used: u64,
    pub free: u64,
    /// used / size, in percent.
    pub utilization: f64,
    /// Values below this offset form the static band (picked by users, filled last).
    pub static_band: u64,
    pub static_used: u64,
    pub dynamic_used: u64,
    /// Allocated values no Service holds that webhook replicas keep in their pools, to
    /// hand out without a write each.
    pub pooled: u64,
    /// Allocated values no Service holds and no pool lists: repair frees them after three
    /// sweeps.
    pub leaked: u64,
    /// Values more than one Service holds.
    pub conflicts: u64,
    /// The ServiceCIDR objects listing the range, each marked when new addresses may not
    /// come from it (being deleted, not ready); empty where the API is not served.
    pub service_cidrs: Vec<String>,
}

/// Computes the status of every range from its object, the cluster's Services and its
/// ServiceCIDRs.
pub fn compute(
    objects: &[RangeAllocation],
    services: &[Service],
    cidrs: &[ServiceCIDR],
) -> Result<Vec<RangeStatus>> {
    let mut holders: BTreeMap<Value, u32> = BTreeMap::new();
    for service in services {
        if let Ok(spec) = to_spec(service) {
            for value in held_values(&spec) {
                *holders.entry(value).or_default() += 1;
            }
        }
    }
    let held: HashSet<Value> = holders.keys().copied().collect();
    let mut statuses = Vec::new();
    for object in objects {
        let name = object.metadata.name.clone().unwrap_or_default();
        let kind = object
            .kind()
            .with_context(|| format!("{name} is not a range svcplane stores"))?;
        let stored = object.spec.snapshot();
        // Each range on its own: the primary one, then the further ones.
        let primary = Snapshot {
            extra: Vec::new(),
            ..stored.clone()
        };
        for snapshot in std::iter::once(primary).chain(stored.extra) {
            let (usage, values) = kind
                .read(&snapshot)
                .with_context(|| format!("reading {name} ({})", snapshot.range))?;
            let in_range: HashSet<Value> = values.into_iter().collect();
            let pooled: HashSet<Value> = object
                .spec
                .reservations
                .values()
                .flat_map(|entry| entry.values(kind))
                .filter(|v| in_range.contains(v) && !held.contains(v))
                .collect();
            let (size, used) = (usage.size, usage.used);
            statuses.push(RangeStatus {
                name: name.clone(),
                range: snapshot.range.clone(),
                size,
                used,
                free: size - used,
                utilization: if size == 0 {
                    0.0
                } else {
                    used as f64 * 100.0 / size as f64
                },
                static_band: usage.static_band,
                static_used: usage.static_used,
                dynamic_used: used - usage.static_used,
                pooled: pooled.len() as u64,
                leaked: in_range
                    .iter()
                    .filter(|v| !held.contains(v) && !pooled.contains(v))
                    .count() as u64,
                conflicts: holders
                    .iter()
                    .filter(|(v, n)| **n > 1 && in_range.contains(v))
                    .count() as u64,
                service_cidrs: listing(cidrs, &snapshot.range),
            });
        }
    }
    Ok(statuses)
}

/// The ServiceCIDRs listing `range`, each marked when it gives no new addresses.
fn listing(cidrs: &[ServiceCIDR], range: &str) -> Vec<String> {
    cidrs
        .iter()
        .filter(|object| {
            let listed = object.spec.as_ref().and_then(|spec| spec.cidrs.as_ref());
            listed.into_iter().flatten().any(|cidr| cidr == range)
        })
        .map(|object| {
            let name = object.metadata.name.clone().unwrap_or_default();
            let ranges = ranges_of([object]);
            let ready = ranges
                .by_family
                .values()
                .flatten()
                .any(|(_, usable)| *usable);
            if object.metadata.deletion_timestamp.is_some() {
                format!("{name} (deleting)")
            } else if !ready {
                format!("{name} (not ready)")
            } else {
                name
            }
        })
        .collect()
}

/// A table with one usage bar per range.
pub fn render(statuses: &[RangeStatus]) -> String {
    const WIDTH: usize = 30;
    let mut out = String::new();
    for s in statuses {
        let filled = ((s.utilization / 100.0) * WIDTH as f64).ceil() as usize;
        let filled = if s.used > 0 {
            filled.clamp(1, WIDTH)
        } else {
            0
        };
        out.push_str(&format!(
            "{name:<18} {range:<22} [{bar}{rest}] {pct:>6.2}%  used {used} / {size}, free {free}\n",
            name = s.name,
            range = s.range,
            bar = "#".repeat(filled),
            rest = ".".repeat(WIDTH - filled),
            pct = s.utilization,
            used = s.used,
            size = s.size,
            free = s.free,
        ));
        out.push_str(&format!(
            "{:<18} static band (offsets < {}): {} used; dynamic band: {} used; pooled by webhook replicas: {}; leaked (pending repair): {}; conflicts: {}\n",
            "", s.static_band, s.static_used, s.dynamic_used, s.pooled, s.leaked, s.conflicts
        ));
        if !s.service_cidrs.is_empty() {
            out.push_str(&format!(
                "{:<18} ServiceCIDRs: {}\n",
                "",
                s.service_cidrs.join(", ")
            ));
        }
    }
    out
}

/// Reads the ranges and Services and prints their status.
pub async fn print(args: &StatusArgs) -> Result<()> {
    let client = crate::run::client(&args.cluster).await?;
    let objects = Api::<RangeAllocation>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing RangeAllocations (is svcplane's webhook installed?)")?
        .items;
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    // Before Kubernetes 1.33 there are none to show.
    let cidrs = Api::<ServiceCIDR>::all(client)
        .list(&ListParams::default())
        .await
        .map(|list| list.items)
        .unwrap_or_default();
    let statuses = compute(&objects, &services, &cidrs)?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&statuses)?),
        OutputFormat::Text if statuses.is_empty() => {
            println!("no ranges: svcplane's webhook has not started on this cluster")
        }
        OutputFormat::Text => print!("{}", render(&statuses)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocator::{ClusterIpAllocator, NodePortAllocator, PortRange, Usage};
    use kube::api::ObjectMeta;
    use serde_json::json;
    use webhook::state::RangeAllocationSpec;
    use webhook::state::crd::Reservation;

    fn object(name: &str, snapshot: Snapshot, used: u64, size: u64) -> RangeAllocation {
        RangeAllocation {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: RangeAllocationSpec::new(
                snapshot,
                Usage {
                    used,
                    size,
                    dynamic_free: size - used,
                    static_band: 0,
                    static_used: 0,
                },
                BTreeMap::new(),
            ),
        }
    }

    fn service(name: &str, ip: &str, node_port: Option<i32>) -> Service {
        let mut port = json!({ "port": 80 });
        if let Some(p) = node_port {
            port["nodePort"] = json!(p);
        }
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "default" },
            "spec": { "type": if node_port.is_some() { "NodePort" } else { "ClusterIP" },
                      "clusterIP": ip, "clusterIPs": [ip], "ports": [port] },
        }))
        .unwrap()
    }

    #[test]
    fn usage_bands_leaks_and_conflicts_are_counted() {
        let mut ips = ClusterIpAllocator::new("10.96.0.0/28".parse().unwrap());
        for ip in ["10.96.0.1", "10.96.0.2", "10.96.0.3"] {
            ips.allocate(ip.parse().unwrap()).unwrap();
        }
        let mut ports = NodePortAllocator::new(PortRange::default());
        ports.allocate(30000).unwrap();
        ports.allocate(32000).unwrap();
        ports.allocate(32001).unwrap();
        let mut node_ports = object("node-ports", ports.snapshot(), 3, 2768);
        node_ports.spec.reservations.insert(
            "replica-a".into(),
            Reservation::new([Value::NodePort(32001)], std::time::SystemTime::now()),
        );
        let objects = [
            object("cluster-ips-ipv4", ips.snapshot(), 3, 14),
            node_ports,
        ];
        let services = [
            service("kubernetes", "10.96.0.1", None),
            service("a", "10.96.0.2", Some(30000)),
            service("b", "10.96.0.2", None),
        ];
        let statuses = compute(&objects, &services, &[]).unwrap();
        assert_eq!(
            (statuses[0].used, statuses[0].free, statuses[0].size),
            (3, 11, 14)
        );
        assert_eq!(statuses[0].static_band, 0, "a /28 has no static band");
        assert_eq!(
            (statuses[0].leaked, statuses[0].conflicts),
            (1, 1),
            "10.96.0.3 leaked, 10.96.0.2 shared"
        );
        assert_eq!(statuses[1].static_band, 86);
        assert_eq!((statuses[1].static_used, statuses[1].dynamic_used), (1, 2));
        assert_eq!(statuses[1].leaked, 1, "32000 is held by no Service");
        assert_eq!(statuses[1].pooled, 1, "32001 is in a replica's pool");
        let text = render(&statuses);
        assert!(text.contains("cluster-ips-ipv4   10.96.0.0/28"), "{text}");
        assert!(
            text.contains("[#######.......................]  21.43%  used 3 / 14, free 11"),
            "{text}"
        );
    }

    #[test]
    fn each_range_of_a_family_is_shown_with_its_service_cidrs() {
        let mut ips = ClusterIpAllocator::new("10.96.0.0/28".parse().unwrap());
        ips.set_ranges(&[
            ("10.96.0.0/28".parse().unwrap(), true),
            ("10.100.0.0/28".parse().unwrap(), false),
        ]);
        ips.mark("10.100.0.5".parse().unwrap()).unwrap();
        ips.allocate("10.96.0.1".parse().unwrap()).unwrap();
        let objects = [object("cluster-ips-ipv4", ips.snapshot(), 2, 28)];
        let services = [
            service("kubernetes", "10.96.0.1", None),
            service("a", "10.100.0.5", None),
        ];
        let cidrs: Vec<ServiceCIDR> = [
            json!({ "metadata": { "name": "kubernetes" }, "spec": { "cidrs": ["10.96.0.0/28"] } }),
            json!({ "metadata": { "name": "grown", "deletionTimestamp": "2026-01-01T00:00:00Z" },
                    "spec": { "cidrs": ["10.100.0.0/28"] } }),
        ]
        .into_iter()
        .map(|object| serde_json::from_value(object).unwrap())
        .collect();
        let statuses = compute(&objects, &services, &cidrs).unwrap();
        let shown: Vec<(&str, u64, u64, u64, &[String])> = statuses
            .iter()
            .map(|s| {
                (
                    s.range.as_str(),
                    s.used,
                    s.size,
                    s.leaked,
                    &s.service_cidrs[..],
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("10.96.0.0/28", 1, 14, 0, &["kubernetes".to_string()][..]),
                (
                    "10.100.0.0/28",
                    1,
                    14,
                    0,
                    &["grown (deleting)".to_string()][..]
                ),
            ]
        );
        let text = render(&statuses);
        assert!(text.contains("ServiceCIDRs: grown (deleting)"), "{text}");
    }
}
