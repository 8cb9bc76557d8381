//! Cheap looks at raw Ethernet frames, for counters the TCP/IP stack does not keep.

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
