//! The guest binary: everything lives in the `kernel` library; this file only
//! names the `bootloader_api` entry point.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
bootloader_api::entry_point!(
    kernel::boot::kernel_main,
    config = &kernel::boot::BOOT_CONFIG
);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the kernel runs in QEMU: use `cargo run` at the repository root");
}
