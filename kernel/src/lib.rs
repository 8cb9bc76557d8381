//! A `no_std` unikernel for QEMU `-M microvm`.
//!
//! Layers, bottom up; each uses only the ones before it:
//! - [`arch`]: GDT/TSS, IDT with naked entry stubs, LAPIC, IOAPIC, TSC clock, serial, exit.
//! - [`mem`]: frame allocator, the kernel's own page tables, heap.
//! - [`dev`]: devices (fw_cfg, virtio-net, the access log's virtio console).
//! - [`boot`]: bring-up order and the main loop; [`access_sink`] and
//!   [`wall_clock`] are the parts of that composition for the access log and
//!   the time of day.
//!
//! Pure modules ([`config`], [`cmdline`], [`diag`], [`mem::frames`], [`wall_clock`])
//! build on the host and are unit tested there; everything touching the CPU exists
//! only for `target_os = "none"`, and `unsafe` is confined to `arch`, `mem` and `dev`.
#![cfg_attr(not(test), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

extern crate alloc;

pub mod app;
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
