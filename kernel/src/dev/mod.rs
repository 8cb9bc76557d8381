//! Devices: fw_cfg (runtime configuration), virtio-mmio discovery and the
//! virtio-net driver. [`ring`] is pure and unit tested on the host.
pub mod ring;

#[cfg(target_os = "none")]
pub mod fw_cfg;
#[cfg(target_os = "none")]
pub mod net;
#[cfg(target_os = "none")]
pub mod virtio;
