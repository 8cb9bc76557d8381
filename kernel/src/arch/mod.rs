//! CPU and platform: with `mem` and `dev`, where the hardware and so the
//! `unsafe` is (see the crate doc for the two composition points that also
//! hold some).
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
pub mod pic;
pub mod profile;
pub mod rtc;
pub mod serial;
pub mod watchdog;
