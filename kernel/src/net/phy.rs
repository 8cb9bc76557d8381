//! The smoltcp `Device` over a NIC [`Port`] (the virtio-net driver, or a
//! wrapper around it).
//!
//! An RX token owns its frame's buffer and hands it back to the driver when it
//! is consumed or dropped, so no path can leak an RX buffer. A TX token is only
//! given out when the driver has room, so smoltcp never produces a frame that
//! would be dropped; otherwise its data stays in the socket buffers.
//!
//! The driver slot is empty only while the device is being reset (the old
//! port must be gone before the device is opened again, see
//! [`Nic::open`](crate::dev::port::Nic::open)).
//!
//! Offloads the device negotiated are passed on to smoltcp: with checksum
//! offload it leaves TCP checksums to the device, with TSO it emits TCP frames
//! of up to 64 KiB ([`tx_offload`] prepares both); received frames whose
//! checksums the device vouched for are not checked again.

use super::{frame, tx_offload};
use crate::dev::net::{DriverError, RxFrame, TSO_FRAME_MAX};
use crate::dev::port::Port;
use alloc::vec;
use core::cell::RefCell;
use core::num::NonZeroUsize;
use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium, PacketMeta};
use smoltcp::time::Instant;

/// Largest Ethernet frame without the FCS (1500-byte MTU + 14-byte header).
pub const MAX_FRAME: usize = 1514;
pub use super::HTTP_PORT;

type Slot<P> = RefCell<Option<P>>;

pub struct Phy<P: Port> {
    pub driver: Slot<P>,
    /// Frames dropped for a bad IPv4, TCP, UDP or ICMP checksum.
    pub checksum_errors: u64,
    /// A driver error that needs the device reset.
    pub fault: Option<DriverError>,
}

impl<P: Port> Phy<P> {
    pub fn new(driver: P) -> Self {
        Phy {
            driver: RefCell::new(Some(driver)),
            checksum_errors: 0,
            fault: None,
        }
    }

    pub fn driver_mut(&mut self) -> Option<&mut P> {
        self.driver.get_mut().as_mut()
    }
}

pub struct Rx<'a, P: Port> {
    frame: Option<RxFrame>,
    driver: &'a Slot<P>,
}

pub struct Tx<'a, P: Port> {
    driver: &'a Slot<P>,
    /// smoltcp's request to segment this frame (the MSS), if any.
    segment_size: Option<u16>,
}

impl<P: Port> Device for Phy<P> {
    type RxToken<'a>
        = Rx<'a, P>
    where
        P: 'a;
    type TxToken<'a>
        = Tx<'a, P>
    where
        P: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_, P>, Tx<'_, P>)> {
        let driver = self.driver.get_mut().as_mut()?;
        // The reply to this frame (an ACK, an ARP answer) needs TX room; without it,
        // leave the frame in the ring until TX completions free some.
        if !driver.can_transmit() {
            return None;
        }
        // Bounded: each pass takes a used entry off the ring, which holds
        // `queue_size` entries.
        let mut next = None;
        for _ in 0..driver.queue_size() {
            let frame = match driver.receive() {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(e) => {
                    self.fault = Some(e);
                    return None;
                }
            };
            if !frame.checksum_vouched && frame::fails_checksum(frame.frame()) {
                self.checksum_errors = self.checksum_errors.saturating_add(1);
                driver.give_back(frame);
                continue;
            }
            next = Some(frame);
            break;
        }
        let frame = next?;
        let driver = &self.driver;
        Some((
            Rx {
                frame: Some(frame),
                driver,
            },
            Tx {
                driver,
                segment_size: None,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_, P>> {
        if !self.driver.get_mut().as_mut()?.can_transmit() {
            return None;
        }
        Some(Tx {
            driver: &self.driver,
            segment_size: None,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = None;
        // `receive` has verified these already (and counted failures);
        // smoltcp still computes them for the frames it sends.
        caps.checksum.ipv4 = Checksum::Tx;
        caps.checksum.tcp = Checksum::Tx;
        caps.checksum.udp = Checksum::Tx;
        caps.checksum.icmpv4 = Checksum::Tx;
        // Called by smoltcp between tokens, never while one holds the driver;
        // should that change, no offloads is the safe answer.
        let offloads = self
            .driver
            .try_borrow()
            .ok()
            .and_then(|d| d.as_ref().map(P::offloads))
            .unwrap_or_default();
        if offloads.tx_checksum {
            caps.checksum.tcp = Checksum::None;
        }
        if offloads.tso4 {
            caps.segmentation.tcpv4 = NonZeroUsize::new(TSO_FRAME_MAX);
        }
        caps
    }
}

fn give_back<P: Port>(slot: &Slot<P>, frame: RxFrame) {
    if let Some(driver) = slot.borrow_mut().as_mut() {
        driver.give_back(frame);
    }
}

impl<P: Port> phy::RxToken for Rx<'_, P> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(mut self, f: F) -> R {
        // No borrow of the driver is held while `f` runs: smoltcp transmits its
        // reply from inside `f` through the TX token.
        let frame = self.frame.take();
        let result = f(frame.as_ref().map_or(&[][..], RxFrame::frame));
        if let Some(frame) = frame {
            give_back(self.driver, frame);
        }
        result
    }
}

impl<P: Port> Drop for Rx<'_, P> {
    fn drop(&mut self) {
        if let Some(frame) = self.frame.take() {
            give_back(self.driver, frame);
        }
    }
}

impl<P: Port> phy::TxToken for Tx<'_, P> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        match self.driver.borrow_mut().as_mut() {
            Some(driver) => {
                let offloads = driver.offloads();
                driver.transmit(len, |buf| {
                    let result = f(buf);
                    (
                        result,
                        tx_offload::prepare(buf, self.segment_size, offloads),
                    )
                })
            }
            // Tokens are only handed out while a driver is present.
            None => f(&mut vec![0u8; len]),
        }
    }

    fn set_meta(&mut self, meta: PacketMeta) {
        self.segment_size = meta.segmentation_offload_size.map(|s| s.get());
    }
}
