//! A transport wrapper that hides features this kernel does not want
//! negotiated. Pure (no MMIO of its own): the guest wraps its `MmioTransport`,
//! the host tests wrap their fake device, so both go through the same masking.

use virtio_drivers::PhysAddr;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// `VIRTIO_F_RING_EVENT_IDX` (bit 29): masked, see [`MaskedTransport`].
pub const FEATURE_RING_EVENT_IDX: u64 = 1 << 29;

/// A transport that does not offer `RING_EVENT_IDX` to the driver: with it,
/// virtio-drivers 0.13 can miss a notification at the 65535 -> 0 index wrap and
/// cannot suppress interrupts (see STYLE.md). Everything else is passed through.
pub struct MaskedTransport<T>(pub T);

/// The `Transport` methods a feature-deciding wrapper passes straight through
/// to its inner transport (`$inner`, a field): everything but
/// `read_device_features` and `write_driver_features`.
macro_rules! forward_transport {
    ($inner:tt) => {
        fn device_type(&self) -> DeviceType {
            self.$inner.device_type()
        }
        fn max_queue_size(&mut self, queue: u16) -> u32 {
            self.$inner.max_queue_size(queue)
        }
        fn notify(&mut self, queue: u16) {
            self.$inner.notify(queue)
        }
        fn get_status(&self) -> DeviceStatus {
            self.$inner.get_status()
        }
        fn set_status(&mut self, status: DeviceStatus) {
            self.$inner.set_status(status)
        }
        fn set_guest_page_size(&mut self, guest_page_size: u32) {
            self.$inner.set_guest_page_size(guest_page_size)
        }
        fn requires_legacy_layout(&self) -> bool {
            self.$inner.requires_legacy_layout()
        }
        fn queue_set(
            &mut self,
            queue: u16,
            size: u32,
            descriptors: PhysAddr,
            driver_area: PhysAddr,
            device_area: PhysAddr,
        ) {
            self.$inner
                .queue_set(queue, size, descriptors, driver_area, device_area)
        }
        fn queue_unset(&mut self, queue: u16) {
            self.$inner.queue_unset(queue)
        }
        fn queue_used(&mut self, queue: u16) -> bool {
            self.$inner.queue_used(queue)
        }
        fn ack_interrupt(&mut self) -> InterruptStatus {
            self.$inner.ack_interrupt()
        }
        fn read_config_generation(&self) -> u32 {
            self.$inner.read_config_generation()
        }
        fn read_config_space<V: FromBytes + IntoBytes>(
            &self,
            offset: usize,
        ) -> virtio_drivers::Result<V> {
            self.$inner.read_config_space(offset)
        }
        fn write_config_space<V: IntoBytes + Immutable>(
            &mut self,
            offset: usize,
            value: V,
        ) -> virtio_drivers::Result<()> {
            self.$inner.write_config_space(offset, value)
        }
    };
}
pub(crate) use forward_transport;

impl<T: Transport> Transport for MaskedTransport<T> {
    fn read_device_features(&mut self) -> u64 {
        self.0.read_device_features() & !FEATURE_RING_EVENT_IDX
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        self.0.write_driver_features(driver_features)
    }
    forward_transport!(0);
}
