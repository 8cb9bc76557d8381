//! Whether KVM can even be tried. Whether it *works* is decided by the guest (see
//! [`crate::Guest::start`]): nested KVM here runs some guests and hangs others.

use std::fs::OpenOptions;

/// The KVM device node QEMU opens for `-accel kvm`.
const KVM_DEVICE: &str = "/dev/kvm";

/// `Ok` if `/dev/kvm` can be opened read-write (what QEMU needs), else why not.
pub fn kvm_usable() -> Result<(), String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(KVM_DEVICE)
        .map(drop)
        .map_err(|e| format!("{KVM_DEVICE}: {e}"))
}
