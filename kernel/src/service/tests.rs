//! The service pass over the real driver on the fake device.

use super::*;
use crate::dev::fake_device::DeviceConfig;
use crate::dev::fake_nic::{FakeNic, Real};
use crate::dev::faults::NoRepostNic;
use crate::dev::port::Nic;
use crate::net::Health;
use crate::net::test_frames::{GUEST_IP, PEER_MAC, arp_request};
use std::vec::Vec;
use virtio_drivers::transport::DeviceStatus;

const N: usize = 16;

fn service() -> Service<FakeNic<Real<N>>, KeepLines> {
    service_over(FakeNic::<Real<N>>::new(DeviceConfig::modern()))
}

fn service_over<D: Nic>(mut nic: D) -> Service<D, KeepLines> {
    let config = Config::parse("ip=10.0.2.15/24\nqueue_size=16", &mut |w| {
        panic!("config warning: {w}")
    });
    let port = nic.open(None).expect("the fake device opens");
    let stack = Stack::new(nic, port, &config, 0, 1, 2);
    let parts = AppParts {
        site: Site::baked(),
        stamp: Stamp::default(),
        profile: crate::app::routes::no_profile,
        access_log: None,
        heap_free: 1 << 20,
        version: "test",
    };
    Service::new(stack, &config, parts, KeepLines, 0)
}

fn readings() -> Readings {
    Readings {
        interrupts_net: 3,
        interrupts_ignored: 1,
        interrupts_timer: 9,
        heap: Some((100, 200)),
    }
}

fn nic(service: &mut Service<FakeNic<Real<N>>, KeepLines>) -> &mut FakeNic<Real<N>> {
    service.stack().nic()
}

#[test]
fn a_pass_after_an_interrupt_answers_what_arrived() {
    let mut s = service();
    let request = arp_request(GUEST_IP);
    assert_eq!(nic(&mut s).dev.send_to_guest([&request[..]]), 1);
    let outcome = s.pass(10, 0, true, readings);
    assert!(!outcome.ticked);
    let dev = &nic(&mut s).dev;
    dev.complete_tx(N);
    let sent = dev.take_sent();
    let reply = sent
        .iter()
        .find(|f| f.get(12..14) == Some(&[0x08, 0x06][..]))
        .expect("an ARP reply went out in the same pass");
    assert_eq!(&reply[0..6], &PEER_MAC);
    assert_eq!(&reply[20..22], &[0, 2], "ARP reply opcode");
    assert_eq!(&reply[28..32], &GUEST_IP, "sender address");
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    assert_eq!(s.stats().frames_in, 1);
    assert_eq!(s.stats().frames_out, 1);
}

#[test]
fn quiet_passes_leave_the_stats_for_the_next_full_pass() {
    let mut s = service();
    let quiet = s.pass(5, 0, false, readings);
    assert!(quiet.may_sleep);
    assert_eq!(s.stats().loop_iterations, 1);
    assert_eq!(
        s.stats().uptime_ms,
        0,
        "a quiet pass does not fill the stats"
    );
    assert_eq!(s.stats().interrupts_net, 0);
    s.pass(7, 0, true, readings);
    assert_eq!(s.stats().loop_iterations, 2);
    assert_eq!(s.stats().uptime_ms, 7);
    assert_eq!(s.stats().interrupts_net, 3);
    assert_eq!(s.stats().interrupts_timer, 9);
    assert_eq!((s.stats().heap_used, s.stats().heap_free), (100, 200));
    assert_eq!(s.stats().timer_recoveries, 0);
}

#[test]
fn a_frame_found_without_an_interrupt_counts_as_a_timer_recovery() {
    let mut s = service();
    let request = arp_request(GUEST_IP);
    nic(&mut s).dev.send_to_guest([&request[..]]);
    // The device has a used entry: the pass is not quiet even without the flag.
    s.pass(10, 0, false, readings);
    assert_eq!(s.stats().timer_recoveries, 1);
    assert_eq!(s.stats().frames_in, 1);
}

#[test]
fn the_tick_resets_a_device_that_asks_for_it_and_serving_goes_on() {
    let mut s = service();
    s.pass(1, 0, true, readings);
    assert_eq!(nic(&mut s).opened, 1);
    nic(&mut s).dev.state_mut().status |= DeviceStatus::DEVICE_NEEDS_RESET;
    // Housekeeping runs only when the tick moves.
    s.pass(2, 0, true, readings);
    assert_eq!(nic(&mut s).opened, 1);
    let outcome = s.pass(3, 1, true, readings);
    assert!(outcome.ticked);
    assert_eq!(nic(&mut s).opened, 2, "the driver was rebuilt");
    assert!(!nic(&mut s).needs_reset());
    s.pass(4, 1, true, readings);
    assert_eq!(s.stats().device_resets, 1);
    let request = arp_request(GUEST_IP);
    nic(&mut s).dev.send_to_guest([&request[..]]);
    s.pass(5, 1, true, readings);
    let dev = &nic(&mut s).dev;
    dev.complete_tx(N);
    assert_eq!(dev.take_sent().len(), 1, "the new driver answers");
}

#[test]
fn a_port_that_stops_reposting_is_reset_by_the_audit() {
    let mut s = service_over(NoRepostNic::new(FakeNic::<Real<N>>::new(
        DeviceConfig::modern(),
    )));
    let dev = |s: &mut Service<NoRepostNic<FakeNic<Real<N>>>, KeepLines>| {
        s.stack().nic().inner().dev.clone()
    };
    let request = arp_request(GUEST_IP);
    let frames: Vec<&[u8]> = (0..N).map(|_| &request[..]).collect();
    assert_eq!(dev(&mut s).send_to_guest(frames), N);
    s.pass(1, 0, true, readings);
    assert_eq!(s.stack().health(), Err(Health::RxUnposted));
    // Three ticks short of buffers, then the reset.
    for tick in 1..=3 {
        s.pass(1 + tick, tick, false, readings);
    }
    assert_eq!(s.stack().nic().inner().opened, 2, "the audit reset the NIC");
    s.pass(10, 3, true, readings);
    assert_eq!(s.stats().device_resets, 1);
    assert_eq!(s.stack().health(), Ok(()));
    // The port opened by the reset re-posts.
    let dev = dev(&mut s);
    dev.send_to_guest(frames_of(&request, N));
    s.pass(11, 3, true, readings);
    s.pass(12, 4, true, readings);
    assert_eq!(s.stack().health(), Ok(()));
    assert_eq!(nic_resets(&mut s), 1);
}

fn frames_of(frame: &[u8], n: usize) -> Vec<&[u8]> {
    (0..n).map(|_| frame).collect()
}

fn nic_resets(s: &mut Service<NoRepostNic<FakeNic<Real<N>>>, KeepLines>) -> u32 {
    s.stack().nic().inner().opened - 1
}

/// The driver and the service are moved by value through the guest's main
/// loop frames and a reset's `Nic::open` chain, on a 256 KiB stack: with the
/// virtqueues inline (~17 KiB per copy at 256 entries) a NIC reset under
/// `fault=no-repost` overflowed it.
#[test]
fn ports_and_the_service_are_cheap_to_move() {
    use crate::dev::fake_nic::FakeDriver;
    assert!(core::mem::size_of::<FakeDriver<256>>() <= 1024);
    assert!(core::mem::size_of::<Service<NoRepostNic<FakeNic<Real<256>>>, KeepLines>>() <= 4096);
}

/// The client's end of the wire: frames the client sent (for the guest) and
/// frames the guest sent (for the client).
#[derive(Default)]
struct Wire {
    to_guest: Vec<Vec<u8>>,
    to_client: std::collections::VecDeque<Vec<u8>>,
}

struct WireRx(Vec<u8>);
struct WireTx<'a>(&'a mut Vec<Vec<u8>>);

impl smoltcp::phy::RxToken for WireRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for WireTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = std::vec![0u8; len];
        let r = f(&mut frame);
        self.0.push(frame);
        r
    }
}

impl smoltcp::phy::Device for Wire {
    type RxToken<'a> = WireRx;
    type TxToken<'a> = WireTx<'a>;

    fn receive(&mut self, _now: smoltcp::time::Instant) -> Option<(WireRx, WireTx<'_>)> {
        let frame = self.to_client.pop_front()?;
        Some((WireRx(frame), WireTx(&mut self.to_guest)))
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<WireTx<'_>> {
        Some(WireTx(&mut self.to_guest))
    }

    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        let mut caps = smoltcp::phy::DeviceCapabilities::default();
        caps.medium = smoltcp::phy::Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// Sends `request` from a client at PEER_IP to the guest's `port` through
/// the fake device and returns what came back before the guest closed.
fn exchange(s: &mut Service<FakeNic<Real<N>>, KeepLines>, port: u16, request: &[u8]) -> Vec<u8> {
    use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
    use smoltcp::socket::tcp;
    use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, Ipv4Address};
    let mut wire = Wire::default();
    let config = IfaceConfig::new(EthernetAddress(PEER_MAC).into());
    let mut iface = Interface::new(config, &mut wire, crate::net::instant(0));
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::v4(10, 0, 2, 2), 24));
    });
    let mut sockets = SocketSet::new(Vec::new());
    let socket = tcp::Socket::new(
        tcp::SocketBuffer::new(std::vec![0; 65536]),
        tcp::SocketBuffer::new(std::vec![0; 4096]),
    );
    let handle = sockets.add(socket);
    let guest = Ipv4Address::new(GUEST_IP[0], GUEST_IP[1], GUEST_IP[2], GUEST_IP[3]);
    sockets
        .get_mut::<tcp::Socket>(handle)
        .connect(iface.context(), (guest, port), 40_000)
        .expect("connect");
    let mut sent = false;
    let mut received = Vec::new();
    for t in 1..2_000u64 {
        iface.poll(crate::net::instant(t), &mut wire, &mut sockets);
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if !sent && socket.may_send() {
            socket.send_slice(request).expect("request fits");
            sent = true;
        }
        while socket.can_recv() {
            let _ = socket.recv(|b| {
                received.extend_from_slice(b);
                (b.len(), ())
            });
        }
        if sent && !socket.is_open() {
            return received;
        }
        if sent && !socket.may_recv() {
            socket.close();
        }
        let dev = s.stack().nic().dev.clone();
        let frames: Vec<Vec<u8>> = wire.to_guest.drain(..).collect();
        dev.send_to_guest(frames.iter().map(Vec::as_slice));
        s.pass(t, t / 10, true, readings);
        dev.flush_rx();
        dev.complete_tx(4 * N);
        wire.to_client.extend(dev.take_sent());
    }
    panic!(
        "no complete exchange; got {:?}",
        std::string::String::from_utf8_lossy(&received)
    );
}

fn body_of(response: &[u8]) -> &str {
    let text = core::str::from_utf8(response).expect("UTF-8 response");
    text.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[test]
fn an_http_request_goes_through_the_pass_and_is_counted() {
    let mut s = service();
    let response = exchange(
        &mut s,
        80,
        b"GET /health HTTP/1.1\r\nHost: guest\r\nConnection: close\r\n\r\n",
    );
    assert!(response.starts_with(b"HTTP/1.1 200 "), "{response:?}");
    assert_eq!(body_of(&response), "ok\n");
    // Another pass settles the socket and copies the counters.
    s.pass(5_000, 500, true, readings);
    assert_eq!(s.stats().connections_accepted, 1);
    assert_eq!(s.stats().connections_active, 0);
    assert_eq!(s.stats().requests_total, 1);
    assert_eq!(s.stats().status_2xx, 1);
}

#[test]
fn the_admin_pool_serves_the_stats_that_count_its_own_connection() {
    let mut s = service();
    let request = b"GET /api/stats.json HTTP/1.1\r\nHost: guest\r\nConnection: close\r\n\r\n";
    let public = exchange(&mut s, 80, request);
    assert!(
        public.starts_with(b"HTTP/1.1 404 "),
        "the site's port has no stats"
    );
    let admin = exchange(&mut s, crate::config::DEFAULT_ADMIN_PORT, request);
    assert!(admin.starts_with(b"HTTP/1.1 200 "));
    let json: serde_json::Value = serde_json::from_str(body_of(&admin)).expect("JSON");
    assert_eq!(json["connections_accepted"], 2, "{json}");
    assert_eq!(
        json["connections_active"], 1,
        "the asking connection is open"
    );
    assert!(json["frames_in"].as_u64().is_some_and(|n| n > 0), "{json}");
}
