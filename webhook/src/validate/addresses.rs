//! Which IP addresses user-written endpoints may not point at.

use std::net::IpAddr;

use ipnet::IpNet;

/// Why `ip` may not be an endpoint address, worded as kube-apiserver words it, or `None`.
/// Unspecified, loopback, link-local and multicast addresses reach the node itself or no
/// one: proxies would send Service traffic there.
pub fn special_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Some("may not be unspecified (0.0.0.0)"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("may not be unspecified (::)"),
        ip if ip.is_loopback() => Some("may not be in the loopback range (127.0.0.0/8, ::1/128)"),
        IpAddr::V4(v4) if v4.is_link_local() => {
            Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        }
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        }
        ip if ip.is_multicast() => Some("may not be a multicast address (224.0.0.0/4, ff00::/8)"),
        _ => None,
    }
}

/// The first of `cidrs` that holds `ip`.
pub fn containing_cidr(cidrs: &[IpNet], ip: IpAddr) -> Option<&IpNet> {
    cidrs.iter().find(|cidr| cidr.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(ip: &str) -> Option<&'static str> {
        special_address(ip.parse().unwrap())
    }

    #[test]
    fn special_addresses_are_named() {
        assert_eq!(reason("0.0.0.0"), Some("may not be unspecified (0.0.0.0)"));
        assert_eq!(reason("::"), Some("may not be unspecified (::)"));
        for loopback in ["127.0.0.1", "127.255.0.3", "::1"] {
            assert!(reason(loopback).unwrap().contains("loopback"), "{loopback}");
        }
        for link_local in ["169.254.169.254", "fe80::1"] {
            assert!(
                reason(link_local).unwrap().contains("link-local"),
                "{link_local}"
            );
        }
        for multicast in ["224.0.0.1", "239.1.2.3", "ff02::1", "ff05::2"] {
            assert!(
                reason(multicast).unwrap().contains("multicast"),
                "{multicast}"
            );
        }
    }

    #[test]
    fn ordinary_addresses_pass() {
        for ip in [
            "10.0.0.1",
            "192.168.185.14",
            "172.67.185.241",
            "2001:db8::1",
            "fd00::5",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    fn service_cidrs_are_matched() {
        let cidrs: Vec<IpNet> = vec![
            "10.96.0.0/12".parse().unwrap(),
            "fd00:10:96::/112".parse().unwrap(),
        ];
        assert_eq!(
            containing_cidr(&cidrs, "10.100.49.21".parse().unwrap()),
            Some(&cidrs[0])
        );
        assert_eq!(
            containing_cidr(&cidrs, "fd00:10:96::a".parse().unwrap()),
            Some(&cidrs[1])
        );
        assert_eq!(containing_cidr(&cidrs, "10.112.0.1".parse().unwrap()), None);
    }
}
