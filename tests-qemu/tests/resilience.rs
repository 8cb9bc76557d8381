//! Faults injected from outside (QMP) and by guest config, each in the middle
//! of downloads and under wrk load: the service
//! must never stall.
//!
//! | test | fault | expected |
//! |------|-------|----------|
//! | `link_down_*` | `set_link net0 off` for 5 s, idle then under wrk | downloads byte-exact (or closed cleanly and retried); `/health` within 2 s of link up |
//! | `vm_stop_*` | QMP `stop` for 5 s then `cont`, idle then under wrk | as above, and no soft-lockup report |
//! | `no_fault_control_*` | none (the control) | wrk clean, every probe within 2 s, `timer_recoveries` nearly still |
//! | `drop_every_3rd_irq_*`, `no_irq_*` | every 3rd NIC interrupt ignored / never routed | wrk clean, every probe within 2 s, `timer_recoveries` grows, interrupts counted as faulted |
//! | `queue_size_16_*` | 16-entry rings, with and without interrupts | as above, and the 16-bit ring indices wrapped (and counted) in both directions |
//!
//! Each test boots its own guest on a free port. Figures (recovery times,
//! rates, counters) go to stderr through `tests_qemu::note`.

#[path = "resilience/irq_and_queues.rs"]
mod irq_and_queues;
#[path = "resilience/outage.rs"]
mod outage;

use std::time::{Duration, Instant};

use tests_qemu::http::{HttpGuest, Stats};
use tests_qemu::note;
use tests_qemu::qmp::{NETDEV, Qmp};
use tests_qemu::resilience::{
    Download, DownloadResult, HEALTH_LIMIT, HealthProbe, KeepAlivePool, LARGE_LEN, Outcome,
    QmpGuest, Wrk, WrkReport, boot_qmp, check_config_accepted, download_now, health_on, mixed_lua,
    poll_fresh_health,
};

/// How long the link stays down / the VM stays paused.
const OUTAGE: Duration = Duration::from_secs(5);
/// `/large.bin` requests pipelined on the interrupted connection: 24 MiB, so
/// the guest is still sending when the outage starts even if QEMU takes a
/// while to act on the command (89 ms seen with two busy guests, during which
/// an idle guest sent 4 MiB).
const PIPELINED: usize = 16;
/// The outage starts once the client has this many bytes: inside the first
/// 1.5 MiB body.
const CUT_AT: u64 = 1 << 20;
/// A read of the interrupted download may wait this long: the outage plus the
/// guest's retransmission backoff.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
const DOWNLOAD_DEADLINE: Duration = Duration::from_secs(60);
/// Keep-alive connections idle through the outage, then probed 100 ms apart.
const POOL: usize = 5;
const POLL: Duration = Duration::from_millis(100);
const WRK_CONNECTIONS: u32 = 16;
const WRK_TIMEOUT_S: u64 = 10;
const WRK_GRACE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    LinkDown,
    Stop,
}
