//! virtio-net driver on `virtio_drivers::VirtIONetRaw`, owning every buffer.
//!
//! A driver that reads only the newest used entry, or never re-posts RX
//! buffers, goes deaf under load, and `VirtIONet::receive` can drop a buffer
//! on an error path. Here every RX buffer lives in exactly one place — posted to the device
//! (`rx_posted[token]`), lent to the network stack, or `rx_spare` — and every
//! path, errors included, puts it back; [`Driver::refill`] re-posts all spare
//! buffers and then kicks the queue, whatever the device's suppression flag
//! says, and [`Driver::tick`] kicks both queues again, so a lost notification
//! cannot leave the device without buffers. TX never spins: with no free
//! descriptor or buffer the stack keeps its data and retries later.
//!
//! [`Driver`] is generic over the HAL, the transport and the kick so that it
//! builds and is tested on the host (`net/tests.rs`, over the fake device in
//! `dev/fake_device.rs`); the guest's instantiation is `NetDriver`.
//!
//! What a misbehaving device can do to it (each case is a test):
//! - a used entry shorter than the virtio-net header, or longer than the
//!   buffer: the buffer is recycled, counted in `rx_errors`, and the next frame
//!   is received normally;
//! - a used entry naming a buffer that is not posted (never made available, or
//!   an id beyond the queue size): [`DriverError::UnknownToken`]. virtio-drivers
//!   cannot skip a used entry without recycling its descriptor, so the entry
//!   stays at the head of the used ring and every later call reports the same
//!   error until the device is reset; no buffer is lost meanwhile;
//! - `used.idx` moved further than the device wrote: the stale entries that
//!   name posted buffers are indistinguishable from out-of-order completions and
//!   are consumed (lengths still checked); the first that names a buffer not
//!   posted surfaces as `UnknownToken` as above.
//!
//! Offloads (`dev/offload.rs`) are negotiated when the device offers them: the
//! stack then hands over TCP frames with a partial checksum and, with TSO,
//! frames of up to [`TSO_FRAME_MAX`] bytes that the device cuts into segments.
//! Those go out of a second, smaller pool of [`TX_LARGE_LEN`] buffers.

use super::offload::{self, OffloadTransport, Offloads, TxOffload};
use super::ring::RingIndices;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};
use virtio_drivers::Hal;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::Transport;

/// virtio-drivers wants at least 1526 bytes (header + 1514-byte frame).
pub const RX_BUFFER_LEN: usize = 2048;
pub const TX_BUFFER_LEN: usize = 2048;
/// Largest frame handed to the device for segmentation (TSO): Ethernet header
/// plus the largest IPv4 packet (its total length is 16 bits).
pub const TSO_FRAME_MAX: usize = 14 + u16::MAX as usize;
/// A TX buffer for a TSO frame: the 12-byte virtio-net header and the frame.
pub const TX_LARGE_LEN: usize = 12 + TSO_FRAME_MAX;
/// Most large TX buffers by default; the guest sizes it to its heap
/// ([`Driver::limit_large_buffers`]). They are allocated (fallibly) when
/// first needed and then kept. While all are in flight, `can_transmit` says
/// no, as for a full ring: data waits in the socket buffers.
pub const TX_LARGE_MAX: usize = 64;
/// The guest's large TX buffers take at most 1/this of its heap.
pub const TX_LARGE_HEAP_SHARE: usize = 8;
const _: () = assert!(TX_LARGE_LEN > TX_BUFFER_LEN);
pub const QUEUE_RECEIVE: u16 = 0;
pub const QUEUE_TRANSMIT: u16 = 1;

/// Writes a queue's notify register directly: virtio-drivers decides whether to
/// notify from the device's suppression flag, read without a full fence after
/// publishing `avail.idx`, so the driver also kicks on its own.
pub trait Kick {
    fn notify(&self, queue: u16);
}

#[cfg(target_os = "none")]
mod guest {
    use super::{Driver, DriverError, Kick, TX_LARGE_HEAP_SHARE, TX_LARGE_LEN};
    use crate::dev::port::{Nic, OpenError};
    use crate::dev::virtio::{self, KernelHal, MaskedTransport, MmioWindow};
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use virtio_drivers::transport::mmio::MmioTransport;

    /// The guest's driver: the MMIO transport (without `RING_EVENT_IDX`), kicked
    /// through the transport's register window; `N` is one of the
    /// configuration's `QUEUE_SIZES`.
    pub type NetDriver<const N: usize> =
        Driver<KernelHal, MaskedTransport<MmioTransport<'static>>, MmioWindow, N>;

    /// Set by the interrupt handler, cleared by the main loop before it services the device.
    pub static NET_PENDING: AtomicBool = AtomicBool::new(false);
    pub static NET_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
    /// Register window of the NIC for the interrupt handler (0 = none).
    static NET_WINDOW: AtomicU64 = AtomicU64::new(0);

    /// Interrupt context: acknowledge the device and note that work is pending.
    pub fn on_interrupt() {
        acknowledge_interrupt();
        mark_pending();
    }

    /// Acknowledges the NIC's interrupt at the device and counts it; returns
    /// the count (from 1). Interrupt context.
    pub fn acknowledge_interrupt() -> u64 {
        let virt = NET_WINDOW.load(Ordering::Relaxed);
        if virt != 0 {
            MmioWindow { virt }.ack_interrupt();
        }
        NET_INTERRUPTS.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Tells the main loop that the NIC has work.
    pub fn mark_pending() {
        NET_PENDING.store(true, Ordering::Release);
    }

    impl Kick for MmioWindow {
        fn notify(&self, queue: u16) {
            MmioWindow::notify(self, queue)
        }
    }

    /// The guest's NIC: its register window, opened (again) by
    /// [`Nic::open`](crate::dev::port::Nic::open).
    pub struct VirtioNic<const N: usize> {
        window: MmioWindow,
        /// A port opened here may be alive: the next open must be handed it.
        open: bool,
    }

    impl<const N: usize> VirtioNic<N> {
        /// # Safety
        /// `window` is a live virtio-net window from discovery, and no
        /// transport over it exists or is created except by this value.
        pub unsafe fn new(window: MmioWindow) -> Self {
            VirtioNic {
                window,
                open: false,
            }
        }
    }

    impl<const N: usize> Nic for VirtioNic<N> {
        type Port = NetDriver<N>;

        fn open(&mut self, previous: Option<NetDriver<N>>) -> Result<NetDriver<N>, OpenError> {
            if let Some(old) = previous {
                // Dropping the driver resets the device and frees its rings.
                drop(old);
                self.open = false;
            }
            if self.open {
                return Err(OpenError::StillOpen);
            }
            // SAFETY: `new`'s contract, and the only port opened here was
            // dropped just above (or never existed, or failed to open).
            let transport = unsafe { virtio::reopen(self.window) }.ok_or(OpenError::Gone)?;
            let driver = NetDriver::new(MaskedTransport(transport), self.window)
                .map_err(OpenError::Driver)?;
            self.open = true;
            Ok(driver)
        }

        fn needs_reset(&self) -> bool {
            self.window.status() & virtio::STATUS_NEEDS_RESET != 0
        }
    }

    impl<const N: usize> NetDriver<N> {
        /// Initialises the device, posts every RX buffer, and hands the register
        /// window to the interrupt handler.
        pub fn new(
            transport: MaskedTransport<MmioTransport<'static>>,
            window: MmioWindow,
        ) -> Result<Self, DriverError> {
            let mut driver = Driver::start(transport, window)?;
            let heap = crate::mem::heap::usage().map_or(0, |u| u.used + u.free);
            driver.limit_large_buffers(heap / TX_LARGE_HEAP_SHARE / TX_LARGE_LEN);
            let o = driver.offloads();
            log::info!(
                "net: offloads: tx checksum {}, rx checksum {}, tso4 {} (up to {} large TX buffers)",
                o.tx_checksum,
                o.rx_checksum,
                o.tso4,
                if o.tso4 { driver.tx_large_max } else { 0 }
            );
            NET_WINDOW.store(window.virt, Ordering::Relaxed);
            Ok(driver)
        }
    }
}
#[cfg(target_os = "none")]
pub use guest::*;

#[cfg(test)]
mod offload_tests;
#[cfg(test)]
mod tests;

/// `Driver::tick` kicks the RX queue at least this often (ticks), even with
/// no buffer posted since its last kick: the backstop for a lost tick kick.
pub const RX_KICK_BACKSTOP_TICKS: u32 = 10;

#[derive(Debug, Clone, Copy, Default)]
pub struct DriverStats {
    /// Frames handed to the stack (valid used entries only).
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Times the TX ring filled up (every descriptor or buffer busy) and a
    /// frame had to wait in the socket buffers.
    pub tx_full_events: u64,
    /// Used entries the device returned that we could not accept (short, longer
    /// than the buffer, token out of step with the ring).
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// Frames whose checksums the device vouched for (`GUEST_CSUM`), so the
    /// stack did not check them.
    pub rx_checksum_vouched: u64,
    /// Frames sent with a partial checksum for the device to complete, and
    /// of those, frames the device segments (TSO).
    pub tx_checksum_offloaded: u64,
    pub tx_segmentation_offloaded: u64,
    pub rx: RingIndices,
    pub tx: RingIndices,
}

#[derive(Debug)]
pub enum DriverError {
    Init(virtio_drivers::Error),
    /// The device returned a token that has no buffer of ours behind it. The
    /// entry stays at the head of the used ring (virtio-drivers cannot skip it),
    /// so this repeats until the device is reset.
    UnknownToken {
        queue: u16,
        token: u16,
    },
}

/// Where every buffer is. Invariant (checked by [`Driver::audit`]):
/// `rx_posted + rx_spare + rx_lent == N`, `tx_posted + tx_free == N` (the
/// frame-sized TX buffers), and large TX buffers posted or in the pool, the
/// pool holding at most [`TX_LARGE_MAX`] (or the cap the guest sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffers {
    pub rx_posted: usize,
    pub rx_spare: usize,
    pub rx_lent: usize,
    pub tx_posted: usize,
    pub tx_free: usize,
    pub tx_large_posted: usize,
    pub tx_large_free: usize,
}

/// A broken buffer invariant, with the counts that show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditError {
    pub what: &'static str,
    pub buffers: Buffers,
}

/// A received frame: the buffer (lent out until [`Driver::give_back`]) and
/// where the Ethernet frame lies in it.
pub struct RxFrame {
    pub buffer: Box<[u8]>,
    pub start: usize,
    pub len: usize,
    /// The device vouched for the frame's checksums (negotiated `GUEST_CSUM`
    /// and `DATA_VALID` or `NEEDS_CSUM` in its header).
    pub checksum_vouched: bool,
}

impl RxFrame {
    pub fn frame(&self) -> &[u8] {
        let end = self.start.saturating_add(self.len);
        self.buffer.get(self.start..end).unwrap_or(&[])
    }
}

/// The driver over any HAL `H`, transport `T` and kick `K`, with `N`-entry queues.
pub struct Driver<H: Hal, T: Transport, K: Kick, const N: usize> {
    /// Boxed: its shadow rings make it ~16 KiB at 256 entries, and the
    /// driver is moved through the main loop's frames (into the stack, into
    /// a reset's new port) where each copy would take that much stack.
    raw: Box<VirtIONetRaw<H, OffloadTransport<T>, N>>,
    kick: K,
    offloads: Offloads,
    /// Length of the virtio-net header in front of every TX frame (10 or 12).
    tx_header_len: usize,
    rx_posted: Vec<Option<Box<[u8]>>>,
    rx_spare: Vec<Box<[u8]>>,
    /// Buffers handed out by `receive` and not yet given back.
    rx_lent: usize,
    tx_posted: Vec<Option<(Box<[u8]>, usize)>>,
    tx_free: Vec<Box<[u8]>>,
    /// Large (TSO) buffers not posted.
    tx_large_free: Vec<Box<[u8]>>,
    /// Large buffers allocated (posted or free), at most `tx_large_max`.
    tx_large_allocated: usize,
    tx_large_max: usize,
    /// The TX ring was full at the last `can_transmit`.
    tx_full: bool,
    /// RX `avail.idx` when `tick` last kicked the RX queue (None: never).
    rx_avail_at_tick_kick: Option<u16>,
    /// Ticks since `tick` last kicked the RX queue.
    ticks_since_rx_kick: u32,
    pub stats: DriverStats,
}

fn buffer(len: usize) -> Box<[u8]> {
    alloc::vec![0u8; len].into_boxed_slice()
}

impl<H: Hal, T: Transport, K: Kick, const N: usize> Driver<H, T, K, N> {
    /// Initialises the device over `transport` and posts every RX buffer.
    pub fn start(transport: T, kick: K) -> Result<Self, DriverError> {
        const { assert!(N.is_power_of_two() && N <= u16::MAX as usize) };
        let (transport, offloads) = OffloadTransport::new(transport);
        let raw = Box::new(VirtIONetRaw::<H, _, N>::new(transport).map_err(DriverError::Init)?);
        let mut header = [0u8; 16];
        let tx_header_len = raw
            .fill_buffer_header(&mut header)
            .map_err(DriverError::Init)?;
        let mut driver = Driver {
            raw,
            kick,
            offloads,
            tx_header_len,
            rx_posted: (0..N).map(|_| None).collect(),
            rx_spare: (0..N).map(|_| buffer(RX_BUFFER_LEN)).collect(),
            rx_lent: 0,
            tx_posted: (0..N).map(|_| None).collect(),
            tx_free: (0..N).map(|_| buffer(TX_BUFFER_LEN)).collect(),
            tx_large_free: Vec::new(),
            tx_large_allocated: 0,
            tx_large_max: TX_LARGE_MAX,
            tx_full: false,
            rx_avail_at_tick_kick: None,
            ticks_since_rx_kick: 0,
            stats: DriverStats::default(),
        };
        driver.refill();
        Ok(driver)
    }

    pub fn mac(&self) -> [u8; 6] {
        self.raw.mac_address()
    }

    /// The offloads negotiated with the device.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// Buffers currently posted to the device for receiving.
    pub fn rx_posted_count(&self) -> usize {
        self.rx_posted.iter().filter(|b| b.is_some()).count()
    }

    /// Heap held by the large TX buffers (posted or free).
    pub fn large_buffer_bytes(&self) -> usize {
        self.tx_large_allocated * TX_LARGE_LEN
    }

    pub fn buffers(&self) -> Buffers {
        let posted = |large: bool| {
            self.tx_posted
                .iter()
                .flatten()
                .filter(|(buf, _)| (buf.len() > TX_BUFFER_LEN) == large)
                .count()
        };
        Buffers {
            rx_posted: self.rx_posted_count(),
            rx_spare: self.rx_spare.len(),
            rx_lent: self.rx_lent,
            tx_posted: posted(false),
            tx_free: self.tx_free.len(),
            tx_large_posted: posted(true),
            tx_large_free: self.tx_large_free.len(),
        }
    }

    /// Checks that no buffer was lost or duplicated and that the ring indices
    /// agree with what is posted.
    pub fn audit(&self) -> Result<(), AuditError> {
        let buffers = self.buffers();
        let fail = |what| Err(AuditError { what, buffers });
        if buffers.rx_posted + buffers.rx_spare + buffers.rx_lent != N {
            return fail("RX buffers posted + spare + lent != queue size");
        }
        if buffers.tx_posted + buffers.tx_free != N {
            return fail("TX buffers posted + free != queue size");
        }
        if usize::from(self.stats.rx.in_flight()) != buffers.rx_posted {
            return fail("RX ring indices disagree with the posted buffers");
        }
        if buffers.tx_large_posted + buffers.tx_large_free != self.tx_large_allocated
            || self.tx_large_allocated > self.tx_large_max
        {
            return fail("large TX buffers posted + free != allocated, or above the limit");
        }
        if usize::from(self.stats.tx.in_flight()) != buffers.tx_posted + buffers.tx_large_posted {
            return fail("TX ring indices disagree with the posted buffers");
        }
        Ok(())
    }

    /// Posts every spare RX buffer, then kicks the RX queue. The kick ignores the
    /// device's suppression flag: virtio-drivers checks it right after
    /// publishing `avail.idx` without a full fence, so its own decision can be
    /// stale, and a missed kick after the ring ran dry would stall RX for good.
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
            self.kick_rx();
        }
        posted
    }

    /// Takes the next received frame, if any. Entries the device completed with
    /// errors are recycled and skipped; the loop is bounded by the queue size.
    pub fn receive(&mut self) -> Result<Option<RxFrame>, DriverError> {
        for _ in 0..N {
            let Some(token) = self.raw.poll_receive() else {
                return Ok(None);
            };
            // Only a posted token goes on to `receive_complete`: virtio-drivers
            // would index its descriptor table with it, or recycle a free descriptor.
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
                    let checksum_vouched = self.offloads.rx_checksum
                        && buf
                            .get(..header_len)
                            .is_some_and(offload::rx_checksum_vouched);
                    let frame = RxFrame {
                        buffer: buf,
                        start: header_len,
                        len: frame_len,
                        checksum_vouched,
                    };
                    if frame.frame().len() == frame_len {
                        self.stats.rx_checksum_vouched += u64::from(checksum_vouched);
                        self.stats.frames_in += 1;
                        self.stats.bytes_in += frame_len as u64;
                        self.rx_lent += 1;
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
                    // Not popped (the entry changed under us): the device disagrees with the ring.
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
        self.rx_lent = self.rx_lent.saturating_sub(1);
        self.rx_spare.push(frame.buffer);
    }

    /// Reclaims every TX buffer the device has finished with.
    pub fn reap_tx(&mut self) -> Result<usize, DriverError> {
        let mut reaped = 0;
        for _ in 0..N {
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
                    self.put_tx_buffer(buf);
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

    /// Whether a frame can be queued right now: a free buffer and descriptor,
    /// and with TSO a large buffer too (the frame's size is not known yet).
    pub fn can_transmit(&mut self) -> bool {
        let large_ok = !self.offloads.tso4
            || !self.tx_large_free.is_empty()
            || self.tx_large_allocated < self.tx_large_max;
        let ok = !self.tx_free.is_empty() && self.raw.can_send() && large_ok;
        // One event per time the ring fills up, not per refused attempt.
        if !ok && !self.tx_full {
            self.stats.tx_full_events += 1;
        }
        self.tx_full = !ok;
        ok
    }

    /// A pass has work to do: the device returned a received frame, or TX
    /// frames are in flight (their completions count as in flight until
    /// `reap_tx` takes them, so this covers unreaped completions too).
    pub fn has_work(&self) -> bool {
        self.stats.tx.in_flight() > 0 || self.raw.poll_receive().is_some()
    }

    /// The last `can_transmit` found the TX ring full: the stack has data it
    /// cannot send until a completion (interrupt) or the tick frees a slot, so
    /// polling again before then would only spin.
    pub fn tx_blocked(&self) -> bool {
        self.tx_full
    }

    /// Queues one frame of `len` bytes written by `fill`, which also says what
    /// the device is to do for it (complete a partial checksum, segment it).
    /// Call only after `can_transmit` returned true; otherwise the frame is
    /// counted and dropped (`fill` still gets `len` bytes to write into:
    /// smoltcp indexes its buffer). A frame longer than a frame-sized buffer
    /// takes a large one and must ask for segmentation; a request for an
    /// offload that was not negotiated drops the frame (counted).
    pub fn transmit<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> (R, Option<TxOffload>),
    ) -> R {
        let total = self.tx_header_len.saturating_add(len);
        let Some(mut buf) = self.take_tx_buffer(total) else {
            self.stats.tx_errors += 1;
            return fill(&mut alloc::vec![0u8; len]).0;
        };
        let header_len = self.raw.fill_buffer_header(&mut buf).unwrap_or(0);
        let Some(frame) = buf.get_mut(header_len..total) else {
            self.stats.tx_errors += 1;
            self.put_tx_buffer(buf);
            return fill(&mut alloc::vec![0u8; len]).0;
        };
        let (result, offload) = fill(frame);
        // A frame in a large buffer exceeds one segment and must be segmented;
        // a small one may be too (a little over one MSS).
        let large = buf.len() > TX_BUFFER_LEN;
        let accepted = match offload {
            None => !large,
            Some(o) => {
                (o.gso.is_some() || !large)
                    && self.offloads.tx_checksum
                    && (o.gso.is_none() || self.offloads.tso4)
                    && buf.get_mut(..header_len).is_some_and(|h| o.write_header(h))
            }
        };
        if !accepted {
            self.stats.tx_errors += 1;
            self.put_tx_buffer(buf);
            return result;
        }
        // SAFETY: the buffer stays in `tx_posted[token]`, unmoved and untouched, until
        // reap_tx sees the token completed.
        match unsafe { self.raw.transmit_begin(&buf[..total]) } {
            Ok(token) => match self.tx_posted.get_mut(usize::from(token)) {
                Some(slot @ None) => {
                    *slot = Some((buf, total));
                    self.stats.tx.posted();
                    self.stats.frames_out += 1;
                    self.stats.bytes_out += len as u64;
                    if let Some(o) = offload {
                        self.stats.tx_checksum_offloaded += 1;
                        self.stats.tx_segmentation_offloaded += u64::from(o.gso.is_some());
                    }
                }
                _ => {
                    self.stats.tx_errors += 1;
                    self.put_tx_buffer(buf);
                }
            },
            Err(_) => {
                self.stats.tx_errors += 1;
                self.put_tx_buffer(buf);
            }
        }
        result
    }

    /// A TX buffer for `total` bytes (header and frame): a frame-sized one, or
    /// with TSO negotiated a large one from the pool or newly allocated.
    /// None if none is free, or the allocation fails.
    fn take_tx_buffer(&mut self, total: usize) -> Option<Box<[u8]>> {
        if total <= TX_BUFFER_LEN {
            return self.tx_free.pop();
        }
        if !self.offloads.tso4 || total > TX_LARGE_LEN {
            return None;
        }
        if let Some(buf) = self.tx_large_free.pop() {
            return Some(buf);
        }
        if self.tx_large_allocated >= self.tx_large_max {
            return None;
        }
        let mut v = Vec::new();
        v.try_reserve_exact(TX_LARGE_LEN).ok()?;
        v.resize(TX_LARGE_LEN, 0u8);
        self.tx_large_allocated += 1;
        Some(v.into_boxed_slice())
    }

    /// Returns a TX buffer to its pool.
    fn put_tx_buffer(&mut self, buf: Box<[u8]>) {
        if buf.len() <= TX_BUFFER_LEN {
            self.tx_free.push(buf);
        } else if self.tx_large_allocated > self.tx_large_max {
            self.tx_large_allocated -= 1;
        } else {
            self.tx_large_free.push(buf);
        }
    }

    /// Caps the large (TSO) TX buffers at `max` (at least one), e.g. to a
    /// share of the heap; buffers above a lowered cap are freed as they come back.
    pub fn limit_large_buffers(&mut self, max: usize) {
        self.tx_large_max = max.max(1);
        while self.tx_large_allocated > self.tx_large_max && self.tx_large_free.pop().is_some() {
            self.tx_large_allocated -= 1;
        }
    }

    /// Periodic insurance against a lost TX kick: if frames are outstanding,
    /// notify the device again (cheap, idempotent).
    pub fn kick_tx_if_pending(&mut self) {
        if self.stats.tx.in_flight() > 0 {
            fence(Ordering::SeqCst);
            self.kick.notify(QUEUE_TRANSMIT);
        }
    }

    pub fn kick_rx(&mut self) {
        fence(Ordering::SeqCst);
        self.kick.notify(QUEUE_RECEIVE);
    }

    /// The once-per-timer-tick pass, whatever the interrupts did: re-post, and
    /// kick both queues, so a lost notification in either direction costs at most
    /// one tick. Only kicks that could have been lost are repeated at once: RX
    /// if buffers were posted since the last tick's kick, TX if frames are in
    /// flight; RX is kicked anyway every [`RX_KICK_BACKSTOP_TICKS`], in case
    /// the tick's own kick was lost too. An idle guest then makes one MMIO
    /// write (an exit into QEMU's device model) per 100 ms instead of one per
    /// tick.
    pub fn tick(&mut self) {
        self.refill();
        self.kick_queues();
    }

    /// The kicks of [`tick`](Self::tick), without its refill.
    pub fn kick_queues(&mut self) {
        let avail = self.stats.rx.avail;
        self.ticks_since_rx_kick = self.ticks_since_rx_kick.saturating_add(1);
        if self.rx_avail_at_tick_kick != Some(avail)
            || self.ticks_since_rx_kick >= RX_KICK_BACKSTOP_TICKS
        {
            self.kick_rx();
            self.rx_avail_at_tick_kick = Some(avail);
            self.ticks_since_rx_kick = 0;
        }
        self.kick_tx_if_pending();
    }
}
