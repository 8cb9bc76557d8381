//! Injected fatal faults: each must print the full dump with
//! plausible values, symbolize to the function that injected it, and end QEMU
//! promptly: with status FAULT_EXIT_STATUS through isa-debug-exit within 2 s
//! of `FATAL end`, and without that device (a bare QEMU) through a reset
//! that `-no-reboot` turns into an exit.

use tests_qemu::dump::GUARD_PAGE_SIZE;
use tests_qemu::{FaultRun, note, run_fault};

/// The address the page-fault injection reads through (`0 - 120`).
const BAD_POINTER: u64 = 0xffff_ffff_ffff_ff88;
/// Page-fault error code bits: write access, user mode.
const PF_WRITE: u64 = 1 << 1;
const PF_USER: u64 = 1 << 2;

fn bad(run: &FaultRun, message: impl std::fmt::Display) -> ! {
    panic!(
        "{message}\n--- symbolized ---\n{}--- serial ({:?}) ---\n{}--- end serial ---",
        run.symbols_text(),
        run.accel,
        run.serial
    )
}

/// The symbolized RIP must lie in `function` itself (the outermost frame).
fn rip_is(run: &FaultRun, function: &str) {
    match run.rip() {
        Some(rip) if rip.is_in(function) => {}
        Some(rip) => bad(
            run,
            format_args!(
                "rip 0x{:x} symbolizes to {:?}, not {function}",
                rip.addr, rip.frames
            ),
        ),
        None => bad(run, "the dump has no rip to symbolize"),
    }
}

fn exception_name(run: &FaultRun) -> &str {
    match &run.dump.exception {
        Some(e) => &e.name,
        None => bad(run, "expected a CPU exception dump"),
    }
}

fn check_page_fault(test: &str, run: &FaultRun) {
    let name = exception_name(run);
    if name != "page-fault" {
        bad(run, format_args!("exception={name}, expected page-fault"));
    }
    if run.dump.cr2 != Some(BAD_POINTER) {
        bad(
            run,
            format_args!("cr2={:x?}, expected 0x{BAD_POINTER:016x}", run.dump.cr2),
        );
    }
    let error = run.dump.exception.as_ref().map_or(0, |e| e.error);
    if error & (PF_WRITE | PF_USER) != 0 {
        bad(
            run,
            format_args!("error=0x{error:x}: expected a supervisor-mode read"),
        );
    }
    rip_is(run, "fault_inject::page_fault");
    note(
        test,
        format_args!("rip -> {:?}", run.rip().map(|r| &r.frames)),
    );
}

fn check_divide(test: &str, run: &FaultRun) {
    let name = exception_name(run);
    if name != "divide-error" {
        bad(run, format_args!("exception={name}, expected divide-error"));
    }
    rip_is(run, "fault_inject::divide");
    note(
        test,
        format_args!("rip -> {:?}", run.rip().map(|r| &r.frames)),
    );
}

fn check_panic(test: &str, run: &FaultRun) {
    let Some(panic) = &run.dump.panic else {
        bad(
            run,
            "expected `FATAL panic at <file>:<line>:<col>: <message>`",
        )
    };
    if !panic.file.contains("fault_inject") || panic.line == 0 {
        bad(
            run,
            format_args!(
                "panic location {}:{}:{} is not in fault_inject",
                panic.file, panic.line, panic.column
            ),
        );
    }
    if !run.backtrace().any(|f| f.is_in("fault_inject::panic")) {
        bad(run, "no backtrace frame symbolizes to fault_inject::panic");
    }
    note(
        test,
        format_args!(
            "panic at {}:{}:{}: {}",
            panic.file, panic.line, panic.column, panic.message
        ),
    );
}

fn check_stack_overflow(test: &str, run: &FaultRun) {
    let name = exception_name(run);
    match name {
        "page-fault" => {
            let (Some(guard), Some(cr2)) = (run.dump.stack_overflow_guard, run.dump.cr2) else {
                bad(
                    run,
                    "a stack overflow page fault needs `FATAL stack-overflow guard=0x...` and cr2",
                )
            };
            // `problems()` already checked that cr2 lies in the guard page.
            note(
                test,
                format_args!(
                    "cr2=0x{cr2:x} in guard page 0x{guard:x}..0x{:x}",
                    guard + GUARD_PAGE_SIZE
                ),
            );
        }
        "double-fault" => note(test, format_args!("reported as a double fault")),
        other => bad(
            run,
            format_args!("exception={other}, expected page-fault or double-fault"),
        ),
    }
    let recurse = "fault_inject::recurse";
    let in_rip = run.rip().is_some_and(|r| r.is_in(recurse));
    let in_backtrace = run.backtrace().any(|f| f.is_in(recurse));
    if !in_rip && !in_backtrace {
        bad(
            run,
            format_args!("neither rip nor the backtrace symbolizes to {recurse}"),
        );
    }
    note(
        test,
        format_args!(
            "rip in {recurse}: {in_rip}; backtrace frames: {}",
            run.dump.backtrace.len()
        ),
    );
}

macro_rules! fault_tests {
    ($($with:ident, $without:ident: $fault:literal => $check:ident;)*) => {$(
        #[test]
        fn $with() {
            let test = stringify!($with);
            let run = run_fault(test, $fault, true);
            $check(test, &run);
        }

        #[test]
        fn $without() {
            let test = stringify!($without);
            let run = run_fault(test, $fault, false);
            $check(test, &run);
        }
    )*};
}

fault_tests! {
    page_fault_dumps_and_exits, page_fault_without_debug_exit_ends_qemu:
        "pagefault" => check_page_fault;
    divide_error_dumps_and_exits, divide_error_without_debug_exit_ends_qemu:
        "divide" => check_divide;
    panic_dumps_and_exits, panic_without_debug_exit_ends_qemu:
        "panic" => check_panic;
    stack_overflow_dumps_and_exits, stack_overflow_without_debug_exit_ends_qemu:
        "stack-overflow" => check_stack_overflow;
}
