//! Looks at raw Ethernet frames, for counters the TCP/IP stack does not keep.

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Packet, TcpPacket,
    UdpPacket,
};

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

    /// A valid Ethernet + IPv4 frame carrying `proto` with a `payload_len`-byte
    /// transport segment, every checksum filled.
    fn checked_frame(proto: IpProtocol, payload_len: usize) -> Vec<u8> {
        let (src, dst) = ([10, 0, 2, 2], [10, 0, 2, 15]);
        let mut f = vec![0u8; 14 + 20 + payload_len];
        EthernetFrame::new_unchecked(&mut f[..]).set_ethertype(EthernetProtocol::Ipv4);
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
}
