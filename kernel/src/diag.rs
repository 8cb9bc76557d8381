//! Fatal-fault reports: the saved register frame, its `FATAL ...` lines, and
//! the frame-pointer backtrace walk. Pure so the format (which
//! `scripts/symbolize` and the QEMU tests parse) is unit tested on the host.

use core::fmt::{self, Write};

/// QEMU's exit status after a fatal fault (isa-debug-exit: value 1 -> (1 << 1) | 1).
pub const FATAL_EXIT_STATUS: u32 = 3;
/// Longest backtrace printed; the walk also stops at the first implausible frame.
pub const MAX_FRAMES: usize = 32;

/// What the interrupt entry stubs save, lowest address first.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Registers {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

pub const DOUBLE_FAULT: u64 = 8;
pub const PAGE_FAULT: u64 = 14;

pub fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide-error",
        1 => "debug",
        2 => "nmi",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound-range",
        6 => "invalid-opcode",
        7 => "device-not-available",
        8 => "double-fault",
        10 => "invalid-tss",
        11 => "segment-not-present",
        12 => "stack-segment-fault",
        13 => "general-protection",
        14 => "page-fault",
        16 => "x87-floating-point",
        17 => "alignment-check",
        18 => "machine-check",
        19 => "simd-floating-point",
        20 => "virtualization",
        21 => "control-protection",
        28 => "hypervisor-injection",
        29 => "vmm-communication",
        30 => "security",
        _ => "reserved",
    }
}

/// A stack the backtrace may read: `[bottom, top)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackRange {
    pub bottom: u64,
    pub top: u64,
}

impl StackRange {
    fn holds_frame(&self, rbp: u64) -> bool {
        rbp.is_multiple_of(8)
            && rbp >= self.bottom
            && rbp.checked_add(16).is_some_and(|end| end <= self.top)
    }
}

/// Walks the `rbp` chain: each frame holds the caller's `rbp` at `[rbp]` and the
/// return address at `[rbp + 8]`. Only addresses inside `stacks` are read, so a
/// corrupt chain ends the walk instead of faulting again.
pub fn backtrace(
    mut rbp: u64,
    stacks: &[StackRange],
    read: &dyn Fn(u64) -> u64,
    mut emit: impl FnMut(usize, u64),
) -> usize {
    let mut count = 0;
    while count < MAX_FRAMES && stacks.iter().any(|s| s.holds_frame(rbp)) {
        let return_address = read(rbp + 8);
        if return_address == 0 {
            break;
        }
        emit(count, return_address);
        count += 1;
        let caller = read(rbp);
        // Frames grow downward: a caller's frame is always above ours.
        if caller <= rbp {
            break;
        }
        rbp = caller;
    }
    count
}

/// Writes the register part of an exception report.
pub fn write_exception(
    w: &mut dyn Write,
    regs: &Registers,
    cr2: u64,
    guard_pages: &[u64],
) -> fmt::Result {
    writeln!(
        w,
        "FATAL exception={} vector={} error={:#018x}",
        exception_name(regs.vector),
        regs.vector,
        regs.error_code
    )?;
    // A double fault is most often a page fault that could not be delivered, so
    // CR2 (the address of the last page fault) is worth printing there too.
    if regs.vector == PAGE_FAULT || regs.vector == DOUBLE_FAULT {
        writeln!(w, "FATAL cr2={cr2:#018x}")?;
        if let Some(guard) = guard_pages.iter().find(|&&g| cr2 >= g && cr2 - g < 4096) {
            writeln!(w, "FATAL stack-overflow guard={guard:#018x}")?;
        }
    }
    write_context(w, regs)
}

/// The interrupted context: RIP, segment and flags, stack pointer, all registers.
pub fn write_context(w: &mut dyn Write, regs: &Registers) -> fmt::Result {
    writeln!(
        w,
        "FATAL rip={:#018x} cs={:#018x} rflags={:#018x} rsp={:#018x} ss={:#018x}",
        regs.rip, regs.cs, regs.rflags, regs.rsp, regs.ss
    )?;
    let rows: [[(&str, u64); 4]; 4] = [
        [
            ("rax", regs.rax),
            ("rbx", regs.rbx),
            ("rcx", regs.rcx),
            ("rdx", regs.rdx),
        ],
        [
            ("rsi", regs.rsi),
            ("rdi", regs.rdi),
            ("rbp", regs.rbp),
            ("r8", regs.r8),
        ],
        [
            ("r9", regs.r9),
            ("r10", regs.r10),
            ("r11", regs.r11),
            ("r12", regs.r12),
        ],
        [
            ("r13", regs.r13),
            ("r14", regs.r14),
            ("r15", regs.r15),
            ("", 0),
        ],
    ];
    for row in rows {
        w.write_str("FATAL")?;
        for (name, value) in row.iter().filter(|(name, _)| !name.is_empty()) {
            write!(w, " {name}={value:#018x}")?;
        }
        w.write_str("\n")?;
    }
    Ok(())
}

pub fn write_frame(w: &mut dyn Write, index: usize, address: u64) -> fmt::Result {
    writeln!(w, "FATAL backtrace {index} {address:#018x}")
}

pub fn write_end(w: &mut dyn Write) -> fmt::Result {
    writeln!(w, "FATAL end status={FATAL_EXIT_STATUS}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn registers_layout_matches_the_entry_stubs() {
        // 15 pushed registers, vector, error code, then the CPU's 5-word frame.
        assert_eq!(core::mem::size_of::<Registers>(), 22 * 8);
        assert_eq!(core::mem::offset_of!(Registers, rax), 14 * 8);
        assert_eq!(core::mem::offset_of!(Registers, vector), 15 * 8);
        assert_eq!(core::mem::offset_of!(Registers, rip), 17 * 8);
    }

    #[test]
    fn page_fault_report_has_every_field() {
        let regs = Registers {
            vector: 14,
            error_code: 2,
            rip: 0xffff_ffff_8000_1234,
            cs: 8,
            rflags: 0x10046,
            rsp: 0xffff_ff00_0001_0000,
            ss: 0x10,
            rax: 1,
            r15: 15,
            ..Registers::default()
        };
        let mut out = String::new();
        write_exception(&mut out, &regs, 0xffff_ffff_ffff_ff88, &[]).unwrap();
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(
            lines[0],
            "FATAL exception=page-fault vector=14 error=0x0000000000000002"
        );
        assert_eq!(lines[1], "FATAL cr2=0xffffffffffffff88");
        assert_eq!(
            lines[2],
            "FATAL rip=0xffffffff80001234 cs=0x0000000000000008 rflags=0x0000000000010046 \
             rsp=0xffffff0000010000 ss=0x0000000000000010"
        );
        assert!(lines[3].starts_with("FATAL rax=0x0000000000000001 rbx="));
        assert!(lines[6].ends_with("r15=0x000000000000000f"));
        for reg in [
            "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
        ] {
            assert!(out.contains(&format!(" {reg}=0x")), "{reg} missing");
        }
        assert!(!out.contains("stack-overflow"));
    }

    #[test]
    fn guard_page_hit_is_named_and_other_vectors_have_no_cr2() {
        let regs = Registers {
            vector: 14,
            ..Registers::default()
        };
        let mut out = String::new();
        write_exception(&mut out, &regs, 0x5008, &[0x1000, 0x5000]).unwrap();
        assert!(out.contains("FATAL stack-overflow guard=0x0000000000005000"));
        let mut out = String::new();
        write_exception(
            &mut out,
            &Registers {
                vector: 0,
                ..Registers::default()
            },
            7,
            &[],
        )
        .unwrap();
        assert!(out.starts_with("FATAL exception=divide-error vector=0 "));
        assert!(!out.contains("cr2="));
    }

    fn walk(memory: &HashMap<u64, u64>, rbp: u64, stacks: &[StackRange]) -> Vec<u64> {
        let mut frames = Vec::new();
        backtrace(
            rbp,
            stacks,
            &|a| memory.get(&a).copied().unwrap_or(0),
            |i, a| {
                assert_eq!(i, frames.len());
                frames.push(a)
            },
        );
        frames
    }

    #[test]
    fn backtrace_follows_the_chain_and_stops_at_zero() {
        let stack = [StackRange {
            bottom: 0x1000,
            top: 0x2000,
        }];
        let memory = HashMap::from([
            (0x1100, 0x1200),
            (0x1108, 0xaaa),
            (0x1200, 0x1300),
            (0x1208, 0xbbb),
            (0x1300, 0),
            (0x1308, 0),
        ]);
        assert_eq!(walk(&memory, 0x1100, &stack), vec![0xaaa, 0xbbb]);
    }

    #[test]
    fn backtrace_refuses_bad_frames() {
        let stack = [StackRange {
            bottom: 0x1000,
            top: 0x2000,
        }];
        // outside every stack, misaligned, or looping back down
        assert!(walk(&HashMap::new(), 0x9000, &stack).is_empty());
        assert!(walk(&HashMap::new(), 0x1101, &stack).is_empty());
        let loop_memory = HashMap::from([(0x1100, 0x1100), (0x1108, 0xaaa)]);
        assert_eq!(walk(&loop_memory, 0x1100, &stack), vec![0xaaa]);
        // top-of-stack frame whose return address slot would cross the end
        assert!(walk(&HashMap::from([(0x1ff8, 0xaaa)]), 0x1ff8, &stack).is_empty());
    }

    #[test]
    fn backtrace_is_bounded() {
        let stack = [StackRange {
            bottom: 0,
            top: 0x10_0000,
        }];
        let memory: HashMap<u64, u64> = (0..100u64)
            .flat_map(|i| [(i * 16 + 16, i * 16 + 32), (i * 16 + 24, 0x100 + i)])
            .collect();
        assert_eq!(walk(&memory, 16, &stack).len(), MAX_FRAMES);
    }
}
