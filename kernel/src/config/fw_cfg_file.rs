//! The name of the fw_cfg file that carries the runtime configuration.
//!
//! The launcher (`boot-image`) includes this file by path, so the guest and
//! the host that writes the file read the name from one place.

/// The fw_cfg file the kernel reads its `key=value` items from; QEMU creates
/// it from `-fw_cfg name=opt/unikernel/config,string=...`.
pub const FW_CFG_FILE: &str = "opt/unikernel/config";
