//! Which IP addresses user-written endpoints may not point at, and the one way svcplane reads
//! an IP address: as kube-apiserver and kube-proxy read it, in canonical form.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Reads `text` as kube-apiserver's validation and kube-proxy read an endpoint, pod or
/// Service address (`ParseIPSloppy`), and returns it in canonical form: an IPv4-mapped IPv6
/// address (`::ffff:10.244.0.1`) becomes the IPv4 address it stands for, and IPv4 octets with
/// leading zeros are decimal (`010.244.000.001` is `10.244.0.1`). kube-apiserver 1.37 refuses
/// both spellings in Endpoints and EndpointSlices while its `StrictIPCIDRValidation` feature
/// gate is on (the default since 1.36); with it off, it stores them and proxies route to the
/// address read this way, so svcplane judges that address. Every check compares canonical
/// addresses only, so a spelling cannot step around one.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let ip = if text.contains(':') {
        IpAddr::V6(parse_ipv6(text)?)
    } else {
        IpAddr::V4(parse_ipv4(text)?)
    };
    Some(canonical(ip))
}

/// `ip` in canonical form: an IPv4-mapped IPv6 address becomes its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Dotted decimal, each octet any number of decimal digits up to 255.
fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = part.trim_start_matches('0');
        *octet = if digits.is_empty() {
            0
        } else if digits.len() > 3 {
            return None;
        } else {
            digits.parse().ok()?
        };
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// Colon-separated hex groups (any number of digits up to ffff), at most one `::`, and
/// optionally a trailing dotted IPv4 address in the last 32 bits.
fn parse_ipv6(text: &str) -> Option<Ipv6Addr> {
    let (head, tail) = match text.split_once("::") {
        Some((head, tail)) => (head, Some(tail)),
        None => (text, None),
    };
    let groups = |part: &str, last: bool| -> Option<Vec<u16>> {
        if part.is_empty() {
            return Some(Vec::new());
        }
        let fields: Vec<&str> = part.split(':').collect();
        let mut out = Vec::new();
        for (i, field) in fields.iter().enumerate() {
            if last && i == fields.len() - 1 && field.contains('.') {
                let [a, b, c, d] = parse_ipv4(field)?.octets();
                out.push(u16::from_be_bytes([a, b]));
                out.push(u16::from_be_bytes([c, d]));
            } else {
                if field.is_empty() || !field.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                let digits = field.trim_start_matches('0');
                if digits.len() > 4 {
                    return None;
                }
                out.push(
                    u16::from_str_radix(if digits.is_empty() { "0" } else { digits }, 16).ok()?,
                );
            }
        }
        Some(out)
    };
    let mut segments = [0u16; 8];
    match tail {
        None => {
            let all = groups(head, true)?;
            if all.len() != 8 {
                return None;
            }
            segments.copy_from_slice(&all);
        }
        Some(tail) => {
            if tail.contains("::") {
                return None;
            }
            let front = groups(head, false)?;
            let back = groups(tail, true)?;
            // `::` stands for at least one zero group.
            if front.len() + back.len() > 7 {
                return None;
            }
            segments[..front.len()].copy_from_slice(&front);
            segments[8 - back.len()..].copy_from_slice(&back);
        }
    }
    Some(Ipv6Addr::from(segments))
}

/// Why `ip` may not be an endpoint address, worded as kube-apiserver words it, or `None`.
/// Unspecified, loopback, link-local and multicast addresses reach the node itself or no
/// one: proxies would send Service traffic there.
pub fn special_address(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
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

/// The first of `cidrs` that holds `ip`, both compared in canonical form (an IPv4-mapped
/// IPv6 CIDR holds the IPv4 addresses it maps).
pub fn containing_cidr(cidrs: &[IpNet], ip: IpAddr) -> Option<&IpNet> {
    let ip = canonical(ip);
    cidrs.iter().find(|cidr| canonical_net(cidr).contains(&ip))
}

fn canonical_net(net: &IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(*net),
            None => *net,
        },
        _ => *net,
    }
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
    fn every_spelling_kube_apiserver_may_store_reads_as_its_canonical_address() {
        let read = |text: &str| parse_ip(text).map(|ip| ip.to_string());
        for (text, address) in [
            ("10.244.0.1", "10.244.0.1"),
            ("::ffff:10.244.0.1", "10.244.0.1"),
            ("::FFFF:10.244.0.1", "10.244.0.1"),
            ("0:0:0:0:0:ffff:af4:1", "10.244.0.1"),
            ("0000:0000:0000:0000:0000:ffff:0a0f:0001", "10.15.0.1"),
            ("010.244.000.001", "10.244.0.1"),
            ("::ffff:010.244.0.01", "10.244.0.1"),
            ("0000010.0.0.1", "10.0.0.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("2001:DB8::0:1", "2001:db8::1"),
            ("2001:db8:0:0:0:0:0:00001", "2001:db8::1"),
            ("::", "::"),
            ("1::", "1::"),
            ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
            ("::10.244.0.1", "::af4:1"),
            ("64:ff9b::10.244.0.1", "64:ff9b::af4:1"),
        ] {
            assert_eq!(read(text).as_deref(), Some(address), "{text}");
        }
    }

    #[test]
    fn what_kube_apiserver_cannot_read_is_no_address() {
        for text in [
            "",
            "10.244.0",
            "10.244.0.1.",
            "10.244.0.256",
            "10.244.0.0x1",
            " 10.244.0.1",
            "+1.2.3.4",
            "1:2:3:4:5:6:7:8::",
            "1::2::3",
            ":1::",
            "1:2:3:4:5:6:7",
            "12345::",
            "fe80::1%eth0",
            "::ffff:10.244.0.1:1",
            "10.244.0.1::",
            "example.com",
        ] {
            assert_eq!(parse_ip(text), None, "{text:?}");
        }
    }

    #[test]
    fn mapped_spellings_of_special_addresses_are_special() {
        for text in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
        ] {
            assert!(special_address(parse_ip(text).unwrap()).is_some(), "{text}");
            assert!(special_address(text.parse().unwrap()).is_some(), "{text}");
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
        assert_eq!(
            containing_cidr(&cidrs, "::ffff:10.100.49.21".parse().unwrap()),
            Some(&cidrs[0]),
            "a mapped spelling is in the IPv4 range"
        );
        let mapped: Vec<IpNet> = vec!["::ffff:10.96.0.0/108".parse().unwrap()];
        assert_eq!(
            containing_cidr(&mapped, "10.100.49.21".parse().unwrap()),
            Some(&mapped[0])
        );
    }
}
