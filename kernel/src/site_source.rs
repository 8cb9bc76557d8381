//! Which site the guest serves: the bundle the loader handed over (`-initrd`, or
//! one packed into the image), else the table baked into the kernel. A bundle
//! that fails any check is not served at all: the site answers 503 and
//! `/health` gives the reason, while the built-in endpoints keep working.

use crate::app::Site;
use crate::arch::clock;
use crate::mem::handover;
use alloc::format;
use alloc::string::String;
use bootloader_api::BootInfo;

pub fn load(boot_info: &BootInfo) -> Site {
    let bytes = match handover::ramdisk(boot_info) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            log::info!("site: baked into the kernel");
            return Site::baked();
        }
        Err(e) => return refuse(format!("{e}")),
    };
    let started = clock::uptime_ms();
    match Site::from_bundle(bytes) {
        Ok(site) => {
            log::info!(
                "site: bundle of {} bytes ({} KiB), checked in {} ms",
                bytes.len(),
                bytes.len() >> 10,
                clock::uptime_ms().saturating_sub(started)
            );
            site
        }
        Err(e) => refuse(format!("{e}")),
    }
}

fn refuse(reason: String) -> Site {
    let reason: &'static str = String::leak(format!("site: {reason}"));
    log::error!("{reason}: site paths answer 503, /health says why");
    Site::unavailable(reason)
}
