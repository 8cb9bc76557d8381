//! The sampling profiler end to end: the guest's timer tick records RIPs,
//! `/debug/profile` lists them, `scripts/profile` symbolizes a window.

use std::path::Path;
use std::process::Command;

use tests_qemu::http::{Transport, boot_http};
use tests_qemu::note;

/// An idle guest for 3 s: about 300 samples at 100 Hz, nearly all in the halt.
#[test]
fn idle_guest_profile_is_the_halt() {
    let g = boot_http("profile", Transport::Legacy, &[]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(root.join("scripts/profile"))
        .args([
            "--port",
            &g.admin_port.to_string(),
            "--seconds",
            "3",
            "--top",
            "5",
        ])
        .arg("--elf")
        .arg(&tests_qemu::image().kernel_elf)
        .output()
        .unwrap_or_else(|e| g.fail(format_args!("scripts/profile: {e}")));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    note("profile", format_args!("scripts/profile:\n{text}"));
    if !out.status.success() {
        g.fail(format_args!(
            "scripts/profile failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let samples: u64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| g.fail(format_args!("no sample count in {text:?}")));
    // 100 Hz for 3 s; TCG may deliver late ticks, never more than due.
    if !(150..=330).contains(&samples) {
        g.fail(format_args!("{samples} samples in 3 s at 100 Hz"));
    }
    let top = text.lines().nth(1).unwrap_or("");
    let share: f64 = top
        .split('%')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0.0);
    if !top.ends_with("kernel::arch::cpu::enable_interrupts_and_halt") || share < 80.0 {
        g.fail(format_args!(
            "an idle guest's top function is not the halt at 80%+: {top:?}"
        ));
    }
    g.finish();
}
