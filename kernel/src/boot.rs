//! Bring-up order and the idle loop.

use crate::arch::{self, clock, cpu, fault, gdt, idt, ioapic, lapic, serial};
use crate::config::{Config, LogLevel, MAX_CONFIG_LEN};
use crate::dev::fw_cfg;
use crate::diag::StackRange;
use crate::mem::{frames, heap, paging};
use bootloader_api::BootInfo;
use bootloader_api::config::{BootloaderConfig, Mapping};

/// What we ask of the loader: all physical memory mapped (anywhere), and a
/// 256 KiB boot stack (it gets an unmapped guard page below it).
pub const BOOT_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.kernel_stack_size = 256 * 1024;
    config
};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
const CONFIG_FILE: &str = "opt/unikernel/config";

fn stop(what: core::fmt::Arguments) -> ! {
    panic!("boot: {what}")
}

pub fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    serial::init();
    serial::init_logger(log::LevelFilter::Info);
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

    let heap_size = heap::size_for(usable);
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
    unsafe { heap::init(paging::phys_to_virt(heap_start), heap_size) };

    let config = load_config();
    serial::init_logger(match config.log_level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    });
    log::info!(
        "mem: heap {} KiB at {:#x}, {} frames left",
        heap_size >> 10,
        heap_start,
        frame_allocator.free_frames()
    );

    init_interrupts();
    if let Some(fault) = config.fault {
        arch::fault_inject::inject(fault);
    }
    log::info!("kernel: init complete");
    idle()
}

fn load_config() -> Config {
    let mut raw = alloc::vec![0u8; MAX_CONFIG_LEN + 1];
    let Some(size) = fw_cfg::read_file(CONFIG_FILE, &mut raw) else {
        log::info!("config: no {CONFIG_FILE} in fw_cfg, using defaults");
        return Config::default();
    };
    let config = Config::from_bytes(&raw[..size.min(raw.len())], &mut |w| log::warn!("{w}"));
    log::info!("config: {config:?}");
    config
}

fn init_interrupts() {
    // The legacy PICs stay masked; everything goes through the IOAPICs and LAPIC.
    cpu::outb(0x21, 0xff);
    cpu::outb(0xa1, 0xff);
    lapic::init(
        paging::phys_to_virt(lapic::LAPIC_PHYS),
        idt::SPURIOUS_VECTOR,
    );
    for (i, phys) in ioapic::IOAPIC_PHYS.iter().enumerate() {
        let gsi_base = i as u32 * ioapic::GSI_PER_IOAPIC;
        match ioapic::IoApic::probe(paging::phys_to_virt(*phys), gsi_base) {
            Some(mut io) => {
                io.mask_all();
                log::info!(
                    "irq: ioapic {} at {phys:#x}: GSI {}..{} masked",
                    io.id(),
                    gsi_base,
                    gsi_base + io.entries - 1
                );
            }
            None => log::info!("irq: no ioapic at {phys:#x}"),
        }
    }
    let cal = clock::calibrate();
    log::info!(
        "clock: tsc {} kHz, lapic timer {} kHz{}",
        cal.tsc_hz / 1000,
        cal.lapic_hz / 1000,
        if cal.from_pit {
            " (calibrated against PIT)"
        } else {
            " (PIT silent: assumed)"
        }
    );
    clock::start_tick(idt::TIMER_VECTOR, cal.lapic_hz);
    log::info!("irq: lapic {} timer at {} Hz", lapic::id(), clock::TICK_HZ);
}

fn idle() -> ! {
    loop {
        cpu::disable_interrupts();
        cpu::enable_interrupts_and_halt();
    }
}
