//! The NIC as the network layer sees it: [`Port`], what one opened device
//! does (receive and give back RX buffers, transmit, reap completions, re-post,
//! the per-tick kicks and audit, counters), and [`Nic`], which opens a port
//! over the device again after a reset.
//!
//! The real [`Driver`] is a `Port` for any HAL, transport and kick, so the
//! network stack built on these traits runs in the guest over virtio-mmio and
//! on the host over the fake device. Faults are wrappers: a port under hooks
//! that change some of its methods (`dev::hooked`) is itself a `Port`, and a
//! `Nic` that wraps every port it opens puts the fault back after each reset.

use super::net::{AuditError, Driver, DriverError, DriverStats, Kick, RxFrame};
use super::offload::{Offloads, TxOffload};
use virtio_drivers::Hal;
use virtio_drivers::transport::Transport;

/// One opened NIC. Every method is bounded (no waiting on the device).
pub trait Port {
    /// Entries in each ring: the most RX buffers that can be posted.
    fn queue_size(&self) -> usize;
    fn mac(&self) -> [u8; 6];
    /// The offloads negotiated with the device.
    fn offloads(&self) -> Offloads;
    /// The next received frame, if any; its buffer is lent until [`give_back`](Port::give_back).
    fn receive(&mut self) -> Result<Option<RxFrame>, DriverError>;
    /// Returns a buffer lent by [`receive`](Port::receive).
    fn give_back(&mut self, frame: RxFrame);
    /// Reclaims the TX buffers the device finished with; how many.
    fn reap_tx(&mut self) -> Result<usize, DriverError>;
    /// Whether a frame can be queued now.
    fn can_transmit(&mut self) -> bool;
    /// The last [`can_transmit`](Port::can_transmit) found the TX ring full.
    fn tx_blocked(&self) -> bool;
    /// Queues a frame of `len` bytes written by `fill` (call only after
    /// `can_transmit` said yes); `fill` also says which offloads it wants.
    fn transmit<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> (R, Option<TxOffload>),
    ) -> R;
    /// Posts every spare RX buffer and kicks the RX queue; how many were posted.
    fn refill(&mut self) -> usize;
    /// Once per timer tick, after a [`refill`](Port::refill): kick both
    /// queues again, so a lost notification costs at most one tick.
    fn kick_queues(&mut self);
    /// The device returned a frame, or TX frames are in flight.
    fn has_work(&self) -> bool;
    /// Checks that no buffer was lost or duplicated.
    fn audit(&self) -> Result<(), AuditError>;
    fn stats(&self) -> DriverStats;
    /// Heap held by the large (TSO) TX buffers.
    fn large_buffer_bytes(&self) -> usize;
}

/// Why a port could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The transport did not come back (no device answered in the window).
    Gone,
    /// A port opened earlier is still alive: a device has one driver at a time.
    StillOpen,
    Driver(DriverError),
}

/// A NIC that can be opened (again): the device behind the ports.
pub trait Nic {
    type Port: Port;
    /// Opens a new port, after dropping `previous` (which resets the device);
    /// `previous` is `None` when no port is alive (the first open, or after a
    /// failed one).
    fn open(&mut self, previous: Option<Self::Port>) -> Result<Self::Port, OpenError>;
    /// The device reports an error it needs a reset to recover from.
    fn needs_reset(&self) -> bool;
}

impl<H: Hal, T: Transport, K: Kick, const N: usize> Port for Driver<H, T, K, N> {
    fn queue_size(&self) -> usize {
        N
    }
    fn mac(&self) -> [u8; 6] {
        Driver::mac(self)
    }
    fn offloads(&self) -> Offloads {
        Driver::offloads(self)
    }
    fn receive(&mut self) -> Result<Option<RxFrame>, DriverError> {
        Driver::receive(self)
    }
    fn give_back(&mut self, frame: RxFrame) {
        Driver::give_back(self, frame)
    }
    fn reap_tx(&mut self) -> Result<usize, DriverError> {
        Driver::reap_tx(self)
    }
    fn can_transmit(&mut self) -> bool {
        Driver::can_transmit(self)
    }
    fn tx_blocked(&self) -> bool {
        Driver::tx_blocked(self)
    }
    fn transmit<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> (R, Option<TxOffload>),
    ) -> R {
        Driver::transmit(self, len, fill)
    }
    fn refill(&mut self) -> usize {
        Driver::refill(self)
    }
    fn kick_queues(&mut self) {
        Driver::kick_queues(self)
    }
    fn has_work(&self) -> bool {
        Driver::has_work(self)
    }
    fn audit(&self) -> Result<(), AuditError> {
        Driver::audit(self)
    }
    fn stats(&self) -> DriverStats {
        self.stats
    }
    fn large_buffer_bytes(&self) -> usize {
        Driver::large_buffer_bytes(self)
    }
}
