use super::*;

use crate::socket::tcp::Socket;

impl InterfaceInner {
    pub(crate) fn process_tcp<'frame>(
        &mut self,
        sockets: &mut SocketSet,
        handled_by_raw_socket: bool,
        ip_repr: IpRepr,
        ip_payload: &'frame [u8],
    ) -> Option<Packet<'frame>> {
        let (src_addr, dst_addr) = (ip_repr.src_addr(), ip_repr.dst_addr());

        // Per RFC 1122 §3.2.1.3, the unspecified address must never appear as a source
        // or destination in any IP datagram. Drop such TCP segments early to avoid
        // creating sockets with unspecified peers (which would later panic on egress).
        // This is not done at the iface level because it might be useful with
        // UDP or raw sockets, but it's definitely not useful for TCP.
        if src_addr.is_unspecified() || dst_addr.is_unspecified() {
            return None;
        }

        let tcp_packet = check!(TcpPacket::new_checked(ip_payload));
        let tcp_repr = check!(TcpRepr::parse(
            &tcp_packet,
            &src_addr,
            &dst_addr,
            &self.caps.checksum
        ));

        // PATCH (unikernel): sockets bound to a connection first, listeners
        // second. Upstream offers the segment to sockets in handle order, so
        // with several listeners on one port a retransmitted SYN (its SYN-ACK
        // was lost) could be taken by a listener with a lower handle than the
        // socket already in SYN-RECEIVED for that connection: two sockets then
        // answered for one 4-tuple and the second reset the connection.
        for listeners in [false, true] {
            // PATCH (unikernel): with SYN cookies on, a listener takes a
            // connection only through `syn_cookie_segment`.
            if listeners && self.syn_cookies.is_some() {
                break;
            }
            for tcp_socket in sockets
                .items_mut()
                .filter_map(|i| Socket::downcast_mut(&mut i.socket))
            {
                if tcp_socket.is_listening() == listeners
                    && tcp_socket.accepts(self, &ip_repr, &tcp_repr)
                {
                    return tcp_socket
                        .process(self, &ip_repr, &tcp_repr)
                        .map(|(ip, tcp)| Packet::new(ip, IpPayload::Tcp(tcp)));
                }
            }
        }

        if let Some(reply) = self.syn_cookie_segment(sockets, &ip_repr, &tcp_repr) {
            return reply;
        }

        if tcp_repr.control == TcpControl::Rst
            || ip_repr.dst_addr().is_unspecified()
            || ip_repr.src_addr().is_unspecified()
            || handled_by_raw_socket
        {
            // Never reply to a TCP RST packet with another TCP RST packet.
            // Never send a TCP RST packet with unspecified addresses.
            // Never send a TCP RST when packet has been handled by raw socket.
            None
        } else {
            // The packet wasn't handled by a socket, send a TCP RST packet.
            let (ip, tcp) = tcp::Socket::rst_reply(&ip_repr, &tcp_repr);
            Some(Packet::new(ip, IpPayload::Tcp(tcp)))
        }
    }

    /// PATCH (unikernel): SYN cookies, for a segment no connection took.
    /// `None`: not a cookie matter (the caller answers as without cookies).
    /// `Some(reply)`: handled; a SYN to a served port gets a cookie SYN-ACK
    /// and costs nothing, and an ACK returning a valid cookie makes a
    /// listening socket ESTABLISHED (or, with none free, is dropped so the
    /// peer's retransmission can try again). An ACK whose cookie fails is
    /// counted and left to the caller, which resets it.
    fn syn_cookie_segment<'frame>(
        &mut self,
        sockets: &mut SocketSet,
        ip_repr: &IpRepr,
        repr: &TcpRepr,
    ) -> Option<Option<Packet<'frame>>> {
        use super::super::syn_cookie::CookieTuple;

        let cookies = self.syn_cookies.as_ref()?;
        let window = sockets
            .items()
            .filter_map(|i| Socket::downcast(&i.socket))
            .find(|s| s.serves(ip_repr, repr))?
            .syn_window();
        let tuple = CookieTuple {
            remote_addr: ip_repr.src_addr(),
            local_addr: ip_repr.dst_addr(),
            remote_port: repr.src_port,
            local_port: repr.dst_port,
        };
        match (repr.control, repr.ack_number) {
            (TcpControl::Syn, None) => {
                let (cookie, _) = cookies.make(
                    &tuple,
                    repr.seq_number.0 as u32,
                    repr.max_seg_size,
                    self.now,
                );
                let mut reply = TcpRepr {
                    src_port: repr.dst_port,
                    dst_port: repr.src_port,
                    control: TcpControl::Syn,
                    seq_number: TcpSeqNumber(cookie as i32),
                    ack_number: Some(repr.seq_number + 1),
                    window_len: window,
                    window_scale: None,
                    max_seg_size: None,
                    sack_permitted: false,
                    sack_ranges: [None, None, None],
                    timestamp: None,
                    payload: &[],
                };
                let mut ip_reply =
                    IpRepr::new(ip_repr.dst_addr(), ip_repr.src_addr(), IpProtocol::Tcp, 0, 64);
                let local_mss = self
                    .ip_mtu()
                    .saturating_sub(ip_reply.header_len() + TCP_HEADER_LEN);
                reply.max_seg_size = Some(u16::try_from(local_mss).unwrap_or(u16::MAX));
                ip_reply.set_payload_len(reply.buffer_len());
                if let Some(c) = self.syn_cookies.as_mut() {
                    c.stats.sent += 1;
                }
                Some(Some(Packet::new(ip_reply, IpPayload::Tcp(reply))))
            }
            (TcpControl::None | TcpControl::Psh | TcpControl::Fin, Some(ack)) => {
                let their_isn = (repr.seq_number - 1).0 as u32;
                let our_isn = ack - 1;
                let Some(mss) = cookies.check(&tuple, their_isn, our_isn.0 as u32, self.now)
                else {
                    if let Some(c) = self.syn_cookies.as_mut() {
                        c.stats.invalid += 1;
                    }
                    return None;
                };
                let listener = sockets
                    .items_mut()
                    .filter_map(|i| Socket::downcast_mut(&mut i.socket))
                    .find(|s| s.is_listening() && s.serves(ip_repr, repr));
                let Some(socket) = listener else {
                    if let Some(c) = self.syn_cookies.as_mut() {
                        c.stats.no_socket += 1;
                    }
                    return Some(None);
                };
                if let Some(c) = self.syn_cookies.as_mut() {
                    c.stats.valid += 1;
                }
                socket.accept_syn_cookie(self, ip_repr, repr, our_isn, mss);
                Some(
                    socket
                        .process(self, ip_repr, repr)
                        .map(|(ip, tcp)| Packet::new(ip, IpPayload::Tcp(tcp))),
                )
            }
            _ => None,
        }
    }
}
