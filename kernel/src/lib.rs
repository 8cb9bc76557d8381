//! A `no_std` unikernel that serves a static site over HTTP/1.1 on QEMU
//! `-M microvm`: one vCPU, one virtio-net NIC, no threads, one main loop.
//!
//! # Layers
//!
//! The module tree is the architecture. Six layers, bottom up; each uses only
//! the layers below it, never one above:
//!
//! - [`arch`]: the CPU. GDT/TSS, the IDT and its entry stubs, LAPIC timer and
//!   IOAPIC routing, the TSC clock, the serial port, the RTC, the ib700
//!   watchdog, the soft-lockup detector, the sampling profiler, and the
//!   `isa-debug-exit` port.
//! - [`mem`]: physical frames, the kernel's own page tables (built from the
//!   loader's handover), and the heap.
//! - [`dev`]: devices. fw_cfg (the configuration), the virtio-mmio transport,
//!   the virtio-net driver with its rings and buffer accounting, and the
//!   access log's virtio console. A device model (`dev/fake_device.rs`) runs
//!   the driver on the host.
//! - [`net`]: TCP/IP. smoltcp's interface over the driver, addressing (DHCP or
//!   static), and the server that moves bytes between listening sockets and
//!   HTTP connections, evicting the least valuable connection under pressure.
//! - [`http`]: HTTP/1.1 with no I/O of its own: one state machine per
//!   connection, fed bytes and asked for bytes, with every size and deadline a
//!   named limit. It defines the [`http::Handler`] interface the layer above
//!   implements.
//! - [`app`]: what is served. The routes (`/health`, `/metrics`,
//!   `/api/stats.json`, `/status`, ...), the site (baked into the image or a
//!   bundle from `-initrd`), the counters, the recent-requests ring and the
//!   access log.
//!
//! Composition sits beside the layers rather than in them: `boot` brings the
//! machine up in order and runs the main loop; `service` is one pass of that
//! loop, the one place where `net` and `app` meet; [`access_sink`],
//! [`wall_clock`] and [`site_source`] connect the access log, the time of day
//! and the site to their devices. The pure modules [`config`], [`cmdline`] and
//! [`diag`] read input and format output for all of them;
//! [`clock_calibration`] is the arithmetic of `arch`'s clock calibration.
//!
//! # Where `unsafe` is
//!
//! In `arch`, `mem` and `dev`, where the hardware is, and in `boot`, the one
//! composition point that hands memory and devices from the loader and
//! discovery to their owners (the heap over the loader's memory map, the
//! interrupt controllers and virtio windows at their physical addresses, the
//! NIC's register window to its driver). `net`, `http`, `app` and `service`
//! `#![forbid(unsafe_code)]`. Every `unsafe` block carries a `// SAFETY:`
//! comment and every `unsafe fn` a `# Safety` section (enforced below).
//!
//! # Host and guest
//!
//! `http`, `app`, the pure parts of `net` and `dev` (with the device model),
//! [`config`], [`cmdline`], [`diag`], [`clock_calibration`], [`mem::frames`] and [`wall_clock`] build
//! on the host and are unit tested there. Everything that touches the CPU
//! exists only for `target_os = "none"`.
//!
//! # The life of a request
//!
//! The files one `GET` passes through (nine files, ten steps):
//!
//! 1. `dev/net.rs`: the NIC's interrupt handler acknowledges the device and
//!    records that work is pending; nothing more (`arch` sends the EOI).
//! 2. `boot/serving.rs`: the main loop wakes from `hlt` (or the timer tick wakes it)
//!    and runs a pass.
//! 3. `service.rs`: the pass, the one composition of `net` and `app`: poll the
//!    stack, serve the sockets, poll again.
//! 4. `net/stack.rs`: smoltcp's `Interface` polled with a per-pass budget.
//! 5. `net/phy.rs`: smoltcp's `Device` over the driver: a received frame is a
//!    buffer lent from the RX ring (`dev/net.rs`), returned after TCP took it.
//! 6. `net/server.rs`: the socket's bytes go to its connection
//!    ([`http::Conn::receive`]).
//! 7. `http/conn.rs`: the head is complete; it is validated against the limits
//!    and parsed into a [`http::Request`].
//! 8. `app/routes.rs`: the [`http::Handler`]; a site path goes on to
//! 9. `app/site.rs`: the file (or its compressed variant, a 304, a range, a
//!    redirect, the site's 404), a slice of the image or bundle, never copied.
//! 10. `http/conn.rs` again writes the head and hands out the body by offset;
//!     `net/server.rs` puts it in the socket; smoltcp segments it; `net/phy.rs`
//!     and `dev/net.rs` post the frames on the TX ring and notify the device.
#![cfg_attr(not(test), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

extern crate alloc;

pub mod app;
pub mod clock_calibration;
pub mod cmdline;
pub mod config;
pub mod dev;
pub mod diag;
pub mod http;
pub mod mem;
pub mod net;
pub mod service;
#[cfg(test)]
mod sim;
#[cfg(test)]
pub mod test_rng;
pub mod wall_clock;

#[cfg(target_os = "none")]
pub mod access_sink;
#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod site_source;
