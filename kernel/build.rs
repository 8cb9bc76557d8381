//! Build steps for the kernel crate:
//! - links the guest kernel with its linker script (high-half, page-aligned
//!   segments so text, read-only data and data get distinct permissions);
//! - bakes the site directory into the asset table `app::assets` includes
//!   (see `build/site.rs`).
use std::env;

#[allow(dead_code)] // shared with the kernel, which uses all of it
#[path = "src/app/asset_meta.rs"]
mod asset_meta;
#[path = "build/site.rs"]
mod site;

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build/site.rs");
    println!("cargo:rerun-if-changed=src/app/asset_meta.rs");
    if env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        let dir = env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    }
    site::bake();
}
