//! Test only: a virtio-net device in host memory, behind its own `Transport`,
//! for the driver's host tests (`dev/net/tests.rs`).
//!
//! [`FakeHal`] hands out heap memory with physical address == virtual address,
//! so the device model reads the rings and buffers at the addresses the driver
//! gives it, exactly as a DMA device would. virtio-drivers' `VirtQueue` reads
//! `used.idx` and the used entries itself; [`FakeNet`] writes them into the
//! memory that queue allocated (split-ring layout, virtio 1.1 §2.6: descriptor
//! `{addr u64, len u32, flags u16, next u16}`, avail `{flags u16, idx u16,
//! ring [u16; N]}`, used `{flags u16, idx u16, ring [{id u32, len u32}; N]}`).
//!
//! The model follows QEMU where it matters for stalls: once a frame finds the
//! RX ring empty the device waits for a kick before it looks at the ring again,
//! and it looks at the TX ring only after a kick, until it finds it empty. It
//! never raises an interrupt. It records protocol violations by the driver in
//! [`FakeNet::violations`] instead of panicking inside the driver's call, and can
//! also write hostile used entries on request.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, Ordering, fence};
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::string::String;
use std::vec::Vec;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Error, Hal, PAGE_SIZE, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

pub const F_CSUM: u64 = 1 << 0;
pub const F_GUEST_CSUM: u64 = 1 << 1;
pub const F_MAC: u64 = 1 << 5;
pub const F_HOST_TSO4: u64 = 1 << 11;
pub const F_MRG_RXBUF: u64 = 1 << 15;
pub const F_STATUS: u64 = 1 << 16;
pub const F_RING_INDIRECT_DESC: u64 = 1 << 28;
pub const F_RING_EVENT_IDX: u64 = 1 << 29;
pub const F_VERSION_1: u64 = 1 << 32;
/// What QEMU's virtio-net offers that virtio-drivers asks for.
pub const OFFERED: u64 = F_MAC | F_STATUS | F_RING_EVENT_IDX | F_RING_INDIRECT_DESC | F_VERSION_1;
/// The offloads QEMU's virtio-net adds over a tap with a vnet header (among others).
pub const OFFERED_OFFLOADS: u64 = F_CSUM | F_GUEST_CSUM | F_HOST_TSO4;
/// `VIRTIO_NET_HDR_F_DATA_VALID`, spelled out independently of the driver's constant.
pub const HDR_F_DATA_VALID_FOR_TESTS: u8 = 2;

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
/// `VRING_USED_F_NO_NOTIFY`: the device asks the driver not to kick.
pub const USED_F_NO_NOTIFY: u16 = 1;

pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

// ---------------------------------------------------------------------------
// HAL: heap memory, physical == virtual.

pub struct FakeHal;

fn dma_layout(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("DMA layout")
}

// SAFETY: allocations are page-aligned, zeroed, owned by the caller until
// `dma_dealloc`, and the "physical" address is the pointer's own address, which
// the fake device turns back into a pointer (exposed provenance). Nothing here
// is real MMIO.
unsafe impl Hal for FakeHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        assert!(pages > 0, "zero-page DMA allocation");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(dma_layout(pages)) };
        let vaddr = NonNull::new(ptr).expect("host out of memory");
        (vaddr.as_ptr().expose_provenance() as PhysAddr, vaddr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: the caller passes back what dma_alloc returned, with the same page count.
        unsafe { dealloc(vaddr.as_ptr(), dma_layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        unreachable!("the fake transport has no MMIO BARs")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>().expose_provenance() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

// ---------------------------------------------------------------------------
// Device-side memory access ("DMA").
//
// Every address below comes from the driver through the transport (ring
// addresses from `queue_set`) or from a descriptor it wrote (buffer addresses
// from `FakeHal::share`), and the memory stays allocated while the driver owns
// the queue and the buffer: the driver's tests are what check the driver keeps
// those promises. Tests are single-threaded per device, so there is no
// concurrent access.

fn dma_read_u16(addr: u64) -> u16 {
    // SAFETY: see above; ring fields are 2-byte aligned u16s.
    unsafe { AtomicU16::from_ptr(core::ptr::with_exposed_provenance_mut(addr as usize)) }
        .load(Ordering::Acquire)
}

fn dma_write_u16(addr: u64, value: u16) {
    // SAFETY: as for dma_read_u16.
    unsafe { AtomicU16::from_ptr(core::ptr::with_exposed_provenance_mut(addr as usize)) }
        .store(value, Ordering::Release)
}

fn dma_read<V: Copy>(addr: u64) -> V {
    // SAFETY: see above; callers read naturally aligned fields of the rings.
    unsafe { core::ptr::with_exposed_provenance::<V>(addr as usize).read_volatile() }
}

fn dma_write<V: Copy>(addr: u64, value: V) {
    // SAFETY: as for dma_read.
    unsafe { core::ptr::with_exposed_provenance_mut::<V>(addr as usize).write_volatile(value) }
}

fn dma_read_bytes(addr: u64, len: usize) -> Vec<u8> {
    let mut out = std::vec![0u8; len];
    // SAFETY: see above; `addr..addr+len` is inside a buffer the driver shared
    // (the caller checked `len` against the descriptor's length).
    unsafe {
        core::ptr::copy_nonoverlapping(
            core::ptr::with_exposed_provenance::<u8>(addr as usize),
            out.as_mut_ptr(),
            len,
        )
    };
    out
}

fn dma_write_bytes(addr: u64, bytes: &[u8]) {
    // SAFETY: as for dma_read_bytes, for a device-writable buffer.
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            core::ptr::with_exposed_provenance_mut::<u8>(addr as usize),
            bytes.len(),
        )
    };
}

#[derive(Debug, Clone, Copy)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

fn read_desc(table: u64, index: u16) -> Desc {
    let at = table + 16 * u64::from(index);
    Desc {
        addr: dma_read(at),
        len: dma_read(at + 8),
        flags: dma_read(at + 12),
        next: dma_read(at + 14),
    }
}

// ---------------------------------------------------------------------------
// The device.

/// Ring addresses the driver gave through `queue_set`.
#[derive(Debug, Clone, Copy)]
pub struct QueueAddrs {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

impl QueueAddrs {
    fn avail_idx(&self) -> u64 {
        self.avail + 2
    }
    fn avail_slot(&self, idx: u16) -> u64 {
        self.avail + 4 + 2 * u64::from(idx & (self.size - 1))
    }
    fn used_flags(&self) -> u64 {
        self.used
    }
    fn used_idx(&self) -> u64 {
        self.used + 2
    }
    fn used_slot(&self, idx: u16) -> u64 {
        self.used + 4 + 8 * u64::from(idx & (self.size - 1))
    }
}

#[derive(Debug, Default)]
pub struct QueueState {
    pub addrs: Option<QueueAddrs>,
    /// Next avail entry the device will take (free-running, wraps at 65536).
    pub last_avail: u16,
    /// The device's `used.idx` (free-running).
    pub used_idx: u16,
    pub avail_wraps: u64,
    pub used_wraps: u64,
    /// Descriptor heads the device has taken and not yet returned.
    held: Vec<bool>,
    /// The device looks at the avail ring again only after a kick.
    pub waiting_for_kick: bool,
    /// Notifications that reached the device, through the transport and
    /// through the driver's own `Kick`.
    pub transport_kicks: u64,
    pub driver_kicks: u64,
    /// Notifications dropped while the device was deaf.
    pub lost_kicks: u64,
}

impl QueueState {
    pub fn kicks(&self) -> u64 {
        self.transport_kicks + self.driver_kicks
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DeviceConfig {
    pub offered: u64,
    /// Like virtio-mmio version 1: one contiguous legacy queue layout.
    pub legacy_layout: bool,
    pub max_queue_size: u32,
}

impl DeviceConfig {
    /// QEMU's virtio-net on modern virtio-mmio.
    pub fn modern() -> Self {
        DeviceConfig {
            offered: OFFERED,
            legacy_layout: false,
            max_queue_size: 256,
        }
    }

    /// A legacy device: no VERSION_1, so 10-byte headers and the legacy layout.
    pub fn legacy() -> Self {
        DeviceConfig {
            offered: OFFERED & !F_VERSION_1,
            legacy_layout: true,
            max_queue_size: 256,
        }
    }
}

#[derive(Debug)]
pub struct State {
    pub config: DeviceConfig,
    pub driver_features: Option<u64>,
    pub status: DeviceStatus,
    pub queues: [QueueState; 2],
    /// While set, every notification is lost.
    pub deaf: bool,
    /// Frames from the wire waiting for RX buffers (QEMU's net queue).
    pub backlog: VecDeque<Vec<u8>>,
    /// Frames the driver transmitted, without their virtio-net header.
    pub sent: Vec<Vec<u8>>,
    /// The virtio-net header of each frame in `sent`.
    pub sent_headers: Vec<Vec<u8>>,
    /// `flags` in the header of every frame delivered to the guest.
    pub rx_header_flags: u8,
    /// Protocol violations by the driver.
    pub violations: Vec<String>,
}

/// Handle on the device, shared by the transport, the kick and the test.
#[derive(Clone)]
pub struct FakeNet(Rc<RefCell<State>>);

/// The device's transport: what virtio-drivers talks to.
pub struct FakeTransport(FakeNet);

/// The driver's own notify path (the guest's `MmioWindow`).
pub struct FakeKick(FakeNet);

impl crate::dev::net::Kick for FakeKick {
    fn notify(&self, queue: u16) {
        self.0.notify(queue, false);
    }
}

impl FakeNet {
    pub fn new(config: DeviceConfig) -> Self {
        FakeNet(Rc::new(RefCell::new(State {
            config,
            driver_features: None,
            status: DeviceStatus::empty(),
            queues: Default::default(),
            deaf: false,
            backlog: VecDeque::new(),
            sent: Vec::new(),
            sent_headers: Vec::new(),
            rx_header_flags: 0,
            violations: Vec::new(),
        })))
    }

    pub fn transport(&self) -> FakeTransport {
        FakeTransport(self.clone())
    }

    pub fn kick(&self) -> FakeKick {
        FakeKick(self.clone())
    }

    pub fn state(&self) -> std::cell::Ref<'_, State> {
        self.0.borrow()
    }

    pub fn state_mut(&self) -> std::cell::RefMut<'_, State> {
        self.0.borrow_mut()
    }

    pub fn violations(&self) -> Vec<String> {
        self.0.borrow().violations.clone()
    }

    fn violation(&self, what: String) {
        self.0.borrow_mut().violations.push(what);
    }

    /// A violation QEMU answers with `virtio_error`: the device marks itself
    /// broken and, on a virtio 1.0 device, sets NEEDS_RESET, so the driver
    /// learns of rings out of step that it cannot see itself.
    fn broken(&self, what: String) {
        self.violation(what);
        let mut s = self.0.borrow_mut();
        if s.driver_features.unwrap_or(0) & F_VERSION_1 != 0 {
            s.status.insert(DeviceStatus::DEVICE_NEEDS_RESET);
        }
    }

    /// The virtio-net header length for the negotiated features.
    pub fn header_len(&self) -> usize {
        let features = self.0.borrow().driver_features.unwrap_or(0);
        if features & (F_VERSION_1 | F_MRG_RXBUF) == 0 {
            10
        } else {
            12
        }
    }

    fn addrs(&self, queue: u16) -> QueueAddrs {
        self.0.borrow().queues[usize::from(queue)]
            .addrs
            .expect("queue not set up")
    }

    fn notify(&self, queue: u16, by_transport: bool) {
        let mut s = self.0.borrow_mut();
        let deaf = s.deaf;
        let Some(q) = s.queues.get_mut(usize::from(queue)) else {
            s.violations.push(std::format!("notify of queue {queue}"));
            return;
        };
        if deaf {
            q.lost_kicks += 1;
            return;
        }
        if by_transport {
            q.transport_kicks += 1;
        } else {
            q.driver_kicks += 1;
        }
        q.waiting_for_kick = false;
    }

    /// Sets the device's `used.flags` (e.g. [`USED_F_NO_NOTIFY`]).
    pub fn set_used_flags(&self, queue: u16, flags: u16) {
        dma_write_u16(self.addrs(queue).used_flags(), flags);
    }

    /// The driver's published `avail.idx`.
    pub fn avail_idx(&self, queue: u16) -> u16 {
        dma_read_u16(self.addrs(queue).avail_idx())
    }

    /// Entries the driver has made available that the device has not taken.
    pub fn available(&self, queue: u16) -> u16 {
        let last = self.0.borrow().queues[usize::from(queue)].last_avail;
        self.avail_idx(queue).wrapping_sub(last)
    }

    /// Takes the next available descriptor chain head, if any.
    pub fn take(&self, queue: u16) -> Option<u16> {
        let a = self.addrs(queue);
        let pending = self.available(queue);
        if pending == 0 {
            return None;
        }
        if pending > a.size {
            // QEMU: "Guest moved used index from %u to %u" -> device needs reset.
            self.broken(std::format!(
                "queue {queue}: {pending} entries available, more than the queue size {}",
                a.size
            ));
            return None;
        }
        let mut s = self.0.borrow_mut();
        let q = &mut s.queues[usize::from(queue)];
        let head = dma_read::<u16>(a.avail_slot(q.last_avail));
        q.last_avail = q.last_avail.wrapping_add(1);
        if q.last_avail == 0 {
            q.avail_wraps += 1;
        }
        match q.held.get_mut(usize::from(head)) {
            Some(held @ false) => *held = true,
            Some(true) => {
                s.violations.push(std::format!(
                    "queue {queue}: descriptor {head} made available while the device holds it"
                ));
                return None;
            }
            None => {
                s.violations.push(std::format!(
                    "queue {queue}: descriptor {head} beyond the queue size"
                ));
                return None;
            }
        }
        Some(head)
    }

    /// Returns a descriptor chain the device took, as the device normally does.
    pub fn complete(&self, queue: u16, head: u16, len: u32) {
        {
            let mut s = self.0.borrow_mut();
            let q = &mut s.queues[usize::from(queue)];
            match q.held.get_mut(usize::from(head)) {
                Some(held @ true) => *held = false,
                _ => {
                    s.violations.push(std::format!(
                        "device bug: completing descriptor {head} it does not hold"
                    ));
                    return;
                }
            }
        }
        self.push_used_raw(queue, u32::from(head), len);
    }

    /// Writes a used entry `{id, len}` and publishes it, whatever it says
    /// (hostile entries included).
    pub fn push_used_raw(&self, queue: u16, id: u32, len: u32) {
        let a = self.addrs(queue);
        let mut s = self.0.borrow_mut();
        let q = &mut s.queues[usize::from(queue)];
        let slot = a.used_slot(q.used_idx);
        dma_write::<u32>(slot, id);
        dma_write::<u32>(slot + 4, len);
        fence(Ordering::SeqCst);
        q.used_idx = q.used_idx.wrapping_add(1);
        if q.used_idx == 0 {
            q.used_wraps += 1;
        }
        dma_write_u16(a.used_idx(), q.used_idx);
    }

    /// Hostile: publishes `used.idx = idx` without writing any entry.
    pub fn set_used_idx(&self, queue: u16, idx: u16) {
        let a = self.addrs(queue);
        self.0.borrow_mut().queues[usize::from(queue)].used_idx = idx;
        dma_write_u16(a.used_idx(), idx);
    }

    /// Reads the RX descriptor `head` and checks it is one device-writable
    /// buffer of at least `need` bytes.
    fn rx_buffer(&self, head: u16, need: usize) -> Option<Desc> {
        let d = read_desc(self.addrs(0).desc, head);
        let ok = d.addr != 0
            && d.flags & DESC_F_WRITE != 0
            && d.flags & (DESC_F_NEXT | DESC_F_INDIRECT) == 0
            && d.len as usize >= need;
        if !ok {
            self.violation(std::format!("bad RX descriptor {head}: {d:?}, need {need}"));
            return None;
        }
        Some(d)
    }

    /// Queues frames from the wire and delivers what the RX ring has room for.
    pub fn send_to_guest<'a>(&self, frames: impl IntoIterator<Item = &'a [u8]>) -> usize {
        self.0
            .borrow_mut()
            .backlog
            .extend(frames.into_iter().map(<[u8]>::to_vec));
        self.flush_rx()
    }

    /// Delivers backlog frames while the RX ring has buffers: virtio-net header
    /// then the frame, one used entry each. Finding the ring empty, the device
    /// waits for a kick (as QEMU does). Returns the number delivered.
    pub fn flush_rx(&self) -> usize {
        let header = self.header_len();
        let mut delivered = 0;
        loop {
            if self.0.borrow().backlog.is_empty() || self.0.borrow().queues[0].waiting_for_kick {
                return delivered;
            }
            let Some(head) = self.take(0) else {
                self.0.borrow_mut().queues[0].waiting_for_kick = true;
                return delivered;
            };
            let frame = self.0.borrow_mut().backlog.pop_front().unwrap_or_default();
            let Some(d) = self.rx_buffer(head, header + frame.len()) else {
                return delivered;
            };
            let mut hdr = [0u8; 12];
            hdr[0] = self.0.borrow().rx_header_flags;
            // num_buffers = 1 (only present in the 12-byte header).
            hdr[10] = 1;
            dma_write_bytes(d.addr, &hdr[..header]);
            dma_write_bytes(d.addr + header as u64, &frame);
            self.complete(0, head, (header + frame.len()) as u32);
            delivered += 1;
        }
    }

    /// Writes `frame` (after a virtio-net header) into RX buffer `head`;
    /// the used entry's length, or None if the buffer is unfit (recorded).
    fn fill_rx(&self, head: u16, frame: &[u8]) -> Option<u32> {
        let header = self.header_len();
        let d = self.rx_buffer(head, header + frame.len())?;
        let mut hdr = [0u8; 12];
        hdr[0] = self.0.borrow().rx_header_flags;
        hdr[10] = 1;
        dma_write_bytes(d.addr, &hdr[..header]);
        dma_write_bytes(d.addr + header as u64, frame);
        Some((header + frame.len()) as u32)
    }

    /// As [`flush_rx`](Self::flush_rx), but frames go out two at a time with
    /// the second buffer's used entry published before the first's (a
    /// device may complete buffers out of order, virtio 1.1 §2.6.8).
    pub fn flush_rx_out_of_order(&self) -> usize {
        let mut delivered = 0;
        while self.0.borrow().backlog.len() >= 2 && !self.0.borrow().queues[0].waiting_for_kick {
            if self.available(0) < 2 {
                break;
            }
            let (Some(a), Some(b)) = (self.take(0), self.take(0)) else {
                break;
            };
            let fa = self.0.borrow_mut().backlog.pop_front().unwrap_or_default();
            let fb = self.0.borrow_mut().backlog.pop_front().unwrap_or_default();
            let (Some(la), Some(lb)) = (self.fill_rx(a, &fa), self.fill_rx(b, &fb)) else {
                return delivered;
            };
            self.complete(0, b, lb);
            self.complete(0, a, la);
            delivered += 2;
        }
        delivered + self.flush_rx()
    }

    /// Hostile helper: takes the next RX buffer without filling it.
    pub fn take_rx(&self) -> u16 {
        self.take(0).expect("no RX buffer available")
    }

    /// Transmits up to `max` frames the driver queued, if the device has been
    /// kicked; finding the TX ring empty, it waits for the next kick. Returns
    /// the number completed.
    pub fn complete_tx(&self, max: usize) -> usize {
        let header = self.header_len();
        let mut done = 0;
        while done < max {
            if self.0.borrow().queues[1].waiting_for_kick {
                break;
            }
            let Some(head) = self.take(1) else {
                self.0.borrow_mut().queues[1].waiting_for_kick = true;
                break;
            };
            let Some(bytes) = self.read_tx_chain(head) else {
                break;
            };
            match bytes.get(header..) {
                Some(frame) => {
                    let mut s = self.0.borrow_mut();
                    s.sent.push(frame.to_vec());
                    s.sent_headers.push(bytes[..header].to_vec());
                }
                None => self.violation(std::format!("TX chain {head} shorter than a header")),
            }
            self.complete(1, head, 0);
            done += 1;
        }
        done
    }

    /// Gathers the device-readable bytes of a TX chain (direct or indirect).
    fn read_tx_chain(&self, head: u16) -> Option<Vec<u8>> {
        let a = self.addrs(1);
        let first = read_desc(a.desc, head);
        let (table, count, mut index) = if first.flags & DESC_F_INDIRECT != 0 {
            (first.addr, (first.len / 16) as u16, 0)
        } else {
            (a.desc, a.size, head)
        };
        let mut bytes = Vec::new();
        for _ in 0..count {
            let d = read_desc(table, index);
            if d.addr == 0 || d.len == 0 || d.flags & (DESC_F_WRITE | DESC_F_INDIRECT) != 0 {
                self.violation(std::format!("bad TX descriptor {index}: {d:?}"));
                return None;
            }
            bytes.extend(dma_read_bytes(d.addr, d.len as usize));
            if d.flags & DESC_F_NEXT == 0 {
                return Some(bytes);
            }
            index = d.next;
        }
        self.violation(std::format!("TX chain {head} does not end"));
        None
    }

    /// Frames transmitted so far (taken out of the device).
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.0.borrow_mut().sent)
    }
}

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Network
    }
    fn read_device_features(&mut self) -> u64 {
        self.0.state().config.offered
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        let mut s = self.0.state_mut();
        if driver_features & !s.config.offered != 0 {
            let extra = driver_features & !s.config.offered;
            s.violations.push(std::format!(
                "driver accepted features not offered: {extra:#x}"
            ));
        }
        s.driver_features = Some(driver_features);
    }
    fn max_queue_size(&mut self, _queue: u16) -> u32 {
        self.0.state().config.max_queue_size
    }
    fn notify(&mut self, queue: u16) {
        self.0.notify(queue, true);
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.state().status
    }
    fn set_status(&mut self, status: DeviceStatus) {
        let mut s = self.0.state_mut();
        if status.is_empty() {
            // Reset.
            s.driver_features = None;
            s.queues = Default::default();
        }
        s.status = status;
    }
    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}
    fn requires_legacy_layout(&self) -> bool {
        self.0.state().config.legacy_layout
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        let mut s = self.0.state_mut();
        let Ok(size16) = u16::try_from(size) else {
            s.violations.push(std::format!("queue size {size}"));
            return;
        };
        if !size16.is_power_of_two() || size > s.config.max_queue_size {
            s.violations.push(std::format!("queue size {size}"));
        }
        let Some(q) = s.queues.get_mut(usize::from(queue)) else {
            s.violations
                .push(std::format!("queue_set of queue {queue}"));
            return;
        };
        *q = QueueState {
            addrs: Some(QueueAddrs {
                size: size16,
                desc: descriptors,
                avail: driver_area,
                used: device_area,
            }),
            held: std::vec![false; usize::from(size16)],
            // TX is looked at only after a kick; RX when a frame arrives.
            waiting_for_kick: queue == 1,
            ..Default::default()
        };
    }
    fn queue_unset(&mut self, queue: u16) {
        if let Some(q) = self.0.state_mut().queues.get_mut(usize::from(queue)) {
            q.addrs = None;
        }
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.0
            .state()
            .queues
            .get(usize::from(queue))
            .is_some_and(|q| q.addrs.is_some())
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::empty()
    }
    fn read_config_generation(&self) -> u32 {
        0
    }
    fn read_config_space<V: FromBytes + IntoBytes>(&self, offset: usize) -> Result<V, Error> {
        // virtio_net_config: mac, status (LINK_UP), max_virtqueue_pairs, mtu.
        let mut config = [0u8; 12];
        config[..6].copy_from_slice(&MAC);
        config[6..8].copy_from_slice(&1u16.to_le_bytes());
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        config[10..12].copy_from_slice(&1500u16.to_le_bytes());
        let bytes = offset
            .checked_add(core::mem::size_of::<V>())
            .and_then(|end| config.get(offset..end))
            .ok_or(Error::ConfigSpaceTooSmall)?;
        V::read_from_bytes(bytes).map_err(|_| Error::ConfigSpaceTooSmall)
    }
    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        _offset: usize,
        _value: V,
    ) -> Result<(), Error> {
        Err(Error::Unsupported)
    }
}
