//! Temporary composition of the guest for the simulator, until the
//! host-buildable service pass exists: the driver over the fake device, a
//! smoltcp `Device` over it (as `net::phy` does), the interface and the
//! production `net::server` (compiled from its own file), stepped as
//! `boot.rs`'s loop steps them.

use crate::app::Stats;
use crate::dev::fake_device::{FakeHal, FakeKick, FakeNet, FakeTransport};
use crate::dev::net::{Driver, RxFrame};
use crate::http::{Limits, Stamp};
use core::cell::RefCell;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{Checksum, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// `server.rs` names `super::phy::HTTP_PORT`.
pub mod phy {
    pub use crate::net::HTTP_PORT;
}
pub use crate::net::{eviction, sizing};
#[path = "../net/server.rs"]
pub mod server;

pub type SimDriver<const N: usize> = Driver<FakeHal, FakeTransport, FakeKick, N>;
type Slot<const N: usize> = RefCell<Option<SimDriver<N>>>;

const RX_BUDGET: usize = 256;
const EGRESS_ROUNDS: usize = 8;

pub struct Phy<const N: usize> {
    pub driver: Slot<N>,
    pub checksum_errors: u64,
    pub fault: bool,
}

pub struct Rx<'a, const N: usize> {
    frame: Option<RxFrame>,
    driver: &'a Slot<N>,
}

pub struct Tx<'a, const N: usize> {
    driver: &'a Slot<N>,
}

impl<const N: usize> Device for Phy<N> {
    type RxToken<'a> = Rx<'a, N>;
    type TxToken<'a> = Tx<'a, N>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_, N>, Tx<'_, N>)> {
        let driver = self.driver.get_mut().as_mut()?;
        if !driver.can_transmit() {
            return None;
        }
        let mut next = None;
        for _ in 0..N {
            let frame = match driver.receive() {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(_) => {
                    self.fault = true;
                    return None;
                }
            };
            if crate::net::frame::fails_checksum(frame.frame()) {
                self.checksum_errors += 1;
                driver.give_back(frame);
                continue;
            }
            next = Some(frame);
            break;
        }
        let frame = next?;
        let driver = &self.driver;
        Some((
            Rx {
                frame: Some(frame),
                driver,
            },
            Tx { driver },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_, N>> {
        if !self.driver.get_mut().as_mut()?.can_transmit() {
            return None;
        }
        Some(Tx {
            driver: &self.driver,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps.checksum.ipv4 = Checksum::Tx;
        caps.checksum.tcp = Checksum::Tx;
        caps.checksum.udp = Checksum::Tx;
        caps.checksum.icmpv4 = Checksum::Tx;
        caps
    }
}

impl<const N: usize> RxToken for Rx<'_, N> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(mut self, f: F) -> R {
        let frame = self.frame.take();
        let result = f(frame.as_ref().map_or(&[][..], RxFrame::frame));
        if let (Some(frame), Some(d)) = (frame, self.driver.borrow_mut().as_mut()) {
            d.give_back(frame);
        }
        result
    }
}

impl<const N: usize> Drop for Rx<'_, N> {
    fn drop(&mut self) {
        if let (Some(frame), Some(d)) = (self.frame.take(), self.driver.borrow_mut().as_mut()) {
            d.give_back(frame);
        }
    }
}

impl<const N: usize> TxToken for Tx<'_, N> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        match self.driver.borrow_mut().as_mut() {
            Some(driver) => driver.transmit(len, |buf| (f(buf), None)),
            None => f(&mut std::vec![0u8; len]),
        }
    }
}

fn instant(ms: u64) -> Instant {
    Instant::from_millis(ms as i64)
}

/// The guest as `boot.rs` composes it.
pub struct Guest<const N: usize> {
    pub nic: FakeNet,
    pub phy: Phy<N>,
    iface: Interface,
    sockets: SocketSet<'static>,
    server: server::Server,
    pub stats: Stats,
    pub device_resets: u64,
}

impl<const N: usize> Guest<N> {
    pub fn new(nic: FakeNet, now: u64, seed: u64, sockets_in_pool: usize) -> Guest<N> {
        let driver = SimDriver::<N>::start(nic.transport(), nic.kick()).expect("driver starts");
        let mac = EthernetAddress(driver.mac());
        let mut phy = Phy {
            driver: RefCell::new(Some(driver)),
            checksum_errors: 0,
            fault: false,
        };
        let mut config = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut phy, instant(now));
        iface.set_syn_cookies(Some([seed, seed ^ 1, seed ^ 2, seed ^ 3]));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::Ipv4(Ipv4Cidr::new(
                Ipv4Address::new(10, 0, 2, 15),
                24,
            )));
        });
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(10, 0, 2, 2));
        let mut sockets = SocketSet::new(std::vec::Vec::new());
        let mut server = server::Server::new(
            &mut sockets,
            sockets_in_pool,
            sizing::tx_buffer_for(32 << 20, sockets_in_pool),
            Limits::default(),
        );
        server.add_admin(&mut sockets, Some((8080, 2)));
        server.set_stamp(Stamp {
            epoch_ms: None,
            boot: seed as u32,
        });
        Guest {
            nic,
            phy,
            iface,
            sockets,
            server,
            stats: Stats::new("sim"),
            device_resets: 0,
        }
    }

    fn poll(&mut self, now: u64) -> bool {
        let t = instant(now);
        if let Some(d) = self.phy.driver.get_mut().as_mut() {
            if d.reap_tx().is_err() {
                self.phy.fault = true;
            }
        }
        self.iface.poll_maintenance(t);
        let mut frames = 0;
        while frames < RX_BUDGET {
            match self
                .iface
                .poll_ingress_single(t, &mut self.phy, &mut self.sockets)
            {
                smoltcp::iface::PollIngressSingleResult::None => break,
                _ => frames += 1,
            }
        }
        for _ in 0..EGRESS_ROUNDS {
            if self.iface.poll_egress(t, &mut self.phy, &mut self.sockets)
                == smoltcp::iface::PollResult::None
            {
                break;
            }
        }
        if let Some(d) = self.phy.driver.get_mut().as_mut() {
            d.refill();
        }
        frames > 0
    }

    /// One pass of the main loop; returns whether the loop may sleep.
    pub fn pass(&mut self, now: u64) -> bool {
        let mut worked = self.poll(now);
        let health = if self.phy.fault {
            Err("fault")
        } else {
            Ok(())
        };
        let busy = self
            .server
            .service(&mut self.sockets, now, &mut self.stats, health);
        worked |= self.poll(now);
        let tx_blocked = self
            .phy
            .driver
            .get_mut()
            .as_mut()
            .is_some_and(|d| d.tx_blocked());
        !busy
            && !worked
            && (tx_blocked
                || self.iface.poll_delay(instant(now), &self.sockets)
                    != Some(smoltcp::time::Duration::ZERO))
    }

    /// The per-tick housekeeping: kicks, audit, reset when broken.
    pub fn tick(&mut self, _now: u64) {
        let broken = match self.phy.driver.get_mut().as_mut() {
            Some(d) => {
                d.tick();
                self.phy.fault || d.audit().is_err()
            }
            None => true,
        };
        if broken {
            self.reset();
        }
    }

    fn reset(&mut self) {
        self.device_resets += 1;
        drop(self.phy.driver.get_mut().take());
        self.phy.fault = false;
        *self.phy.driver.get_mut() = SimDriver::<N>::start(self.nic.transport(), self.nic.kick()).ok();
    }

    pub fn rx_posted(&mut self) -> usize {
        self.phy
            .driver
            .get_mut()
            .as_ref()
            .map_or(0, |d| d.rx_posted_count())
    }

    pub fn is_idle(&self) -> bool {
        self.server.is_idle()
    }

    /// When the guest next needs a pass without any interrupt.
    pub fn next_deadline(&mut self, now: u64) -> Option<u64> {
        let smol = self
            .iface
            .poll_delay(instant(now), &self.sockets)
            .map(|d| now + d.total_millis());
        [smol, self.server.next_deadline()].into_iter().flatten().min()
    }
}

impl<const N: usize> super::world::Target for Guest<N> {
    fn pass(&mut self, now: u64, _irq: bool) -> bool {
        Guest::pass(self, now)
    }
    fn tick(&mut self, now: u64) {
        Guest::tick(self, now)
    }
    fn rx_posted(&mut self) -> Option<usize> {
        self.phy.driver.get_mut().as_ref().map(|d| d.rx_posted_count())
    }
    fn queue_size(&self) -> usize {
        N
    }
    fn is_idle(&mut self) -> bool {
        self.server.is_idle()
    }
    fn next_deadline(&mut self, now: u64) -> Option<u64> {
        Guest::next_deadline(self, now)
    }
    fn stats(&mut self, now: u64) -> Stats {
        self.stats.uptime_ms = now;
        self.stats.clone()
    }
}
