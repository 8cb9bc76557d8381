//! [`Hooked`]: a [`Port`] wrapped with [`PortHooks`], the way faults chosen
//! at boot (`dev::faults`) and the simulator's mutations change a port
//! without a switch inside the driver. A hook set names only the methods it
//! changes; every other one is the port's own.

use super::net::{AuditError, DriverError, DriverStats, RxFrame};
use super::offload::{Offloads, TxOffload};
use super::port::Port;

/// What a wrapper changes in a port; every hook defaults to the port's own
/// method. These four are where a port's bugs and faults live: taking
/// frames, re-posting buffers, reaping and queueing TX.
pub trait PortHooks {
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

/// A port with hooks on it, itself a port.
pub struct Hooked<P, H> {
    port: P,
    hooks: H,
}

impl<P, H> Hooked<P, H> {
    pub fn new(port: P, hooks: H) -> Self {
        Hooked { port, hooks }
    }

    /// The port without its hooks (to hand back to its NIC on a reset).
    pub fn into_port(self) -> P {
        self.port
    }
}

impl<P: Port, H: PortHooks> Port for Hooked<P, H> {
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
        self.hooks.receive(&mut self.port)
    }
    fn give_back(&mut self, frame: RxFrame) {
        self.port.give_back(frame)
    }
    fn reap_tx(&mut self) -> Result<usize, DriverError> {
        self.hooks.reap_tx(&mut self.port)
    }
    fn can_transmit(&mut self) -> bool {
        self.hooks.can_transmit(&mut self.port)
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
        self.hooks.refill(&mut self.port)
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
