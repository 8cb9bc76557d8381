//! The network layer: the smoltcp interface over the virtio-net driver, IPv4
//! configuration (DHCP with a static fallback, or static from the config), and
//! one bounded service pass that the main loop runs.
//!
//! [`eviction`], [`frame`] and [`sizing`] are pure and unit tested on the host; the rest runs
//! in the guest.
pub mod eviction;
pub mod frame;
pub mod sizing;
pub mod tx_offload;

/// The public port: the site and `/health`.
pub const HTTP_PORT: u16 = 80;

#[cfg(target_os = "none")]
pub mod phy;
#[cfg(target_os = "none")]
pub mod server;
#[cfg(target_os = "none")]
mod stack;
#[cfg(target_os = "none")]
pub use stack::*;
