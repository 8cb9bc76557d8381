//! Bugs the simulator must catch, put back in test code only: each is a
//! wrapper around a production type (a NIC [`Port`], the driver's kick and
//! transport, the clock the main loop reads), never a switch inside one.
//! The tests at the end run the simulator with each and require a failure
//! within the CI budget of one seed, printing the seed and virtual time.
//!
//! Not expressed: a response offset that underflows. The offsets live in
//! `http::Conn::transmit`, and the handler the server calls is built inside
//! the service pass (`service::web`), so no wrapper can reach either without
//! a switch in production code. The seam that would allow it: `Service`
//! generic over its `App` (as `net::server::Server` already is), so a test
//! composition could wrap the handler or the connection's writer.

use super::guest::{Opener, RealDriver};
use super::world::Target;
use crate::app::Stats;
use crate::dev::fake_device::{FakeHal, FakeNet, FakeTransport};
use crate::dev::masked::MaskedTransport;
use crate::dev::net::{AuditError, Driver, DriverError, DriverStats, Kick, RxFrame};
use crate::dev::offload::{Offloads, TxOffload};
use crate::dev::port::Port;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// What a mutation changes in a port; every hook defaults to the port's own.
pub trait Mutation {
    fn receive<P: Port>(&mut self, port: &mut P) -> Result<Option<RxFrame>, DriverError> {
        port.receive()
    }
    fn refill<P: Port>(&mut self, port: &mut P) -> usize {
        port.refill()
    }
    fn reap_tx<P: Port>(&mut self, port: &mut P) -> Result<usize, DriverError> {
        port.reap_tx()
    }
    fn can_transmit<P: Port>(&mut self, port: &mut P) -> bool {
        port.can_transmit()
    }
}

/// A port with a mutation.
pub struct Mutant<P, M> {
    port: P,
    mutation: M,
}

impl<P: Port, M: Mutation> Port for Mutant<P, M> {
    fn queue_size(&self) -> usize {
        self.port.queue_size()
    }
    fn mac(&self) -> [u8; 6] {
        self.port.mac()
    }
    fn offloads(&self) -> Offloads {
        self.port.offloads()
    }
    fn receive(&mut self) -> Result<Option<RxFrame>, DriverError> {
        self.mutation.receive(&mut self.port)
    }
    fn give_back(&mut self, frame: RxFrame) {
        self.port.give_back(frame)
    }
    fn reap_tx(&mut self) -> Result<usize, DriverError> {
        self.mutation.reap_tx(&mut self.port)
    }
    fn can_transmit(&mut self) -> bool {
        self.mutation.can_transmit(&mut self.port)
    }
    fn tx_blocked(&self) -> bool {
        self.port.tx_blocked()
    }
    fn transmit<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> (R, Option<TxOffload>),
    ) -> R {
        self.port.transmit(len, fill)
    }
    fn refill(&mut self) -> usize {
        self.mutation.refill(&mut self.port)
    }
    fn kick_queues(&mut self) {
        self.port.kick_queues()
    }
    fn has_work(&self) -> bool {
        self.port.has_work()
    }
    fn audit(&self) -> Result<(), AuditError> {
        self.port.audit()
    }
    fn stats(&self) -> DriverStats {
        self.port.stats()
    }
    fn large_buffer_bytes(&self) -> usize {
        self.port.large_buffer_bytes()
    }
}

/// Opens the real driver inside mutation `M` (a fresh one on every reset).
pub struct Mutated<const N: usize, M>(pub fn() -> M);

impl<const N: usize, M: Mutation> Opener for Mutated<N, M> {
    type Port = Mutant<RealDriver<N>, M>;
    fn open(&mut self, dev: &FakeNet) -> Result<Self::Port, DriverError> {
        let port = super::guest::Real::<N>.open(dev)?;
        Ok(Mutant {
            port,
            mutation: (self.0)(),
        })
    }
}

/// Only the newest used entry is read: when several frames are waiting, the
/// older ones are handed straight back, their frames lost.
#[derive(Default)]
pub struct NewestOnly;

impl Mutation for NewestOnly {
    fn receive<P: Port>(&mut self, port: &mut P) -> Result<Option<RxFrame>, DriverError> {
        let mut newest = None;
        for _ in 0..port.queue_size() {
            match port.receive()? {
                Some(frame) => {
                    if let Some(older) = newest.replace(frame) {
                        port.give_back(older);
                    }
                }
                None => break,
            }
        }
        Ok(newest)
    }
}

/// RX buffers are never re-posted once the device returned them.
#[derive(Default)]
pub struct NoRepost {
    started: bool,
}

impl Mutation for NoRepost {
    fn refill<P: Port>(&mut self, port: &mut P) -> usize {
        // The driver posts its buffers once when it starts.
        if self.started {
            return 0;
        }
        self.started = true;
        port.refill()
    }
}

/// The used index compared without wrapping: once the 16-bit RX used index
/// wraps past 65535 it looks older than the last one seen, and the driver
/// sees no more work.
#[derive(Default)]
pub struct NonWrappingIndex {
    highest: u16,
}

impl Mutation for NonWrappingIndex {
    fn receive<P: Port>(&mut self, port: &mut P) -> Result<Option<RxFrame>, DriverError> {
        let used = port.stats().rx.used;
        if used < self.highest {
            return Ok(None);
        }
        self.highest = used;
        port.receive()
    }
}

/// TX is retried only when the device notifies a completion, which this
/// device (TX notifications suppressed, as after ENOBUFS) never does: once
/// the ring is full nothing is reaped again.
#[derive(Default)]
pub struct TxWaitsForNotification {
    waiting: bool,
}

impl Mutation for TxWaitsForNotification {
    fn reap_tx<P: Port>(&mut self, port: &mut P) -> Result<usize, DriverError> {
        if self.waiting {
            return Ok(0);
        }
        port.reap_tx()
    }
    fn can_transmit<P: Port>(&mut self, port: &mut P) -> bool {
        if self.waiting {
            return false;
        }
        let ok = port.can_transmit();
        self.waiting = !ok;
        ok
    }
}

/// The RX kick dropped whenever the device is waiting for one (it found the
/// ring empty): the refill after the ring ran dry never reaches it. A
/// wrapper around both ways the driver notifies: its own kick and
/// virtio-drivers' notify through the transport.
pub struct DryKick(pub FakeNet);

fn device_waits(dev: &FakeNet, queue: u16) -> bool {
    queue == 0 && dev.state().queues[0].waiting_for_kick
}

impl Kick for DryKick {
    fn notify(&self, queue: u16) {
        if !device_waits(&self.0, queue) {
            self.0.kick().notify(queue);
        }
    }
}

pub struct DryTransport(pub FakeTransport, pub FakeNet);

impl Transport for DryTransport {
    fn device_type(&self) -> DeviceType {
        self.0.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.0.read_device_features()
    }
    fn write_driver_features(&mut self, f: u64) {
        self.0.write_driver_features(f)
    }
    fn max_queue_size(&mut self, q: u16) -> u32 {
        self.0.max_queue_size(q)
    }
    fn notify(&mut self, queue: u16) {
        if !device_waits(&self.1, queue) {
            self.0.notify(queue)
        }
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.get_status()
    }
    fn set_status(&mut self, s: DeviceStatus) {
        self.0.set_status(s)
    }
    fn set_guest_page_size(&mut self, s: u32) {
        self.0.set_guest_page_size(s)
    }
    fn requires_legacy_layout(&self) -> bool {
        self.0.requires_legacy_layout()
    }
    fn queue_set(&mut self, q: u16, size: u32, d: PhysAddr, a: PhysAddr, u: PhysAddr) {
        self.0.queue_set(q, size, d, a, u)
    }
    fn queue_unset(&mut self, q: u16) {
        self.0.queue_unset(q)
    }
    fn queue_used(&mut self, q: u16) -> bool {
        self.0.queue_used(q)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.0.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.0.read_config_generation()
    }
    fn read_config_space<V: FromBytes + IntoBytes>(&self, offset: usize) -> Result<V, Error> {
        self.0.read_config_space(offset)
    }
    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> Result<(), Error> {
        self.0.write_config_space(offset, value)
    }
}

pub struct DryKickOpener<const N: usize>;

impl<const N: usize> Opener for DryKickOpener<N> {
    type Port = Driver<FakeHal, MaskedTransport<DryTransport>, DryKick, N>;
    fn open(&mut self, dev: &FakeNet) -> Result<Self::Port, DriverError> {
        Driver::start(
            MaskedTransport(DryTransport(dev.transport(), dev.clone())),
            DryKick(dev.clone()),
        )
    }
}

/// The main loop reads the clock only when the NIC interrupts: a deadline
/// of a connection that receives nothing (a slowloris, an idle one) never
/// sees its time come.
pub struct ClockOnInterrupt<T> {
    pub guest: T,
    now: u64,
}

impl<T> ClockOnInterrupt<T> {
    pub fn new(guest: T) -> Self {
        ClockOnInterrupt { guest, now: 0 }
    }
}

impl<T: Target> Target for ClockOnInterrupt<T> {
    fn pass(&mut self, now: u64, tick: u64, irq: bool) -> bool {
        if irq {
            self.now = now;
        }
        self.guest.pass(self.now, tick, irq)
    }
    fn rx_posted(&mut self) -> Option<usize> {
        self.guest.rx_posted()
    }
    fn queue_size(&self) -> usize {
        self.guest.queue_size()
    }
    fn is_idle(&mut self) -> bool {
        self.guest.is_idle()
    }
    fn next_deadline(&mut self, now: u64) -> Option<u64> {
        self.guest.next_deadline(now)
    }
    fn stats(&mut self, now: u64) -> Stats {
        self.guest.stats(now)
    }
}

#[cfg(test)]
mod tests {
    use super::super::guest::Guest;
    use super::super::world::{self, Options, Target};
    use super::*;
    use crate::dev::fake_device::FakeNet;

    const N: usize = 16;

    /// The CI budget of one seed: the simulator must fail within it.
    fn budget(seed: u64) -> Options {
        Options {
            seed,
            duration_ms: 4 * world::DAY_MS,
            requests: 4 * 320_000,
            faults: true,
        }
    }

    fn caught<T: Target>(name: &str, make: impl Fn(FakeNet, u64) -> T) {
        let seed = 1;
        let start = std::time::Instant::now();
        match world::run(budget(seed), make) {
            Ok(r) => panic!(
                "mutation {name} not caught: {} requests over {} ms",
                r.counts.responses, r.virtual_ms
            ),
            Err(f) => std::eprintln!(
                "mutation {name}: caught with seed {} at virtual time {} ({} ms), {:?} real: {}",
                f.seed,
                world::human(f.virtual_ms),
                f.virtual_ms,
                start.elapsed(),
                f.what
            ),
        }
    }

    #[test]
    #[ignore = "minutes in a debug build: scripts/sim --mutations"]
    fn only_the_newest_used_entry_read() {
        caught("newest-only", |dev, s| {
            Guest::new(dev, Mutated::<N, _>(|| NewestOnly), N, s)
        });
    }

    #[test]
    fn rx_buffers_not_reposted() {
        caught("no-repost", |dev, s| {
            Guest::new(dev, Mutated::<N, _>(NoRepost::default), N, s)
        });
    }

    #[test]
    #[ignore = "minutes in a debug build: scripts/sim --mutations"]
    fn non_wrapping_ring_index() {
        caught("non-wrapping-index", |dev, s| {
            Guest::new(dev, Mutated::<N, _>(NonWrappingIndex::default), N, s)
        });
    }

    #[test]
    #[ignore = "minutes in a debug build: scripts/sim --mutations"]
    fn refill_kick_skipped_after_the_ring_ran_dry() {
        caught("dry-kick", |dev, s| {
            Guest::new(dev, DryKickOpener::<N>, N, s)
        });
    }

    #[test]
    #[ignore = "minutes in a debug build: scripts/sim --mutations"]
    fn tx_retried_only_on_a_notification() {
        caught("tx-waits-for-notification", |dev, s| {
            Guest::new(dev, Mutated::<N, _>(TxWaitsForNotification::default), N, s)
        });
    }

    #[test]
    #[ignore = "minutes in a debug build: scripts/sim --mutations"]
    fn a_deadline_that_never_fires() {
        caught("clock-on-interrupt", |dev, s| {
            ClockOnInterrupt::new(Guest::new(dev, super::super::guest::Real::<N>, N, s))
        });
    }
}
