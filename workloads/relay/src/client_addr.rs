//! The client address of a request: what `{{auto}}` IP addresses become. Pure.
//!
//! ```text
//!  TCP peer ── in --trusted-proxies? ──no──► the peer (X-Forwarded-For ignored: anyone can send it)
//!                 └─yes─► X-Forwarded-For, right to left: skip trusted hops;
//!                         the first untrusted address is the client
//!                         (all trusted: the leftmost; an unreadable entry: the hop before it)
//! ```
//!
//! Only the proxies the operator names are believed, so a client cannot choose the address its
//! events are stored with by sending the header itself.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// An address or a network (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network (e.g. 10.0.0.0/8)"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Network { addr, prefix })
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket reports) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// Parse `--trusted-proxies`: comma-separated addresses or networks; empty trusts none.
pub fn parse_networks(list: &str) -> Result<Vec<Network>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    networks: Vec<Network>,
}

impl TrustedProxies {
    pub fn new(networks: Vec<Network>) -> Self {
        TrustedProxies { networks }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }

    /// The client address for a request from `peer` carrying these `X-Forwarded-For` header
    /// values (in the order received).
    pub fn client<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        let peer = peer.map(canonical)?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let hops: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Unreadable: the trusted hop that forwarded it is as far as we can tell.
                return Some(client);
            };
            client = ip;
            if !self.trusts(ip) {
                return Some(ip);
            }
        }
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = hop.parse::<SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &str) -> TrustedProxies {
        TrustedProxies::new(parse_networks(list).unwrap())
    }

    #[test]
    fn networks_parse_and_match() {
        let n: Network = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.200.1.2")));
        assert!(n.contains(ip("::ffff:10.1.1.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        let one: Network = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Network = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let odd: Network = "192.168.0.0/23".parse().unwrap();
        assert!(odd.contains(ip("192.168.1.255")) && !odd.contains(ip("192.168.2.0")));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
        assert_eq!(parse_networks(" , ").unwrap(), vec![]);
        assert!(
            parse_networks("10.0.0.0/8, bad")
                .unwrap_err()
                .contains("bad")
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let peer = Some(ip("10.0.0.5"));
        // No trusted proxies: the header is ignored.
        assert_eq!(
            TrustedProxies::default().client(peer, ["203.0.113.9"]),
            peer
        );
        let trusted = proxies("10.0.0.0/8");
        // From a trusted proxy: the address it saw.
        assert_eq!(
            trusted.client(peer, ["203.0.113.9"]),
            Some(ip("203.0.113.9"))
        );
        // A client-sent (spoofed) entry left of the real one is not believed.
        assert_eq!(
            trusted.client(peer, ["1.1.1.1, 203.0.113.9"]),
            Some(ip("203.0.113.9"))
        );
        // Chains of trusted proxies are walked; headers repeated are joined in order.
        assert_eq!(
            trusted.client(peer, ["198.51.100.7, 10.1.1.1", "10.2.2.2"]),
            Some(ip("198.51.100.7"))
        );
        // Ports and brackets.
        assert_eq!(
            trusted.client(peer, ["[2001:db8::1]:443"]),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            trusted.client(peer, ["198.51.100.7:5000"]),
            Some(ip("198.51.100.7"))
        );
        // Unreadable entry: the trusted hop before it.
        assert_eq!(
            trusted.client(peer, ["unknown, 10.3.3.3"]),
            Some(ip("10.3.3.3"))
        );
        assert_eq!(trusted.client(peer, ["garbage"]), peer);
        // No header, or only trusted hops.
        assert_eq!(trusted.client(peer, []), peer);
        assert_eq!(trusted.client(peer, ["10.9.9.9"]), Some(ip("10.9.9.9")));
        // From an untrusted peer the header changes nothing.
        assert_eq!(
            trusted.client(Some(ip("192.0.2.1")), ["203.0.113.9"]),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(trusted.client(None, ["203.0.113.9"]), None);
    }
}
