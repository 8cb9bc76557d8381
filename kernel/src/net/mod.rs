//! The network layer: the smoltcp interface over a NIC port ([`phy`],
//! [`stack`](Stack)), IPv4 configuration (DHCP with a static fallback, or
//! static from the config), the NIC's health and resets, and the HTTP
//! socket pools ([`server`]) serving any [`server::App`]. It knows nothing of
//! the app above it; `crate::service` composes the two.
//!
//! Everything here builds on the host: the stack is generic over the NIC
//! ([`crate::dev::port`]), so it runs over the fake device in unit tests and
//! in the simulator as it does over virtio-mmio in the guest.
#![forbid(unsafe_code)]
pub mod eviction;
pub mod frame;
pub mod sizing;
pub mod tx_offload;

/// The public port: the site and `/health`.
pub const HTTP_PORT: u16 = 80;

pub mod phy;
pub mod server;
mod stack;
#[cfg(test)]
pub(crate) mod test_frames;
pub use stack::*;
