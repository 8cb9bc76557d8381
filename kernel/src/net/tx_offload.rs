//! Outgoing frames for a device with checksum and segmentation offloads.
//!
//! With the device completing TCP checksums, smoltcp is told not to compute
//! them (it writes 0) and each TCP/IPv4 frame gets the partial checksum the
//! device expects: the folded, uncomplemented sum of the IPv4 pseudo-header
//! (with the frame's whole TCP length, as Linux does for TSO) in the checksum
//! field, and where the checksummed span starts. A frame smoltcp emitted for
//! segmentation (it carries more than one MSS) also gets the segment size and
//! the header length the device repeats in every segment.

use crate::dev::offload::{Gso, Offloads, TxOffload};
use smoltcp::wire::{
    ETHERNET_HEADER_LEN, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet,
    TcpPacket, checksum,
};

/// Offset of the checksum field in the TCP header.
const TCP_CHECKSUM_OFFSET: u16 = 16;

/// Prepares `frame` (as smoltcp wrote it) for the device and says what to ask
/// of it. `segment_size` is smoltcp's request to segment (its MSS).
///
/// - Not TCP over IPv4 (ARP, DHCP, ICMP): smoltcp has filled every checksum; None.
/// - The device does not complete checksums (it was reset into one that does
///   not, after the stack took its capabilities): the full checksum is
///   computed here instead; None.
/// - Otherwise the partial checksum, and segmentation when asked for.
///   A request to segment without TSO, or a malformed frame, gives None and
///   the driver refuses a frame too large for one segment (counted).
pub fn prepare(
    frame: &mut [u8],
    segment_size: Option<u16>,
    offloads: Offloads,
) -> Option<TxOffload> {
    let mut eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let mut ip = Ipv4Packet::new_checked(eth.payload_mut()).ok()?;
    if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let ip_header_len = usize::from(ip.header_len());
    let mut tcp = TcpPacket::new_checked(ip.payload_mut()).ok()?;
    if !offloads.tx_checksum {
        tcp.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
        return None;
    }
    let tcp_len = u32::try_from(tcp.as_ref().len()).ok()?;
    tcp.set_checksum(checksum::pseudo_header_v4(
        &src,
        &dst,
        IpProtocol::Tcp,
        tcp_len,
    ));
    let csum_start = u16::try_from(ETHERNET_HEADER_LEN + ip_header_len).ok()?;
    let gso = match segment_size {
        None => None,
        Some(_) if !offloads.tso4 => return None,
        Some(size) => Some(Gso {
            header_len: csum_start.checked_add(u16::from(tcp.header_len()))?,
            segment_size: size,
        }),
    };
    Some(TxOffload {
        csum_start,
        csum_offset: TCP_CHECKSUM_OFFSET,
        gso,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame::fails_checksum;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetRepr, Ipv4Address, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber,
    };
    use std::vec::Vec;

    const ALL: Offloads = Offloads {
        tx_checksum: true,
        rx_checksum: true,
        tso4: true,
    };

    /// A TCP/IPv4 frame with `payload` bytes, checksum as smoltcp writes it
    /// when told the device computes it (0).
    fn tcp_frame(payload: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..payload).map(|i| (i * 7 + 3) as u8).collect();
        let src = Ipv4Address::new(10, 0, 2, 15);
        let dst = Ipv4Address::new(10, 0, 2, 2);
        let tcp = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(1),
            ack_number: Some(TcpSeqNumber(2)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &data,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = std::vec![0u8; 14 + 20 + tcp.buffer_len()];
        let mut caps = ChecksumCapabilities::default();
        caps.tcp = smoltcp::phy::Checksum::None;
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut frame);
        let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut packet, &caps);
        let mut segment = TcpPacket::new_unchecked(packet.payload_mut());
        tcp.emit(
            &mut segment,
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            &caps,
        );
        buf
    }

    /// What the device does with a partial checksum: the complemented sum
    /// from `csum_start` to the end, stored at `csum_start + csum_offset`.
    fn complete(frame: &mut [u8], o: &TxOffload) {
        let start = usize::from(o.csum_start);
        let at = start + usize::from(o.csum_offset);
        let sum = !checksum::data(&frame[start..]);
        frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn partial_checksum_completed_by_the_device_is_valid() {
        for payload in [0, 1, 1459, 1460] {
            let mut frame = tcp_frame(payload);
            assert!(
                fails_checksum(&frame),
                "smoltcp left the checksum to the device"
            );
            let o = prepare(&mut frame, None, ALL).expect("a TCP frame is offloaded");
            assert_eq!((o.csum_start, o.csum_offset, o.gso), (34, 16, None));
            complete(&mut frame, &o);
            assert!(!fails_checksum(&frame), "payload {payload}");
        }
    }

    #[test]
    fn large_frame_asks_for_segmentation() {
        let mut frame = tcp_frame(20_000);
        let o = prepare(&mut frame, Some(1460), ALL).expect("offloaded");
        assert_eq!(
            o.gso,
            Some(Gso {
                header_len: 54,
                segment_size: 1460
            })
        );
        complete(&mut frame, &o);
        assert!(!fails_checksum(&frame));
        // Without TSO a segmentation request cannot be honoured.
        let no_tso = Offloads { tso4: false, ..ALL };
        assert_eq!(prepare(&mut tcp_frame(20_000), Some(1460), no_tso), None);
    }

    #[test]
    fn without_the_offload_the_checksum_is_computed_here() {
        let mut frame = tcp_frame(100);
        assert_eq!(prepare(&mut frame, None, Offloads::default()), None);
        assert!(!fails_checksum(&frame));
    }

    #[test]
    fn other_frames_are_left_alone() {
        let mut arp = std::vec![0u8; 42];
        EthernetFrame::new_unchecked(&mut arp[..]).set_ethertype(EthernetProtocol::Arp);
        let before = arp.clone();
        assert_eq!(prepare(&mut arp, None, ALL), None);
        assert_eq!(arp, before);
        let mut short = tcp_frame(10);
        short.truncate(40);
        assert_eq!(prepare(&mut short, None, ALL), None);
        assert_eq!(prepare(&mut [], None, ALL), None);
    }
}
