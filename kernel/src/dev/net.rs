//! virtio-net driver on `virtio_drivers::VirtIONetRaw`, owning every buffer.
//!
//! The predecessor read only the newest used entry and never re-posted RX
//! buffers, and `VirtIONet::receive` can drop a buffer on an error path. Here
//! every RX buffer lives in exactly one place — posted to the device
//! (`rx_posted[token]`), lent to the network stack, or `rx_spare` — and every
//! path, errors included, puts it back; [`NetDriver::refill`] re-posts all spare
//! buffers and then kicks the queue unconditionally, so a lost notification
//! cannot leave the device without buffers. TX never spins: with no free
//! descriptor or buffer the stack keeps its data and retries later.

use super::ring::RingIndices;
use super::virtio::{KernelHal, MaskedTransport, MmioWindow};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use virtio_drivers::device::net::VirtIONetRaw;

pub const QUEUE_SIZE: usize = 256;
/// virtio-drivers wants at least 1526 bytes (header + 1514-byte frame).
pub const RX_BUFFER_LEN: usize = 2048;
pub const TX_BUFFER_LEN: usize = 2048;
const QUEUE_RECEIVE: u16 = 0;
const QUEUE_TRANSMIT: u16 = 1;
const _: () = assert!(QUEUE_SIZE.is_power_of_two() && QUEUE_SIZE <= u16::MAX as usize);

type Raw = VirtIONetRaw<KernelHal, MaskedTransport, QUEUE_SIZE>;

/// Set by the interrupt handler, cleared by the main loop before it services the device.
pub static NET_PENDING: AtomicBool = AtomicBool::new(false);
pub static NET_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// Register window of the NIC for the interrupt handler (0 = none).
static NET_WINDOW: AtomicU64 = AtomicU64::new(0);

/// Interrupt context: acknowledge the device and note that work is pending.
pub fn on_interrupt() {
    let virt = NET_WINDOW.load(Ordering::Relaxed);
    if virt != 0 {
        MmioWindow { virt }.ack_interrupt();
    }
    NET_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    NET_PENDING.store(true, Ordering::Release);
}

#[derive(Debug, Clone, Copy, Default)]
pub struct DriverStats {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// TX asked for while every TX descriptor or buffer was busy.
    pub tx_full_events: u64,
    /// Used entries the device returned that we could not accept (short, bad token).
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx: RingIndices,
    pub tx: RingIndices,
}

#[derive(Debug)]
pub enum DriverError {
    Init(virtio_drivers::Error),
    /// The device returned a token that has no buffer of ours behind it.
    UnknownToken {
        queue: u16,
        token: u16,
    },
}

/// A received frame: the buffer (lent out until [`NetDriver::give_back`]) and
/// where the Ethernet frame lies in it.
pub struct RxFrame {
    pub buffer: Box<[u8]>,
    pub start: usize,
    pub len: usize,
}

impl RxFrame {
    pub fn frame(&self) -> &[u8] {
        let end = self.start.saturating_add(self.len);
        self.buffer.get(self.start..end).unwrap_or(&[])
    }
}

pub struct NetDriver {
    raw: Raw,
    window: MmioWindow,
    rx_posted: Vec<Option<Box<[u8]>>>,
    rx_spare: Vec<Box<[u8]>>,
    tx_posted: Vec<Option<(Box<[u8]>, usize)>>,
    tx_free: Vec<Box<[u8]>>,
    pub stats: DriverStats,
}

fn buffer(len: usize) -> Box<[u8]> {
    alloc::vec![0u8; len].into_boxed_slice()
}

impl NetDriver {
    pub fn new(transport: MaskedTransport, window: MmioWindow) -> Result<Self, DriverError> {
        let raw = Raw::new(transport).map_err(DriverError::Init)?;
        let mut driver = NetDriver {
            raw,
            window,
            rx_posted: (0..QUEUE_SIZE).map(|_| None).collect(),
            rx_spare: (0..QUEUE_SIZE).map(|_| buffer(RX_BUFFER_LEN)).collect(),
            tx_posted: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx_free: (0..QUEUE_SIZE).map(|_| buffer(TX_BUFFER_LEN)).collect(),
            stats: DriverStats::default(),
        };
        driver.refill();
        NET_WINDOW.store(window.virt, Ordering::Relaxed);
        Ok(driver)
    }

    pub fn mac(&self) -> [u8; 6] {
        self.raw.mac_address()
    }

    /// Buffers currently posted to the device for receiving.
    pub fn rx_posted_count(&self) -> usize {
        self.rx_posted.iter().filter(|b| b.is_some()).count()
    }

    /// Posts every spare RX buffer, then kicks the RX queue. The kick is
    /// unconditional: virtio-drivers checks the device's suppression flag right
    /// after publishing `avail.idx` without a full fence, so its own decision can
    /// be stale, and a missed kick after the ring ran dry would stall RX for good.
    pub fn refill(&mut self) -> usize {
        let mut posted = 0;
        while let Some(mut buf) = self.rx_spare.pop() {
            // SAFETY: the buffer is heap memory (DMA-able) that we keep, unmoved and
            // untouched, in `rx_posted[token]` until the device returns that token.
            match unsafe { self.raw.receive_begin(&mut buf) } {
                Ok(token) => match self.rx_posted.get_mut(usize::from(token)) {
                    Some(slot @ None) => {
                        *slot = Some(buf);
                        self.stats.rx.posted();
                        posted += 1;
                    }
                    // Cannot happen with a correct queue; keep the buffer rather than lose it.
                    _ => {
                        self.stats.rx_errors += 1;
                        self.rx_spare.push(buf);
                        break;
                    }
                },
                Err(_) => {
                    self.rx_spare.push(buf);
                    break;
                }
            }
        }
        if posted > 0 {
            fence(Ordering::SeqCst);
            self.window.notify(QUEUE_RECEIVE);
        }
        posted
    }

    /// Takes the next received frame, if any. Entries the device completed with
    /// errors are recycled and skipped; the loop is bounded by the queue size.
    pub fn receive(&mut self) -> Result<Option<RxFrame>, DriverError> {
        for _ in 0..QUEUE_SIZE {
            let Some(token) = self.raw.poll_receive() else {
                return Ok(None);
            };
            let Some(mut buf) = self
                .rx_posted
                .get_mut(usize::from(token))
                .and_then(Option::take)
            else {
                return Err(DriverError::UnknownToken {
                    queue: QUEUE_RECEIVE,
                    token,
                });
            };
            // SAFETY: `buf` is the buffer posted with this token (taken from its slot).
            let result = unsafe { self.raw.receive_complete(token, &mut buf) };
            match result {
                Ok((header_len, frame_len)) => {
                    self.stats.rx.completed();
                    self.stats.frames_in += 1;
                    self.stats.bytes_in += frame_len as u64;
                    let frame = RxFrame {
                        buffer: buf,
                        start: header_len,
                        len: frame_len,
                    };
                    if frame.frame().len() == frame_len {
                        return Ok(Some(frame));
                    }
                    // Length beyond our buffer: a hostile used entry.
                    self.stats.rx_errors += 1;
                    self.rx_spare.push(frame.buffer);
                }
                Err(virtio_drivers::Error::IoError) => {
                    // Popped, but shorter than a header: recycle it.
                    self.stats.rx.completed();
                    self.stats.rx_errors += 1;
                    self.rx_spare.push(buf);
                }
                Err(_) => {
                    // Not popped (token mismatch): the device disagrees with the ring.
                    self.stats.rx_errors += 1;
                    if let Some(slot) = self.rx_posted.get_mut(usize::from(token)) {
                        *slot = Some(buf);
                    }
                    return Err(DriverError::UnknownToken {
                        queue: QUEUE_RECEIVE,
                        token,
                    });
                }
            }
        }
        Ok(None)
    }

    /// Returns a buffer lent out by [`receive`](Self::receive).
    pub fn give_back(&mut self, frame: RxFrame) {
        self.rx_spare.push(frame.buffer);
    }

    /// Reclaims every TX buffer the device has finished with.
    pub fn reap_tx(&mut self) -> Result<usize, DriverError> {
        let mut reaped = 0;
        for _ in 0..QUEUE_SIZE {
            let Some(token) = self.raw.poll_transmit() else {
                break;
            };
            let Some((buf, len)) = self
                .tx_posted
                .get_mut(usize::from(token))
                .and_then(Option::take)
            else {
                return Err(DriverError::UnknownToken {
                    queue: QUEUE_TRANSMIT,
                    token,
                });
            };
            let frame = buf.get(..len).unwrap_or(&buf);
            // SAFETY: the same buffer and length that were passed to transmit_begin.
            let result = unsafe { self.raw.transmit_complete(token, frame) };
            match result {
                Ok(_) => {
                    self.stats.tx.completed();
                    self.tx_free.push(buf);
                    reaped += 1;
                }
                Err(_) => {
                    self.stats.tx_errors += 1;
                    if let Some(slot) = self.tx_posted.get_mut(usize::from(token)) {
                        *slot = Some((buf, len));
                    }
                    return Err(DriverError::UnknownToken {
                        queue: QUEUE_TRANSMIT,
                        token,
                    });
                }
            }
        }
        Ok(reaped)
    }

    /// Whether a frame can be queued right now (a free buffer and descriptor).
    pub fn can_transmit(&mut self) -> bool {
        let ok = !self.tx_free.is_empty() && self.raw.can_send();
        if !ok {
            self.stats.tx_full_events += 1;
        }
        ok
    }

    /// Queues one frame of `len` bytes written by `fill`. Call only after
    /// `can_transmit` returned true; otherwise the frame is counted and dropped.
    pub fn transmit<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> R {
        let mut scratch = [0u8; 0];
        let Some(mut buf) = self.tx_free.pop() else {
            self.stats.tx_errors += 1;
            return fill(&mut scratch);
        };
        let header_len = self.raw.fill_buffer_header(&mut buf).unwrap_or(0);
        let total = header_len + len;
        let Some(frame) = buf.get_mut(header_len..total) else {
            self.stats.tx_errors += 1;
            self.tx_free.push(buf);
            return fill(&mut scratch);
        };
        let result = fill(frame);
        // SAFETY: the buffer stays in `tx_posted[token]`, unmoved and untouched, until
        // reap_tx sees the token completed.
        match unsafe { self.raw.transmit_begin(&buf[..total]) } {
            Ok(token) => match self.tx_posted.get_mut(usize::from(token)) {
                Some(slot @ None) => {
                    *slot = Some((buf, total));
                    self.stats.tx.posted();
                    self.stats.frames_out += 1;
                    self.stats.bytes_out += len as u64;
                }
                _ => {
                    self.stats.tx_errors += 1;
                    self.tx_free.push(buf);
                }
            },
            Err(_) => {
                self.stats.tx_errors += 1;
                self.tx_free.push(buf);
            }
        }
        result
    }

    /// Periodic insurance against a lost TX kick: if frames are outstanding,
    /// notify the device again (cheap, idempotent).
    pub fn kick_tx_if_pending(&mut self) {
        if self.stats.tx.in_flight() > 0 {
            fence(Ordering::SeqCst);
            self.window.notify(QUEUE_TRANSMIT);
        }
    }

    pub fn kick_rx(&mut self) {
        fence(Ordering::SeqCst);
        self.window.notify(QUEUE_RECEIVE);
    }
}
