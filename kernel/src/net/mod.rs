//! The network layer: the smoltcp interface over the virtio-net driver, IPv4
//! configuration (DHCP with a static fallback, or static from the config), and
//! one bounded service pass that the main loop runs.
//!
//! Everything here builds on the host: the stack is generic over the NIC
//! ([`crate::dev::port`]), so it runs over the fake device in unit tests and
//! in the simulator as it does over virtio-mmio in the guest.
pub mod eviction;
pub mod frame;
pub mod sizing;
pub mod tx_offload;

/// The public port: the site and `/health`.
pub const HTTP_PORT: u16 = 80;

pub mod phy;
pub mod server;
mod stack;
pub use stack::*;
