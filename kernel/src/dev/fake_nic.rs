//! A [`Nic`] over the fake device (`dev/fake_device.rs`): the real driver (or
//! a wrapper of it), opened again on every reset, for tests of the stack and
//! the service pass on the host and for the simulator.

use super::fake_device::{DeviceConfig, FakeHal, FakeKick, FakeNet, FakeTransport};
use super::masked::MaskedTransport;
use super::net::{Driver, DriverError};
use super::port::{Nic, OpenError, Port};
use virtio_drivers::transport::DeviceStatus;

/// The real driver over the fake device.
pub type FakeDriver<const N: usize> = Driver<FakeHal, MaskedTransport<FakeTransport>, FakeKick, N>;

/// How a port is opened over the fake device, on the first open and on every
/// reset: the real driver ([`Real`]), or the real driver inside a wrapper.
pub trait Opener {
    type Port: Port;
    fn open(&mut self, dev: &FakeNet) -> Result<Self::Port, DriverError>;
}

/// The real driver with `N`-entry rings, as the guest opens it.
pub struct Real<const N: usize>;

impl<const N: usize> Opener for Real<N> {
    type Port = FakeDriver<N>;
    fn open(&mut self, dev: &FakeNet) -> Result<FakeDriver<N>, DriverError> {
        FakeDriver::<N>::start(MaskedTransport(dev.transport()), dev.kick())
    }
}

/// The device behind the ports: one port at a time, reset on reopen.
pub struct FakeNic<O: Opener> {
    pub dev: FakeNet,
    /// Ports opened (the first and one per reset).
    pub opened: u32,
    opener: O,
    open: bool,
}

impl<const N: usize> FakeNic<Real<N>> {
    /// The real driver over a new fake device.
    pub fn new(config: DeviceConfig) -> Self {
        FakeNic::with_opener(FakeNet::new(config), Real)
    }
}

impl<O: Opener> FakeNic<O> {
    /// Ports over `dev` opened by `opener`.
    pub fn with_opener(dev: FakeNet, opener: O) -> Self {
        FakeNic {
            dev,
            opened: 0,
            opener,
            open: false,
        }
    }
}

impl<O: Opener> Nic for FakeNic<O> {
    type Port = O::Port;

    fn open(&mut self, previous: Option<O::Port>) -> Result<O::Port, OpenError> {
        if let Some(old) = previous {
            drop(old);
            self.open = false;
        }
        if self.open {
            return Err(OpenError::StillOpen);
        }
        // As the guest's reopen: the device starts from reset.
        self.dev.state_mut().status = DeviceStatus::empty();
        let port = self.opener.open(&self.dev).map_err(OpenError::Driver)?;
        self.open = true;
        self.opened += 1;
        Ok(port)
    }

    fn needs_reset(&self) -> bool {
        self.dev
            .state()
            .status
            .contains(DeviceStatus::DEVICE_NEEDS_RESET)
    }
}
