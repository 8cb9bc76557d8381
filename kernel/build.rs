//! Build steps for the kernel crate:
//! - links the guest kernel with its linker script (high-half, page-aligned
//!   segments so text, read-only data and data get distinct permissions);
//! - bakes the site directory into the asset table `app::assets` includes,
//!   with its `_headers` and `_redirects` rules (see `build/site.rs`).
extern crate alloc;

use std::env;

#[allow(dead_code)] // shared with the kernel, which uses all of it
#[path = "src/app/asset_meta.rs"]
mod asset_meta;
#[allow(dead_code)]
#[path = "src/app/pattern.rs"]
mod pattern;
#[path = "build/site.rs"]
mod site;
#[allow(dead_code)]
#[path = "src/app/site_rules.rs"]
mod site_rules;

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build/site.rs");
    println!("cargo:rerun-if-changed=src/app/asset_meta.rs");
    println!("cargo:rerun-if-changed=src/app/pattern.rs");
    println!("cargo:rerun-if-changed=src/app/site_rules.rs");
    if env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        let dir = env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    }
    site::bake();
}
