//! Faults chosen at boot (`fault=` in the config), each a wrapper around a
//! production type, which carries no test state of its own:
//! - `fault=no-repost`: [`NoRepostNic`] opens a first port that never
//!   re-posts RX buffers (a driver bug that makes a guest deaf under load),
//!   until the ring audit resets the device; the ports opened by resets are
//!   healthy;
//! - `fault=drop-irq:N`: `drop_every_nth_interrupt` wraps the NIC's
//!   interrupt handler so that one interrupt in N is acknowledged but not
//!   passed on, as if it had been lost.

use super::net::{AuditError, DriverError, DriverStats, RxFrame};
use super::offload::{Offloads, TxOffload};
use super::port::{Nic, OpenError, Port};

/// A port whose `refill` does nothing while `broken`.
pub struct NoRepost<P> {
    port: P,
    broken: bool,
}

impl<P: Port> Port for NoRepost<P> {
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
        self.port.receive()
    }
    fn give_back(&mut self, frame: RxFrame) {
        self.port.give_back(frame)
    }
    fn reap_tx(&mut self) -> Result<usize, DriverError> {
        self.port.reap_tx()
    }
    fn can_transmit(&mut self) -> bool {
        self.port.can_transmit()
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
        if self.broken { 0 } else { self.port.refill() }
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

/// The NIC whose first port does not re-post; see the module doc.
pub struct NoRepostNic<D> {
    nic: D,
    opened: bool,
}

impl<D: Nic> NoRepostNic<D> {
    pub fn new(nic: D) -> Self {
        NoRepostNic { nic, opened: false }
    }

    pub fn inner(&mut self) -> &mut D {
        &mut self.nic
    }
}

impl<D: Nic> Nic for NoRepostNic<D> {
    type Port = NoRepost<D::Port>;

    fn open(&mut self, previous: Option<Self::Port>) -> Result<Self::Port, OpenError> {
        let port = self.nic.open(previous.map(|p| p.port))?;
        let broken = !self.opened;
        self.opened = true;
        Ok(NoRepost { port, broken })
    }

    fn needs_reset(&self) -> bool {
        self.nic.needs_reset()
    }
}

/// Whether the interrupt numbered `count` (from 1) is dropped when one in
/// `every` is (0: none).
pub fn drops(count: u64, every: u64) -> bool {
    every != 0 && count.is_multiple_of(every)
}

#[cfg(target_os = "none")]
mod guest {
    use super::drops;
    use crate::dev::net::{acknowledge_interrupt, mark_pending};
    use core::sync::atomic::{AtomicU64, Ordering};

    /// One in this many NIC interrupts is dropped (0: none).
    static DROP_EVERY: AtomicU64 = AtomicU64::new(0);
    /// NIC interrupts dropped so far (`interrupts_ignored` in the stats).
    pub static INTERRUPTS_DROPPED: AtomicU64 = AtomicU64::new(0);

    /// The NIC's interrupt handler with one interrupt in `n` dropped.
    pub fn drop_every_nth_interrupt(n: u64) -> fn() {
        DROP_EVERY.store(n, Ordering::Relaxed);
        on_interrupt_dropping
    }

    fn on_interrupt_dropping() {
        let count = acknowledge_interrupt();
        if drops(count, DROP_EVERY.load(Ordering::Relaxed)) {
            INTERRUPTS_DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        mark_pending();
    }
}
#[cfg(target_os = "none")]
pub use guest::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_interrupt_in_n_is_dropped() {
        let dropped: std::vec::Vec<u64> = (1..=10).filter(|&c| drops(c, 3)).collect();
        assert_eq!(dropped, [3, 6, 9]);
        assert!(!(1..=100).any(|c| drops(c, 0)));
        assert!((1..=5).all(|c| drops(c, 1)));
    }
}
