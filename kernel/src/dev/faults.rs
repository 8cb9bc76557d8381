//! Faults chosen at boot (`fault=` in the config), each a wrapper around a
//! production type, which carries no test state of its own:
//! - `fault=no-repost`: [`NoRepostNic`] opens a first port that never
//!   re-posts RX buffers (a driver bug that makes a guest deaf under load),
//!   until the ring audit resets the device; the ports opened by resets are
//!   healthy;
//! - `fault=drop-irq:N`: `drop_every_nth_interrupt` wraps the NIC's
//!   interrupt handler so that one interrupt in N is acknowledged but not
//!   passed on, as if it had been lost.

use super::hooked::{Hooked, PortHooks};
use super::port::{Nic, OpenError, Port};

/// Port hooks under which `refill` does nothing while `broken`.
pub struct NoRepost {
    broken: bool,
}

impl PortHooks for NoRepost {
    fn refill<P: Port>(&mut self, port: &mut P) -> usize {
        if self.broken { 0 } else { port.refill() }
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
    type Port = Hooked<D::Port, NoRepost>;

    fn open(&mut self, previous: Option<Self::Port>) -> Result<Self::Port, OpenError> {
        let port = self.nic.open(previous.map(Hooked::into_port))?;
        let broken = !self.opened;
        self.opened = true;
        Ok(Hooked::new(port, NoRepost { broken }))
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
    use crate::dev::fake_device::DeviceConfig;
    use crate::dev::fake_nic::{FakeNic, Real};

    const N: usize = 16;

    /// One frame in and out of `port`; how many buffers the refill posted.
    fn one_frame<P: Port>(nic: &NoRepostNic<FakeNic<Real<N>>>, port: &mut P) -> usize {
        assert_eq!(nic.nic.dev.send_to_guest([&[0u8; 60][..]]), 1);
        let frame = port.receive().expect("no driver error").expect("a frame");
        port.give_back(frame);
        port.refill()
    }

    #[test]
    fn only_the_first_port_stops_reposting() {
        let mut nic = NoRepostNic::new(FakeNic::<Real<N>>::new(DeviceConfig::modern()));
        let mut first = nic.open(None).expect("the fake device opens");
        assert_eq!(one_frame(&nic, &mut first), 0);
        assert_eq!(usize::from(first.stats().rx.in_flight()), N - 1);

        let mut second = nic.open(Some(first)).expect("the fake device reopens");
        assert_eq!(nic.inner().opened, 2);
        assert_eq!(one_frame(&nic, &mut second), 1);
        assert_eq!(usize::from(second.stats().rx.in_flight()), N);
    }

    #[test]
    fn one_interrupt_in_n_is_dropped() {
        let dropped: std::vec::Vec<u64> = (1..=10).filter(|&c| drops(c, 3)).collect();
        assert_eq!(dropped, [3, 6, 9]);
        assert!(!(1..=100).any(|c| drops(c, 0)));
        assert!((1..=5).all(|c| drops(c, 1)));
    }
}
