//! PVH loader for QEMU `-M microvm`.
//!
//! QEMU enters `pvh_start32` (boot32.s) in 32-bit protected mode. It switches
//! to long mode with the first 4 GiB identity-mapped and calls [`loader_main`],
//! which loads the embedded `bootloader_api` kernel into fresh page tables,
//! maps all physical memory at the offset the kernel asks for, gives it a stack
//! with an unmapped guard page below, builds its `BootInfo` and jumps to it.
//!
//! Handed over besides the kernel's own needs:
//! - PVH module 0 (QEMU `-initrd FILE`, a site bundle) as `BootInfo::ramdisk_addr`
//!   (in the physical-memory window) and `ramdisk_len`; without one, the bundle
//!   embedded by `cargo image --site DIR`, if any. Its memory is reported as
//!   `Bootloader`, never `Usable`.
//! - The kernel command line (QEMU `-append`, PVH `cmdline_paddr`), which
//!   `BootInfo` has no field for: copied NUL-terminated into one page reported as
//!   a memory region of kind `UnknownBios(`[`pvh_loader::handover::CMDLINE_REGION`]`)`.
#![no_std]
#![no_main]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

mod paging;
mod serial;

use bootloader_api::BootInfo;
use bootloader_api::config::BootloaderConfig;
use bootloader_api::info::{MemoryRegion, MemoryRegionKind, MemoryRegions, Optional};
use core::arch::{asm, global_asm};
use core::fmt::Write;
use paging::{Frames, NO_EXECUTE, WRITABLE};
use pvh_loader::elf::Elf;
use pvh_loader::handover;
use pvh_loader::layout::{self, Layout, PAGE};
use pvh_loader::memmap::{self, MapEntry};

global_asm!(include_str!("boot32.s"));

#[repr(C, align(4096))]
struct PageAligned<T: ?Sized>(T);

/// The kernel ELF, embedded by build.rs from `KERNEL_ELF`.
static KERNEL: &PageAligned<[u8]> =
    &PageAligned(*include_bytes!(concat!(env!("OUT_DIR"), "/kernel.elf")));

/// The site bundle embedded by build.rs from `SITE_BUNDLE` (empty without one).
static BUNDLE: &PageAligned<[u8]> =
    &PageAligned(*include_bytes!(concat!(env!("OUT_DIR"), "/site.bundle")));

unsafe extern "C" {
    static __loader_start: u8;
    static __loader_end: u8;
}

const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Room for the memory regions in the boot-info page pair.
const MAX_REGIONS: usize = 128;
const MAX_MEMMAP_ENTRIES: u32 = 256;

/// `struct hvm_start_info` (Xen public/arch-x86/hvm/start_info.h), version 1.
#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// `struct hvm_modlist_entry`.
#[repr(C)]
#[derive(Clone, Copy)]
struct ModlistEntry {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawMapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// Prints why the boot cannot continue and ends the guest: isa-debug-exit if
/// present, otherwise a triple fault (QEMU resets, or exits with -no-reboot).
pub fn fail(args: core::fmt::Arguments) -> ! {
    let _ = writeln!(serial::Serial, "FATAL loader: {args}");
    serial::exit_guest()
}

#[unsafe(no_mangle)]
extern "C" fn loader_main(start_info_paddr: u32) -> ! {
    serial::init();
    // SAFETY: QEMU passes the physical address of a start_info structure in EBX;
    // the first 4 GiB are identity-mapped, and the magic is checked before use.
    let info = unsafe { &*(start_info_paddr as usize as *const StartInfo) };
    if info.magic != START_INFO_MAGIC {
        fail(format_args!("bad hvm_start_info magic {:#x}", info.magic));
    }
    if info.version < 1 || info.memmap_entries == 0 || info.memmap_entries > MAX_MEMMAP_ENTRIES {
        fail(format_args!(
            "no usable PVH memory map (version {}, {} entries)",
            info.version, info.memmap_entries
        ));
    }
    let mut entries = [MapEntry {
        addr: 0,
        size: 0,
        kind: 0,
    }; MAX_MEMMAP_ENTRIES as usize];
    let entries = &mut entries[..info.memmap_entries as usize];
    for (i, e) in entries.iter_mut().enumerate() {
        // SAFETY: the table has `memmap_entries` entries (bounded above) at memmap_paddr,
        // identity-mapped; read_unaligned makes no alignment assumption.
        let raw = unsafe {
            (info.memmap_paddr as *const RawMapEntry)
                .add(i)
                .read_unaligned()
        };
        *e = MapEntry {
            addr: raw.addr,
            size: raw.size,
            kind: raw.kind,
        };
    }

    let cmdline = read_cmdline(info);

    let kernel = Elf::parse(&KERNEL.0).unwrap_or_else(|e| fail(format_args!("kernel ELF: {e}")));
    let config = kernel
        .section(".bootloader-config")
        .ok_or("no .bootloader-config section (not a bootloader_api kernel?)")
        .and_then(BootloaderConfig::deserialize)
        .unwrap_or_else(|e| fail(format_args!("kernel config: {e}")));
    let plan = layout::plan(&config, memmap::ram_end(entries))
        .unwrap_or_else(|e| fail(format_args!("kernel layout: {e:?}")));

    let loader_start = &raw const __loader_start as u64;
    let loader_end = &raw const __loader_end as u64;
    let region = memmap::ram_containing(entries, loader_end)
        .unwrap_or_else(|| fail(format_args!("loader end {loader_end:#x} is not in RAM")));
    let module = initrd(info, entries, loader_start..loader_end);
    // Frames come from above the loader; a module there caps them.
    let (limit, limit_note) = match &module {
        Some(m) if m.start >= loader_end && m.start < region.end() => (
            m.start,
            ", where the -initrd module starts: give the guest more memory (-m)",
        ),
        _ => (region.end(), ""),
    };
    let mut frames = Frames {
        next: loader_end,
        limit: limit & !(PAGE - 1),
        limit_note,
    };

    let boot_info_frame = frames.alloc(2);
    let pml4 = frames.alloc(1);
    load_kernel(&kernel, pml4, &mut frames);
    map_stack(&plan, pml4, &mut frames);
    paging::map_huge_range(
        pml4,
        plan.phys_offset,
        0,
        plan.phys_map_len,
        WRITABLE | NO_EXECUTE,
        &mut frames,
    );
    // The jump below runs on these pages right after CR3 switches.
    let mut page = loader_start;
    while page < loader_end {
        paging::map_page(pml4, page, page, 0, &mut frames);
        page += PAGE;
    }

    // Last allocation: the page right after everything else the loader used.
    let cmdline_frame = copy_cmdline(&cmdline, &mut frames);
    let ramdisk = module.clone().or_else(|| {
        let start = BUNDLE.0.as_ptr() as u64;
        (!BUNDLE.0.is_empty()).then_some(start..start + BUNDLE.0.len() as u64)
    });
    let boot_info = write_boot_info(
        info,
        entries,
        &plan,
        boot_info_frame,
        Reserved {
            loader: loader_start..cmdline_frame,
            cmdline: cmdline_frame,
            module,
            ramdisk,
        },
    );
    let _ = writeln!(
        serial::Serial,
        "pvh-loader: kernel entry {:#x}, physical memory at {:#x}, stack {:#x}..{:#x}",
        kernel.entry,
        plan.phys_offset,
        plan.stack_bottom,
        plan.stack_top()
    );
    // SAFETY: pml4 maps the kernel, its stack, physical memory and this code
    // (identity); the entry follows the bootloader_api ABI (`extern "C"`, boot
    // info in rdi). A zero return address ends frame-pointer backtraces.
    unsafe {
        asm!(
            "mov cr3, {pml4}",
            "mov rsp, {stack}",
            "xor ebp, ebp",
            "push 0",
            "jmp {entry}",
            pml4 = in(reg) pml4,
            stack = in(reg) plan.stack_top(),
            entry = in(reg) kernel.entry,
            in("rdi") boot_info,
            options(noreturn)
        )
    }
}

/// Largest command line copied (Linux's x86 `COMMAND_LINE_SIZE` is 2048).
const MAX_CMDLINE: usize = PAGE as usize - 1;

/// PVH module 0, if QEMU loaded one: its physical range. One that is not inside
/// RAM, or overlaps the loader, ends the boot with the numbers.
fn initrd(
    info: &StartInfo,
    entries: &[MapEntry],
    loader: core::ops::Range<u64>,
) -> Option<core::ops::Range<u64>> {
    if info.nr_modules == 0 || info.modlist_paddr == 0 {
        return None;
    }
    // SAFETY: QEMU says the list has nr_modules >= 1 entries at modlist_paddr,
    // below 4 GiB (identity-mapped); read_unaligned makes no alignment assumption.
    let m = unsafe { (info.modlist_paddr as *const ModlistEntry).read_unaligned() };
    if m.size == 0 {
        return None;
    }
    let end = m.paddr.checked_add(m.size);
    let in_ram =
        memmap::ram_containing(entries, m.paddr).filter(|r| end.is_some_and(|e| e <= r.end()));
    let Some(end) = end.filter(|_| in_ram.is_some()) else {
        fail(format_args!(
            "-initrd: {} bytes at {:#x} do not fit in RAM (RAM ends at {:#x}): give the guest more memory (-m)",
            m.size,
            m.paddr,
            memmap::ram_end(entries)
        ))
    };
    if m.paddr < loader.end && loader.start < end {
        fail(format_args!(
            "-initrd: {} bytes at {:#x} overlap the loader at {:#x}..{:#x}",
            m.size, m.paddr, loader.start, loader.end
        ));
    }
    Some(m.paddr..end)
}

/// The PVH command line, cut to [`MAX_CMDLINE`] bytes, NUL-padded. Read before
/// the loader allocates anything, which could overwrite where QEMU put it.
fn read_cmdline(info: &StartInfo) -> [u8; PAGE as usize] {
    let mut line = [0u8; PAGE as usize];
    if info.cmdline_paddr == 0 {
        return line;
    }
    for (i, slot) in line.iter_mut().take(MAX_CMDLINE).enumerate() {
        // SAFETY: QEMU put a NUL-terminated string at cmdline_paddr (below 4 GiB,
        // identity-mapped); reading stops at its NUL or after MAX_CMDLINE bytes.
        let byte = unsafe { (info.cmdline_paddr as *const u8).add(i).read() };
        if byte == 0 {
            break;
        }
        *slot = byte;
    }
    line
}

/// Puts `line` in a fresh page and returns the page.
fn copy_cmdline(line: &[u8; PAGE as usize], frames: &mut Frames) -> u64 {
    let page = frames.alloc(1);
    // SAFETY: `page` is a fresh frame of PAGE bytes, identity-mapped, nothing else
    // refers to it.
    unsafe { core::ptr::copy_nonoverlapping(line.as_ptr(), page as *mut u8, line.len()) };
    page
}

/// What the kernel must not take as free memory, and what it is handed.
struct Reserved {
    /// The loader, the kernel, its stack, page tables and boot info.
    loader: core::ops::Range<u64>,
    /// The command-line page.
    cmdline: u64,
    /// PVH module 0 (outside `loader`).
    module: Option<core::ops::Range<u64>>,
    /// The bundle handed over: the module, else the embedded one.
    ramdisk: Option<core::ops::Range<u64>>,
}

fn load_kernel(kernel: &Elf, pml4: u64, frames: &mut Frames) {
    for segment in kernel.load_segments() {
        let segment = segment.unwrap_or_else(|e| fail(format_args!("kernel ELF: {e}")));
        let mut flags = 0;
        if segment.writable() {
            flags |= WRITABLE;
        }
        if !segment.executable() {
            flags |= NO_EXECUTE;
        }
        let data = kernel.segment_data(&segment);
        let first = segment.vaddr & !(PAGE - 1);
        let end = segment.vaddr + segment.mem_size;
        let mut page = first;
        while page < end {
            let frame = match paging::translate(pml4, page) {
                Some(frame) => frame,
                None => frames.alloc(1),
            };
            paging::map_page(pml4, page, frame, flags, frames);
            // Copy the part of the segment's file bytes that falls in this page.
            let lo = page.max(segment.vaddr);
            let hi = (page + PAGE).min(segment.vaddr + data.len() as u64);
            if lo < hi {
                let src = &data[(lo - segment.vaddr) as usize..(hi - segment.vaddr) as usize];
                // SAFETY: `frame` is an identity-mapped frame owned by the kernel image;
                // lo - page + src.len() <= PAGE.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        (frame + (lo - page)) as *mut u8,
                        src.len(),
                    )
                };
            }
            page += PAGE;
        }
    }
}

fn map_stack(plan: &Layout, pml4: u64, frames: &mut Frames) {
    let pages = plan.stack_len / PAGE;
    let base = frames.alloc(pages);
    for i in 0..pages {
        paging::map_page(
            pml4,
            plan.stack_bottom + i * PAGE,
            base + i * PAGE,
            WRITABLE | NO_EXECUTE,
            frames,
        );
    }
}

/// Builds the `BootInfo` and its memory regions in the two frames at `frame`,
/// and returns the kernel's virtual address of the `BootInfo`.
fn write_boot_info(
    info: &StartInfo,
    entries: &[MapEntry],
    plan: &Layout,
    frame: u64,
    reserved: Reserved,
) -> u64 {
    let regions_phys = frame + PAGE;
    // SAFETY: the second frame was allocated for the regions (zeroed, identity-mapped,
    // 4096 bytes >= MAX_REGIONS * 24) and nothing else refers to it.
    let regions: &'static mut [MemoryRegion] =
        unsafe { core::slice::from_raw_parts_mut(regions_phys as *mut MemoryRegion, MAX_REGIONS) };
    let mut ranges = [
        (reserved.loader.clone(), MemoryRegionKind::Bootloader),
        (
            reserved.cmdline..reserved.cmdline + PAGE,
            MemoryRegionKind::UnknownBios(handover::CMDLINE_REGION),
        ),
        (
            reserved.module.clone().unwrap_or(0..0),
            MemoryRegionKind::Bootloader,
        ),
    ];
    ranges.sort_unstable_by_key(|(r, _)| r.start);
    let count = memmap::convert(entries, &ranges, regions)
        .unwrap_or_else(|e| fail(format_args!("memory map: {e:?}")));
    let mut boot_info = BootInfo::new(MemoryRegions::from(&mut regions[..count]));
    boot_info.physical_memory_offset = Optional::Some(plan.phys_offset);
    boot_info.rsdp_addr = match info.rsdp_paddr {
        0 => Optional::None,
        addr => Optional::Some(addr),
    };
    boot_info.kernel_addr = KERNEL.0.as_ptr() as u64;
    boot_info.kernel_len = KERNEL.0.len() as u64;
    boot_info.kernel_image_offset = 0;
    boot_info.kernel_stack_bottom = plan.stack_bottom;
    boot_info.kernel_stack_len = plan.stack_len;
    if let Some(ramdisk) = reserved.ramdisk {
        boot_info.ramdisk_addr = Optional::Some(ramdisk.start + plan.phys_offset);
        boot_info.ramdisk_len = ramdisk.end - ramdisk.start;
    }
    const _: () = assert!(core::mem::size_of::<BootInfo>() <= PAGE as usize);
    const _: () = assert!(MAX_REGIONS * core::mem::size_of::<MemoryRegion>() <= PAGE as usize);
    let boot_info_ptr = frame as *mut BootInfo;
    // SAFETY: the first frame is ours, zeroed and large enough (asserted above).
    unsafe { boot_info_ptr.write(boot_info) };
    // The kernel sees physical memory at phys_offset, so the region slice's
    // pointer must be in that window. `MemoryRegions` is `#[repr(C)] { ptr, len }`.
    let ptr_field = frame as usize + core::mem::offset_of!(BootInfo, memory_regions);
    // SAFETY: ptr_field is the first (pointer) field of the MemoryRegions inside the
    // BootInfo just written.
    unsafe { (ptr_field as *mut u64).write(regions_phys + plan.phys_offset) };
    frame + plan.phys_offset
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    fail(format_args!("{info}"))
}
