//! The smoltcp `Device` over the virtio-net driver.
//!
//! An RX token owns its frame's buffer and hands it back to the driver when it
//! is consumed or dropped, so no path can leak an RX buffer. A TX token is only
//! given out when the driver has room, so smoltcp never produces a frame that
//! would be dropped; otherwise its data stays in the socket buffers.

use super::frame;
use crate::dev::net::{NetDriver, RxFrame};
use core::cell::RefCell;
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Largest Ethernet frame without the FCS (1500-byte MTU + 14-byte header).
pub const MAX_FRAME: usize = 1514;
pub const HTTP_PORT: u16 = 80;

pub struct Phy {
    pub driver: RefCell<NetDriver>,
    /// TCP SYNs to the HTTP port seen since the counter was last taken.
    pub syns_seen: u64,
    /// A driver error that needs the device reset (reported by `service`).
    pub fault: Option<crate::dev::net::DriverError>,
}

impl Phy {
    pub fn new(driver: NetDriver) -> Self {
        Phy {
            driver: RefCell::new(driver),
            syns_seen: 0,
            fault: None,
        }
    }
}

pub struct Rx<'a> {
    frame: Option<RxFrame>,
    driver: &'a RefCell<NetDriver>,
}

pub struct Tx<'a> {
    driver: &'a RefCell<NetDriver>,
}

impl Device for Phy {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let driver = self.driver.get_mut();
        // The reply to this frame (an ACK, an ARP answer) needs TX room; without it,
        // leave the frame in the ring until TX completions free some.
        if !driver.can_transmit() {
            return None;
        }
        let frame = match driver.receive() {
            Ok(Some(frame)) => frame,
            Ok(None) => return None,
            Err(e) => {
                self.fault = Some(e);
                return None;
            }
        };
        if frame::is_tcp_syn_to(frame.frame(), HTTP_PORT) {
            self.syns_seen += 1;
        }
        let driver = &self.driver;
        Some((
            Rx {
                frame: Some(frame),
                driver,
            },
            Tx { driver },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        if !self.driver.get_mut().can_transmit() {
            return None;
        }
        Some(Tx {
            driver: &self.driver,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = None;
        caps
    }
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(mut self, f: F) -> R {
        // No borrow of the driver is held while `f` runs: smoltcp transmits its
        // reply from inside `f` through the TX token.
        let frame = self.frame.take();
        let result = f(frame.as_ref().map_or(&[][..], RxFrame::frame));
        if let Some(frame) = frame {
            self.driver.borrow_mut().give_back(frame);
        }
        result
    }
}

impl Drop for Rx<'_> {
    fn drop(&mut self) {
        if let Some(frame) = self.frame.take() {
            self.driver.borrow_mut().give_back(frame);
        }
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.driver.borrow_mut().transmit(len, f)
    }
}
