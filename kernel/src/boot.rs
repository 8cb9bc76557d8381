//! Bring-up order: CPU tables, heap, configuration, interrupts, devices;
//! then `serving` (the main loop), or the idle loop without a NIC.

use crate::arch::{
    self, clock, cpu, fault, gdt, idt, ioapic, lapic, lockup, pic, rtc, serial, watchdog,
};
use crate::cmdline;
use crate::config::{Config, LogLevel, MAX_CONFIG_LEN, NetFault};
use crate::dev::console::Console;
use crate::dev::faults;
use crate::dev::fw_cfg;
use crate::dev::net as dev_net;
use crate::dev::virtio::{self, MmioWindow};
use crate::diag::StackRange;
use crate::mem::{frames, handover, heap, paging};
use crate::site_source;
use crate::wall_clock;
use bootloader_api::BootInfo;
use bootloader_api::config::{BootloaderConfig, Mapping};
use virtio_drivers::transport::{DeviceType, Transport};
use x86_64::PhysAddr;

/// What we ask of the loader: all physical memory mapped (anywhere), and a
/// 256 KiB boot stack (it gets an unmapped guard page below it).
pub const BOOT_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.kernel_stack_size = 256 * 1024;
    config
};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// ib700 timeout: the host resets a guest whose main loop stops for this long
/// (even with interrupts disabled, where the soft-lockup detector is blind).
const WATCHDOG_S: u32 = 10;

mod serving;
use serving::{Extras, serve_sized};
const CONFIG_FILE: &str = crate::config::FW_CFG_FILE;

fn stop(what: core::fmt::Arguments) -> ! {
    panic!("boot: {what}")
}

pub fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    serial::init();
    serial::init_logger(log::LevelFilter::Info);
    let mut frame_allocator = init_cpu(boot_info);
    let heap = init_heap(boot_info, &mut frame_allocator);
    let (config, cmdline_devices) = load_config(handover::cmdline(&boot_info.memory_regions));
    serial::init_logger(level_filter(config.log_level));
    log::info!(
        "mem: heap {} KiB at {:#x}, {} frames left",
        heap.size >> 10,
        heap.start,
        frame_allocator.free_frames()
    );
    let site = site_source::load(boot_info);
    let ioapics = init_interrupts();
    if let Some(fault) = config.fault.filter(|f| !f.in_main_loop()) {
        arch::fault_inject::inject(fault);
    }
    let listed = devices_outside_ram(&cmdline_devices, &boot_info.memory_regions);
    let epoch_ms = start_wall_clock(&config);
    let mut console = None;
    let nic = find_nic(&config, &ioapics, &listed, &mut console);
    log::info!("kernel: init complete");
    let lockup_ticks = config.lockup_ms * clock::TICK_HZ / 1000;
    log::info!(
        "watchdog: ib700 {WATCHDOG_S} s, soft-lockup after {} ms",
        config.lockup_ms
    );
    let main_loop_fault = config.fault.filter(|f| f.in_main_loop());
    let Some(window) = nic else {
        idle(lockup_ticks, main_loop_fault)
    };
    let extras = Extras {
        epoch_ms,
        console,
        site,
        lockup_ticks,
        fault: main_loop_fault,
    };
    serve_sized(window, &config, extras)
}

/// Announces the boot, builds the kernel's page tables, GDT (with the IST
/// stacks registered for the fault handler) and IDT. Returns the frame
/// allocator for the rest of the bring-up.
fn init_cpu(boot_info: &BootInfo) -> frames::FrameAllocator {
    let regions: &[bootloader_api::info::MemoryRegion] = &boot_info.memory_regions;
    let usable = frames::usable_bytes(regions);
    serial::print(format_args!(
        "unikernel v{VERSION} booted: {} MiB usable memory, cpu probe {} cycles/iteration",
        usable >> 20,
        cpu::speed_probe()
    ));
    let Some(phys_offset) = boot_info.physical_memory_offset.into_option() else {
        stop(format_args!("the loader did not map physical memory"))
    };
    let boot_stack = StackRange {
        bottom: boot_info.kernel_stack_bottom,
        top: boot_info.kernel_stack_bottom + boot_info.kernel_stack_len,
    };
    log::info!(
        "boot: {} memory regions, rsdp {:#x}, stack {:#x}..{:#x}, physical memory at {phys_offset:#x}",
        regions.len(),
        boot_info.rsdp_addr.into_option().unwrap_or(0),
        boot_stack.bottom,
        boot_stack.top
    );
    arch::exit::set_phys_offset(phys_offset);
    let mut frame_allocator = frames::FrameAllocator::new(regions);
    let ist = paging::build::<{ gdt::IST_COUNT }>(regions, phys_offset, &mut frame_allocator)
        .unwrap_or_else(|e| stop(format_args!("page tables: {e:?}")));
    let mut stacks = fault::Stacks {
        ranges: [StackRange { bottom: 0, top: 0 }; fault::MAX_STACKS],
        guards: [0; fault::MAX_STACKS],
    };
    stacks.ranges[0] = boot_stack;
    stacks.guards[0] = boot_stack.bottom - frames::FRAME;
    for (i, s) in ist.iter().enumerate() {
        stacks.ranges[i + 1] = StackRange {
            bottom: s.bottom,
            top: s.top,
        };
        stacks.guards[i + 1] = s.bottom - frames::FRAME;
    }
    fault::register_stacks(stacks);
    gdt::init(ist.map(|s| s.top));
    idt::init();
    frame_allocator
}

/// Where the heap went.
struct HeapBlock {
    start: u64,
    size: u64,
}

/// Gives the heap the largest block it can have (see `heap::size_for`).
fn init_heap(boot_info: &BootInfo, frame_allocator: &mut frames::FrameAllocator) -> HeapBlock {
    let largest = frame_allocator.largest_run() * frames::FRAME;
    let heap_size = heap::size_for(largest).unwrap_or_else(|| {
        stop(format_args!(
            "no {} KiB block for the heap (largest free block {} KiB; the site bundle takes {} KiB): give the guest more memory",
            heap::MIN_HEAP >> 10,
            largest >> 10,
            boot_info.ramdisk_len >> 10
        ))
    });
    let heap_start = frame_allocator
        .alloc_contiguous(heap_size / frames::FRAME)
        .unwrap_or_else(|| {
            stop(format_args!(
                "no {} KiB block for the heap",
                heap_size >> 10
            ))
        });
    // SAFETY: fresh frames from the allocator, mapped writable in the physical window,
    // used by nothing else; init runs once.
    unsafe { heap::init(paging::phys_to_virt(PhysAddr::new(heap_start)), heap_size) };
    HeapBlock {
        start: heap_start,
        size: heap_size,
    }
}

fn level_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}

/// Reads the wall clock once (see `wall_clock`) and says where it came from.
fn start_wall_clock(config: &Config) -> Option<u64> {
    let rtc = rtc::read_unix();
    let (epoch_ms, source) = wall_clock::choose(rtc, config.serving.clock, clock::uptime_ms());
    match epoch_ms {
        Some(epoch) => {
            let now = epoch + clock::uptime_ms();
            let t = crate::http::stamp::DateTime::from_unix(now / 1000);
            log::info!(
                "clock: wall clock from {}: {} (RTC {}, clock= {})",
                source.describe(),
                t.rfc3339(now % 1000),
                if rtc.is_some() { "present" } else { "absent" },
                if config.serving.clock.is_some() {
                    "set"
                } else {
                    "not set"
                },
            );
        }
        None => log::warn!(
            "clock: no wall clock (no RTC, no clock= setting): no Date header; access-log times are uptime since boot, shown as 1970-01-01"
        ),
    }
    epoch_ms
}

/// Finds the NIC and routes its interrupt (unless `fault=no-irq`). Returns its
/// register window; the driver is started by `serve`.
fn find_nic(
    config: &Config,
    ioapics: &[ioapic::IoApic],
    listed: &[(u64, u32)],
    console: &mut Option<Console>,
) -> Option<MmioWindow> {
    let mut nic = None;
    let mut take = |found: virtio::Found| {
        // Every other transport found is dropped here, which resets its device:
        // the NIC's is opened again by the driver, the others stay idle. The
        // first console's is kept by its driver.
        if nic.is_none() && found.transport.device_type() == DeviceType::Network {
            nic = Some((found.window, found.gsi));
        } else if console.is_none() && found.transport.device_type() == DeviceType::Console {
            match Console::new(found.transport, found.window) {
                Ok(c) => *console = Some(c),
                Err(e) => log::warn!("console: virtio console init failed: {e:?}"),
            }
        }
    };
    if listed.is_empty() {
        virtio::discover(ioapics.len() > 1, take);
    } else {
        // SAFETY: the command line is the VMM's own device list (what ACPI would
        // say); `devices_outside_ram` kept only windows of at least MMIO_SIZE bytes
        // inside the physical window and outside RAM, each once.
        unsafe { virtio::discover_listed(listed, &mut take) };
    }
    let Some((window, gsi)) = nic else {
        log::warn!(
            "net: no virtio-net device: not serving HTTP (the rest of the kernel keeps running)"
        );
        return None;
    };
    if config.net_fault == Some(NetFault::NoIrq) {
        log::warn!("net: fault=no-irq: NIC interrupt not routed, the tick services the rings");
        return Some(window);
    }
    let handler = match config.net_fault {
        Some(NetFault::DropIrq(n)) => {
            log::warn!("net: fault=drop-irq:{n}: one NIC interrupt in {n} is ignored");
            faults::drop_every_nth_interrupt(u64::from(n))
        }
        _ => dev_net::on_interrupt,
    };
    let Some(vector) = idt::set_device_handler(0, handler) else {
        log::error!("net: no interrupt vector left: the tick services the rings");
        return Some(window);
    };
    // virtio-mmio interrupts are level-triggered, active-high.
    let routed = ioapics
        .iter()
        .filter(|io| io.covers(gsi))
        .any(|io| io.route(gsi, vector, lapic::id(), true, false));
    if routed {
        log::info!("net: GSI {gsi} -> vector {vector}, level-triggered");
    } else {
        log::warn!("net: GSI {gsi} is on no IOAPIC: the tick services the rings");
    }
    Some(window)
}

/// The command line's `virtio_mmio.device=` windows that can be probed safely,
/// as `(phys, gsi)`: large enough, inside the physical window, outside RAM,
/// listed once. The others are reported and skipped.
fn devices_outside_ram(
    devices: &[cmdline::MmioDevice],
    regions: &[bootloader_api::info::MemoryRegion],
) -> alloc::vec::Vec<(u64, u32)> {
    let (_, window_len) = paging::window();
    let mut listed: alloc::vec::Vec<(u64, u32)> = alloc::vec::Vec::new();
    for d in devices {
        let end = d.phys.saturating_add(d.size);
        let in_ram = regions.iter().any(|r| {
            // Firmware-reserved ranges may hold devices; the command-line page is RAM.
            !matches!(r.kind, bootloader_api::info::MemoryRegionKind::UnknownBios(k) if k != handover::CMDLINE_REGION)
                && r.start < end
                && d.phys < r.end
        });
        if d.size < virtio::MMIO_SIZE || end > window_len || in_ram {
            log::warn!(
                "virtio: command-line device {:#x}+{:#x} is too small, outside the physical window or in RAM; skipped",
                d.phys,
                d.size
            );
        } else if listed.iter().any(|&(p, _)| p == d.phys) {
            log::warn!(
                "virtio: command-line device {:#x} listed twice; skipped",
                d.phys
            );
        } else {
            listed.push((d.phys, d.gsi));
        }
    }
    listed
}

/// The configuration from the command line and fw_cfg (fw_cfg wins key by
/// key), and the virtio-mmio devices the command line names.
fn load_config(cmdline: &[u8]) -> (Config, alloc::vec::Vec<cmdline::MmioDevice>) {
    let line = cmdline::parse_bytes(cmdline, &mut |w| log::warn!("{w}"));
    if !cmdline.is_empty() {
        log::info!(
            "cmdline: {:?}",
            core::str::from_utf8(cmdline).unwrap_or("(not UTF-8)")
        );
    }
    let mut raw = alloc::vec![0u8; MAX_CONFIG_LEN + 1];
    let fw_cfg_text = match fw_cfg::read_file(CONFIG_FILE, &mut raw) {
        Some(size) => Config::text_of(&raw[..size.min(raw.len())], &mut |w| log::warn!("{w}")),
        None => {
            log::info!("config: no {CONFIG_FILE} in fw_cfg");
            ""
        }
    };
    let merged = cmdline::merge(&line.config_items, fw_cfg_text);
    let config = Config::parse(&merged, &mut |w| log::warn!("{w}"));
    log::info!("config: {config:?}");
    (config, line.devices)
}

fn init_interrupts() -> alloc::vec::Vec<ioapic::IoApic> {
    let mut found = alloc::vec::Vec::new();
    pic::mask_all();
    // SAFETY: the physical-memory window maps the LAPIC page uncached for the
    // kernel's life (paging::build: no RAM there).
    unsafe {
        lapic::init(
            paging::phys_to_virt(lapic::LAPIC_PHYS),
            idt::SPURIOUS_VECTOR,
        )
    };
    for (i, &phys) in ioapic::IOAPIC_PHYS.iter().enumerate() {
        let gsi_base = i as u32 * ioapic::GSI_PER_IOAPIC;
        // SAFETY: as for the LAPIC; each IOAPIC window is probed once, here.
        match unsafe { ioapic::IoApic::probe(paging::phys_to_virt(phys), gsi_base) } {
            Some(mut io) => {
                io.mask_all();
                // The index tells the two apart: microvm gives both IOAPIC ID 0.
                log::info!(
                    "irq: ioapic {i} (id {}) at {phys:#x}: GSI {}..{} masked",
                    io.id(),
                    gsi_base,
                    gsi_base + io.entries - 1
                );
                found.push(io);
            }
            None => log::info!("irq: no ioapic at {phys:#x}"),
        }
    }
    let cal = clock::calibrate();
    match cal.uncertainty_ppm {
        Some(ppm) => log::info!(
            "clock: tsc {} kHz, lapic timer {} kHz (calibrated against PIT, +-{ppm} ppm, {} window(s))",
            cal.tsc_hz / 1000,
            cal.lapic_hz / 1000,
            cal.windows
        ),
        None => log::warn!(
            "clock: tsc {} kHz, lapic timer {} kHz (PIT silent in {} window(s): assumed)",
            cal.tsc_hz / 1000,
            cal.lapic_hz / 1000,
            cal.windows
        ),
    }
    clock::start_tick(idt::TIMER_VECTOR, cal.lapic_hz);
    log::info!("irq: lapic {} timer at {} Hz", lapic::id(), clock::TICK_HZ);
    found
}

fn idle(lockup_ticks: u64, fault: Option<crate::config::Fault>) -> ! {
    watchdog::pet(WATCHDOG_S);
    lockup::arm(lockup_ticks);
    if let Some(fault) = fault {
        arch::fault_inject::inject(fault);
    }
    let mut last_tick = clock::ticks();
    loop {
        let tick = clock::ticks();
        if tick != last_tick {
            last_tick = tick;
            watchdog::pet(WATCHDOG_S);
        }
        lockup::progress();
        cpu::disable_interrupts();
        cpu::enable_interrupts_and_halt();
    }
}
