//! The kernel's fatal dump: every line starts with `FATAL `, the last is
//! `FATAL end status=N`. [`parse`] reads the first dump in a serial log and
//! checks its shape (every field present, hex values written as `0x` plus 16
//! digits); [`FatalDump::problems`] then checks that the values are plausible.

use std::collections::BTreeMap;
use std::ops::Range;

/// Lowest address of the kernel's link range (the top 2 GiB).
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
/// Most frames a backtrace may print.
pub const MAX_BACKTRACE: usize = 32;
/// Size of the stack guard page.
pub const GUARD_PAGE_SIZE: u64 = 4096;

/// Exception names as the kernel prints them, by vector.
pub const EXCEPTIONS: &[(u8, &str)] = &[
    (0, "divide-error"),
    (1, "debug"),
    (2, "nmi"),
    (3, "breakpoint"),
    (4, "overflow"),
    (5, "bound-range"),
    (6, "invalid-opcode"),
    (7, "device-not-available"),
    (8, "double-fault"),
    (10, "invalid-tss"),
    (11, "segment-not-present"),
    (12, "stack-segment-fault"),
    (13, "general-protection"),
    (14, "page-fault"),
    (16, "x87-floating-point"),
    (17, "alignment-check"),
    (18, "machine-check"),
    (19, "simd-floating-point"),
    (20, "virtualization"),
    (21, "control-protection"),
    (28, "hypervisor-injection"),
    (29, "vmm-communication"),
    (30, "security"),
];

/// The general registers, in the order the kernel prints them.
pub const GENERAL_REGISTERS: [&str; 15] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
    "r15",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    pub name: String,
    pub vector: u8,
    pub error: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanicLocation {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// The interrupted context: `rip=.. cs=.. rflags=.. rsp=.. ss=..`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// One parsed dump. A CPU exception has `exception`, `frame` and the
/// registers; a panic has `panic` and only the backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatalDump {
    pub exception: Option<Exception>,
    pub panic: Option<PanicLocation>,
    pub cr2: Option<u64>,
    pub frame: Option<Frame>,
    pub registers: BTreeMap<String, u64>,
    pub stack_overflow_guard: Option<u64>,
    pub backtrace: Vec<u64>,
    pub end_status: i32,
    /// `FATAL` lines the contract does not name (kept, not rejected).
    pub extra: Vec<String>,
    /// The dump's lines as printed, `FATAL ` included.
    pub text: String,
}

/// Parse a value written as `0x` and exactly 16 hex digits.
pub fn hex16(value: &str) -> Result<u64, String> {
    let digits = value
        .strip_prefix("0x")
        .ok_or_else(|| format!("{value:?} does not start with 0x"))?;
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{value:?} is not 0x followed by 16 hex digits"));
    }
    u64::from_str_radix(digits, 16).map_err(|e| format!("{value:?}: {e}"))
}

/// `key=value` tokens of one line, in order; an error names a token without `=`
/// or a repeated key.
fn fields(line: &str) -> Result<BTreeMap<&str, &str>, String> {
    let mut map = BTreeMap::new();
    for token in line.split_whitespace() {
        let (key, value) = token
            .split_once('=')
            .ok_or_else(|| format!("token {token:?} in {line:?} is not key=value"))?;
        if map.insert(key, value).is_some() {
            return Err(format!("key {key:?} repeated in {line:?}"));
        }
    }
    Ok(map)
}

fn take_hex(map: &mut BTreeMap<&str, &str>, key: &str, line: &str) -> Result<u64, String> {
    let value = map
        .remove(key)
        .ok_or_else(|| format!("{key}= missing from {line:?}"))?;
    hex16(value).map_err(|e| format!("{key}: {e}"))
}

fn no_leftovers(map: &BTreeMap<&str, &str>, line: &str) -> Result<(), String> {
    match map.keys().next() {
        Some(key) => Err(format!("unexpected field {key:?} in {line:?}")),
        None => Ok(()),
    }
}

/// `<file>:<line>:<col>: <message>`
fn parse_panic(rest: &str) -> Result<PanicLocation, String> {
    let bad = || format!("panic line {rest:?} is not `<file>:<line>:<col>: <message>`");
    let (location, message) = rest.split_once(": ").ok_or_else(bad)?;
    let mut parts = location.rsplitn(3, ':');
    let column = parts.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    let line = parts.next().and_then(|l| l.parse().ok()).ok_or_else(bad)?;
    let file = parts.next().filter(|f| !f.is_empty()).ok_or_else(bad)?;
    Ok(PanicLocation {
        file: file.to_string(),
        line,
        column,
        message: message.to_string(),
    })
}

/// Read the first complete dump (up to and including `FATAL end`) from a serial log.
pub fn parse(serial: &str) -> Result<FatalDump, String> {
    let mut dump = FatalDump {
        exception: None,
        panic: None,
        cr2: None,
        frame: None,
        registers: BTreeMap::new(),
        stack_overflow_guard: None,
        backtrace: Vec::new(),
        end_status: -1,
        extra: Vec::new(),
        text: String::new(),
    };
    let mut ended = false;
    for raw in serial.lines() {
        let line = raw.trim_end_matches(['\r', ' ']);
        let Some(rest) = line.strip_prefix("FATAL ") else {
            continue;
        };
        let first = dump.text.is_empty();
        dump.text.push_str(line);
        dump.text.push('\n');
        if first && !rest.starts_with("exception=") && !rest.starts_with("panic at ") {
            return Err(format!(
                "dump starts with {line:?}, not `FATAL exception=` or `FATAL panic at`"
            ));
        }
        if let Some(location) = rest.strip_prefix("panic at ") {
            if dump.panic.is_some() || dump.exception.is_some() {
                return Err(format!("second header line {line:?}"));
            }
            dump.panic = Some(parse_panic(location)?);
        } else if let Some(frame) = rest.strip_prefix("backtrace ") {
            let mut parts = frame.split_whitespace();
            let index: usize = parts
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("backtrace line {line:?} has no frame number"))?;
            let addr = hex16(parts.next().unwrap_or(""))
                .map_err(|e| format!("backtrace line {line:?}: {e}"))?;
            if parts.next().is_some() {
                return Err(format!("backtrace line {line:?} has trailing text"));
            }
            if index != dump.backtrace.len() {
                return Err(format!(
                    "backtrace frame {index} where {} was expected",
                    dump.backtrace.len()
                ));
            }
            dump.backtrace.push(addr);
        } else if let Some(status) = rest.strip_prefix("end status=") {
            dump.end_status = status
                .parse()
                .map_err(|_| format!("end line {line:?} has no integer status"))?;
            ended = true;
            break;
        } else if rest.starts_with("exception=") {
            if dump.panic.is_some() || dump.exception.is_some() {
                return Err(format!("second header line {line:?}"));
            }
            let mut map = fields(rest)?;
            let name = map.remove("exception").unwrap_or_default().to_string();
            let vector = map
                .remove("vector")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("vector= missing or not a number in {line:?}"))?;
            let error = take_hex(&mut map, "error", line)?;
            no_leftovers(&map, line)?;
            dump.exception = Some(Exception {
                name,
                vector,
                error,
            });
        } else if rest.starts_with("cr2=") {
            let mut map = fields(rest)?;
            dump.cr2 = Some(take_hex(&mut map, "cr2", line)?);
            no_leftovers(&map, line)?;
        } else if rest.starts_with("rip=") {
            let mut map = fields(rest)?;
            dump.frame = Some(Frame {
                rip: take_hex(&mut map, "rip", line)?,
                cs: take_hex(&mut map, "cs", line)?,
                rflags: take_hex(&mut map, "rflags", line)?,
                rsp: take_hex(&mut map, "rsp", line)?,
                ss: take_hex(&mut map, "ss", line)?,
            });
            no_leftovers(&map, line)?;
        } else if let Some(guard) = rest.strip_prefix("stack-overflow ") {
            let mut map = fields(guard)?;
            dump.stack_overflow_guard = Some(take_hex(&mut map, "guard", line)?);
            no_leftovers(&map, line)?;
        } else if rest.split_whitespace().all(|t| {
            t.split_once('=')
                .is_some_and(|(k, _)| GENERAL_REGISTERS.contains(&k))
        }) {
            let mut map = fields(rest)?;
            for reg in GENERAL_REGISTERS {
                if map.contains_key(reg) {
                    let value = take_hex(&mut map, reg, line)?;
                    if dump.registers.insert(reg.to_string(), value).is_some() {
                        return Err(format!("register {reg} printed twice"));
                    }
                }
            }
        } else {
            dump.extra.push(line.to_string());
        }
    }
    if dump.text.is_empty() {
        return Err("no FATAL lines in the serial log".to_string());
    }
    if !ended {
        return Err("the dump has no `FATAL end status=N` line".to_string());
    }
    if let Some(exception) = &dump.exception {
        if dump.frame.is_none() {
            return Err("exception dump has no `rip= cs= rflags= rsp= ss=` line".to_string());
        }
        let missing: Vec<_> = GENERAL_REGISTERS
            .iter()
            .filter(|r| !dump.registers.contains_key(**r))
            .collect();
        if !missing.is_empty() {
            return Err(format!("exception dump lacks registers {missing:?}"));
        }
        if exception.vector == 14 && dump.cr2.is_none() {
            return Err("page-fault dump has no cr2= line".to_string());
        }
    }
    if dump.backtrace.is_empty() || dump.backtrace.len() > MAX_BACKTRACE {
        return Err(format!(
            "backtrace has {} frames, expected 1..={MAX_BACKTRACE}",
            dump.backtrace.len()
        ));
    }
    Ok(dump)
}

/// Whether `addr` lies in one of `ranges`.
pub fn in_ranges(ranges: &[Range<u64>], addr: u64) -> bool {
    ranges.iter().any(|r| r.contains(&addr))
}

impl FatalDump {
    /// Everything implausible about the values, given the kernel's executable
    /// ranges. Empty when the dump looks right.
    pub fn problems(&self, text: &[Range<u64>]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut in_kernel = |what: String, addr: u64| {
            if addr < KERNEL_BASE || !in_ranges(text, addr) {
                problems.push(format!(
                    "{what} 0x{addr:016x} is outside the kernel's code {text:x?}"
                ));
            }
        };
        if let Some(frame) = &self.frame {
            in_kernel("rip".to_string(), frame.rip);
        }
        for (i, &ret) in self.backtrace.iter().enumerate() {
            // A return address follows its call; the call itself is at ret - 1.
            in_kernel(format!("backtrace {i} (minus 1)"), ret.wrapping_sub(1));
        }
        if let Some(exception) = &self.exception {
            match EXCEPTIONS.iter().find(|(v, _)| *v == exception.vector) {
                Some((_, name)) if *name == exception.name => {}
                Some((_, name)) => problems.push(format!(
                    "vector {} is {name}, the dump says {:?}",
                    exception.vector, exception.name
                )),
                None => problems.push(format!("vector {} is reserved", exception.vector)),
            }
            if exception.error >> 32 != 0 {
                problems.push(format!(
                    "error code 0x{:x} is wider than 32 bits",
                    exception.error
                ));
            }
        }
        if let Some(frame) = &self.frame {
            if frame.cs == 0 || frame.cs & 3 != 0 {
                problems.push(format!("cs=0x{:x} is not a ring-0 code selector", frame.cs));
            }
            if frame.ss & 3 != 0 {
                problems.push(format!("ss=0x{:x} is not a ring-0 selector", frame.ss));
            }
            if frame.rflags & 2 == 0 || frame.rflags >> 22 != 0 {
                problems.push(format!(
                    "rflags=0x{:x}: bit 1 must be set and bits 22..64 clear",
                    frame.rflags
                ));
            }
            if frame.rsp == 0 || frame.rsp % 8 != 0 {
                problems.push(format!(
                    "rsp=0x{:x} is not an 8-byte aligned stack",
                    frame.rsp
                ));
            }
        }
        if self.panic.is_some() && self.exception.is_some() {
            problems.push("dump has both a panic and an exception header".to_string());
        }
        if self.panic.is_none() && self.exception.is_none() {
            problems.push("dump has neither a panic nor an exception header".to_string());
        }
        if let (Some(guard), Some(cr2)) = (self.stack_overflow_guard, self.cr2) {
            if guard % GUARD_PAGE_SIZE != 0 {
                problems.push(format!("guard=0x{guard:x} is not page aligned"));
            }
            if !(guard..guard.saturating_add(GUARD_PAGE_SIZE)).contains(&cr2) {
                problems.push(format!(
                    "cr2=0x{cr2:x} is not in the guard page at 0x{guard:x}"
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE_FAULT: &str = "\
unikernel v0.1.0 booted: 120 MiB usable memory
kernel: init complete
FATAL exception=page-fault vector=14 error=0x0000000000000000
FATAL cr2=0xffffffffffffff88
FATAL rip=0xffffffff80012345 cs=0x0000000000000008 rflags=0x0000000000010046 rsp=0xffffff0000010f28 ss=0x0000000000000010
FATAL rax=0x0000000000000001 rbx=0x0000000000000002 rcx=0x0000000000000003 rdx=0x0000000000000004
FATAL rsi=0x0000000000000005 rdi=0x0000000000000006 rbp=0xffffff0000010f60 r8=0x0000000000000008
FATAL r9=0x0000000000000009 r10=0x000000000000000a r11=0x000000000000000b r12=0x000000000000000c
FATAL r13=0x000000000000000d r14=0x000000000000000e r15=0x000000000000000f
FATAL backtrace 0 0xffffffff80012400
FATAL backtrace 1 0xffffffff80013000
FATAL end status=3
FATAL exception=divide-error vector=0 error=0x0000000000000000
";

    /// Two code segments, as a kernel with a separate init section might have.
    const TEXT: &[Range<u64>] = &[
        0xffff_ffff_8000_1000..0xffff_ffff_8001_8000,
        0xffff_ffff_8001_8000..0xffff_ffff_8002_0000,
    ];

    #[test]
    fn parses_a_page_fault_dump() {
        let dump = parse(PAGE_FAULT).unwrap();
        let exception = dump.exception.as_ref().unwrap();
        assert_eq!(exception.name, "page-fault");
        assert_eq!(exception.vector, 14);
        assert_eq!(exception.error, 0);
        assert_eq!(dump.cr2, Some(0xffff_ffff_ffff_ff88));
        let frame = dump.frame.unwrap();
        assert_eq!(frame.rip, 0xffff_ffff_8001_2345);
        assert_eq!(frame.cs, 8);
        assert_eq!(frame.rflags, 0x10046);
        assert_eq!(dump.registers.len(), 15);
        assert_eq!(dump.registers["r10"], 10);
        assert_eq!(
            dump.backtrace,
            [0xffff_ffff_8001_2400, 0xffff_ffff_8001_3000]
        );
        assert_eq!(dump.end_status, 3);
        assert!(dump.extra.is_empty());
        assert_eq!(dump.text.lines().count(), 10, "only the first dump is read");
        assert_eq!(dump.problems(TEXT), Vec::<String>::new());
    }

    #[test]
    fn parses_a_panic_dump() {
        let text = "FATAL panic at src/fault_inject.rs:42:5: injected panic: a: b\r\n\
                    FATAL backtrace 0 0xffffffff80001234\r\n\
                    FATAL end status=3\r\n";
        let dump = parse(text).unwrap();
        let panic = dump.panic.as_ref().unwrap();
        assert_eq!(panic.file, "src/fault_inject.rs");
        assert_eq!((panic.line, panic.column), (42, 5));
        assert_eq!(panic.message, "injected panic: a: b");
        assert!(dump.frame.is_none());
        assert_eq!(dump.problems(TEXT), Vec::<String>::new());
    }

    #[test]
    fn rejects_missing_and_malformed_fields() {
        let without = |needle: &str| -> String {
            PAGE_FAULT
                .lines()
                .filter(|l| !l.contains(needle))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        assert!(parse(&without("cr2=")).unwrap_err().contains("cr2"));
        assert!(parse(&without("r13=")).unwrap_err().contains("r13"));
        assert!(parse(&without("rip=")).unwrap_err().contains("rip"));
        assert!(
            parse(&without("backtrace"))
                .unwrap_err()
                .contains("backtrace")
        );
        assert!(parse(&without("end status")).is_err());
        let unfinished = "FATAL panic at a.rs:1:1: x\nFATAL backtrace 0 0xffffffff80001234\n";
        assert!(parse(unfinished).unwrap_err().contains("end status"));
        assert!(parse("nothing here\n").is_err());
        let short = PAGE_FAULT.replace("rax=0x0000000000000001", "rax=0x1");
        assert!(parse(&short).unwrap_err().contains("16 hex digits"));
        let gap = PAGE_FAULT.replace("backtrace 1 ", "backtrace 2 ");
        assert!(parse(&gap).unwrap_err().contains("frame 2"));
        let no_error = PAGE_FAULT.replace(" error=0x0000000000000000", "");
        assert!(parse(&no_error).unwrap_err().contains("error="));
    }

    #[test]
    fn flags_implausible_values() {
        let bad = PAGE_FAULT
            .replace("vector=14", "vector=13")
            .replace("rip=0xffffffff80012345", "rip=0x0000000000012345")
            .replace(
                "backtrace 1 0xffffffff80013000",
                "backtrace 1 0xffffffff90000000",
            )
            .replace("rflags=0x0000000000010046", "rflags=0x0000000000010044")
            .replace("cs=0x0000000000000008", "cs=0x000000000000000b");
        let problems = parse(&bad).unwrap().problems(TEXT);
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn checks_the_guard_page() {
        let overflow = PAGE_FAULT
            .replace("cr2=0xffffffffffffff88", "cr2=0xffffff0000000ff8")
            .replace(
                "FATAL backtrace 0",
                "FATAL stack-overflow guard=0xffffff0000000000\nFATAL backtrace 0",
            );
        let dump = parse(&overflow).unwrap();
        assert_eq!(dump.stack_overflow_guard, Some(0xffff_ff00_0000_0000));
        assert!(dump.problems(TEXT).is_empty());
        let outside = overflow.replace("guard=0xffffff0000000000", "guard=0xffffff0000002000");
        let problems = parse(&outside).unwrap().problems(TEXT);
        assert_eq!(problems.len(), 1, "{problems:#?}");
    }
}
