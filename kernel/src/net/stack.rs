use super::phy::Phy;
use crate::config::{Config, FALLBACK_ADDRESS, IpMode};
use crate::dev::net::NetDriver;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::socket::dhcpv4;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// Frames taken from the RX ring per service pass before egress runs: bounds a
/// pass under a flood (smoltcp's `poll` would drain without limit).
pub const RX_BUDGET: usize = 256;
/// Egress rounds per pass (each lets every socket send what it can).
const EGRESS_ROUNDS: usize = 8;
/// Without a DHCP lease by then, use QEMU user networking's fixed address.
pub const DHCP_FALLBACK_MS: u64 = 3_000;

pub struct Stack {
    pub phy: Phy,
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    gateway: Ipv4Address,
    started_ms: u64,
    configured: bool,
}

fn ipv4(a: [u8; 4]) -> Ipv4Address {
    Ipv4Address::new(a[0], a[1], a[2], a[3])
}

pub fn instant(ms: u64) -> Instant {
    Instant::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

impl Stack {
    pub fn new(driver: NetDriver, config: &Config, now_ms: u64, seed: u64) -> Stack {
        let mac = EthernetAddress(driver.mac());
        let mut phy = Phy::new(driver);
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        iface_config.random_seed = seed;
        let iface = Interface::new(iface_config, &mut phy, instant(now_ms));
        let mut stack = Stack {
            phy,
            iface,
            sockets: SocketSet::new(alloc::vec::Vec::new()),
            dhcp: None,
            gateway: ipv4(config.gateway),
            started_ms: now_ms,
            configured: false,
        };
        log::info!("net: mac {mac}");
        match config.ip {
            IpMode::Dhcp => {
                stack.dhcp = Some(stack.sockets.add(dhcpv4::Socket::new()));
                log::info!(
                    "net: DHCP (static {}.{}.{}.{}/{} after {} ms without a lease)",
                    FALLBACK_ADDRESS.0[0],
                    FALLBACK_ADDRESS.0[1],
                    FALLBACK_ADDRESS.0[2],
                    FALLBACK_ADDRESS.0[3],
                    FALLBACK_ADDRESS.1,
                    DHCP_FALLBACK_MS
                );
            }
            IpMode::Static { address, prefix } => {
                stack.set_address(address, prefix, Some(stack.gateway), "static")
            }
        }
        stack
    }

    fn set_address(
        &mut self,
        address: [u8; 4],
        prefix: u8,
        gateway: Option<Ipv4Address>,
        how: &str,
    ) {
        let cidr = Ipv4Cidr::new(ipv4(address), prefix);
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            // One address into an empty list always fits.
            let _ = addrs.push(IpCidr::Ipv4(cidr));
        });
        match gateway {
            Some(gw) => {
                let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
            }
            None => {
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
        self.configured = true;
        match gateway {
            Some(gw) => log::info!("net: ready: {cidr} via {gw} ({how})"),
            None => log::info!("net: ready: {cidr} ({how})"),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.configured
    }

    pub fn address(&self) -> Option<Ipv4Address> {
        self.iface.ipv4_addr()
    }

    /// DHCP events, and the static fallback when no lease arrives in time.
    fn maintain_address(&mut self, now_ms: u64) {
        let Some(handle) = self.dhcp else { return };
        let event = self.sockets.get_mut::<dhcpv4::Socket>(handle).poll();
        match event {
            Some(dhcpv4::Event::Configured(lease)) => {
                let (address, prefix, router) = (
                    lease.address.address(),
                    lease.address.prefix_len(),
                    lease.router,
                );
                self.set_address(address.octets(), prefix, router, "DHCP");
            }
            // Also reported once when the socket starts, before any lease.
            Some(dhcpv4::Event::Deconfigured) if self.configured => {
                log::warn!("net: DHCP lease lost");
                self.iface.update_ip_addrs(|addrs| addrs.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
                self.configured = false;
            }
            Some(dhcpv4::Event::Deconfigured) => {}
            None => {
                if !self.configured && now_ms.saturating_sub(self.started_ms) >= DHCP_FALLBACK_MS {
                    self.sockets.remove(handle);
                    self.dhcp = None;
                    let (address, prefix) = FALLBACK_ADDRESS;
                    log::warn!("net: no DHCP lease after {DHCP_FALLBACK_MS} ms");
                    self.set_address(address, prefix, Some(self.gateway), "fallback");
                }
            }
        }
    }

    /// One bounded pass of the TCP/IP stack: reap TX, take at most [`RX_BUDGET`]
    /// frames, let every socket transmit, re-post every RX buffer. Returns
    /// whether any frame was processed.
    pub fn poll(&mut self, now_ms: u64) -> bool {
        let now = instant(now_ms);
        {
            let driver = self.phy.driver.get_mut();
            if let Err(e) = driver.reap_tx() {
                self.phy.fault = Some(e);
            }
        }
        self.iface.poll_maintenance(now);
        let mut frames = 0;
        while frames < RX_BUDGET {
            match self
                .iface
                .poll_ingress_single(now, &mut self.phy, &mut self.sockets)
            {
                smoltcp::iface::PollIngressSingleResult::None => break,
                _ => frames += 1,
            }
        }
        for _ in 0..EGRESS_ROUNDS {
            if self
                .iface
                .poll_egress(now, &mut self.phy, &mut self.sockets)
                == smoltcp::iface::PollResult::None
            {
                break;
            }
        }
        self.phy.driver.get_mut().refill();
        self.maintain_address(now_ms);
        frames > 0
    }

    /// Once per timer tick: kick both queues again, whatever the interrupts did,
    /// so a lost notification in either direction costs at most one tick.
    pub fn tick_housekeeping(&mut self) {
        self.phy.driver.get_mut().tick();
    }

    /// Whether the network path can serve: an address, and every RX buffer posted
    /// (a driver that stopped re-posting would go deaf after a queue's worth of frames).
    pub fn health(&mut self) -> Result<(), &'static str> {
        if !self.configured {
            return Err("no IPv4 address yet");
        }
        let driver = self.phy.driver.get_mut();
        if usize::from(driver.stats.rx.in_flight()) < crate::dev::net::QUEUE_SIZE {
            return Err("RX buffers not all posted to the device");
        }
        if self.phy.fault.is_some() {
            return Err("the NIC returned an unknown buffer");
        }
        Ok(())
    }

    /// Copies the driver's counters into the stats served at /api/stats.json.
    pub fn fill_stats(&mut self, stats: &mut crate::app::Stats) {
        let d = self.phy.driver.get_mut().stats;
        stats.frames_in = d.frames_in;
        stats.frames_out = d.frames_out;
        stats.bytes_in = d.bytes_in;
        stats.bytes_out = d.bytes_out;
        stats.rx_avail_idx = u64::from(d.rx.avail);
        stats.rx_used_idx = u64::from(d.rx.used);
        stats.tx_avail_idx = u64::from(d.tx.avail);
        stats.tx_used_idx = u64::from(d.tx.used);
        stats.tx_full_events = d.tx_full_events;
        stats.rx_dropped = d.rx_errors + d.tx_errors;
    }

    /// How long smoltcp can wait before it next needs a pass.
    pub fn poll_delay(&mut self, now_ms: u64) -> Option<Duration> {
        self.iface.poll_delay(instant(now_ms), &self.sockets)
    }
}
