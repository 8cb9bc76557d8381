//! Looks at raw Ethernet frames, for counters the TCP/IP stack does not keep.

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Packet, TcpPacket,
    UdpPacket,
};

const ETHERTYPE_IPV4: u16 = 0x0800;
const IP_PROTO_TCP: u8 = 6;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// Whether `frame` is an IPv4 TCP SYN (without ACK) to `port`: a new connection attempt.
pub fn is_tcp_syn_to(frame: &[u8], port: u16) -> bool {
    let Some(ethertype) = frame.get(12..14) else {
        return false;
    };
    if u16::from_be_bytes([ethertype[0], ethertype[1]]) != ETHERTYPE_IPV4 {
        return false;
    }
    let Some(ip) = frame.get(14..) else {
        return false;
    };
    let Some(&version_ihl) = ip.first() else {
        return false;
    };
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < 20 || ip.get(9) != Some(&IP_PROTO_TCP) {
        return false;
    }
    let Some(tcp) = ip.get(header_len..) else {
        return false;
    };
    match (tcp.get(2..4), tcp.get(13)) {
        (Some(dst), Some(&flags)) => {
            u16::from_be_bytes([dst[0], dst[1]]) == port && flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        }
        _ => false,
    }
}

/// Whether an IPv4 frame fails its header or TCP/UDP/ICMP checksum, or is too
/// malformed to check. smoltcp would drop such a frame without counting it;
/// the device layer checks instead (smoltcp is told not to), so corruption on
/// the wire shows in the stats. Non-IPv4 frames (ARP) and IP fragments, whose
/// transport checksum covers more than one frame, are passed on unchecked.
pub fn fails_checksum(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return false;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return true;
    };
    if ip.version() != 4 || !ip.verify_checksum() {
        return true;
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return false;
    }
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    match ip.next_header() {
        IpProtocol::Tcp => {
            TcpPacket::new_checked(ip.payload()).map_or(true, |t| !t.verify_checksum(&src, &dst))
        }
        IpProtocol::Udp => {
            UdpPacket::new_checked(ip.payload()).map_or(true, |u| !u.verify_checksum(&src, &dst))
        }
        IpProtocol::Icmp => {
            Icmpv4Packet::new_checked(ip.payload()).map_or(true, |i| !i.verify_checksum())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_frame(port: u16, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[14 + 9] = IP_PROTO_TCP;
        f[34 + 2..34 + 4].copy_from_slice(&port.to_be_bytes());
        f[34 + 13] = flags;
        f
    }

    /// A valid Ethernet + IPv4 frame carrying `proto` with a `payload_len`-byte
    /// transport segment, every checksum filled.
    fn checked_frame(proto: IpProtocol, payload_len: usize) -> Vec<u8> {
        let (src, dst) = ([10, 0, 2, 2], [10, 0, 2, 15]);
        let mut f = vec![0u8; 14 + 20 + payload_len];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_total_len((20 + payload_len) as u16);
            ip.set_hop_limit(64);
            ip.set_next_header(proto);
            ip.set_src_addr(src.into());
            ip.set_dst_addr(dst.into());
            ip.fill_checksum();
        }
        for (i, b) in f[34..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let (src, dst) = (IpAddress::Ipv4(src.into()), IpAddress::Ipv4(dst.into()));
        let l4 = &mut f[34..];
        match proto {
            IpProtocol::Tcp => {
                let mut t = TcpPacket::new_unchecked(l4);
                t.set_header_len(20);
                t.fill_checksum(&src, &dst);
            }
            IpProtocol::Udp => {
                let mut u = UdpPacket::new_unchecked(l4);
                u.set_len(payload_len as u16);
                u.fill_checksum(&src, &dst);
            }
            IpProtocol::Icmp => Icmpv4Packet::new_unchecked(l4).fill_checksum(),
            _ => {}
        }
        f
    }

    #[test]
    fn valid_frames_pass_the_checksum_check() {
        for proto in [IpProtocol::Tcp, IpProtocol::Udp, IpProtocol::Icmp] {
            let f = checked_frame(proto, 64);
            assert!(!fails_checksum(&f), "{proto}");
        }
        // Ethernet padding after the IP packet is not part of any checksum.
        let mut padded = checked_frame(IpProtocol::Tcp, 20);
        padded.extend_from_slice(&[0xaa; 6]);
        assert!(!fails_checksum(&padded));
    }

    #[test]
    fn every_flipped_byte_inside_the_ip_packet_fails_the_check() {
        for proto in [IpProtocol::Tcp, IpProtocol::Udp, IpProtocol::Icmp] {
            let good = checked_frame(proto, 64);
            for at in 14..good.len() {
                for xor in [0x01u8, 0x80, 0xff] {
                    let mut bad = good.clone();
                    bad[at] ^= xor;
                    assert!(
                        fails_checksum(&bad),
                        "{proto}: byte {at} ^ {xor:#04x} passed"
                    );
                }
            }
        }
    }

    #[test]
    fn truncated_ip_packets_fail_and_other_frames_pass() {
        let good = checked_frame(IpProtocol::Tcp, 64);
        for len in 14..good.len() {
            assert!(fails_checksum(&good[..len]), "truncated to {len}");
        }
        // Too short to be Ethernet, or not IPv4 (ARP): not this check's business.
        assert!(!fails_checksum(&good[..10]));
        let mut arp = good.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(!fails_checksum(&arp));
        // A fragment's transport checksum spans frames: only the header is checked.
        let mut frag = good;
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut frag[14..]);
            ip.set_more_frags(true);
            ip.fill_checksum();
        }
        frag[40] ^= 0xff;
        assert!(!fails_checksum(&frag));
    }

    #[test]
    fn recognises_syn_only() {
        assert!(is_tcp_syn_to(&tcp_frame(80, TCP_SYN), 80));
        assert!(!is_tcp_syn_to(&tcp_frame(80, TCP_SYN | TCP_ACK), 80));
        assert!(!is_tcp_syn_to(&tcp_frame(80, TCP_ACK), 80));
        assert!(!is_tcp_syn_to(&tcp_frame(81, TCP_SYN), 80));
    }

    #[test]
    fn truncated_and_foreign_frames_are_not_syns() {
        let f = tcp_frame(80, TCP_SYN);
        // Every prefix that stops before the TCP flags byte.
        for len in 0..14 + 20 + 14 {
            assert!(!is_tcp_syn_to(&f[..len], 80), "length {len}");
        }
        let mut udp = f.clone();
        udp[14 + 9] = 17;
        assert!(!is_tcp_syn_to(&udp, 80));
        let mut v6 = f.clone();
        v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert!(!is_tcp_syn_to(&v6, 80));
        let mut bad_ihl = f;
        bad_ihl[14] = 0x41;
        assert!(!is_tcp_syn_to(&bad_ihl, 80));
    }
}
