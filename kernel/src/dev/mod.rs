//! Devices: fw_cfg (runtime configuration), virtio-mmio discovery and the
//! virtio-net driver. [`ring`], [`masked`] and the generic [`net::Driver`] build
//! on the host and are unit tested there, the driver over `fake_device`.
pub mod masked;
pub mod net;
pub mod offload;
pub mod ring;

#[cfg(test)]
pub mod fake_device;
#[cfg(target_os = "none")]
pub mod fw_cfg;
#[cfg(target_os = "none")]
pub mod virtio;
