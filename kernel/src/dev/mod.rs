//! Devices. Today: QEMU's fw_cfg (runtime configuration).
pub mod fw_cfg;
