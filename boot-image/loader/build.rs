//! Embeds the kernel ELF named by `KERNEL_ELF` (set by the image builder) and
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
