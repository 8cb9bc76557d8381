//! TEMPORARY data-path check: answers every connection with a fixed response.
use super::Stack;
use alloc::vec::Vec;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

pub struct Server {
    handles: Vec<SocketHandle>,
}

impl Server {
    pub fn new(stack: &mut Stack, count: usize) -> Server {
        let handles = (0..count)
            .map(|_| {
                let rx = tcp::SocketBuffer::new(alloc::vec![0u8; 4096]);
                let tx = tcp::SocketBuffer::new(alloc::vec![0u8; 16384]);
                stack.sockets.add(tcp::Socket::new(rx, tx))
            })
            .collect();
        Server { handles }
    }

    pub fn service(&mut self, stack: &mut Stack, _now_ms: u64) {
        for &h in &self.handles {
            let s = stack.sockets.get_mut::<tcp::Socket>(h);
            if !s.is_open() {
                let _ = s.listen(80);
                continue;
            }
            if s.can_recv() {
                let _ = s.recv(|b| (b.len(), ()));
                let _ = s.send_slice(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                );
                s.close();
            }
        }
    }
}
