//! virtio-mmio on microvm: the `virtio_drivers::Hal` implementation, a transport
//! wrapper that hides features this kernel does not want negotiated, and
//! discovery of the transports and their interrupt lines.

use crate::mem::paging;
use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ptr::NonNull;
use virtio_drivers::transport::Transport;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};
use x86_64::VirtAddr;

/// The feature mask lives in a host-testable module; re-exported for the guest's users.
pub use super::masked::MaskedTransport;

/// First transport window; transport `i` is at `MMIO_BASE + i * MMIO_SIZE`.
pub const MMIO_BASE: u64 = 0xfeb0_0000;
pub const MMIO_SIZE: u64 = 0x200;
/// With the second IOAPIC (microvm default `ioapic2=on`): 24 transports on GSI 24+i.
const TRANSPORTS_WITH_IOAPIC2: u32 = 24;
const GSI_BASE_WITH_IOAPIC2: u32 = 24;
/// Without it (`ioapic2=off`, or `acpi=off`): 8 transports on GSI 5+i.
const TRANSPORTS_LEGACY: u32 = 8;
const GSI_BASE_LEGACY: u32 = 5;

/// Register offsets the interrupt handler and the driver's kicks use directly:
/// the transport object belongs to the driver, which the main loop may be using.
pub const REG_QUEUE_NOTIFY: usize = 0x050;
pub const REG_STATUS: usize = 0x070;
/// Device status bit: the device hit an error it needs a reset to recover from.
pub const STATUS_NEEDS_RESET: u32 = 0x40;
pub const REG_INTERRUPT_STATUS: usize = 0x060;
pub const REG_INTERRUPT_ACK: usize = 0x064;

pub struct KernelHal;

fn dma_layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()
}

// SAFETY: DMA memory comes from the heap, which is one physically contiguous
// block mapped in the physical-memory window, so `virt - offset` is the physical
// address of every byte; allocations are page-aligned and zeroed, and are freed
// only through `dma_dealloc`. `share` requires buffers in that window (the heap),
// which is where every buffer this kernel hands to a device lives.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout =
            dma_layout(pages).unwrap_or_else(|| panic!("virtio: bad DMA size {pages} pages"));
        // SAFETY: the layout has a non-zero size (pages >= 1 in every virtio-drivers call).
        let ptr = unsafe { alloc_zeroed(layout) };
        let Some(vaddr) = NonNull::new(ptr) else {
            panic!("virtio: out of memory for {pages} DMA pages")
        };
        (paging::virt_to_phys(vaddr.as_ptr() as u64), vaddr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(layout) = dma_layout(pages) else {
            return -1;
        };
        // SAFETY: the caller passes back what dma_alloc returned, with the same page count.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paging::phys_to_virt(x86_64::PhysAddr::new(paddr)).as_mut_ptr::<u8>())
            .expect("physical window is not null")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        paging::virt_to_phys(buffer.as_ptr() as *mut u8 as u64)
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// A view of one transport's register window, for the interrupt handler and
/// for queue kicks: the few registers that are safe to touch beside the
/// driver's own transport (each access is one volatile 32-bit read or write).
///
/// [`MmioWindow::new`] takes the responsibility for the address once; copies
/// then share it, and every accessor is safe.
#[derive(Debug, Clone, Copy)]
pub struct MmioWindow {
    virt: VirtAddr,
}

impl MmioWindow {
    /// The window at `virt`.
    ///
    /// # Safety
    /// `virt` must be the uncached mapping of a virtio-mmio register window of
    /// at least [`MMIO_SIZE`] bytes, mapped for the kernel's life.
    pub const unsafe fn new(virt: VirtAddr) -> MmioWindow {
        MmioWindow { virt }
    }

    /// Where the window is mapped.
    pub fn virt(&self) -> VirtAddr {
        self.virt
    }

    fn reg(&self, offset: usize) -> *mut u32 {
        (self.virt + offset as u64).as_mut_ptr::<u32>()
    }

    /// Reads InterruptStatus and acknowledges exactly those bits (virtio-mmio
    /// interrupts are level-triggered: the line stays up until acknowledged).
    pub fn ack_interrupt(&self) -> u32 {
        // SAFETY: `virt` is the uncached mapping of a live virtio-mmio window
        // (MmioWindow::new's caller vouched for it); status and ack are 32-bit
        // registers inside it.
        unsafe {
            let status = self.reg(REG_INTERRUPT_STATUS).read_volatile();
            self.reg(REG_INTERRUPT_ACK).write_volatile(status);
            status
        }
    }

    /// The device status register (see [`STATUS_NEEDS_RESET`]).
    pub fn status(&self) -> u32 {
        // SAFETY: as for ack_interrupt; Status is a 32-bit register inside the window.
        unsafe { self.reg(REG_STATUS).read_volatile() }
    }

    /// Kicks queue `queue` (QueueNotify), whatever the device's suppression flags say.
    pub fn notify(&self, queue: u16) {
        // SAFETY: as for ack_interrupt; QueueNotify is write-only and takes a queue index.
        unsafe { self.reg(REG_QUEUE_NOTIFY).write_volatile(u32::from(queue)) };
    }
}

/// Opens the transport at `window` again, for a device reset.
///
/// # Safety
/// `window` must come from [`discover`] and every earlier `MmioTransport` over
/// it must have been dropped (dropping one resets the device; two alive at once
/// would both drive it).
pub unsafe fn reopen(window: MmioWindow) -> Option<MmioTransport<'static>> {
    let header = NonNull::new(window.virt().as_mut_ptr::<VirtIOHeader>())?;
    // SAFETY: the window is a live virtio-mmio region mapped for the kernel's life
    // (from discovery), and the caller guarantees no other transport uses it.
    unsafe { MmioTransport::new(header, MMIO_SIZE as usize) }.ok()
}

/// One device found on a virtio-mmio transport.
pub struct Found {
    pub slot: u32,
    pub phys: u64,
    pub gsi: u32,
    pub window: MmioWindow,
    pub transport: MmioTransport<'static>,
}

/// The transport at physical `phys`, if a device is there; logs it.
///
/// # Safety
/// `[phys, phys + MMIO_SIZE)` must be a virtio-mmio register window (or empty
/// device space that reads as no magic), inside the physical-memory window and
/// mapped uncached, and not probed before.
unsafe fn probe(slot: u32, phys: u64, gsi: u32) -> Option<Found> {
    let virt = paging::phys_to_virt(x86_64::PhysAddr::new(phys));
    let header = NonNull::new(virt.as_mut_ptr::<VirtIOHeader>())?;
    // SAFETY: the caller guarantees a device window mapped for the kernel's life,
    // 512 bytes with its config space, probed once; the transport is kept (or
    // dropped, which resets the device) by the caller.
    let transport = match unsafe { MmioTransport::new(header, MMIO_SIZE as usize) } {
        Ok(t) => t,
        // Device ID 0 (empty slot) or no magic (absent): nothing there.
        Err(_) => return None,
    };
    log::info!(
        "virtio: slot {slot} at {phys:#x} GSI {gsi}: {:?} (virtio-mmio {:?})",
        transport.device_type(),
        transport.version()
    );
    Some(Found {
        slot,
        phys,
        gsi,
        // SAFETY: the caller guarantees a virtio-mmio window mapped uncached
        // for the kernel's life, and a transport answered there.
        window: unsafe { MmioWindow::new(virt) },
        transport,
    })
}

/// Probes the windows the kernel command line lists (`virtio_mmio.device=`,
/// as `(phys, gsi)`) instead of microvm's fixed slots. Returns the devices found.
///
/// # Safety
/// Each `phys` must be a virtio-mmio window of at least [`MMIO_SIZE`] bytes
/// outside RAM and inside the physical-memory window, each listed once.
pub unsafe fn discover_listed(listed: &[(u64, u32)], mut found: impl FnMut(Found)) -> u32 {
    let mut devices = 0;
    for (slot, &(phys, gsi)) in listed.iter().enumerate() {
        // SAFETY: the caller guarantees each window is device memory in the
        // physical-memory window (mapped uncached: not RAM), listed once.
        if let Some(f) = unsafe { probe(slot as u32, phys, gsi) } {
            devices += 1;
            found(f);
        }
    }
    log::info!(
        "virtio: {devices} device(s) on {} transports from the command line",
        listed.len()
    );
    devices
}

/// Probes every transport window. `ioapic2` says whether the second IOAPIC
/// exists, which decides how many transports microvm has and their GSIs.
/// Logs one line per device and returns them; empty and absent slots are skipped.
pub fn discover(ioapic2: bool, mut found: impl FnMut(Found)) -> u32 {
    let (count, gsi_base) = if ioapic2 {
        (TRANSPORTS_WITH_IOAPIC2, GSI_BASE_WITH_IOAPIC2)
    } else {
        (TRANSPORTS_LEGACY, GSI_BASE_LEGACY)
    };
    let mut devices = 0;
    for slot in 0..count {
        let phys = MMIO_BASE + u64::from(slot) * MMIO_SIZE;
        // SAFETY: the window is inside microvm's virtio-mmio range, mapped uncached in
        // the physical window for the kernel's life; each slot is probed once.
        if let Some(f) = unsafe { probe(slot, phys, gsi_base + slot) } {
            devices += 1;
            found(f);
        }
    }
    log::info!("virtio: {devices} device(s) on {count} transports");
    devices
}
