//! A transmit-only virtio-console driver: the access log's channel to the host.
//!
//! virtio-drivers' `VirtIOConsole::send_bytes` adds a buffer and then spins
//! until the device returns it; a host end that stops reading (QEMU throttles
//! the port and keeps the buffer) would hang the main loop there. This driver
//! uses the same `VirtQueue` without ever waiting: [`Console::pump`] takes back
//! the buffers the device finished with, fills the free ones from the line
//! buffer and kicks; with every buffer still out, lines wait in the line
//! buffer (bounded: the formatter drops and counts what does not fit).
//!
//! Which port: QEMU's `virtconsole` (port 0) drops data it cannot write at
//! once (`hw/char/virtio-console.c`: consoles are never throttled), so a host
//! end that stops reading would lose lines where the guest cannot count them.
//! A `virtserialport` is throttled instead: QEMU keeps the buffer until the
//! host end takes it, the guest's buffers fill, and the guest drops and counts.
//! So when the device offers `VIRTIO_CONSOLE_F_MULTIPORT` this driver writes to
//! port 1 (the launcher's `virtserialport,nr=1`), else to port 0. Only that
//! port's transmit queue is set up: no control messages (QEMU delivers a
//! port's output whenever its host end is connected), no input.

use super::line_buffer::LineBuffer;
use super::virtio::{KernelHal, MmioWindow};
use alloc::boxed::Box;
use alloc::vec;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::transport::{DeviceStatus, Transport};

/// Transmit queue of port 0, and of port 1 with multiport (queues 2 and 3
/// are the control queues, then two per port).
const QUEUE_TRANSMIT_PORT0: u16 = 1;
const QUEUE_TRANSMIT_PORT1: u16 = 5;
/// Buffers (= descriptors) in flight at most.
const BUFFERS: usize = 8;
/// Bytes per buffer.
const BUFFER_LEN: usize = 4096;
/// `VIRTIO_F_VERSION_1` and `VIRTIO_CONSOLE_F_MULTIPORT`: the only features
/// asked for (no EVENT_IDX, so kicks are never suppressed).
const FEATURE_VERSION_1: u64 = 1 << 32;
const FEATURE_MULTIPORT: u64 = 1 << 1;
/// Lines wait until a buffer's worth is there or the oldest has waited this
/// long (the 100 Hz tick comes back in time): under load one kick, which is a
/// VM exit and a write on the host, per 4 KiB rather than per main-loop pass.
const FLUSH_MS: u64 = 20;
const _: () = assert!(BUFFERS.is_power_of_two() && BUFFER_LEN > 0 && FLUSH_MS < 1000);

/// What a pump did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pumped {
    /// Bytes handed to the device.
    pub bytes: usize,
    /// The device is holding every buffer (the host is not reading).
    pub full: bool,
}

pub struct Console {
    /// Kept for the kernel's life: dropping it resets the device.
    _transport: MmioTransport<'static>,
    queue: VirtQueue<KernelHal, BUFFERS>,
    queue_index: u16,
    window: MmioWindow,
    buffers: [Box<[u8]>; BUFFERS],
    /// Per buffer: (token, length) while the device holds it.
    out: [Option<(u16, usize)>; BUFFERS],
    /// Since when lines have been waiting for less than a buffer's worth.
    waiting_since: Option<u64>,
}

impl Console {
    /// Initialises the device behind `transport` (the transport discovery
    /// found at `window`, kept for the kernel's life).
    pub fn new(
        mut transport: MmioTransport<'static>,
        window: MmioWindow,
    ) -> Result<Console, virtio_drivers::Error> {
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let offered = transport.read_device_features();
        let features = offered & (FEATURE_VERSION_1 | FEATURE_MULTIPORT);
        transport.write_driver_features(features);
        let queue_index = if features & FEATURE_MULTIPORT != 0 {
            QUEUE_TRANSMIT_PORT1
        } else {
            QUEUE_TRANSMIT_PORT0
        };
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK,
        );
        transport.set_guest_page_size(virtio_drivers::PAGE_SIZE as u32);
        let queue = VirtQueue::new(&mut transport, queue_index, false, false)?;
        transport.finish_init();
        log::info!(
            "console: virtio console, writing to port {}",
            if queue_index == QUEUE_TRANSMIT_PORT1 {
                1
            } else {
                0
            }
        );
        Ok(Console {
            _transport: transport,
            queue,
            queue_index,
            window,
            buffers: core::array::from_fn(|_| vec![0u8; BUFFER_LEN].into_boxed_slice()),
            out: [None; BUFFERS],
            waiting_since: None,
        })
    }

    /// Takes back finished buffers and, once a buffer's worth of lines is
    /// waiting or the oldest has waited [`FLUSH_MS`] (uptime `now`), sends as
    /// much of `lines` as free buffers hold, and kicks. Never waits.
    pub fn pump(&mut self, lines: &mut LineBuffer, now: u64) -> Pumped {
        self.reap();
        let mut pumped = Pumped::default();
        if lines.is_empty() {
            self.waiting_since = None;
            return pumped;
        }
        let since = *self.waiting_since.get_or_insert(now);
        if lines.len() < BUFFER_LEN && now.saturating_sub(since) < FLUSH_MS {
            return pumped;
        }
        let mut kicked = false;
        for i in 0..BUFFERS {
            if lines.is_empty() {
                break;
            }
            if self.out.get(i).is_some_and(Option::is_some) {
                continue;
            }
            let Some(buf) = self.buffers.get_mut(i) else {
                break;
            };
            let n = lines.pop_into(buf);
            let Some(data) = buf.get(..n) else { break };
            // SAFETY: `data` is a slice of a heap buffer this driver owns and
            // does not touch again until `reap` pops this token; the box never
            // moves its contents.
            match unsafe { self.queue.add(&[data], &mut []) } {
                Ok(token) => {
                    if let Some(slot) = self.out.get_mut(i) {
                        *slot = Some((token, n));
                    }
                    pumped.bytes += n;
                    kicked = true;
                }
                Err(_) => break,
            }
        }
        if kicked {
            self.window.notify(self.queue_index);
        }
        // What is left waits for buffers to come back: count its wait from now.
        self.waiting_since = (!lines.is_empty()).then_some(now);
        pumped.full = self.out.iter().all(Option::is_some) && !lines.is_empty();
        pumped
    }

    fn reap(&mut self) {
        // Bounded: each round returns one buffer or stops.
        for _ in 0..BUFFERS {
            let Some(token) = self.queue.peek_used() else {
                return;
            };
            let Some(i) = self
                .out
                .iter()
                .position(|o| o.is_some_and(|(t, _)| t == token))
            else {
                // Not ours: it stays at the head of the used ring; the device
                // is misbehaving and the log stops rather than corrupt memory.
                return;
            };
            let len = self.out.get(i).copied().flatten().map_or(0, |(_, len)| len);
            let Some(data) = self.buffers.get(i).and_then(|b| b.get(..len)) else {
                return;
            };
            // SAFETY: the same buffer and length that `pump` added with this token.
            if unsafe { self.queue.pop_used(token, &[data], &mut []) }.is_err() {
                return;
            }
            if let Some(slot) = self.out.get_mut(i) {
                *slot = None;
            }
        }
    }
}
