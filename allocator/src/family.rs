//! The dual-stack view: which IP families a Service gets, in which order.
//!
//! [`resolve_ip_families`] follows kube-apiserver's `initIPFamilyFields` (and the part of Service
//! validation it relies on): it defaults `ipFamilyPolicy`, infers `ipFamilies` from
//! `clusterIPs`, checks that the families exist on the cluster and adds the second family for
//! dual-stack policies.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::service::{CLUSTER_IP_NONE, ServiceSpec, ServiceType};

/// An IP family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// `IPv4`.
    V4,
    /// `IPv6`.
    V6,
}

impl IpFamily {
    /// The family of `ip`.
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// The family of `net`.
    pub fn of_net(net: &IpNet) -> Self {
        match net {
            IpNet::V4(_) => IpFamily::V4,
            IpNet::V6(_) => IpFamily::V6,
        }
    }

    /// The other family.
    pub fn other(self) -> Self {
        match self {
            IpFamily::V4 => IpFamily::V6,
            IpFamily::V6 => IpFamily::V4,
        }
    }

    /// The names the API accepts, sorted as kube-apiserver lists them.
    pub const NAMES: &'static [&'static str] = &["IPv4", "IPv6"];

    /// The name used in the API: `IPv4` or `IPv6`.
    pub fn as_str(&self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IpFamily {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "IPv4" => Ok(IpFamily::V4),
            "IPv6" => Ok(IpFamily::V6),
            other => Err(Error::UnsupportedIpFamily(other.to_string())),
        }
    }
}

/// `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpFamilyPolicy {
    /// One family (the default).
    SingleStack,
    /// Two families when the cluster has two, else one.
    PreferDualStack,
    /// Two families; an error on a single-stack cluster.
    RequireDualStack,
}

impl IpFamilyPolicy {
    /// The names the API accepts, sorted as kube-apiserver lists them.
    pub const NAMES: &'static [&'static str] =
        &["PreferDualStack", "RequireDualStack", "SingleStack"];

    /// The name used in the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            IpFamilyPolicy::SingleStack => "SingleStack",
            IpFamilyPolicy::PreferDualStack => "PreferDualStack",
            IpFamilyPolicy::RequireDualStack => "RequireDualStack",
        }
    }
}

impl fmt::Display for IpFamilyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IpFamilyPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "SingleStack" => Ok(IpFamilyPolicy::SingleStack),
            "PreferDualStack" => Ok(IpFamilyPolicy::PreferDualStack),
            "RequireDualStack" => Ok(IpFamilyPolicy::RequireDualStack),
            other => Err(Error::UnsupportedIpFamilyPolicy(other.to_string())),
        }
    }
}

const POLICY: &str = "spec.ipFamilyPolicy";

fn cluster_ip_field(index: usize) -> String {
    format!("spec.clusterIPs[{index}]")
}

fn ip_family_field(index: usize) -> String {
    format!("spec.ipFamilies[{index}]")
}

/// Fills in `ipFamilyPolicy` and `ipFamilies` of `service` for a cluster whose service CIDRs
/// are of `cluster` families (primary first), as kube-apiserver does on create (`old` is
/// `None`) and update.
///
/// - ExternalName Services are left alone.
/// - An update of a PreferDualStack Service that changes neither the policy, the type,
///   `clusterIPs` nor `ipFamilies` is left alone, so that a cluster turning dual-stack (or
///   back) does not upgrade (or downgrade) it behind the user's back.
/// - A missing policy is taken from the old Service, else RequireDualStack for a headless
///   Service without selector, else SingleStack.
/// - `ipFamilies` are inferred from `clusterIPs`; a family without a range on the cluster is
///   refused (`IPv6 is not configured on this cluster`), except for headless Services
///   without selector, which may name both families on a single-stack cluster.
/// - RequireDualStack on a single-stack cluster is refused (`this cluster is not configured
///   for dual-stack services`); PreferDualStack gets what exists.
/// - On update, dropping the secondary IP or family needs SingleStack; switching to
///   SingleStack without touching `clusterIPs`/`ipFamilies` drops the secondary ones.
///
/// Errors name the field, e.g. `spec.clusterIPs[1]: IPv6 is not configured on this cluster`.
pub fn resolve_ip_families(
    cluster: &[IpFamily],
    service: &mut ServiceSpec,
    old: Option<&ServiceSpec>,
) -> Result<()> {
    if service.service_type == ServiceType::ExternalName {
        return Ok(());
    }
    if is_unchanged_prefer_dual_stack(service, old) {
        return Ok(());
    }
    let default_family = cluster.first().copied().unwrap_or(IpFamily::V4);
    let headless_without_selector = service.is_headless() && !service.has_selector;

    let policy = match (
        service.ip_family_policy,
        old.and_then(|o| o.ip_family_policy),
    ) {
        (Some(policy), _) | (None, Some(policy)) => policy,
        (None, None) if headless_without_selector => IpFamilyPolicy::RequireDualStack,
        (None, None) => IpFamilyPolicy::SingleStack,
    };
    service.ip_family_policy = Some(policy);

    let ips = validate_cluster_ips(service)?;

    if let Some(old) = old {
        if policy == IpFamilyPolicy::SingleStack {
            // Clear intent: keep the primary, drop the secondary.
            if old.cluster_ips == service.cluster_ips {
                service.cluster_ips.truncate(1);
            }
            if old.ip_families == service.ip_families {
                service.ip_families.truncate(1);
            }
        } else {
            if !service.cluster_ips.is_empty() && service.cluster_ips.len() < old.cluster_ips.len()
            {
                return Err(Error::at(POLICY, Error::ReleaseSecondaryIpNeedsSingleStack));
            }
            if !service.ip_families.is_empty() && service.ip_families.len() < old.ip_families.len()
            {
                return Err(Error::at(
                    POLICY,
                    Error::ReleaseSecondaryFamilyNeedsSingleStack,
                ));
            }
        }
    }

    if policy == IpFamilyPolicy::SingleStack {
        if service.cluster_ips.len() == 2 {
            return Err(Error::at(POLICY, Error::SingleStackWithTwoIps));
        }
        if service.ip_families.len() == 2 {
            return Err(Error::at(POLICY, Error::SingleStackWithTwoFamilies));
        }
    }

    for (index, ip) in ips.iter().enumerate().take(service.cluster_ips.len()) {
        if index < service.ip_families.len() {
            continue;
        }
        let family = IpFamily::of(ip);
        if !cluster.contains(&family) {
            return Err(Error::at(
                cluster_ip_field(index),
                Error::FamilyNotConfigured(family),
            ));
        }
        service.ip_families.push(family);
    }

    if headless_without_selector {
        if service.ip_families.is_empty() {
            service.ip_families.push(default_family);
        }
        if service.ip_families.len() < 2 && policy != IpFamilyPolicy::SingleStack {
            let other = service.ip_families[0].other();
            service.ip_families.push(other);
        }
        return Ok(());
    }

    if policy == IpFamilyPolicy::RequireDualStack && cluster.len() < 2 {
        return Err(Error::at(POLICY, Error::NotDualStack));
    }
    for (index, family) in service.ip_families.iter().enumerate() {
        if !cluster.contains(family) {
            return Err(Error::at(
                ip_family_field(index),
                Error::FamilyNotConfigured(*family),
            ));
        }
    }
    if service.ip_families.is_empty() {
        service.ip_families.push(default_family);
    }
    if policy != IpFamilyPolicy::SingleStack && service.ip_families.len() == 1 && cluster.len() == 2
    {
        let other = service.ip_families[0].other();
        service.ip_families.push(other);
    }
    Ok(())
}

/// An update of a PreferDualStack Service that keeps type, policy, `clusterIPs` and
/// `ipFamilies`.
fn is_unchanged_prefer_dual_stack(service: &ServiceSpec, old: Option<&ServiceSpec>) -> bool {
    let Some(old) = old else {
        return false;
    };
    let prefer = Some(IpFamilyPolicy::PreferDualStack);
    service.ip_family_policy == prefer
        && matches!(
            old.ip_family_policy,
            None | Some(IpFamilyPolicy::PreferDualStack)
        )
        && old.service_type == service.service_type
        && old.cluster_ips == service.cluster_ips
        && old.ip_families == service.ip_families
}

/// Checks the shape of `clusterIPs` and `ipFamilies`, and returns the parsed IPs (empty for a
/// headless Service).
fn validate_cluster_ips(service: &ServiceSpec) -> Result<Vec<IpAddr>> {
    let cluster_ips = &service.cluster_ips;
    if cluster_ips.len() > 2 {
        return Err(Error::at("spec.clusterIPs", Error::TooManyValues));
    }
    if service.ip_families.len() > 2 {
        return Err(Error::at("spec.ipFamilies", Error::TooManyValues));
    }
    if let Some((index, family)) = service
        .ip_families
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, family)| **family == service.ip_families[0])
    {
        return Err(Error::at(
            ip_family_field(index),
            Error::DuplicateFamily(*family),
        ));
    }
    if service.is_headless() {
        if cluster_ips.len() > 1 {
            return Err(Error::at("spec.clusterIPs", Error::NoneNotAlone));
        }
        return Ok(Vec::new());
    }
    let ips = cluster_ips
        .iter()
        .enumerate()
        .map(|(index, ip)| {
            if ip == CLUSTER_IP_NONE {
                return Err(Error::at("spec.clusterIPs", Error::NoneNotAlone));
            }
            ip.parse::<IpAddr>()
                .map_err(|_| Error::at(cluster_ip_field(index), Error::InvalidIp(ip.clone())))
        })
        .collect::<Result<Vec<_>>>()?;
    if let [first, second] = ips[..]
        && IpFamily::of(&first) == IpFamily::of(&second)
    {
        return Err(Error::at("spec.clusterIPs", Error::OneIpPerFamily));
    }
    for (index, (ip, expected)) in ips.iter().zip(&service.ip_families).enumerate() {
        if IpFamily::of(ip) != *expected {
            return Err(Error::at(
                cluster_ip_field(index),
                Error::FamilyMismatch {
                    index,
                    expected: *expected,
                },
            ));
        }
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use IpFamily::{V4, V6};
    use IpFamilyPolicy::{PreferDualStack, RequireDualStack, SingleStack};

    fn service(ips: &[&str], families: &[IpFamily], policy: Option<IpFamilyPolicy>) -> ServiceSpec {
        ServiceSpec {
            cluster_ips: ips.iter().map(|s| s.to_string()).collect(),
            ip_families: families.to_vec(),
            ip_family_policy: policy,
            has_selector: true,
            ..ServiceSpec::default()
        }
    }

    fn resolve(
        cluster: &[IpFamily],
        svc: ServiceSpec,
    ) -> Result<(Vec<IpFamily>, Option<IpFamilyPolicy>)> {
        let mut svc = svc;
        resolve_ip_families(cluster, &mut svc, None)?;
        Ok((svc.ip_families, svc.ip_family_policy))
    }

    fn message(result: Result<impl fmt::Debug>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn create_table() {
        let v4 = &[V4][..];
        let v6 = &[V6][..];
        let v4v6 = &[V4, V6][..];
        let v6v4 = &[V6, V4][..];
        type Case<'a> = (
            &'a str,
            &'a [IpFamily],
            ServiceSpec,
            Vec<IpFamily>,
            IpFamilyPolicy,
        );
        let cases: Vec<Case> = vec![
            (
                "default on v4",
                v4,
                service(&[], &[], None),
                vec![V4],
                SingleStack,
            ),
            (
                "default on v6",
                v6,
                service(&[], &[], None),
                vec![V6],
                SingleStack,
            ),
            (
                "default on dual",
                v4v6,
                service(&[], &[], None),
                vec![V4],
                SingleStack,
            ),
            (
                "default on dual v6 first",
                v6v4,
                service(&[], &[], None),
                vec![V6],
                SingleStack,
            ),
            (
                "prefer on single",
                v4,
                service(&[], &[], Some(PreferDualStack)),
                vec![V4],
                PreferDualStack,
            ),
            (
                "prefer on dual",
                v4v6,
                service(&[], &[], Some(PreferDualStack)),
                vec![V4, V6],
                PreferDualStack,
            ),
            (
                "require on dual",
                v6v4,
                service(&[], &[], Some(RequireDualStack)),
                vec![V6, V4],
                RequireDualStack,
            ),
            (
                "family inferred from IP",
                v4v6,
                service(&["fd00::5"], &[], None),
                vec![V6],
                SingleStack,
            ),
            (
                "two IPs",
                v4v6,
                service(&["fd00::5", "10.0.0.5"], &[], Some(RequireDualStack)),
                vec![V6, V4],
                RequireDualStack,
            ),
            (
                "requested secondary family first",
                v4v6,
                service(&[], &[V6], Some(PreferDualStack)),
                vec![V6, V4],
                PreferDualStack,
            ),
            (
                "headless without selector on single stack",
                v4,
                ServiceSpec {
                    has_selector: false,
                    ..service(&["None"], &[], None)
                },
                vec![V4, V6],
                RequireDualStack,
            ),
            (
                "headless with selector",
                v4,
                service(&["None"], &[], None),
                vec![V4],
                SingleStack,
            ),
        ];
        for (name, cluster, svc, families, policy) in cases {
            assert_eq!(
                resolve(cluster, svc),
                Ok((families, Some(policy))),
                "{name}"
            );
        }
    }

    #[test]
    fn create_errors_name_the_field() {
        let cases: Vec<(&[IpFamily], ServiceSpec, &str)> = vec![
            (
                &[V4],
                service(&[], &[], Some(RequireDualStack)),
                "spec.ipFamilyPolicy: this cluster is not configured for dual-stack services",
            ),
            (
                &[V4],
                service(&["fd00::1"], &[], None),
                "spec.clusterIPs[0]: IPv6 is not configured on this cluster",
            ),
            (
                &[V4],
                service(&[], &[V6], None),
                "spec.ipFamilies[0]: IPv6 is not configured on this cluster",
            ),
            (
                &[V4, V6],
                service(&["10.0.0.1"], &[V6], None),
                "spec.clusterIPs[0]: expected an IPv6 value as indicated by `ipFamilies[0]`",
            ),
            (
                &[V4, V6],
                service(&["10.0.0.1", "fd00::1"], &[], None),
                "spec.ipFamilyPolicy: must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ),
            (
                &[V4, V6],
                service(&[], &[V4, V6], Some(SingleStack)),
                "spec.ipFamilyPolicy: must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ),
            (
                &[V4, V6],
                service(&["10.0.0.1", "10.0.0.2"], &[], Some(RequireDualStack)),
                "spec.clusterIPs: may specify no more than one IP for each IP family",
            ),
            (
                &[V4, V6],
                service(&[], &[V4, V4], Some(RequireDualStack)),
                "spec.ipFamilies[1]: duplicate value: \"IPv4\"",
            ),
            (
                &[V4],
                service(&["10.0.0.300"], &[], None),
                "spec.clusterIPs[0]: \"10.0.0.300\" must be a valid IP address or 'None'",
            ),
            (
                &[V4, V6],
                service(&["None", "fd00::1"], &[], None),
                "spec.clusterIPs: 'None' must be the first and only value",
            ),
            (
                &[V4, V6],
                service(&["10.0.0.1", "fd00::1", "10.0.0.2"], &[], None),
                "spec.clusterIPs: may only hold up to 2 values",
            ),
        ];
        for (cluster, svc, want) in cases {
            assert_eq!(message(resolve(cluster, svc)), want);
        }
    }

    #[test]
    fn update_keeps_the_old_policy_and_families() {
        let old = service(&["10.0.0.5", "fd00::5"], &[V4, V6], Some(RequireDualStack));
        let mut new = service(&["10.0.0.5", "fd00::5"], &[], None);
        resolve_ip_families(&[V4, V6], &mut new, Some(&old)).unwrap();
        assert_eq!(new.ip_family_policy, Some(RequireDualStack));
        assert_eq!(new.ip_families, vec![V4, V6]);
    }

    #[test]
    fn downgrade_needs_single_stack() {
        let old = service(&["10.0.0.5", "fd00::5"], &[V4, V6], Some(RequireDualStack));
        let mut new = service(&["10.0.0.5"], &[V4], Some(RequireDualStack));
        assert_eq!(
            message(resolve_ip_families(&[V4, V6], &mut new, Some(&old))),
            "spec.ipFamilyPolicy: must be 'SingleStack' to release the secondary cluster IP"
        );

        let mut new = old.clone();
        new.ip_family_policy = Some(SingleStack);
        resolve_ip_families(&[V4, V6], &mut new, Some(&old)).unwrap();
        assert_eq!(new.cluster_ips, vec!["10.0.0.5"]);
        assert_eq!(new.ip_families, vec![V4]);
    }

    #[test]
    fn unchanged_prefer_dual_stack_is_left_alone_when_the_cluster_changes() {
        let old = service(&["10.0.0.5"], &[V4], Some(PreferDualStack));
        let mut new = old.clone();
        resolve_ip_families(&[V4, V6], &mut new, Some(&old)).unwrap();
        assert_eq!(new, old);
    }

    #[test]
    fn external_name_is_left_alone() {
        let mut svc = ServiceSpec {
            service_type: ServiceType::ExternalName,
            ..ServiceSpec::default()
        };
        resolve_ip_families(&[V4], &mut svc, None).unwrap();
        assert_eq!(svc.ip_family_policy, None);
        assert!(svc.ip_families.is_empty());
    }

    #[test]
    fn parse_and_display() {
        assert_eq!("IPv6".parse::<IpFamily>(), Ok(V6));
        assert_eq!(V4.to_string(), "IPv4");
        assert!("ipv4".parse::<IpFamily>().is_err());
        assert_eq!(
            "PreferDualStack".parse::<IpFamilyPolicy>(),
            Ok(PreferDualStack)
        );
        assert!("Dual".parse::<IpFamilyPolicy>().is_err());
    }
}
