//! Who the client is: the TCP peer, or, when the peer is a proxy we trust
//! (`trusted_proxies=`), the address that proxy says it forwarded for.
//!
//! The rule is nginx's `real_ip_recursive on`: walk the forwarding list from
//! the right (the entry the nearest proxy added), skipping addresses that are
//! themselves trusted proxies; the first untrusted one is the client. An entry
//! that is not an address (`unknown`, an obfuscated `_node`, garbage) stops
//! the walk at the last address found. A peer outside the list is logged as
//! itself whatever its headers claim.

use core::net::IpAddr;

/// Most `trusted_proxies` entries.
pub const MAX_TRUSTED: usize = 8;

/// One `address/prefix` block (IPv4 or IPv6); a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `address/prefix` or a bare address; `None` if it is neither or the prefix is too long.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let net: IpAddr = addr.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
            None => max,
        };
        (prefix <= max).then_some(Cidr { net, prefix })
    }

    /// Whether `addr` lies in this block (an IPv4 address never lies in an IPv6 block).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.net, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                net.to_bits() & mask == a.to_bits() & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                net.to_bits() & mask == a.to_bits() & mask
            }
            _ => false,
        }
    }
}

impl core::fmt::Display for Cidr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The `trusted_proxies=` list: blocks separated by `;` (`,` separates
/// configuration items).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct TrustedProxies {
    list: [Option<Cidr>; MAX_TRUSTED],
}

/// `[10.0.0.0/8, 127.0.0.1/32]` (the boot log prints the configuration).
impl core::fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().flatten().map(|c| alloc::format!("{c}")))
            .finish()
    }
}

impl TrustedProxies {
    /// `Err` names the first entry that is not a block, or says there are too many.
    pub fn parse(text: &str) -> Result<TrustedProxies, &str> {
        let mut t = TrustedProxies::default();
        for (n, item) in text
            .split(';')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .enumerate()
        {
            let cidr = Cidr::parse(item).ok_or(item)?;
            let slot = t.list.get_mut(n).ok_or("too many entries")?;
            *slot = Some(cidr);
        }
        Ok(t)
    }

    /// No block: no peer is trusted to name the client.
    pub fn is_empty(&self) -> bool {
        self.list.iter().all(Option::is_none)
    }

    /// Whether `addr` lies in one of the blocks.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.list.iter().flatten().any(|c| c.contains(addr))
    }

    /// The client address to log for a request from `peer` that carried these
    /// `Forwarded` and `X-Forwarded-For` values (`Forwarded` wins when it
    /// names any address).
    pub fn client(
        &self,
        peer: Option<IpAddr>,
        forwarded: Option<&[u8]>,
        forwarded_for: Option<&[u8]>,
    ) -> Option<IpAddr> {
        let peer = peer?;
        if !self.contains(peer) {
            return Some(peer);
        }
        let from_forwarded = forwarded.map(|v| self.walk(peer, forwarded_nodes(v)));
        match from_forwarded {
            Some(client) if client != peer || forwarded_for.is_none() => Some(client),
            _ => Some(match forwarded_for {
                Some(v) => self.walk(peer, v.split(|&b| b == b',')),
                None => peer,
            }),
        }
    }

    fn walk<'a>(&self, peer: IpAddr, nodes: impl DoubleEndedIterator<Item = &'a [u8]>) -> IpAddr {
        let mut client = peer;
        for node in nodes.rev() {
            let Some(addr) = parse_node(node) else { break };
            client = addr;
            if !self.contains(addr) {
                break;
            }
        }
        client
    }
}

/// The `for=` values of a `Forwarded` field (RFC 7239), in order.
fn forwarded_nodes(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').filter_map(|element| {
        element.split(|&b| b == b';').find_map(|pair| {
            let pair = trim(pair);
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (key, value) = (pair.get(..eq)?, pair.get(eq + 1..)?);
            key.eq_ignore_ascii_case(b"for").then_some(value)
        })
    })
}

/// One node: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`,
/// optionally in quotes; `None` for anything else.
fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let node = trim(node);
    let node = node
        .strip_prefix(b"\"")
        .and_then(|n| n.strip_suffix(b"\""))
        .unwrap_or(node);
    let text = core::str::from_utf8(node).ok()?;
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse::<core::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    let (v4, port) = text.split_once(':')?;
    port.parse::<u16>().ok()?;
    v4.parse::<core::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(!c.contains(ip("::ffff:10.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("1.2.3.4").unwrap().contains(ip("1.2.3.4")));
        assert!(!Cidr::parse("1.2.3.4").unwrap().contains(ip("1.2.3.5")));
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains(ip("2001:db8:1::5"))
        );
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "::/129",
            "1.2.3.4/",
            "1.2.3.4/+1",
            "x",
            "",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn trusted_list_parsing() {
        let t = TrustedProxies::parse("10.0.0.0/8; 127.0.0.1;::1").unwrap();
        assert!(t.contains(ip("127.0.0.1")) && t.contains(ip("::1")) && t.contains(ip("10.1.1.1")));
        assert!(!t.contains(ip("127.0.0.2")));
        assert_eq!(TrustedProxies::parse("10.0.0.0/8;nope"), Err("nope"));
        assert_eq!(
            TrustedProxies::parse("1.1.1.1;".repeat(9).as_str()),
            Err("too many entries")
        );
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert_eq!(
            alloc::format!("{t:?}"),
            r#"["10.0.0.0/8", "127.0.0.1/32", "::1/128"]"#
        );
    }

    #[test]
    fn untrusted_peers_are_logged_as_themselves() {
        let t = TrustedProxies::parse("10.0.2.2").unwrap();
        let claim = Some(&b"6.6.6.6"[..]);
        assert_eq!(
            t.client(Some(ip("10.0.2.3")), claim, claim),
            Some(ip("10.0.2.3"))
        );
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(Some(ip("10.0.2.2")), claim, claim),
            Some(ip("10.0.2.2"))
        );
        assert_eq!(none.client(None, claim, claim), None);
    }

    #[test]
    fn trusted_peers_forward_the_client() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let peer = Some(ip("10.0.2.2"));
        let xff = |v: &'static str| t.client(peer, None, Some(v.as_bytes()));
        assert_eq!(xff("203.0.113.9"), Some(ip("203.0.113.9")));
        // The rightmost untrusted entry: earlier ones are the client's own claims.
        assert_eq!(
            xff("1.1.1.1, 203.0.113.9, 10.0.0.7"),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(xff("10.0.0.9, 10.0.0.7"), Some(ip("10.0.0.9")));
        assert_eq!(xff("1.1.1.1, garbage, 10.0.0.7"), Some(ip("10.0.0.7")));
        assert_eq!(xff("unknown"), peer);
        assert_eq!(xff("203.0.113.9:4711"), Some(ip("203.0.113.9")));
        assert_eq!(xff("2001:db8::1"), Some(ip("2001:db8::1")));
        let fwd = |v: &'static str| t.client(peer, Some(v.as_bytes()), Some(b"9.9.9.9"));
        assert_eq!(
            fwd("for=192.0.2.60;proto=http;by=203.0.113.43"),
            Some(ip("192.0.2.60"))
        );
        assert_eq!(
            fwd("for=192.0.2.43, For=\"[2001:db8:cafe::17]:4711\""),
            Some(ip("2001:db8:cafe::17"))
        );
        // Forwarded names nothing usable: X-Forwarded-For decides.
        assert_eq!(fwd("for=unknown"), Some(ip("9.9.9.9")));
        assert_eq!(fwd("proto=https"), Some(ip("9.9.9.9")));
    }
}
