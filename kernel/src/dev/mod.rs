//! Devices: fw_cfg (runtime configuration), virtio-mmio discovery, the
//! virtio-net driver and a transmit-only virtio-console driver (the access
//! log). [`port`] is the NIC as the network layer sees it, implemented by the
//! driver; [`hooked`] wraps a port with hooks on the methods that change, and
//! [`faults`] uses it (and wraps the NIC's interrupt handler) for the
//! `fault=` settings. [`ring`], [`masked`], [`line_buffer`], [`port`],
//! [`hooked`], [`faults`] and the generic [`net::Driver`] build on the host and are unit
//! tested there, the driver over `fake_device`.
pub mod faults;
pub mod hooked;
pub mod line_buffer;
pub mod masked;
pub mod net;
pub mod offload;
pub mod port;
pub mod ring;

#[cfg(target_os = "none")]
pub mod console;
#[cfg(test)]
pub mod fake_device;
#[cfg(test)]
pub mod fake_nic;
#[cfg(target_os = "none")]
pub mod fw_cfg;
#[cfg(target_os = "none")]
pub mod virtio;
