//! Who is on the other end of a request: the peer address actix saw, and, behind a reverse
//! proxy the operator trusts, the client that proxy reports in `X-Forwarded-For`.
//!
//! The request path only records the peer and the raw header ([`ClientOrigin::of`], cheap:
//! no parsing); the address is worked out when something asks ([`ClientOrigin::resolve`]),
//! against the operator's `trusted_proxies`. A header from a peer that is not a trusted
//! proxy is ignored: anyone can send one.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use actix_web::{http::header::HeaderValue, HttpRequest};

/// The `X-Forwarded-For` header.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// What a request says about its sender, as received.
#[derive(Debug, Clone, Default)]
pub struct ClientOrigin {
    /// The TCP peer (`None` when actix has none, as in unit tests).
    pub peer: Option<IpAddr>,
    /// Every `X-Forwarded-For` line, joined with `,` in the order received.
    pub forwarded_for: Option<HeaderValue>,
}

impl ClientOrigin {
    /// The peer and `X-Forwarded-For` of `request` (shared with the request's buffers, not
    /// copied, unless the header came in several lines).
    pub fn of(request: &HttpRequest) -> ClientOrigin {
        let mut lines = request.headers().get_all(FORWARDED_FOR);
        let forwarded_for = match (lines.next(), lines.next()) {
            (None, _) => None,
            (Some(only), None) => Some(only.clone()),
            (Some(first), Some(second)) => {
                let mut joined = first.as_bytes().to_vec();
                for line in std::iter::once(second).chain(lines) {
                    joined.push(b',');
                    joined.extend_from_slice(line.as_bytes());
                }
                HeaderValue::from_bytes(&joined).ok()
            }
        };
        ClientOrigin {
            peer: request.peer_addr().map(|address| address.ip()),
            forwarded_for,
        }
    }

    /// The client's address: the peer, unless the peer is a trusted proxy; then the
    /// right-most `X-Forwarded-For` hop that is not a trusted proxy (each trusted proxy
    /// appends the address it received from). If every hop is trusted, the left-most one; if
    /// the hop to take is not an address, the last trusted hop before it.
    pub fn resolve(&self, trusted: &TrustedProxies) -> Option<IpAddr> {
        let peer = self.peer.map(canonical)?;
        if !trusted.contains(peer) {
            return Some(peer);
        }
        let Some(header) = self.forwarded_for.as_ref().and_then(|h| h.to_str().ok()) else {
            return Some(peer);
        };
        let mut client = peer;
        for hop in header.rsplit(',') {
            let Some(address) = parse_hop(hop) else {
                break;
            };
            client = address;
            if !trusted.contains(address) {
                break;
            }
        }
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1` or
/// `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    hop.parse::<std::net::SocketAddr>()
        .ok()
        .map(|socket| canonical(socket.ip()))
}

/// IPv4 addresses written as IPv6 (`::ffff:203.0.113.7`, as a dual-stack socket reports
/// them) as plain IPv4, so one client is one address.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The reverse proxies whose `X-Forwarded-For` the host believes (`[login_throttle]
/// trusted_proxies`): exact addresses and CIDR blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    blocks: Vec<Block>,
}

/// An address block: the address with its host bits cleared, and the prefix length.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Block {
    network: IpAddr,
    prefix: u8,
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl TrustedProxies {
    /// Parses `10.0.0.1`, `10.0.0.0/8`, `2001:db8::/32`, ...; the error names the entry and
    /// what is wrong with it.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        let blocks = entries
            .iter()
            .map(|entry| parse_block(entry))
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { blocks })
    }

    /// Whether `address` is a trusted proxy.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.blocks
            .iter()
            .any(|block| mask(address, block.prefix) == Some(block.network))
    }
}

fn parse_block(entry: &str) -> Result<Block, String> {
    let (address_text, prefix_text) = match entry.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (entry, None),
    };
    let address = address_text
        .trim()
        .parse::<IpAddr>()
        .map(canonical)
        .map_err(|_| format!("{entry:?} is not an IP address or a CIDR block like 10.0.0.0/8"))?;
    let bits = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => bits,
        Some(text) => match text.trim().parse::<u8>() {
            Ok(prefix) if prefix <= bits => prefix,
            _ => {
                return Err(format!(
                    "{entry:?} has prefix length {text:?}; an {} block takes 0 to {bits}",
                    if bits == 32 { "IPv4" } else { "IPv6" }
                ))
            }
        },
    };
    let network = mask(address, prefix).expect("the prefix fits the address family");
    Ok(Block { network, prefix })
}

/// `address` with all but its first `prefix` bits cleared (`None` when the prefix is longer
/// than the address).
pub fn mask(address: IpAddr, prefix: u8) -> Option<IpAddr> {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = match prefix {
                0 => 0,
                1..=32 => bits & (u32::MAX << (32 - prefix)),
                _ => return None,
            };
            Some(IpAddr::V4(Ipv4Addr::from(kept)))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = match prefix {
                0 => 0,
                1..=128 => bits & (u128::MAX << (128 - prefix)),
                _ => return None,
            };
            Some(IpAddr::V6(Ipv6Addr::from(kept)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn origin(peer: &str, forwarded_for: Option<&str>) -> ClientOrigin {
        ClientOrigin {
            peer: Some(ip(peer)),
            forwarded_for: forwarded_for.map(|h| HeaderValue::from_str(h).unwrap()),
        }
    }

    fn trusted(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn blocks_parse_and_match() {
        let proxies = trusted(&[
            "10.0.0.0/8",
            "192.0.2.7",
            "2001:db8::/32",
            "::ffff:198.51.100.1",
        ]);
        assert!(proxies.contains(ip("10.200.3.4")));
        assert!(!proxies.contains(ip("11.0.0.1")));
        assert!(proxies.contains(ip("192.0.2.7")));
        assert!(!proxies.contains(ip("192.0.2.8")));
        assert!(proxies.contains(ip("2001:db8:ffff::1")));
        assert!(!proxies.contains(ip("2001:db9::1")));
        assert!(proxies.contains(ip("198.51.100.1")), "mapped IPv4 is IPv4");
        assert!(proxies.contains(ip("::ffff:10.1.1.1")));
        assert!(trusted(&["0.0.0.0/0"]).contains(ip("203.0.113.9")));
        assert!(!trusted(&["0.0.0.0/0"]).contains(ip("2001:db8::1")));
    }

    #[test]
    fn bad_entries_are_named() {
        for (entry, expected) in [
            (
                "10.0.0.0/33",
                "prefix length \"33\"; an IPv4 block takes 0 to 32",
            ),
            ("2001:db8::/129", "an IPv6 block takes 0 to 128"),
            ("proxy.internal", "is not an IP address or a CIDR block"),
            ("10.0.0.0/x", "prefix length \"x\""),
        ] {
            let error = TrustedProxies::parse(&[entry.to_owned()]).unwrap_err();
            assert!(error.contains(expected), "{entry}: {error}");
            assert!(error.contains(entry), "{error}");
        }
    }

    #[test]
    fn the_forwarded_for_header_counts_only_from_a_trusted_peer() {
        let proxies = trusted(&["10.0.0.0/8"]);
        // An untrusted peer: its header is ignored, whatever it says.
        assert_eq!(
            origin("203.0.113.9", Some("198.51.100.1")).resolve(&proxies),
            Some(ip("203.0.113.9"))
        );
        // A trusted peer: the right-most hop it and other trusted proxies did not add.
        assert_eq!(
            origin("10.0.0.2", Some("1.1.1.1, 198.51.100.1, 10.0.0.5")).resolve(&proxies),
            Some(ip("198.51.100.1")),
            "the client's own (forgeable) left-most entry is not believed"
        );
        assert_eq!(
            origin("10.0.0.2", Some("[2001:db8::5]:4711")).resolve(&proxies),
            Some(ip("2001:db8::5"))
        );
        assert_eq!(
            origin("10.0.0.2", Some("198.51.100.1:8080")).resolve(&proxies),
            Some(ip("198.51.100.1"))
        );
        // All hops trusted: the left-most. No header: the proxy itself.
        assert_eq!(
            origin("10.0.0.2", Some("10.9.9.9, 10.0.0.5")).resolve(&proxies),
            Some(ip("10.9.9.9"))
        );
        assert_eq!(
            origin("10.0.0.2", None).resolve(&proxies),
            Some(ip("10.0.0.2"))
        );
        // Garbage where the client should be: the last trusted hop that reported it.
        assert_eq!(
            origin("10.0.0.2", Some("unknown, 10.0.0.5")).resolve(&proxies),
            Some(ip("10.0.0.5"))
        );
        // No trusted proxies at all: always the peer; no peer: no address.
        assert_eq!(
            origin("10.0.0.2", Some("198.51.100.1")).resolve(&TrustedProxies::default()),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(ClientOrigin::default().resolve(&proxies), None);
    }

    #[test]
    fn several_header_lines_read_as_one_list() {
        let request = actix_web::test::TestRequest::default()
            .append_header((FORWARDED_FOR, "198.51.100.1"))
            .append_header((FORWARDED_FOR, "10.0.0.5"))
            .peer_addr("10.0.0.2:5000".parse().unwrap())
            .to_http_request();
        let origin = ClientOrigin::of(&request);
        assert_eq!(
            origin.forwarded_for.as_ref().unwrap().to_str().unwrap(),
            "198.51.100.1,10.0.0.5"
        );
        assert_eq!(
            origin.resolve(&trusted(&["10.0.0.0/8"])),
            Some(ip("198.51.100.1"))
        );
    }
}
