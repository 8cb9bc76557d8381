//! Embeds the kernel ELF named by `KERNEL_ELF` (set by the image builder), the
//! site bundle named by `SITE_BUNDLE` if any (`cargo image --site DIR`), and
//! links the loader with its own linker script when building for the guest.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let dest = out.join("kernel.elf");
    println!("cargo:rerun-if-env-changed=KERNEL_ELF");
    match env::var("KERNEL_ELF") {
        Ok(path) => {
            println!("cargo:rerun-if-changed={path}");
            fs::copy(&path, &dest).unwrap_or_else(|e| panic!("cannot read KERNEL_ELF={path}: {e}"));
        }
        // Host unit tests of the pure modules do not embed a kernel.
        Err(_) => fs::write(&dest, b"").expect("write placeholder kernel"),
    }
    // A site bundle handed to the kernel when QEMU has no -initrd (cargo image --site).
    let bundle = out.join("site.bundle");
    println!("cargo:rerun-if-env-changed=SITE_BUNDLE");
    match env::var("SITE_BUNDLE") {
        Ok(path) if !path.is_empty() => {
            println!("cargo:rerun-if-changed={path}");
            fs::copy(&path, &bundle)
                .unwrap_or_else(|e| panic!("cannot read SITE_BUNDLE={path}: {e}"));
        }
        _ => fs::write(&bundle, b"").expect("write empty bundle"),
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=src/boot32.s");
    if env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        println!(
            "cargo:rustc-link-arg-bins=-T{}",
            manifest.join("linker.ld").display()
        );
    }
}
