//! Bring-up order and the idle loop.

use crate::app::Stats;
use crate::arch::{self, clock, cpu, fault, gdt, idt, ioapic, lapic, lockup, serial, watchdog};
use crate::config::{Config, LogLevel, MAX_CONFIG_LEN, NetFault};
use crate::dev::fw_cfg;
use crate::dev::net::{self as dev_net, NetDriver};
use crate::dev::virtio::{self, MaskedTransport, MmioWindow};
use crate::diag::StackRange;
use crate::mem::{frames, heap, paging};
use crate::net::Stack;
use crate::net::server::Server;
use crate::net::sizing;
use bootloader_api::BootInfo;
use bootloader_api::config::{BootloaderConfig, Mapping};
use core::sync::atomic::Ordering;
use virtio_drivers::transport::{DeviceType, Transport};

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

    let largest = frame_allocator.largest_run() * frames::FRAME;
    let heap_size = heap::size_for(largest).unwrap_or_else(|| {
        stop(format_args!(
            "no {} KiB block for the heap (largest free block {} KiB)",
            heap::MIN_HEAP >> 10,
            largest >> 10
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

    let ioapics = init_interrupts();
    if let Some(fault) = config.fault.filter(|f| !f.in_main_loop()) {
        arch::fault_inject::inject(fault);
    }
    let nic = find_nic(&config, &ioapics);
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
    // The ring size is a type parameter of the driver: one instance per supported size.
    match config.queue_size {
        16 => serve::<16>(window, &config, lockup_ticks, main_loop_fault),
        _ => serve::<256>(window, &config, lockup_ticks, main_loop_fault),
    }
}

/// Finds the NIC and routes its interrupt (unless `fault=no-irq`). Returns its
/// register window; the driver is started by `serve`.
fn find_nic(config: &Config, ioapics: &[ioapic::IoApic]) -> Option<MmioWindow> {
    let mut nic = None;
    virtio::discover(ioapics.len() > 1, |found| {
        // Every transport found is dropped here, which resets its device: the NIC's
        // is opened again by the driver, the others stay idle.
        if nic.is_none() && found.transport.device_type() == DeviceType::Network {
            nic = Some((found.window, found.gsi));
        }
    });
    let Some((window, gsi)) = nic else {
        log::warn!(
            "net: no virtio-net device: not serving HTTP (the rest of the kernel keeps running)"
        );
        return None;
    };
    match config.net_fault {
        Some(NetFault::NoIrq) => {
            log::warn!("net: fault=no-irq: NIC interrupt not routed, the tick services the rings");
            return Some(window);
        }
        Some(NetFault::DropIrq(n)) => {
            log::warn!("net: fault=drop-irq:{n}: one NIC interrupt in {n} is ignored");
            dev_net::ignore_every_nth_interrupt(u64::from(n));
        }
        _ => {}
    }
    let Some(vector) = idt::set_device_handler(0, dev_net::on_interrupt) else {
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

/// Starts the driver with `N`-entry rings and the TCP/IP stack, then runs the
/// main loop: service the network, then sleep until an interrupt (the NIC or
/// the 100 Hz tick). A lost NIC interrupt costs at most one tick.
fn serve<const N: usize>(
    window: MmioWindow,
    config: &Config,
    lockup_ticks: u64,
    fault: Option<crate::config::Fault>,
) -> ! {
    // SAFETY: discovery dropped its transport over this window; this is the only one.
    let transport = unsafe { virtio::reopen(window) };
    let driver = match transport.map(|t| NetDriver::<N>::new(MaskedTransport(t), window)) {
        Some(Ok(driver)) => driver,
        Some(Err(e)) => {
            log::error!("net: virtio-net init failed: {e:?}; not serving HTTP");
            idle(lockup_ticks, fault)
        }
        None => {
            log::error!("net: virtio-net transport vanished; not serving HTTP");
            idle(lockup_ticks, fault)
        }
    };
    log::info!("net: virtio-net rings of {N} entries");
    let mut stack = Stack::<N>::new(driver, window, config, clock::uptime_ms(), cpu::rdtsc());
    if config.net_fault == Some(NetFault::NoRepost) {
        log::warn!(
            "net: fault=no-repost: RX buffers are not re-posted until the ring audit resets the NIC"
        );
        if let Some(driver) = stack.phy.driver_mut() {
            driver.stop_reposting();
        }
    }
    let heap_free = heap::usage().map_or(0, |u| u.free);
    let mut server = Server::new(
        &mut stack.sockets,
        config.http_sockets,
        sizing::tx_buffer_for(heap_free, config.http_sockets),
        config.http_limits(),
    );
    server.set_profile(arch::profile::write_text);
    let mut stats = Stats::new(VERSION);
    let mut last_tick = clock::ticks();
    let mut stats_stale = false;
    let fault_at_ms = clock::uptime_ms() + config.fault_delay_ms;
    watchdog::pet(WATCHDOG_S);
    lockup::arm(lockup_ticks);
    cpu::enable_interrupts();
    loop {
        if let Some(fault) = fault.filter(|_| clock::uptime_ms() >= fault_at_ms) {
            arch::fault_inject::inject(fault);
        }
        let now = clock::uptime_ms();
        let from_irq = dev_net::NET_PENDING.swap(false, Ordering::AcqRel);
        let tick = clock::ticks();
        // A pass with no connection open, nothing from the device and nothing
        // due in smoltcp does only the per-tick housekeeping below (ring
        // audit, tick kicks, watchdog): full passes were most of an idle
        // guest's host CPU.
        let quiet = !from_irq && server.is_idle() && !stack.has_work(now);
        let mut may_sleep = true;
        if !quiet {
            let mut worked = stack.poll(now);
            if worked && !from_irq {
                stats.timer_recoveries += 1;
            }
            if stats_stale {
                // Quiet passes skip `fill_stats`; /api/stats.json may be asked now.
                fill_stats(&mut stats, &mut stack, now);
                stats_stale = false;
            }
            let health = stack.health();
            let busy = server.service(&mut stack.sockets, now, &mut stats, health);
            worked |= stack.poll(now);
            // smoltcp wants another pass at once while a socket has data to send,
            // even if the TX ring is full: then the completion interrupt (or the
            // tick) is what can make progress, so sleep until it comes.
            may_sleep = !busy
                && !worked
                && (stack.tx_blocked()
                    || stack.poll_delay(now) != Some(smoltcp::time::Duration::ZERO));
        }
        if tick != last_tick {
            last_tick = tick;
            stack.tick_housekeeping(now);
            watchdog::pet(WATCHDOG_S);
        }
        lockup::progress();
        stats.loop_iterations += 1;
        if quiet {
            stats_stale = true;
        } else {
            fill_stats(&mut stats, &mut stack, now);
        }
        cpu::disable_interrupts();
        if may_sleep && !dev_net::NET_PENDING.load(Ordering::Acquire) {
            cpu::enable_interrupts_and_halt();
        } else {
            cpu::enable_interrupts();
        }
    }
}

fn fill_stats<const N: usize>(stats: &mut Stats, stack: &mut Stack<N>, now: u64) {
    stats.uptime_ms = now;
    stats.interrupts_net = dev_net::NET_INTERRUPTS.load(Ordering::Relaxed);
    stats.interrupts_ignored = dev_net::NET_INTERRUPTS_IGNORED.load(Ordering::Relaxed);
    stats.interrupts_timer = clock::ticks();
    stack.fill_stats(stats);
    if let Some(usage) = heap::usage() {
        stats.heap_used = usage.used as u64;
        stats.heap_free = usage.free as u64;
    }
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

fn init_interrupts() -> alloc::vec::Vec<ioapic::IoApic> {
    let mut found = alloc::vec::Vec::new();
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
                found.push(io);
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
