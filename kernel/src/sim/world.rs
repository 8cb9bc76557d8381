//! The simulation loop: the guest, its NIC's device side, the wire and the
//! clients under one virtual clock, with the faults and the traffic a seed
//! chooses, and the invariants checked as it runs.

use super::Rng;
use super::alloc;
use super::client::{Clients, Counts, Manner, Plan};
use super::oracle::{self, Get, Spec, Version};
use super::wire::{Weather, Wire};
use crate::app::Stats;
use crate::dev::fake_device::FakeNet;
use std::collections::VecDeque;
use std::format;
use std::string::String;
use std::vec::Vec;

pub const DAY_MS: u64 = 86_400_000;
/// The guest's timer tick (100 Hz).
pub const TICK_MS: u64 = 10;
/// After the network or the device misbehaved, stalls are not judged for
/// this long (TCP's retransmission backoff recovers within it).
const GRACE_MS: u64 = 120_000;
/// Every server socket is back to listening this long after the last client
/// left: the longest server deadline (30 s send) plus smoltcp's 60 s timeout.
pub const LISTEN_BOUND_MS: u64 = 100_000;
/// The guest's heap (what it allocated inside its calls) never exceeds this.
pub const HEAP_BOUND: isize = 24 << 20;
/// Stalls are not judged for this long (besides [`GRACE_MS`]) after a VM
/// pause: two of smoltcp's longest retransmission intervals.
const PAUSE_GRACE_MS: u64 = 120_000;
/// More clients at once than this put the socket pool under pressure.
const POOL_PRESSURE: usize = 60;
/// Events kept for a failure report.
const EVENT_LOG: usize = 48;

/// The guest as the simulator drives it: what `boot.rs`'s loop does each
/// wake-up, and what the invariants read.
pub trait Target {
    /// One pass of the main loop at `now` with the timer's tick count
    /// `tick` (housekeeping runs when it moved); `irq`: the NIC interrupted
    /// since the last pass. Returns whether the loop may sleep.
    fn pass(&mut self, now: u64, tick: u64, irq: bool) -> bool;
    /// RX buffers posted to the device; `None` while no driver is open.
    fn rx_posted(&mut self) -> Option<usize>;
    fn queue_size(&self) -> usize;
    /// No connection open.
    fn is_idle(&mut self) -> bool;
    /// When a pass is next due without any interrupt.
    fn next_deadline(&mut self, now: u64) -> Option<u64>;
    fn stats(&mut self, now: u64) -> Stats;
    /// The guest's open connections, for a failure report.
    fn describe(&mut self) -> String {
        String::new()
    }
}

/// What a run is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub seed: u64,
    /// Virtual time to cover.
    pub duration_ms: u64,
    /// Complete responses to aim for over that time.
    pub requests: u64,
    /// Faults on (weather, link, pauses, interrupts, device).
    pub faults: bool,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub virtual_ms: u64,
    pub counts: Counts,
    pub stats: Stats,
    pub passes: u64,
    pub heap_peak: isize,
    pub heap_baseline: isize,
    pub busy_periods: u64,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub virtual_ms: u64,
    /// The run's options, for the command that replays it.
    pub opts: Options,
    pub what: String,
    pub events: Vec<String>,
    /// The guest's last log lines.
    pub guest_log: Vec<String>,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "simulation failed: seed {} at virtual time {} ({} ms): {}",
            self.seed,
            human(self.virtual_ms),
            self.virtual_ms,
            self.what
        )?;
        writeln!(f, "last events:")?;
        for e in &self.events {
            writeln!(f, "  {e}")?;
        }
        writeln!(f, "the guest's last log lines:")?;
        for l in &self.guest_log {
            writeln!(f, "  {l}")?;
        }
        let days = self.opts.duration_ms as f64 / DAY_MS as f64;
        write!(
            f,
            "replay: scripts/sim --seed {} --days {days} --requests-per-day {}",
            self.seed,
            (self.opts.requests as f64 / days).round() as u64
        )
    }
}

pub fn human(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{}d {:02}:{:02}:{:02}.{:03}",
        s / 86_400,
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

/// Interrupt delivery: lost, delayed or duplicated, in parts per million.
#[derive(Debug, Clone, Copy, Default)]
struct IrqWeather {
    lose_ppm: u32,
    duplicate_ppm: u32,
    delay_ppm: u32,
    delay_ms: u64,
}

/// A device misbehaving for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceFault {
    /// TX completions withheld (the host backend cannot write: ENOBUFS).
    TxWithheld,
    /// Neither ring is serviced.
    Wedged,
    /// RX buffers completed in pairs, the second first.
    OutOfOrder,
}

/// A device fault that happens at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceEvent {
    /// The device sets NEEDS_RESET.
    NeedsReset,
    /// A used entry naming a buffer the driver never posted.
    HostileUsedEntry,
}

struct Device {
    nic: FakeNet,
    irq_at: Vec<u64>,
    irq: IrqWeather,
    fault: Option<(DeviceFault, u64)>,
    event: Option<(DeviceEvent, u64)>,
    /// Faults injected so far that may make the guest reset the device.
    resets_allowed: u64,
}

impl Device {
    fn raise(&mut self, now: u64, rng: &mut Rng) {
        let ppm = |rng: &mut Rng, p: u32| p > 0 && rng.below(1_000_000) < p as usize;
        if ppm(rng, self.irq.lose_ppm) {
            return;
        }
        let at = if ppm(rng, self.irq.delay_ppm) {
            now + 1 + rng.below(self.irq.delay_ms.max(1) as usize) as u64
        } else {
            now
        };
        self.irq_at.push(at);
        if ppm(rng, self.irq.duplicate_ppm) {
            self.irq_at.push(at + rng.below(3) as u64);
        }
    }

    /// Takes the interrupts due by `now`.
    fn take_irq(&mut self, now: u64) -> bool {
        let before = self.irq_at.len();
        self.irq_at.retain(|&t| t > now);
        self.irq_at.len() != before
    }

    fn servicing(&self, now: u64, which: DeviceFault) -> bool {
        !matches!(self.fault, Some((f, until)) if now < until && (f == which || f == DeviceFault::Wedged))
    }

    /// The device side of one step: frames from the wire into the RX ring,
    /// completed TX frames onto the wire.
    fn work(&mut self, now: u64, wire: &mut Wire, rng: &mut Rng, inbound: &mut Vec<Vec<u8>>) {
        let mut raised = false;
        inbound.clear();
        wire.to_guest.due(now, inbound);
        if self.servicing(now, DeviceFault::Wedged) {
            self.nic.state_mut().backlog.extend(inbound.drain(..));
            let delivered = if self.servicing(now, DeviceFault::OutOfOrder) {
                self.nic.flush_rx()
            } else {
                self.nic.flush_rx_out_of_order()
            };
            raised |= delivered > 0;
        } else if !inbound.is_empty() {
            self.nic.state_mut().backlog.extend(inbound.drain(..));
        }
        // QEMU's net queue is bounded too.
        {
            let mut s = self.nic.state_mut();
            while s.backlog.len() > 1024 {
                s.backlog.pop_front();
            }
        }
        if self.servicing(now, DeviceFault::TxWithheld)
            && self.nic.state().queues[1].addrs.is_some()
        {
            let done = self.nic.complete_tx(usize::MAX);
            raised |= done > 0;
            for frame in self.nic.take_sent() {
                wire.send_to_clients(now, frame, rng);
            }
        }
        if raised {
            self.raise(now, rng);
        }
    }
}

struct Traffic {
    /// The busy period: until then sessions open, up to `concurrency`.
    busy_until: u64,
    concurrency: usize,
    quota: u64,
    /// The next busy period starts then.
    next_busy: u64,
    periods: u64,
}

/// Runs one simulation.
pub fn run<T: Target>(
    opts: Options,
    make: impl FnOnce(FakeNet, u64) -> T,
) -> Result<Report, Failure> {
    super::guest_log::start();
    let mut sim = Sim::new(opts, make);
    // A panic in the code under test (an overflow, an index out of range) is
    // a failure like any other: reported with the seed and the virtual time.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run_loop()))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| String::from(*s)))
                .unwrap_or_default();
            Err(format!("panic: {what}"))
        });
    match result {
        Ok(()) => Ok(sim.report()),
        Err(what) => Err(Failure {
            seed: opts.seed,
            virtual_ms: sim.now,
            opts,
            what,
            events: sim.events.iter().cloned().collect(),
            guest_log: {
                let mut l = super::guest_log::lines();
                l.push(sim.guest.describe());
                l
            },
        }),
    }
}

struct Sim<T: Target> {
    opts: Options,
    rng: Rng,
    now: u64,
    guest: T,
    device: Device,
    wire: Wire,
    clients: Clients,
    traffic: Traffic,
    calm_since: u64,
    /// Since when nothing but VM pauses disturbed the network and device: a
    /// session opened since then must not stall (see `client::drive`).
    steady_since: u64,
    /// The guest is stopped (a VM pause) until then.
    paused_until: u64,
    may_sleep: bool,
    /// The guest's next deadline, as of its last pass or tick.
    guest_next: Option<u64>,
    next_tick: u64,
    events: VecDeque<String>,
    passes: u64,
    heap_baseline: Option<isize>,
    heap_peak: isize,
    inbound: Vec<Vec<u8>>,
    /// The thread's measured heap before the guest was built.
    heap_origin: isize,
    /// When the clients last had a session open.
    clients_left_at: u64,
}

impl<T: Target> Sim<T> {
    fn new(opts: Options, make: impl FnOnce(FakeNet, u64) -> T) -> Sim<T> {
        let mut rng = Rng::new(opts.seed);
        let heap_origin = alloc::measured_in_use();
        let nic = FakeNet::new(crate::dev::fake_device::DeviceConfig::modern());
        let guest = alloc::measured(|| make(nic.clone(), rng.next_u64()));
        let clients = Clients::new(0, rng.next_u64());
        Sim {
            opts,
            rng,
            now: 0,
            guest,
            device: Device {
                nic,
                irq_at: Vec::new(),
                irq: IrqWeather::default(),
                fault: None,
                event: None,
                resets_allowed: 0,
            },
            wire: Wire::new(),
            clients,
            traffic: Traffic {
                busy_until: 0,
                concurrency: 0,
                quota: 0,
                next_busy: 1000,
                periods: 0,
            },
            calm_since: 0,
            steady_since: 0,
            paused_until: 0,
            may_sleep: false,
            guest_next: None,
            next_tick: TICK_MS,
            events: VecDeque::new(),
            passes: 0,
            heap_baseline: None,
            heap_peak: 0,
            inbound: Vec::new(),
            heap_origin,
            clients_left_at: 0,
        }
    }

    fn event(&mut self, what: String) {
        if self.events.len() == EVENT_LOG {
            self.events.pop_front();
        }
        self.events.push_back(format!("{} {what}", human(self.now)));
    }

    fn disturbed_until(&mut self, until: u64) {
        self.calm_since = self.calm_since.max(until + GRACE_MS);
        self.steady_since = self.steady_since.max(until + GRACE_MS);
    }

    /// A VM pause: the clients' retransmission timers back off through it
    /// and frames queued through it arrive at once, so progress is judged
    /// only after a grace; but a connection opened through it is an
    /// ordinary one (the guest and the device stopped together).
    fn paused_through(&mut self, until: u64) {
        self.calm_since = self.calm_since.max(until + PAUSE_GRACE_MS + GRACE_MS);
    }

    fn report(&mut self) -> Report {
        let now = self.now;
        Report {
            seed: self.opts.seed,
            virtual_ms: now,
            counts: self.clients.counts,
            stats: alloc::measured(|| self.guest.stats(now)),
            passes: self.passes,
            heap_peak: self.heap_peak,
            heap_baseline: self.heap_baseline.unwrap_or(0),
            busy_periods: self.traffic.periods,
        }
    }

    fn run_loop(&mut self) -> Result<(), String> {
        let per_period = 20_000u64;
        while self.now < self.opts.duration_ms {
            self.schedule()?;
            let guest_running = self.now >= self.paused_until;
            if guest_running {
                self.device
                    .work(self.now, &mut self.wire, &mut self.rng, &mut self.inbound);
                let irq = self.device.take_irq(self.now);
                let tick = self.now >= self.next_tick;
                if tick {
                    self.next_tick = (self.now / TICK_MS + 1) * TICK_MS;
                }
                let due = self.guest_next.is_some_and(|d| d <= self.now);
                if irq || tick || due || !self.may_sleep {
                    let now = self.now;
                    let ticks = self.guest_ticks(now);
                    self.may_sleep = alloc::measured(|| self.guest.pass(now, ticks, irq));
                    self.passes += 1;
                    // A guest that cannot sleep passes again in the next step anyway.
                    self.guest_next = if self.may_sleep {
                        self.guest_deadline()
                    } else {
                        None
                    };
                    self.check_after_pass()?;
                    self.device
                        .work(self.now, &mut self.wire, &mut self.rng, &mut self.inbound);
                }
            }
            self.inbound.clear();
            self.wire.to_clients.due(self.now, &mut self.inbound);
            self.clients.port.rx.extend(self.inbound.drain(..));
            self.clients
                .step(self.now, self.calm_since, self.steady_since)?;
            for frame in self.clients.port.tx.drain(..) {
                self.wire.send_to_guest(self.now, frame, &mut self.rng);
            }
            if self.clients.active() > 0 {
                self.clients_left_at = self.now;
            }
            self.advance(per_period);
        }
        Ok(())
    }

    /// The guest's tick count: its clock over the tick period.
    fn guest_ticks(&self, now: u64) -> u64 {
        now / TICK_MS
    }

    fn guest_deadline(&mut self) -> Option<u64> {
        let now = self.now;
        alloc::measured(|| self.guest.next_deadline(now))
    }

    fn check_after_pass(&mut self) -> Result<(), String> {
        let n = self.guest.queue_size();
        if let Some(posted) = alloc::measured(|| self.guest.rx_posted())
            && posted != n
        {
            return Err(format!("{posted} of {n} RX buffers posted after a pass"));
        }
        let heap = alloc::measured_in_use() - self.heap_origin;
        self.heap_peak = self.heap_peak.max(heap);
        if heap > HEAP_BOUND {
            return Err(format!(
                "guest heap {heap} bytes, beyond the bound {HEAP_BOUND}"
            ));
        }
        Ok(())
    }

    /// Moves the clock to the next thing that can happen.
    fn advance(&mut self, _per_period: u64) {
        let now = self.now;
        let guest_running = now >= self.paused_until;
        let mut next = u64::MAX;
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                next = next.min(t);
            }
        };
        consider(self.wire.next_arrival());
        consider(self.clients.next_wakeup(now));
        consider(Some(self.traffic.next_busy));
        if self.traffic.busy_until > now
            && self.traffic.quota > 0
            && self.clients.active() < self.traffic.concurrency
        {
            consider(Some(now + 1));
        }
        if let Some((_, until)) = self.device.fault {
            consider(Some(until));
        }
        if guest_running {
            consider(self.device.irq_at.iter().copied().min());
            let active = !self.guest.is_idle() || !self.clients.is_idle() || !self.wire.is_empty();
            if active {
                consider(Some(self.next_tick));
            }
            consider(self.guest_next);
            if !self.may_sleep {
                consider(Some(now + 1));
            }
        } else {
            consider(Some(self.paused_until));
        }
        consider(Some(self.opts.duration_ms));
        self.now = next.max(now + 1);
    }

    /// Opens sessions and starts and ends busy periods, weather and faults.
    fn schedule(&mut self) -> Result<(), String> {
        let now = self.now;
        if now >= self.traffic.next_busy && self.traffic.busy_until <= now {
            self.idle_checks()?;
            self.start_busy_period();
        }
        if self.clients.active() > POOL_PRESSURE {
            // More clients than sockets: some wait for one, by design.
            self.disturbed_until(now);
        }
        if now < self.traffic.busy_until {
            while self.clients.active() < self.traffic.concurrency && self.traffic.quota > 0 {
                let plan = self.plan();
                self.traffic.quota = self
                    .traffic
                    .quota
                    .saturating_sub(plan.requests.len() as u64);
                self.clients.open(now, plan);
            }
            if self.traffic.quota == 0 {
                self.traffic.busy_until = now;
            }
        }
        if let Some((f, until)) = self.device.fault
            && now >= until
        {
            self.event(format!("device {f:?} over"));
            self.device.fault = None;
        }
        if let Some((e, at)) = self.device.event
            && now >= at
            && now >= self.paused_until
            && (e != DeviceEvent::HostileUsedEntry || self.rx_buffer_available())
        {
            self.device.event = None;
            let dev = &self.device.nic;
            match e {
                DeviceEvent::NeedsReset => dev
                    .state_mut()
                    .status
                    .insert(virtio_drivers::transport::DeviceStatus::DEVICE_NEEDS_RESET),
                DeviceEvent::HostileUsedEntry => {
                    // The bogus entry stands for a buffer the device took, as
                    // every used entry does: one on top of a ring's worth of
                    // completions would overrun the used ring and be
                    // overwritten before the driver saw it.
                    if dev.take(0).is_some() {
                        let id = 1000 + self.rng.below(1000) as u32;
                        dev.push_used_raw(0, id, 60);
                    }
                }
            }
            self.disturbed_until(now + 1000);
            self.event(format!("device {e:?}"));
        }
        Ok(())
    }

    /// The device has an RX buffer it could complete (so a hostile used
    /// entry keeps the used ring within the buffers posted).
    fn rx_buffer_available(&self) -> bool {
        let dev = &self.device.nic;
        dev.state().queues[0].addrs.is_some() && dev.available(0) > 0
    }

    /// Between busy periods, with the clients gone: every socket listens
    /// again, the heap is back to its baseline, and the stats agree with the
    /// clients.
    fn idle_checks(&mut self) -> Result<(), String> {
        if self.traffic.periods == 0 {
            return Ok(());
        }
        if !self.clients.is_idle() {
            return Ok(());
        }
        let now = self.now;
        if now.saturating_sub(self.clients_left_at) >= LISTEN_BOUND_MS
            && self.now >= self.paused_until
            && !self.guest.is_idle()
        {
            return Err(format!(
                "a connection is still open {} ms after the last client left",
                now - self.clients_left_at
            ));
        }
        if self.guest.is_idle() && self.wire.is_empty() {
            let heap = alloc::measured_in_use() - self.heap_origin;
            match self.heap_baseline {
                None => self.heap_baseline = Some(heap),
                Some(base) if heap > base => {
                    return Err(format!(
                        "guest heap {heap} bytes with every client gone, baseline {base}"
                    ));
                }
                Some(_) => {}
            }
        }
        let stats = alloc::measured(|| self.guest.stats(now));
        let c = self.clients.counts;
        let server = stats.status_2xx + stats.status_3xx + stats.status_4xx + stats.status_5xx;
        let lost = c.closed_unanswered + c.abandoned + c.gave_up;
        if server < c.responses || server > c.responses + lost {
            return Err(format!(
                "the server counted {server} responses, the clients {} complete and {lost} unanswered or abandoned",
                c.responses
            ));
        }
        if stats.status_2xx < c.responses_2xx || stats.status_4xx < c.responses_4xx {
            return Err(format!(
                "by class the server counted fewer responses than the clients received: {stats:?} vs {c:?}"
            ));
        }
        if stats.device_resets > self.device.resets_allowed {
            return Err(format!(
                "{} device resets with {} allowed by the device faults injected",
                stats.device_resets, self.device.resets_allowed
            ));
        }
        // A connection the server closed to make room can come back: the
        // client's next segment carries a valid SYN cookie.
        let evicted = stats.evictions_idle
            + stats.evictions_head
            + stats.evictions_lingering
            + stats.evictions_stalled;
        // So can one whose handshake's last ACK the wire duplicated, after
        // it ended (a cookie stays valid for a while).
        let duplicated = self.wire.to_guest.stats.duplicated;
        if stats.connections_accepted > c.sessions_opened + evicted + duplicated {
            return Err(format!(
                "{} connections accepted, {} opened by clients ({evicted} evicted)",
                stats.connections_accepted, c.sessions_opened
            ));
        }
        Ok(())
    }

    fn start_busy_period(&mut self) {
        let remaining_ms = self.opts.duration_ms.saturating_sub(self.now);
        let remaining_req = self
            .opts
            .requests
            .saturating_sub(self.clients.counts.responses)
            .max(1);
        let quota = self.rng.between(2_000, 40_000).min(remaining_req.max(200));
        let periods_left = remaining_req.div_ceil(21_000).max(1);
        let gap_mean = remaining_ms / periods_left;
        self.traffic.quota = quota;
        self.traffic.concurrency = match self.rng.below(10) {
            0 => 1,
            1..=6 => self.rng.between(2, 24) as usize,
            7 | 8 => self.rng.between(24, 56) as usize,
            // More than the socket pool: pool pressure, evictions.
            _ => self.rng.between(70, 140) as usize,
        };
        self.traffic.busy_until = u64::MAX;
        self.traffic.next_busy = self.now + LISTEN_BOUND_MS + self.rng.between(0, 2 * gap_mean);
        self.traffic.periods += 1;
        let weather = if self.opts.faults && self.rng.chance(3) {
            let w = Weather::storm(&mut self.rng);
            self.disturbed_until(u64::MAX / 4);
            w
        } else {
            Weather::CALM
        };
        if weather == Weather::CALM && self.calm_since > self.now + GRACE_MS * 100 {
            // The storm of the previous period is over.
            self.calm_since = self.now + GRACE_MS;
            self.steady_since = self.now + GRACE_MS;
        }
        self.wire.set_weather(weather);
        if self.traffic.concurrency > POOL_PRESSURE {
            // A handshake's last ACK that finds no socket is dropped; a
            // silent client then holds a connection the server never had.
            self.disturbed_until(self.now);
        }
        self.device.irq = IrqWeather::default();
        if self.opts.faults && self.rng.chance(4) {
            self.device.irq = IrqWeather {
                lose_ppm: self.rng.below(300_000) as u32,
                duplicate_ppm: self.rng.below(200_000) as u32,
                delay_ppm: self.rng.below(300_000) as u32,
                delay_ms: self.rng.between(1, 30),
            };
        }
        let period = self.traffic.periods;
        let conc = self.traffic.concurrency;
        self.event(format!(
            "busy period {period}: {quota} requests, {conc} at once, weather {weather:?}, interrupts {:?}",
            self.device.irq
        ));
        if self.opts.faults {
            self.schedule_faults();
        }
    }

    fn schedule_faults(&mut self) {
        let now = self.now;
        if self.rng.chance(12) {
            let down = self.rng.between(1_000, 240_000);
            let at = now + self.rng.between(0, 20_000);
            // The link goes down now-ish; modelled as down from now.
            let _ = at;
            self.wire.take_down(now + down);
            self.disturbed_until(now + down);
            self.event(format!("link down for {down} ms"));
        }
        if self.rng.chance(15) {
            let pause = if self.rng.chance(4) {
                self.rng.between(60_000, 3_600_000)
            } else {
                self.rng.between(100, 60_000)
            };
            self.paused_until = now + self.rng.between(0, 10_000) + pause;
            // Frames queued through the pause arrive at once (some dropped
            // by the device's bounded queue), and clients' retransmission
            // timers have backed off to smoltcp's 60 s maximum.
            self.paused_through(self.paused_until);
            self.event(format!("VM paused until {}", human(self.paused_until)));
        }
        if self.rng.chance(8) {
            let f = match self.rng.below(3) {
                0 => DeviceFault::TxWithheld,
                1 => DeviceFault::Wedged,
                _ => DeviceFault::OutOfOrder,
            };
            let until = now + self.rng.between(10, 8_000);
            self.device.fault = Some((f, until));
            self.device.resets_allowed += 2;
            self.disturbed_until(until);
            self.event(format!("device {f:?} until {}", human(until)));
        }
        if self.rng.chance(10) {
            let e = if self.rng.chance(2) {
                DeviceEvent::NeedsReset
            } else {
                DeviceEvent::HostileUsedEntry
            };
            let at = now + self.rng.between(0, 30_000);
            self.device.event = Some((e, at));
            self.device.resets_allowed += 2;
            self.disturbed_until(at);
        }
    }

    fn plan(&mut self) -> Plan {
        let r = &mut self.rng;
        let manner = match r.below(100) {
            0..=44 => Manner::Sequential,
            45..=69 => Manner::Pipelined,
            70..=73 => Manner::SlowReader {
                chunk: r.between(200, 3000) as usize,
                every_ms: r.between(5, 500),
            },
            74..=77 => Manner::Abandon {
                after: r.between(1, 3000) as usize,
            },
            78 => Manner::Slowloris {
                every_ms: r.between(500, 2500),
            },
            79 => Manner::Silent,
            _ => Manner::Sequential,
        };
        let count = match manner {
            Manner::Slowloris { .. } => {
                let text = "GET /index.html HTTP/1.1\r\nHost: sim.test\r\n\r\n";
                return Plan {
                    manner,
                    requests: std::vec![Spec::Malformed { text, status: 408 }],
                };
            }
            Manner::Silent => 0,
            Manner::Pipelined => r.between(2, 12) as usize,
            _ if r.chance(5) => 1,
            _ => r.between(1, 30) as usize,
        };
        let mut requests: Vec<Spec> = (0..count).map(|_| request(r)).collect();
        // A close or a refusal ends the connection: only last.
        let n = requests.len();
        for (i, spec) in requests.iter_mut().enumerate() {
            if let Spec::Get(g) = spec
                && i + 1 < n
            {
                g.close = false;
                if g.version == Version::Http10 {
                    g.version = Version::Http11;
                }
            }
        }
        if n > 0 && r.chance(40) {
            let &(text, status) = r0(r, oracle::MALFORMED);
            requests[n - 1] = Spec::Malformed { text, status };
        }
        Plan { manner, requests }
    }
}

fn r0<'a, T>(r: &mut Rng, items: &'a [T]) -> &'a T {
    &items[r.below(items.len())]
}

/// One request of the mix: mostly small pages, now and then the large ones.
fn request(r: &mut Rng) -> Spec {
    let assets: Vec<&'static crate::app::assets::Asset> = oracle::assets().collect();
    let path: String = match r.below(10_000) {
        0..=299 => oracle::missing().into(),
        300..=449 => "/old-docs".into(),
        450 => "/large.bin".into(),
        451..=500 => "/bench/64k.bin".into(),
        _ => loop {
            let a = r0(r, &assets);
            if a.body.len() <= 50_000 && a.path != "/bench/64k.bin" {
                break a.path.into();
            }
        },
    };
    let accept = *r0(r, &[None, Some("gzip"), Some("br"), Some("gzip, br")]);
    let version = if r.chance(10) {
        Version::Http10
    } else {
        Version::Http11
    };
    let if_none_match = if r.chance(7) {
        oracle::etag_for(&path, accept, !r.chance(3))
    } else {
        None
    };
    let range = if r.chance(10) {
        let first = r.between(0, 3000);
        Some((first, first + r.between(0, 3000)))
    } else {
        None
    };
    Spec::Get(Get {
        head_method: r.chance(20),
        path,
        version,
        close: r.chance(6),
        accept,
        if_none_match,
        range,
    })
}
