//! The allocations and releases that a Service create, update or delete implies, as a
//! transaction.
//!
//! New values are reserved at once, so that no other Service can get them while the write of
//! this one is in flight; values the Service gives up are only released by
//! [`Transaction::commit`], after the write that drops them succeeded, and
//! [`Transaction::revert`] gives back what was reserved. A transaction that is dropped without
//! either keeps its reservations: a leak, which repair frees later, is always safer than
//! handing one value to two Services.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::family::{IpFamily, resolve_ip_families};
use crate::ip::ClusterIpAllocator;
use crate::port::NodePortAllocator;
use crate::service::{ServiceSpec, ServiceType};

const HEALTH_CHECK_NODE_PORT: &str = "spec.healthCheckNodePort";

fn cluster_ip_field(index: usize) -> String {
    format!("spec.clusterIPs[{index}]")
}

fn node_port_field(index: usize) -> String {
    format!("spec.ports[{index}].nodePort")
}

/// A value a Service holds: a cluster IP or a node port (`healthCheckNodePort` included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// A cluster IP.
    ClusterIp(IpAddr),
    /// A node port.
    NodePort(u16),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::ClusterIp(ip) => write!(f, "clusterIP {ip}"),
            Value::NodePort(port) => write!(f, "nodePort {port}"),
        }
    }
}

/// The allocators of a cluster: one ClusterIP range per family (primary first) and the
/// NodePort range.
#[derive(Clone, Debug)]
pub struct Allocators {
    cluster_ips: Vec<ClusterIpAllocator>,
    node_ports: NodePortAllocator,
}

impl Allocators {
    /// The allocators of a cluster with one ClusterIP range, or two of different families
    /// (the first is the primary), and a NodePort range.
    pub fn new(
        cluster_ips: Vec<ClusterIpAllocator>,
        node_ports: NodePortAllocator,
    ) -> Result<Self> {
        match &cluster_ips[..] {
            [_] => {}
            [first, second] if first.family() != second.family() => {}
            _ => return Err(Error::InvalidCidrSet),
        }
        Ok(Allocators {
            cluster_ips,
            node_ports,
        })
    }

    /// The families of the cluster, primary first.
    pub fn families(&self) -> Vec<IpFamily> {
        self.cluster_ips.iter().map(|a| a.family()).collect()
    }

    /// The ClusterIP allocators, primary first.
    pub fn cluster_ips(&self) -> &[ClusterIpAllocator] {
        &self.cluster_ips
    }

    /// The ClusterIP allocator of `family`, if the cluster has that family.
    pub fn cluster_ips_of(&self, family: IpFamily) -> Option<&ClusterIpAllocator> {
        self.cluster_ips.iter().find(|a| a.family() == family)
    }

    /// The ClusterIP allocator of `family`, mutably (to restore a snapshot, for instance).
    pub fn cluster_ips_of_mut(&mut self, family: IpFamily) -> Option<&mut ClusterIpAllocator> {
        self.cluster_ips.iter_mut().find(|a| a.family() == family)
    }

    /// The NodePort allocator.
    pub fn node_ports(&self) -> &NodePortAllocator {
        &self.node_ports
    }

    /// The NodePort allocator, mutably.
    pub fn node_ports_mut(&mut self) -> &mut NodePortAllocator {
        &mut self.node_ports
    }

    /// Whether `value` is allocated.
    pub fn has(&self, value: Value) -> bool {
        match value {
            Value::ClusterIp(ip) => self
                .cluster_ips_of(IpFamily::of(&ip))
                .is_some_and(|a| a.has(ip)),
            Value::NodePort(port) => self.node_ports.has(port),
        }
    }

    /// Reserves `value` in its range.
    pub fn allocate(&mut self, value: Value) -> Result<()> {
        self.reserve(value, ClusterIpAllocator::allocate)
    }

    /// Reserves `value` as a Service holds it: like [`allocate`](Self::allocate), also in a
    /// ClusterIP range no longer usable.
    pub fn mark(&mut self, value: Value) -> Result<()> {
        self.reserve(value, ClusterIpAllocator::mark)
    }

    /// Reserves `value`, a cluster IP by `ip`.
    fn reserve(
        &mut self,
        value: Value,
        ip: fn(&mut ClusterIpAllocator, IpAddr) -> Result<()>,
    ) -> Result<()> {
        match value {
            Value::ClusterIp(address) => {
                let family = IpFamily::of(&address);
                let ips = self
                    .cluster_ips_of_mut(family)
                    .ok_or(Error::FamilyNotConfigured(family))?;
                ip(ips, address)
            }
            Value::NodePort(port) => self.node_ports.allocate(port),
        }
    }

    /// Frees `value`. Returns whether it was allocated; values of a family the cluster does
    /// not have, or outside the ranges, are ignored.
    pub fn release(&mut self, value: Value) -> bool {
        match value {
            Value::ClusterIp(ip) => self
                .cluster_ips_of_mut(IpFamily::of(&ip))
                .is_some_and(|a| a.release(ip)),
            Value::NodePort(port) => self.node_ports.release(port),
        }
    }

    /// Adds an allocated `value` to its range's pool, which `allocate_next` hands out first
    /// (see [`OffsetAllocator::add_to_pool`](crate::OffsetAllocator::add_to_pool)). Returns
    /// whether it was added.
    pub fn add_to_pool(&mut self, value: Value) -> bool {
        match value {
            Value::ClusterIp(ip) => self
                .cluster_ips_of_mut(IpFamily::of(&ip))
                .is_some_and(|a| a.add_to_pool(ip)),
            Value::NodePort(port) => self.node_ports.add_to_pool(port),
        }
    }

    /// The pooled values of every range.
    pub fn pooled(&self) -> Vec<Value> {
        self.cluster_ips
            .iter()
            .flat_map(|a| a.pooled().map(Value::ClusterIp))
            .chain(self.node_ports.pooled().map(Value::NodePort))
            .collect()
    }

    /// Empties every pool; the values stay allocated.
    pub fn drain_pools(&mut self) {
        self.cluster_ips
            .iter_mut()
            .for_each(ClusterIpAllocator::drain_pool);
        self.node_ports.drain_pool();
    }

    /// Plans and reserves the allocations of a new Service.
    ///
    /// With `dry_run`, the values are chosen (and checked free) as for a real request, then
    /// given back at once: the transaction reports them and persists nothing.
    pub fn create(&mut self, service: &ServiceSpec, dry_run: bool) -> Result<Transaction> {
        self.plan(None, service, dry_run)
    }

    /// Plans and reserves the allocations of an update from `old` to `service`.
    ///
    /// Values `old` holds are kept unless the new spec gives them up (type change,
    /// dual-stack downgrade, changed node port); values the new spec leaves unset are taken
    /// from `old` (cluster IPs, node ports matched by port name, `healthCheckNodePort`), so
    /// an assigned value never changes unless the user changes it or the type change
    /// releases it.
    pub fn update(
        &mut self,
        old: &ServiceSpec,
        service: &ServiceSpec,
        dry_run: bool,
    ) -> Result<Transaction> {
        self.plan(Some(old), service, dry_run)
    }

    /// The releases that deleting `old` implies, applied by [`Transaction::commit`].
    pub fn delete(&self, old: &ServiceSpec) -> Transaction {
        Transaction {
            service: old.clone(),
            reserved: Vec::new(),
            released: held(old),
            dry_run: false,
        }
    }

    fn plan(
        &mut self,
        old: Option<&ServiceSpec>,
        service: &ServiceSpec,
        dry_run: bool,
    ) -> Result<Transaction> {
        let mut service = service.clone();
        let mut reserved = Vec::new();
        let filled = self.fill(old, &mut service, &mut reserved);
        if filled.is_err() || dry_run {
            for value in &reserved {
                self.release(*value);
            }
        }
        filled?;
        let kept = held(&service);
        let released = old
            .map(held)
            .unwrap_or_default()
            .into_iter()
            .filter(|value| !kept.contains(value))
            .collect();
        Ok(Transaction {
            service,
            reserved,
            released,
            dry_run,
        })
    }

    /// Fills in `service` and reserves what it newly holds, recording it in `reserved`.
    fn fill(
        &mut self,
        old: Option<&ServiceSpec>,
        service: &mut ServiceSpec,
        reserved: &mut Vec<Value>,
    ) -> Result<()> {
        if let Some(old) = old {
            drop_type_dependent_fields(old, service);
            patch_allocated_values(old, service);
        }
        if service.is_headless() && service.has_node_ports() {
            return Err(Error::at(
                cluster_ip_field(0),
                Error::HeadlessNotAllowed(service.service_type),
            ));
        }
        resolve_ip_families(&self.families(), service, old)?;
        if let Some(old) = old {
            check_cluster_ips_unchanged(old, service)?;
            if old.needs_health_check_node_port()
                && service.needs_health_check_node_port()
                && old.health_check_node_port != service.health_check_node_port
            {
                return Err(Error::at(HEALTH_CHECK_NODE_PORT, Error::FieldImmutable));
            }
        }
        let old_ips = old.map(ServiceSpec::held_cluster_ips).unwrap_or_default();
        let old_ports = old.map(ServiceSpec::held_ports).unwrap_or_default();
        self.fill_cluster_ips(&old_ips, service, reserved)?;
        self.fill_node_ports(&old_ports, service, reserved)?;
        self.fill_health_check_node_port(&old_ports, service, reserved)
    }

    fn fill_cluster_ips(
        &mut self,
        old_ips: &[IpAddr],
        service: &mut ServiceSpec,
        reserved: &mut Vec<Value>,
    ) -> Result<()> {
        if !service.needs_cluster_ip() || service.is_headless() {
            return Ok(());
        }
        for (index, family) in service.ip_families.clone().into_iter().enumerate() {
            let field = cluster_ip_field(index);
            let ip = match service.cluster_ips.get(index) {
                Some(requested) => {
                    let ip: IpAddr = requested
                        .parse()
                        .map_err(|_| Error::at(&field, Error::InvalidIp(requested.clone())))?;
                    if old_ips.contains(&ip) {
                        continue;
                    }
                    self.allocate(Value::ClusterIp(ip))
                        .map_err(|err| Error::at(&field, err))?;
                    ip
                }
                None => {
                    let ip = self
                        .cluster_ips_of_mut(family)
                        .ok_or(Error::FamilyNotConfigured(family))
                        .and_then(ClusterIpAllocator::allocate_next)
                        .map_err(|err| Error::at(&field, err))?;
                    service.cluster_ips.push(ip.to_string());
                    ip
                }
            };
            reserved.push(Value::ClusterIp(ip));
        }
        Ok(())
    }

    fn fill_node_ports(
        &mut self,
        old_ports: &[u16],
        service: &mut ServiceSpec,
        reserved: &mut Vec<Value>,
    ) -> Result<()> {
        if !service.has_node_ports() {
            return Ok(());
        }
        let allocate_missing = service.allocates_node_ports();
        let old_ports: HashSet<u16> = old_ports.iter().copied().collect();
        // Entries with the same port number (TCP and UDP) share one node port: the first
        // one given, or the first one allocated. Maps and sets keep the fill linear in the
        // number of ports, whatever a request carries.
        let mut shared: HashMap<i32, u16> = HashMap::new();
        for port in &service.ports {
            if let Some(node_port) = port.node_port {
                shared.entry(port.port).or_insert(node_port);
            }
        }
        let mut claimed: HashSet<u16> = HashSet::new();
        let mut per_protocol = HashSet::new();
        for index in 0..service.ports.len() {
            let field = node_port_field(index);
            let port = &service.ports[index];
            let node_port = match port.node_port {
                Some(node_port) => node_port,
                None if !allocate_missing => continue,
                None => match shared.get(&port.port) {
                    Some(&shared) => shared,
                    None => {
                        let node_port = self
                            .node_ports
                            .allocate_next()
                            .map_err(|err| Error::at(&field, err))?;
                        reserved.push(Value::NodePort(node_port));
                        claimed.insert(node_port);
                        shared.insert(port.port, node_port);
                        node_port
                    }
                },
            };
            let port = &mut service.ports[index];
            port.node_port = Some(node_port);
            if !per_protocol.insert((port.protocol.clone(), node_port)) {
                return Err(Error::at(&field, Error::DuplicateNodePort(node_port)));
            }
            if !claimed.insert(node_port) {
                continue;
            }
            if !old_ports.contains(&node_port) {
                self.node_ports
                    .allocate(node_port)
                    .map_err(|err| Error::at(&field, err))?;
                reserved.push(Value::NodePort(node_port));
            }
        }
        Ok(())
    }

    fn fill_health_check_node_port(
        &mut self,
        old_ports: &[u16],
        service: &mut ServiceSpec,
        reserved: &mut Vec<Value>,
    ) -> Result<()> {
        if !service.needs_health_check_node_port() {
            return Ok(());
        }
        let at = |err| Error::at(HEALTH_CHECK_NODE_PORT, err);
        let node_port = match service.health_check_node_port {
            Some(requested) => {
                let taken_by_ports = service
                    .ports
                    .iter()
                    .any(|port| port.node_port == Some(requested));
                if taken_by_ports {
                    return Err(at(Error::PortAllocated));
                }
                if old_ports.contains(&requested) {
                    return Ok(());
                }
                self.node_ports.allocate(requested).map_err(at)?;
                requested
            }
            None => {
                let node_port = self.node_ports.allocate_next().map_err(at)?;
                service.health_check_node_port = Some(node_port);
                node_port
            }
        };
        reserved.push(Value::NodePort(node_port));
        Ok(())
    }
}

/// The values a Service holds.
fn held(service: &ServiceSpec) -> Vec<Value> {
    service
        .held_cluster_ips()
        .into_iter()
        .map(Value::ClusterIp)
        .chain(service.held_ports().into_iter().map(Value::NodePort))
        .collect()
}

/// Clears the fields a type change makes meaningless, when the user left them as they were
/// (kube-apiserver's `dropTypeDependentFields`): their values are then released.
fn drop_type_dependent_fields(old: &ServiceSpec, service: &mut ServiceSpec) {
    if old.needs_cluster_ip() && !service.needs_cluster_ip() {
        if old.cluster_ips == service.cluster_ips {
            service.cluster_ips.clear();
        }
        if old.ip_families == service.ip_families {
            service.ip_families.clear();
        }
        if old.ip_family_policy == service.ip_family_policy {
            service.ip_family_policy = None;
        }
    }
    let node_ports =
        |s: &ServiceSpec| -> HashSet<u16> { s.ports.iter().filter_map(|p| p.node_port).collect() };
    if old.has_node_ports() && !service.has_node_ports() && node_ports(old) == node_ports(service) {
        for port in &mut service.ports {
            port.node_port = None;
        }
    }
    if old.needs_health_check_node_port()
        && !service.needs_health_check_node_port()
        && old.health_check_node_port == service.health_check_node_port
    {
        service.health_check_node_port = None;
    }
    if old.service_type == ServiceType::LoadBalancer
        && service.service_type != ServiceType::LoadBalancer
        && old.allocate_load_balancer_node_ports == service.allocate_load_balancer_node_ports
    {
        service.allocate_load_balancer_node_ports = None;
    }
}

/// Fills in values an update left unset with those of `old` (kube-apiserver's
/// `patchAllocatedValues`).
fn patch_allocated_values(old: &ServiceSpec, service: &mut ServiceSpec) {
    if old.needs_cluster_ip() && service.needs_cluster_ip() && service.cluster_ips.is_empty() {
        service.cluster_ips = old.cluster_ips.clone();
    }
    if old.allocates_node_ports() && service.allocates_node_ports() {
        let new_ports: HashSet<u16> = service.ports.iter().filter_map(|p| p.node_port).collect();
        let by_name: HashMap<&str, u16> = old
            .ports
            .iter()
            .filter_map(|p| Some((p.name.as_str(), p.node_port?)))
            .collect();
        for port in &mut service.ports {
            if port.node_port.is_none()
                && let Some(&node_port) = by_name.get(port.name.as_str())
                && !new_ports.contains(&node_port)
            {
                port.node_port = Some(node_port);
            }
        }
    }
    if old.needs_health_check_node_port()
        && service.needs_health_check_node_port()
        && service.health_check_node_port.is_none()
    {
        service.health_check_node_port = old.health_check_node_port;
    }
}

/// Assigned cluster IPs never change: only the secondary one may be added or dropped.
fn check_cluster_ips_unchanged(old: &ServiceSpec, service: &ServiceSpec) -> Result<()> {
    if !old.needs_cluster_ip() || !service.needs_cluster_ip() {
        return Ok(());
    }
    if old.is_headless() && service.is_headless() {
        return Ok(());
    }
    let (before, after) = (&old.cluster_ips, &service.cluster_ips);
    if before.len() > after.len() && after.is_empty() {
        return Err(Error::at(cluster_ip_field(0), Error::PrimaryIpUnset));
    }
    let compared = if before.len() == after.len() {
        before.len()
    } else {
        before.len().min(after.len()).min(1)
    };
    match (0..compared).find(|&index| before[index] != after[index]) {
        Some(index) => Err(Error::at(cluster_ip_field(index), Error::Immutable)),
        None => Ok(()),
    }
}

/// The outcome of planning a Service change: the filled-in Service, what was reserved and
/// what is to be released.
///
/// Call [`commit`](Self::commit) once the Service write succeeded, [`revert`](Self::revert)
/// if it failed. Both are no-ops for a dry run, whose reservations were already given back.
#[must_use = "commit or revert the transaction"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    service: ServiceSpec,
    reserved: Vec<Value>,
    released: Vec<Value>,
    dry_run: bool,
}

impl Transaction {
    /// The Service with every value filled in: `clusterIPs`, `ipFamilies`,
    /// `ipFamilyPolicy`, the ports' `nodePort`s and `healthCheckNodePort`, plus the fields a
    /// type change cleared.
    pub fn service(&self) -> &ServiceSpec {
        &self.service
    }

    /// The values reserved for the Service (for a dry run: that would be reserved).
    pub fn reserved(&self) -> &[Value] {
        &self.reserved
    }

    /// The values the Service gives up, released on [`commit`](Self::commit).
    pub fn released(&self) -> &[Value] {
        &self.released
    }

    /// Whether this is a dry run, which changed nothing.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// The Service write succeeded: release what it gave up.
    pub fn commit(self, allocators: &mut Allocators) {
        if self.dry_run {
            return;
        }
        for value in self.released {
            allocators.release(value);
        }
    }

    /// The Service write failed: give back what was reserved.
    pub fn revert(self, allocators: &mut Allocators) {
        if self.dry_run {
            return;
        }
        for value in self.reserved {
            allocators.release(value);
        }
    }
}

#[cfg(test)]
mod tests;
