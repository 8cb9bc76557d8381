//! PATCH (unikernel): SYN cookies at the interface: SYNs take no socket, the
//! ACK returning a valid cookie establishes a connection on a listener.
//! Each test fails on upstream, where a listener takes the SYN itself.

use super::*;
use crate::socket::tcp;

const SERVER: Ipv4Address = Ipv4Address::new(127, 0, 0, 1);
const PORT: u16 = 80;

fn client(i: u32) -> Ipv4Address {
    Ipv4Address::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

fn segment<'a>(
    from: Ipv4Address,
    src_port: u16,
    control: TcpControl,
    seq: i32,
    ack: Option<i32>,
    payload: &'a [u8],
) -> (IpRepr, Vec<u8>) {
    let repr = TcpRepr {
        src_port,
        dst_port: PORT,
        control,
        seq_number: TcpSeqNumber(seq),
        ack_number: ack.map(TcpSeqNumber),
        window_len: 29200,
        window_scale: if control == TcpControl::Syn {
            Some(7)
        } else {
            None
        },
        max_seg_size: if control == TcpControl::Syn {
            Some(1460)
        } else {
            None
        },
        sack_permitted: control == TcpControl::Syn,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload,
    };
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut bytes),
        &from.into(),
        &SERVER.into(),
        &ChecksumCapabilities::default(),
    );
    let ip = IpRepr::Ipv4(Ipv4Repr {
        src_addr: from,
        dst_addr: SERVER,
        next_header: IpProtocol::Tcp,
        payload_len: repr.buffer_len(),
        hop_limit: 64,
    });
    (ip, bytes)
}

/// The TCP header of a reply, or `None` when there is none.
fn reply_tcp(reply: Option<Packet>) -> Option<TcpRepr<'static>> {
    let reply = reply?;
    match reply.payload() {
        IpPayload::Tcp(t) => Some(TcpRepr { payload: &[], ..*t }),
        _ => panic!("a TCP segment drew a non-TCP reply"),
    }
}

fn pool(
    count: usize,
) -> (
    Interface,
    SocketSet<'static>,
    Vec<crate::iface::SocketHandle>,
) {
    let (mut iface, mut sockets, _) = setup(Medium::Ip);
    iface.set_syn_cookies(Some([11, 22, 33, 44]));
    let handles = (0..count)
        .map(|_| {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 4096]),
                tcp::SocketBuffer::new(vec![0; 4096]),
            );
            s.listen(PORT).unwrap();
            sockets.add(s)
        })
        .collect();
    (iface, sockets, handles)
}

fn listening(sockets: &mut SocketSet, handles: &[crate::iface::SocketHandle]) -> usize {
    handles
        .iter()
        .filter(|&&h| sockets.get_mut::<tcp::Socket>(h).is_listening())
        .count()
}

#[test]
fn syn_flood_takes_no_socket_and_every_syn_gets_a_cookie() {
    let (mut iface, mut sockets, handles) = pool(4);
    for i in 0..1000u32 {
        let (ip, bytes) = segment(
            client(i),
            1024 + i as u16,
            TcpControl::Syn,
            i as i32,
            None,
            &[],
        );
        let reply = reply_tcp(iface.inner.process_tcp(&mut sockets, false, ip, &bytes))
            .expect("a SYN to a served port is answered");
        assert_eq!(reply.control, TcpControl::Syn);
        assert_eq!(reply.ack_number, Some(TcpSeqNumber(i as i32) + 1));
        // A cookie connection has no window scaling or SACK; our MSS is offered.
        assert_eq!(reply.window_scale, None);
        assert!(!reply.sack_permitted);
        assert!(reply.max_seg_size.is_some());
        assert_eq!(reply.window_len, 4096);
    }
    assert_eq!(listening(&mut sockets, &handles), 4, "a SYN took a socket");
    let stats = iface.syn_cookie_stats();
    assert_eq!(stats.sent, 1000);
    assert_eq!((stats.valid, stats.invalid, stats.no_socket), (0, 0, 0));
}

#[test]
fn the_ack_returning_a_cookie_establishes_a_connection_with_its_data() {
    let (mut iface, mut sockets, handles) = pool(2);
    let peer = client(7);
    let (ip, bytes) = segment(peer, 40000, TcpControl::Syn, 1000, None, &[]);
    let syn_ack = reply_tcp(iface.inner.process_tcp(&mut sockets, false, ip, &bytes)).unwrap();
    let cookie = syn_ack.seq_number;

    // The ACK carries the first request bytes, as a client's often does.
    let (ip, bytes) = segment(
        peer,
        40000,
        TcpControl::Psh,
        1001,
        Some((cookie + 1).0),
        b"GET / HTTP/1.1\r\n\r\n",
    );
    iface.inner.process_tcp(&mut sockets, false, ip, &bytes);
    let taken: Vec<_> = handles
        .iter()
        .filter(|&&h| !sockets.get_mut::<tcp::Socket>(h).is_listening())
        .collect();
    assert_eq!(taken.len(), 1, "exactly one listener takes the connection");
    let socket = sockets.get_mut::<tcp::Socket>(*taken[0]);
    assert_eq!(socket.state(), tcp::State::Established);
    assert_eq!(
        socket.remote_endpoint(),
        Some(IpEndpoint::new(peer.into(), 40000))
    );
    let mut got = [0u8; 64];
    let n = socket.recv_slice(&mut got).unwrap();
    assert_eq!(&got[..n], b"GET / HTTP/1.1\r\n\r\n");
    // Our data goes out from the cookie's sequence number + 1.
    socket.send_slice(b"HTTP/1.1 200 OK\r\n").unwrap();
    let stats = iface.syn_cookie_stats();
    assert_eq!((stats.sent, stats.valid, stats.invalid), (1, 1, 0));

    // The rest of the connection is an ordinary one: a second segment is
    // taken in order by the same socket, no other listener moves.
    let (ip, bytes) = segment(
        peer,
        40000,
        TcpControl::None,
        1019,
        Some((cookie + 1).0),
        b"x",
    );
    iface.inner.process_tcp(&mut sockets, false, ip, &bytes);
    assert_eq!(listening(&mut sockets, &handles), 1);
    assert_eq!(iface.syn_cookie_stats().valid, 1);
}

#[test]
fn a_cookie_connection_sends_from_the_cookie_with_the_encoded_mss() {
    let (mut iface, mut sockets, handles) = pool(1);
    let peer = client(9);
    let (ip, bytes) = segment(peer, 40001, TcpControl::Syn, 5000, None, &[]);
    let syn_ack = reply_tcp(iface.inner.process_tcp(&mut sockets, false, ip, &bytes)).unwrap();
    let (ip, bytes) = segment(
        peer,
        40001,
        TcpControl::None,
        5001,
        Some((syn_ack.seq_number + 1).0),
        &[],
    );
    assert!(iface
        .inner
        .process_tcp(&mut sockets, false, ip, &bytes)
        .is_none());
    let socket = sockets.get_mut::<tcp::Socket>(handles[0]);
    assert_eq!(socket.state(), tcp::State::Established);
    // 3000 bytes to send: segments are at most the cookie's MSS (1460).
    socket.send_slice(&[b'a'; 3000]).unwrap();
    let mut sent = Vec::new();
    socket
        .dispatch(&mut iface.inner, |_, _, (_ip, tcp)| {
            sent.push((tcp.seq_number, tcp.payload.len()));
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(sent.first(), Some(&(syn_ack.seq_number + 1, 1460)));
}

#[test]
fn forged_acks_are_counted_and_reset_and_take_no_socket() {
    let (mut iface, mut sockets, handles) = pool(2);
    for i in 0..1000u32 {
        let (ip, bytes) = segment(
            client(i),
            2000,
            TcpControl::None,
            77,
            Some(i.wrapping_mul(2_654_435_761) as i32),
            &[],
        );
        let reply = reply_tcp(iface.inner.process_tcp(&mut sockets, false, ip, &bytes));
        assert_eq!(reply.map(|r| r.control), Some(TcpControl::Rst));
    }
    assert_eq!(listening(&mut sockets, &handles), 2);
    assert_eq!(iface.syn_cookie_stats().invalid, 1000);
    assert_eq!(iface.syn_cookie_stats().valid, 0);
}

/// A connection the server already dropped (evicted, or reset) whose client
/// still sends: its segments 1-3 bytes into the stream must not pass as the
/// handshake's ACK, or a listener takes a connection that starts in the
/// middle of a request. They are reset, as Linux resets them outside a flood.
#[test]
fn a_segment_from_inside_a_dropped_stream_is_reset_not_taken() {
    let (mut iface, mut sockets, handles) = pool(2);
    let peer = client(3);
    let (ip, bytes) = segment(peer, 40002, TcpControl::Syn, 1000, None, &[]);
    let syn_ack = reply_tcp(iface.inner.process_tcp(&mut sockets, false, ip, &bytes)).unwrap();
    let ack = (syn_ack.seq_number + 1).0;
    // The client's request trickled one byte per segment; bytes k = 1.. follow.
    let request = b"GET /index.html HTTP/1.1\r\n";
    for k in 1..request.len() {
        let (ip, bytes) = segment(
            peer,
            40002,
            TcpControl::Psh,
            1001 + k as i32,
            Some(ack),
            &request[k..k + 1],
        );
        let reply = reply_tcp(iface.inner.process_tcp(&mut sockets, false, ip, &bytes));
        assert_eq!(
            reply.map(|r| r.control),
            Some(TcpControl::Rst),
            "byte {k} of the stream"
        );
        assert_eq!(
            listening(&mut sockets, &handles),
            2,
            "byte {k} took a socket"
        );
    }
    let stats = iface.syn_cookie_stats();
    assert_eq!((stats.valid, stats.invalid), (0, request.len() as u64 - 1));
}

#[test]
fn a_valid_cookie_with_no_free_listener_is_dropped_not_reset() {
    let (mut iface, mut sockets, handles) = pool(1);
    let mut acks = Vec::new();
    for port in [50000u16, 50001] {
        let (ip, bytes) = segment(client(1), port, TcpControl::Syn, 10, None, &[]);
        let syn_ack = reply_tcp(iface.inner.process_tcp(&mut sockets, false, ip, &bytes)).unwrap();
        acks.push(segment(
            client(1),
            port,
            TcpControl::None,
            11,
            Some((syn_ack.seq_number + 1).0),
            &[],
        ));
    }
    let (ip, bytes) = acks.remove(0);
    iface.inner.process_tcp(&mut sockets, false, ip, &bytes);
    assert_eq!(listening(&mut sockets, &handles), 0);
    let (ip, bytes) = acks.remove(0);
    // No listener: no reply at all, so the peer's retransmission can succeed later.
    assert!(iface
        .inner
        .process_tcp(&mut sockets, false, ip, &bytes)
        .is_none());
    let stats = iface.syn_cookie_stats();
    assert_eq!((stats.valid, stats.no_socket), (1, 1));
}

#[test]
fn a_syn_to_a_port_nobody_serves_is_still_reset() {
    let (mut iface, mut sockets, _) = pool(1);
    let (ip, bytes) = segment(client(1), 3000, TcpControl::Syn, 10, None, &[]);
    let mut bytes = bytes;
    // Re-address the SYN to port 81.
    let mut packet = TcpPacket::new_unchecked(&mut bytes);
    packet.set_dst_port(81);
    packet.fill_checksum(&client(1).into(), &SERVER.into());
    let reply = reply_tcp(iface.inner.process_tcp(&mut sockets, false, ip, &bytes));
    assert_eq!(reply.map(|r| r.control), Some(TcpControl::Rst));
    assert_eq!(iface.syn_cookie_stats().sent, 0);
}

/// The IPv4 packet carrying `tcp` (from [`segment`]).
#[cfg(feature = "medium-ethernet")]
fn ipv4_bytes(ip: &IpRepr, tcp: &[u8]) -> Vec<u8> {
    let IpRepr::Ipv4(repr) = ip else {
        unreachable!("segment() builds IPv4")
    };
    let mut bytes = vec![0u8; repr.buffer_len() + tcp.len()];
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut bytes[..]),
        &ChecksumCapabilities::default(),
    );
    bytes[repr.buffer_len()..].copy_from_slice(tcp);
    bytes
}

/// PATCH (unikernel) 9: a cookie SYN-ACK is sent once and never again, so the
/// SYN's sender becomes the neighbor of its reply when none is known (an ARP
/// miss would lose the SYN-ACK). Without cookies nothing changes.
#[test]
#[cfg(feature = "medium-ethernet")]
fn a_cookie_syn_teaches_the_next_hop_of_its_syn_ack() {
    for cookies in [true, false] {
        let (mut iface, mut sockets, _) = setup(Medium::Ethernet);
        if cookies {
            iface.set_syn_cookies(Some([1, 2, 3, 4]));
        }
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 4096]),
            tcp::SocketBuffer::new(vec![0; 4096]),
        );
        s.listen(PORT).unwrap();
        sockets.add(s);
        let peer = Ipv4Address::new(192, 168, 1, 50);
        let mac = HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, 0x50]));
        let (ip, tcp_bytes) = segment(peer, 4000, TcpControl::Syn, 7, None, &[]);
        let bytes = ipv4_bytes(&ip, &tcp_bytes);
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        let now = iface.inner.now;
        let reply = iface.inner.process_ipv4(
            &mut sockets,
            PacketMeta::default(),
            mac,
            &packet,
            &mut iface.fragments,
        );
        assert_eq!(reply.is_some(), cookies, "cookies {cookies}");
        assert_eq!(
            iface
                .inner
                .neighbor_cache
                .lookup(&IpAddress::Ipv4(peer), now)
                .found(),
            cookies,
            "cookies {cookies}"
        );
    }
}
