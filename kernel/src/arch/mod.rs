//! CPU and platform: the only place (with `mem` and `dev`) that uses `unsafe`.
pub mod clock;
pub mod cpu;
pub mod exit;
pub mod fault;
pub mod fault_inject;
pub mod gdt;
pub mod idt;
pub mod ioapic;
pub mod lapic;
pub mod lockup;
pub mod profile;
pub mod rtc;
pub mod serial;
pub mod watchdog;
