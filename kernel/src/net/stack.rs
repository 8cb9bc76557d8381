use super::phy::Phy;
use crate::config::{Config, FALLBACK_ADDRESS, IpMode};
use crate::dev::net::DriverStats;
use crate::dev::port::{Nic, OpenError, Port};
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

/// Ticks a refill may leave RX buffers unposted before the device is reset.
const UNPOSTED_TICKS_LIMIT: u32 = 3;
/// TX frames in flight with no completion for this long: the device is wedged.
const TX_WEDGE_MS: u64 = 3_000;
/// A gap between ticks this long (a hundred ticks) is the clock jumping over
/// a pause of the whole VM (live migration, a snapshot, a suspended host),
/// during which the device did not run either: not time without completions.
const CLOCK_JUMP_MS: u64 = 1_000;

/// Driver counters that survive device resets (each reset starts a new driver).
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    frames_in: u64,
    frames_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    tx_full_events: u64,
    errors: u64,
    rx_wraps: u64,
    tx_wraps: u64,
}

impl Totals {
    fn add(&mut self, d: &DriverStats) {
        let add = |total: &mut u64, n: u64| *total = total.saturating_add(n);
        add(&mut self.frames_in, d.frames_in);
        add(&mut self.frames_out, d.frames_out);
        add(&mut self.bytes_in, d.bytes_in);
        add(&mut self.bytes_out, d.bytes_out);
        add(&mut self.tx_full_events, d.tx_full_events);
        add(&mut self.errors, d.rx_errors.saturating_add(d.tx_errors));
        add(&mut self.rx_wraps, d.rx.used_wraps);
        add(&mut self.tx_wraps, d.tx.used_wraps);
    }
}

/// The network path's health: what `/health` reports, what the log says and
/// why the NIC is reset. Every variant but [`Health::NoAddress`] is a NIC
/// problem; [`Stack::health`] reports those it sees at once, the tick's ring
/// audit acts on them (see [`Stack::tick_housekeeping`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    NoAddress,
    /// No driver: the NIC is being reset (an earlier attempt failed).
    Resetting,
    /// The device returned a buffer it was never given.
    UnknownBuffer,
    NeedsReset,
    AuditFailed,
    RxUnposted,
    TxWedged,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::NoAddress => "no IPv4 address yet",
            Health::Resetting => "the NIC is being reset",
            Health::UnknownBuffer => "the NIC returned a buffer it was never given",
            Health::NeedsReset => "the NIC set NEEDS_RESET",
            Health::AuditFailed => "the NIC's ring audit failed",
            Health::RxUnposted => "RX buffers not all posted to the NIC",
            Health::TxWedged => "no TX completion with frames in flight",
        }
    }
}

impl core::fmt::Display for Health {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the stack counts (the composition copies them into the app's stats):
/// the driver's counters, including those of drivers replaced by resets,
/// its ring indices now, and the interface's SYN cookies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackCounters {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub tx_full_events: u64,
    /// Used entries the driver could not accept, both queues.
    pub rx_dropped: u64,
    pub rx_checksum_errors: u64,
    pub rx_wraps: u64,
    pub tx_wraps: u64,
    pub rx_avail_idx: u64,
    pub rx_used_idx: u64,
    pub tx_avail_idx: u64,
    pub tx_used_idx: u64,
    pub device_resets: u64,
    pub tx_large_buffer_bytes: u64,
    pub syn_cookies_sent: u64,
    pub syn_cookies_valid: u64,
    pub syn_cookies_invalid: u64,
    /// A completed handshake that found every socket busy is dropped, so
    /// the client retries: that is what a refusal is.
    pub connections_refused: u64,
}

pub struct Stack<D: Nic> {
    carried: Totals,
    phy: Phy<D::Port>,
    /// The device, to open it again on reset.
    nic: D,
    device_resets: u64,
    /// Consecutive ticks with RX buffers missing from the ring after a refill.
    ticks_short_of_buffers: u32,
    /// TX used index and when it last moved while frames were in flight.
    tx_watch: (u16, u64),
    /// When housekeeping last ran, to see the clock jump over a pause.
    last_tick_ms: u64,
    iface: Interface,
    pub sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    gateway: Ipv4Address,
    started_ms: u64,
    configured: bool,
}

fn ipv4(a: [u8; 4]) -> Ipv4Address {
    Ipv4Address::new(a[0], a[1], a[2], a[3])
}

/// Keys for SYN cookies from the entropy the guest has without RDRAND: the TSC
/// at two moments of boot (each spread by the host's scheduling), stretched by
/// SplitMix64. Guessable by someone who can bound both readings closely; a
/// stronger source would only need to replace this function.
fn syn_cookie_secret(seed: u64, later: u64) -> [u64; 4] {
    let mut state = seed ^ later.rotate_left(32);
    core::array::from_fn(|_| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

pub fn instant(ms: u64) -> Instant {
    Instant::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

impl<D: Nic> Stack<D> {
    /// The stack over `driver`, a port `nic` opened. `seed` and `later_seed`
    /// are two readings of the guest's entropy (see `syn_cookie_secret`).
    pub fn new(
        nic: D,
        driver: D::Port,
        config: &Config,
        now_ms: u64,
        seed: u64,
        later_seed: u64,
    ) -> Stack<D> {
        let mac = EthernetAddress(driver.mac());
        let mut phy = Phy::new(driver);
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        iface_config.random_seed = seed;
        let mut iface = Interface::new(iface_config, &mut phy, instant(now_ms));
        // A SYN costs no socket: see `smoltcp::iface::Interface::set_syn_cookies`.
        iface.set_syn_cookies(Some(syn_cookie_secret(seed, later_seed)));
        let mut stack = Stack {
            phy,
            nic,
            device_resets: 0,
            carried: Totals::default(),
            ticks_short_of_buffers: 0,
            tx_watch: (0, now_ms),
            last_tick_ms: now_ms,
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

    /// The device the ports are opened on.
    pub fn nic(&mut self) -> &mut D {
        &mut self.nic
    }

    /// The port in use (`None` while a reset is failing to open a new one).
    pub fn port(&mut self) -> Option<&mut D::Port> {
        self.phy.driver_mut()
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
        if let Some(Err(e)) = self.phy.driver_mut().map(|d| d.reap_tx()) {
            self.phy.fault = Some(e);
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
        if let Some(driver) = self.phy.driver_mut() {
            driver.refill();
        }
        self.maintain_address(now_ms);
        frames > 0
    }

    /// Once per timer tick: kick both queues again whatever the interrupts did
    /// (a lost notification in either direction costs at most one tick), then
    /// audit the rings and reset the device if it is wedged or broken. A
    /// clock jump since the last tick restarts the TX watch: the host paused
    /// the device with the guest, so the gap says nothing about completions.
    pub fn tick_housekeeping(&mut self, now_ms: u64) {
        let jumped = now_ms.saturating_sub(self.last_tick_ms) >= CLOCK_JUMP_MS;
        self.last_tick_ms = now_ms;
        if jumped {
            self.tx_watch.1 = now_ms;
        }
        if let Some(driver) = self.phy.driver_mut() {
            driver.refill();
            driver.kick_queues();
        }
        if let Some(reason) = self.device_problem(now_ms) {
            self.reset_device(reason, now_ms);
        }
    }

    /// Why the device needs a reset, if it does: an error the driver cannot get
    /// past, a broken buffer invariant, RX buffers that stay unposted, the
    /// device asking for it, or TX making no progress with frames in flight.
    fn device_problem(&mut self, now_ms: u64) -> Option<Health> {
        let needs_reset = self.nic.needs_reset();
        let fault = self.phy.fault.is_some();
        let Some(driver) = self.phy.driver_mut() else {
            return Some(Health::Resetting);
        };
        if fault {
            return Some(Health::UnknownBuffer);
        }
        if needs_reset {
            return Some(Health::NeedsReset);
        }
        if let Err(e) = driver.audit() {
            log::warn!("net: ring audit: {} ({:?})", e.what, e.buffers);
            return Some(Health::AuditFailed);
        }
        let stats = driver.stats();
        let queue_size = driver.queue_size();
        let posted = usize::from(stats.rx.in_flight());
        let tx = stats.tx;
        if posted < queue_size {
            self.ticks_short_of_buffers = self.ticks_short_of_buffers.saturating_add(1);
            if self.ticks_short_of_buffers == 1 {
                log::warn!(
                    "net: ring audit: {posted} of {queue_size} RX buffers posted after refill"
                );
            }
        } else {
            self.ticks_short_of_buffers = 0;
        }
        if self.ticks_short_of_buffers >= UNPOSTED_TICKS_LIMIT {
            return Some(Health::RxUnposted);
        }
        if tx.in_flight() == 0 || tx.used != self.tx_watch.0 {
            self.tx_watch = (tx.used, now_ms);
        } else if now_ms.saturating_sub(self.tx_watch.1) >= TX_WEDGE_MS {
            return Some(Health::TxWedged);
        }
        None
    }

    /// Replaces the driver with a fresh one over the same device, without
    /// rebooting: the old driver is dropped first (which resets the device and
    /// frees its rings and buffers), then the transport is opened again. TCP
    /// connections survive; frames in flight are lost and retransmitted.
    fn reset_device(&mut self, reason: Health, now_ms: u64) {
        self.device_resets = self.device_resets.saturating_add(1);
        log::warn!("net: resetting the NIC (#{}): {reason}", self.device_resets);
        let old = self.phy.driver.get_mut().take();
        if let Some(old) = &old {
            self.carried.add(&old.stats());
        }
        self.phy.fault = None;
        self.ticks_short_of_buffers = 0;
        self.tx_watch = (0, now_ms);
        match self.nic.open(old) {
            Ok(driver) => {
                *self.phy.driver.get_mut() = Some(driver);
                log::info!("net: NIC reset done");
            }
            Err(OpenError::Gone) => {
                log::error!("net: NIC reset: the transport did not come back; retrying next tick")
            }
            Err(OpenError::Driver(e)) => {
                log::error!("net: NIC reset failed: {e:?}; retrying next tick")
            }
            Err(e) => log::error!("net: NIC reset failed: {e:?}; retrying next tick"),
        }
    }

    /// Whether the network path can serve: an address, a driver that has
    /// not failed, and every RX buffer posted (a driver that stopped
    /// re-posting would go deaf after a queue's worth of frames).
    pub fn health(&mut self) -> Result<(), Health> {
        if !self.configured {
            return Err(Health::NoAddress);
        }
        if self.phy.fault.is_some() {
            return Err(Health::UnknownBuffer);
        }
        let Some(driver) = self.phy.driver_mut() else {
            return Err(Health::Resetting);
        };
        if usize::from(driver.stats().rx.in_flight()) < driver.queue_size() {
            return Err(Health::RxUnposted);
        }
        Ok(())
    }

    /// The counters as of now (see [`StackCounters`]).
    pub fn counters(&mut self) -> StackCounters {
        let mut total = self.carried;
        let current = self.phy.driver_mut().map(|d| d.stats()).unwrap_or_default();
        total.add(&current);
        let cookies = self.iface.syn_cookie_stats();
        StackCounters {
            frames_in: total.frames_in,
            frames_out: total.frames_out,
            bytes_in: total.bytes_in,
            bytes_out: total.bytes_out,
            tx_full_events: total.tx_full_events,
            rx_dropped: total.errors,
            rx_checksum_errors: self.phy.checksum_errors,
            rx_wraps: total.rx_wraps,
            tx_wraps: total.tx_wraps,
            rx_avail_idx: u64::from(current.rx.avail),
            rx_used_idx: u64::from(current.rx.used),
            tx_avail_idx: u64::from(current.tx.avail),
            tx_used_idx: u64::from(current.tx.used),
            device_resets: self.device_resets,
            tx_large_buffer_bytes: self
                .phy
                .driver_mut()
                .map_or(0, |d| d.large_buffer_bytes() as u64),
            syn_cookies_sent: cookies.sent,
            syn_cookies_valid: cookies.valid,
            syn_cookies_invalid: cookies.invalid,
            connections_refused: cookies.no_socket,
        }
    }

    /// Newcomers that completed a handshake and found every socket busy.
    pub fn refused(&self) -> u64 {
        self.iface.syn_cookie_stats().no_socket
    }

    /// Whether a pass could do anything now: the device has frames or
    /// completions for us (or frames in flight), smoltcp has a timer due, a
    /// driver fault waits for the audit, or the device is being reset.
    pub fn has_work(&mut self, now_ms: u64) -> bool {
        if self.phy.fault.is_some() || self.poll_delay(now_ms) == Some(Duration::ZERO) {
            return true;
        }
        self.phy.driver_mut().is_none_or(|d| d.has_work())
    }

    /// The TX ring is full: more passes cannot send until a completion arrives.
    pub fn tx_blocked(&mut self) -> bool {
        self.phy.driver_mut().is_some_and(|d| d.tx_blocked())
    }

    /// How long smoltcp can wait before it next needs a pass.
    pub fn poll_delay(&mut self, now_ms: u64) -> Option<Duration> {
        self.iface.poll_delay(instant(now_ms), &self.sockets)
    }
}

#[cfg(test)]
mod tests;
