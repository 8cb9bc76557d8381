//! Host side of the unikernel: builds the bootable image and runs it in QEMU.
//!
//! - [`build_image`] builds the kernel and the PVH loader (which embeds the kernel) for
//!   `x86_64-unknown-none` and puts the one-file image in `target/image/<profile>/`.
//! - [`qemu_command`] turns a [`QemuConfig`] into the `qemu-system-x86_64 -M microvm`
//!   command line.
//! - [`Guest`] starts QEMU (KVM when the guest actually boots under it, TCG otherwise),
//!   captures the serial console and lets callers wait for lines and for the exit.
//!
//! The `boot-image` binary (what `cargo run` runs) uses all three.

extern crate alloc;

mod builder;
pub mod bundle;
mod capture;
mod guest;
mod kvm;
mod pack;
mod qemu_command;

pub use builder::{
    Artifacts, KERNEL_TARGET, Profile, build_image, build_image_with_site, repo_root,
};
pub use guest::{FAULT_EXIT_STATUS, Guest, is_banner};
pub use kvm::kvm_usable;
pub use qemu_command::{
    ACCESS_LOG_CHARDEV, Accel, AccessLogChannel, CONFIG_FW_CFG_NAME, GUEST_ADMIN_PORT,
    GUEST_HTTP_PORT, QEMU_PROGRAM, QemuConfig, config_string, now_unix, qemu_args, qemu_command,
    validate_config_item,
};
