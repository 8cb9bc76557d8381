//! Serving: the NIC opened with the ring size and fault wrapper the
//! configuration asks for, the service pass composed over it, and the main
//! loop that drives the pass between interrupts.

use super::{VERSION, WATCHDOG_S, idle};
use crate::access_sink::Sink;
use crate::app::Site;
use crate::app::access_log::{self, AccessLog};
use crate::arch::{self, clock, cpu, lockup, watchdog};
use crate::config::{Config, NetFault, QUEUE_SIZES};
use crate::dev::console::Console;
use crate::dev::faults::{self, NoRepostNic};
use crate::dev::net::{self as dev_net, VirtioNic};
use crate::dev::port::{Nic, OpenError, Port};
use crate::dev::virtio::MmioWindow;
use crate::http::Stamp;
use crate::mem::heap;
use crate::net::Stack;
use crate::service::{AppParts, Readings, Service};
use core::sync::atomic::Ordering;

/// What `serve` composes besides the NIC.
pub struct Extras {
    pub epoch_ms: Option<u64>,
    pub console: Option<Console>,
    /// The bundle from the loader, or the baked site.
    pub site: Site,
    pub lockup_ticks: u64,
    /// A main-loop fault to inject (`fault=`).
    pub fault: Option<crate::config::Fault>,
}

/// The ring size is a type parameter of the driver: one instance per entry
/// of [`QUEUE_SIZES`].
pub fn serve_sized(window: MmioWindow, config: &Config, extras: Extras) -> ! {
    const DEFAULT: usize = QUEUE_SIZES[0];
    const SMALL: usize = QUEUE_SIZES[1];
    if config.queue_size == SMALL {
        serve_with_faults::<SMALL>(window, config, extras)
    } else {
        serve_with_faults::<DEFAULT>(window, config, extras)
    }
}

/// The NIC over `window`, wrapped in the fault `config` asks for.
fn serve_with_faults<const N: usize>(window: MmioWindow, config: &Config, extras: Extras) -> ! {
    // SAFETY: discovery dropped its transport over this window; from here on
    // only this value opens one.
    let nic = unsafe { VirtioNic::<N>::new(window) };
    if config.net_fault == Some(NetFault::NoRepost) {
        log::warn!(
            "net: fault=no-repost: RX buffers are not re-posted until the ring audit resets the NIC"
        );
        serve(NoRepostNic::new(nic), config, extras)
    } else {
        serve(nic, config, extras)
    }
}

/// Starts the driver and the TCP/IP stack, composes the service pass, and
/// runs the main loop.
fn serve<D: Nic>(mut nic: D, config: &Config, extras: Extras) -> ! {
    // The SYN-cookie keys mix this reading with one after the driver's start.
    let seed = cpu::rdtsc();
    let driver = match nic.open(None) {
        Ok(driver) => driver,
        Err(OpenError::Gone) => {
            log::error!("net: virtio-net transport vanished; not serving HTTP");
            idle(extras.lockup_ticks, extras.fault)
        }
        Err(OpenError::Driver(e)) => {
            log::error!("net: virtio-net init failed: {e:?}; not serving HTTP");
            idle(extras.lockup_ticks, extras.fault)
        }
        Err(e) => {
            log::error!("net: virtio-net init failed: {e:?}; not serving HTTP");
            idle(extras.lockup_ticks, extras.fault)
        }
    };
    log::info!("net: virtio-net rings of {} entries", driver.queue_size());
    let stack = Stack::new(nic, driver, config, clock::uptime_ms(), seed, cpu::rdtsc());
    let stamp = Stamp {
        epoch_ms: extras.epoch_ms,
        // Tells request ids of this boot from another's.
        boot: (cpu::rdtsc() ^ extras.epoch_ms.unwrap_or(0)) as u32,
    };
    let (sink, destination, why) = Sink::choose(config.serving.access_log, extras.console);
    let access_log = (destination != access_log::Destination::Off).then(|| {
        AccessLog::new(
            config.serving.log_format,
            config.serving.trusted_proxies,
            stamp,
            access_log::BUFFER_BYTES,
        )
    });
    let parts = AppParts {
        site: extras.site,
        stamp,
        profile: arch::profile::write_text,
        access_log,
        heap_free: heap::usage().map_or(0, |u| u.free),
        version: VERSION,
    };
    let service = Service::new(stack, config, parts, sink, clock::ticks());
    log::info!("access log: {} ({why})", destination.as_str());
    main_loop(service, config, extras.lockup_ticks, extras.fault)
}

/// Runs service passes, sleeping between them until an interrupt (the NIC or
/// the 100 Hz tick) unless a pass has more to do; a lost NIC interrupt costs
/// at most one tick. Each iteration: inject a main-loop fault once it is due,
/// run a pass, pet the watchdog on a new tick, report progress to the
/// soft-lockup detector, sleep.
fn main_loop<D: Nic>(
    mut service: Service<D, Sink>,
    config: &Config,
    lockup_ticks: u64,
    fault: Option<crate::config::Fault>,
) -> ! {
    // Main-loop faults count their delay from the moment the guest has an
    // address, so a slow boot (DHCP on a loaded host) cannot fire them before
    // a test's clients are connected.
    let mut fault_at_ms = None;
    watchdog::pet(WATCHDOG_S);
    lockup::arm(lockup_ticks);
    cpu::enable_interrupts();
    loop {
        if fault_at_ms.is_none() && service.is_configured() {
            fault_at_ms = Some(clock::uptime_ms() + config.fault_delay_ms);
        }
        if let Some(fault) =
            fault.filter(|_| fault_at_ms.is_some_and(|at| clock::uptime_ms() >= at))
        {
            arch::fault_inject::inject(fault);
        }
        let from_irq = dev_net::NET_PENDING.swap(false, Ordering::AcqRel);
        let outcome = service.pass(clock::uptime_ms(), clock::ticks(), from_irq, readings);
        if outcome.ticked {
            watchdog::pet(WATCHDOG_S);
        }
        lockup::progress();
        sleep_until_interrupt(outcome.may_sleep);
    }
}

/// Halts until the next interrupt if `may_sleep` and no NIC interrupt came
/// since the pass looked; the check and the halt are atomic (`sti; hlt`).
fn sleep_until_interrupt(may_sleep: bool) {
    cpu::disable_interrupts();
    if may_sleep && !dev_net::NET_PENDING.load(Ordering::Acquire) {
        cpu::enable_interrupts_and_halt();
    } else {
        cpu::enable_interrupts();
    }
}

/// The machine's side of the stats.
fn readings() -> Readings {
    Readings {
        interrupts_net: dev_net::NET_INTERRUPTS.load(Ordering::Relaxed),
        interrupts_ignored: faults::INTERRUPTS_DROPPED.load(Ordering::Relaxed),
        interrupts_timer: clock::ticks(),
        heap: heap::usage().map(|u| (u.used as u64, u.free as u64)),
    }
}
