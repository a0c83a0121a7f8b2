//! Who the client is: the peer's address, or, behind trusted proxies (load balancers), the one
//! they forward in `X-Forwarded-For` or `Forwarded` (RFC 7239). The rate limits key on it.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::http::{header, HeaderMap, HeaderName};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The proxies (load balancers) whose `X-Forwarded-For` / `Forwarded` are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    fn contains(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// Comma-separated CIDRs (`10.0.0.0/8, 2001:db8::/32`) or addresses; empty: none.
    fn from_str(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!("`{entry}` is not an address or a CIDR (10.0.0.0/8, 2001:db8::/32)")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&nets.join(","))
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
/// address of `X-Forwarded-For` (or, when the request has none, of `Forwarded`) that is not a
/// trusted proxy. Everything left of it was written by the client and proves nothing. A header
/// that cannot be read up to that address (a malformed entry, an obfuscated `for=`) counts for
/// nothing: the peer's address is the client's.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let hops = if headers.contains_key(X_FORWARDED_FOR) {
        forwarded_for(headers)
    } else if headers.contains_key(header::FORWARDED) {
        forwarded(headers)
    } else {
        return peer;
    };
    hops.and_then(|hops| rightmost_untrusted(&hops, trusted))
        .unwrap_or(peer)
}

/// Walks the hops from the right (the nearest proxy's view) to the first untrusted one. `None`
/// when an entry on the way is not an address; the left-most when every one is trusted.
fn rightmost_untrusted(hops: &[Option<IpAddr>], trusted: &TrustedProxies) -> Option<IpAddr> {
    let mut leftmost = None;
    for hop in hops.iter().rev() {
        let address = (*hop)?.to_canonical();
        if !trusted.contains(address) {
            return Some(address);
        }
        leftmost = Some(address);
    }
    leftmost
}

/// Every entry of every `X-Forwarded-For` line, in order (`None` for one that is no address).
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for line in headers.get_all(X_FORWARDED_FOR) {
        for entry in line.to_str().ok()?.split(',') {
            let entry = entry.trim();
            // Some proxies write the port too: `192.0.2.1:4711`, `[2001:db8::1]:4711`.
            let address = entry
                .parse::<IpAddr>()
                .ok()
                .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()));
            hops.push(address);
        }
    }
    Some(hops)
}

/// The `for=` of every element of every `Forwarded` line (RFC 7239), in order (`None` for an
/// element without one, or whose node is no address: `unknown`, `_hidden`).
fn forwarded(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for line in headers.get_all(header::FORWARDED) {
        for element in split_unquoted(line.to_str().ok()?, ',') {
            let node = split_unquoted(element, ';').into_iter().find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim())
            });
            hops.push(node.and_then(node_address));
        }
    }
    Some(hops)
}

/// A `Forwarded` node: `192.0.2.60`, `"192.0.2.60:4711"`, `"[2001:db8:cafe::17]:4711"`.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(node);
    if let Some(rest) = node.strip_prefix('[') {
        let (address, port) = rest.split_once(']')?;
        if !(port.is_empty() || port.starts_with(':')) {
            return None;
        }
        return address.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let address = node
        .split_once(':')
        .map_or(node, |(address, _port)| address);
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// `text` split at each `separator` outside a quoted string.
fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// What an address is limited as: IPv6 by its /64 (a host usually has a whole /64, and may
/// use any address in it), IPv4 (and IPv4-mapped IPv6) by itself.
pub(super) fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(text: &str) -> TrustedProxies {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn trusted_proxies_are_cidrs_or_addresses() {
        let trusted = proxies(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,");
        assert!(trusted.contains(ip("10.1.2.3")));
        assert!(trusted.contains(ip("192.0.2.7")));
        assert!(!trusted.contains(ip("192.0.2.8")));
        assert!(trusted.contains(ip("2001:db8:1::1")));
        assert_eq!(trusted.to_string(), "10.0.0.0/8,192.0.2.7/32,2001:db8::/32");
        assert_eq!(proxies(""), TrustedProxies::default());
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("proxy.local".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_peer() {
        let trusted = proxies("10.0.0.0/8");
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            client_address(ip("198.51.100.1"), &spoofed, &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), &spoofed, &trusted),
            ip("203.0.113.9")
        );
        // IPv4 peers of a dual-stack socket are IPv4-mapped IPv6 addresses.
        assert_eq!(
            client_address(ip("::ffff:10.0.0.2"), &spoofed, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), &HeaderMap::new(), &trusted),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let trusted = proxies("10.0.0.0/8");
        let peer = ip("10.0.0.2");
        let cases = [
            // What the client wrote itself (left) proves nothing.
            (
                vec![("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.5")],
                "203.0.113.9",
            ),
            (
                vec![
                    ("x-forwarded-for", "1.1.1.1"),
                    ("x-forwarded-for", "203.0.113.9"),
                ],
                "203.0.113.9",
            ),
            (
                vec![("x-forwarded-for", "garbage, 203.0.113.9")],
                "203.0.113.9",
            ),
            (vec![("x-forwarded-for", "203.0.113.9:4711")], "203.0.113.9"),
            (
                vec![("x-forwarded-for", "[2001:db8::1]:4711")],
                "2001:db8::1",
            ),
            (vec![("x-forwarded-for", "10.0.0.9, 10.0.0.5")], "10.0.0.9"),
            // Malformed on the way to the client: the peer.
            (
                vec![("x-forwarded-for", "203.0.113.9, unknown")],
                "10.0.0.2",
            ),
            (vec![("x-forwarded-for", "")], "10.0.0.2"),
            (
                vec![("forwarded", "for=192.0.2.60;proto=http;by=10.0.0.2")],
                "192.0.2.60",
            ),
            (
                vec![(
                    "forwarded",
                    r#"for=1.1.1.1, For="[2001:db8:cafe::17]:4711""#,
                )],
                "2001:db8:cafe::17",
            ),
            (
                vec![("forwarded", r#"for="192.0.2.43:47011", for=10.0.0.7"#)],
                "192.0.2.43",
            ),
            (vec![("forwarded", "for=_hidden")], "10.0.0.2"),
            (vec![("forwarded", "proto=https")], "10.0.0.2"),
            (vec![("forwarded", r#"for="[2001:db8::1"#)], "10.0.0.2"),
            // X-Forwarded-For, when there is one, is the header that counts.
            (
                vec![
                    ("forwarded", "for=192.0.2.60"),
                    ("x-forwarded-for", "203.0.113.9"),
                ],
                "203.0.113.9",
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(
                client_address(peer, &headers(&pairs), &trusted),
                ip(expected),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(address_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(address_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
