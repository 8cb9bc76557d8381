//! A [`Nic`] over the fake device (`dev/fake_device.rs`): the real driver,
//! opened again on every reset, for tests of the stack and the service pass
//! on the host.

use super::fake_device::{DeviceConfig, FakeHal, FakeKick, FakeNet, FakeTransport};
use super::masked::MaskedTransport;
use super::net::Driver;
use super::port::{Nic, OpenError};
use virtio_drivers::transport::DeviceStatus;

/// The real driver over the fake device.
pub type FakeDriver<const N: usize> = Driver<FakeHal, MaskedTransport<FakeTransport>, FakeKick, N>;

pub struct FakeNic<const N: usize> {
    pub dev: FakeNet,
    /// Ports opened (the first and one per reset).
    pub opened: u32,
    open: bool,
}

impl<const N: usize> FakeNic<N> {
    pub fn new(config: DeviceConfig) -> Self {
        FakeNic {
            dev: FakeNet::new(config),
            opened: 0,
            open: false,
        }
    }
}

impl<const N: usize> Nic for FakeNic<N> {
    type Port = FakeDriver<N>;

    fn open(&mut self, previous: Option<FakeDriver<N>>) -> Result<FakeDriver<N>, OpenError> {
        if let Some(old) = previous {
            drop(old);
            self.open = false;
        }
        if self.open {
            return Err(OpenError::StillOpen);
        }
        // As the guest's reopen: the device starts from reset.
        self.dev.state_mut().status = DeviceStatus::empty();
        let driver = FakeDriver::<N>::start(MaskedTransport(self.dev.transport()), self.dev.kick())
            .map_err(OpenError::Driver)?;
        self.open = true;
        self.opened += 1;
        Ok(driver)
    }

    fn needs_reset(&self) -> bool {
        self.dev
            .state()
            .status
            .contains(DeviceStatus::DEVICE_NEEDS_RESET)
    }
}
