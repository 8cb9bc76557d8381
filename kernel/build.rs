//! Links the guest kernel with its linker script (high-half, page-aligned
//! segments so text, read-only data and data get distinct permissions).
use std::env;

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    if env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        let dir = env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    }
}
