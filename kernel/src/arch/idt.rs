//! The IDT and its entry stubs.
//!
//! Stable Rust has no `x86-interrupt` ABI, so each vector gets a
//! `#[unsafe(naked)]` stub that pushes a dummy error code where the CPU pushes
//! none, then its vector, and jumps to `isr_common`, which saves every
//! general register into a [`Registers`] frame and calls `dispatch`.

use super::{fault, gdt, lapic};
use crate::diag::Registers;
use core::arch::naked_asm;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;
use x86_64::VirtAddr;
use x86_64::structures::idt::InterruptDescriptorTable;

pub const TIMER_VECTOR: u8 = 32;
/// Vectors for device interrupts routed through the IOAPICs.
pub const DEVICE_VECTOR_BASE: u8 = 33;
pub const DEVICE_VECTORS: u8 = 31;
pub const SPURIOUS_VECTOR: u8 = 255;

/// Handlers for device vectors, registered once by drivers. They run in
/// interrupt context: acknowledge the device, record that work is pending, return.
static DEVICE_HANDLERS: [Once<fn()>; DEVICE_VECTORS as usize] =
    [const { Once::new() }; DEVICE_VECTORS as usize];

/// Registers `handler` for device vector number `index` (0-based); returns the
/// CPU vector to route the device's interrupt line to, or None if `index` is out
/// of range or already taken.
pub fn set_device_handler(index: u8, handler: fn()) -> Option<u8> {
    let slot = DEVICE_HANDLERS.get(usize::from(index))?;
    if slot.get().is_some() {
        return None;
    }
    slot.call_once(|| handler);
    Some(DEVICE_VECTOR_BASE + index)
}

/// Interrupts on vectors nobody claimed.
pub static UNEXPECTED_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// Saves the interrupted context in [`Registers`] order, calls `dispatch`,
/// restores and returns. The CPU aligns RSP to 16 before pushing its 5-word
/// frame; with the error code, vector and 15 registers (22 words) the call
/// below is made with RSP 16-byte aligned, as the ABI requires.
#[unsafe(naked)]
unsafe extern "C" fn isr_common() {
    naked_asm!(
        "push rax",
        "push rbx",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push rbp",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov rdi, rsp",
        "cld",
        "call {dispatch}",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rbp",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rbx",
        "pop rax",
        "add rsp, 16",
        "iretq",
        dispatch = sym dispatch,
    )
}

macro_rules! stub {
    ($name:ident, $vector:expr) => {
        #[unsafe(naked)]
        unsafe extern "C" fn $name() {
            naked_asm!("push 0", "push {v}", "jmp {common}", v = const $vector, common = sym isr_common)
        }
    };
    ($name:ident, $vector:expr, error_code) => {
        #[unsafe(naked)]
        unsafe extern "C" fn $name() {
            naked_asm!("push {v}", "jmp {common}", v = const $vector, common = sym isr_common)
        }
    };
}

stub!(vec0, 0);
stub!(vec1, 1);
stub!(vec2, 2);
stub!(vec3, 3);
stub!(vec4, 4);
stub!(vec5, 5);
stub!(vec6, 6);
stub!(vec7, 7);
stub!(vec8, 8, error_code);
stub!(vec10, 10, error_code);
stub!(vec11, 11, error_code);
stub!(vec12, 12, error_code);
stub!(vec13, 13, error_code);
stub!(vec14, 14, error_code);
stub!(vec16, 16);
stub!(vec17, 17, error_code);
stub!(vec18, 18);
stub!(vec19, 19);
stub!(vec20, 20);
stub!(vec21, 21, error_code);
stub!(vec28, 28);
stub!(vec29, 29, error_code);
stub!(vec30, 30, error_code);
stub!(vec_timer, TIMER_VECTOR);
stub!(vec_spurious, SPURIOUS_VECTOR);

macro_rules! device_stubs {
    ($($name:ident = $offset:expr),* $(,)?) => {
        $(stub!($name, DEVICE_VECTOR_BASE + $offset);)*
        const DEVICE_STUBS: [unsafe extern "C" fn(); DEVICE_VECTORS as usize] = [$($name),*];
    };
}

device_stubs!(
    dev0 = 0,
    dev1 = 1,
    dev2 = 2,
    dev3 = 3,
    dev4 = 4,
    dev5 = 5,
    dev6 = 6,
    dev7 = 7,
    dev8 = 8,
    dev9 = 9,
    dev10 = 10,
    dev11 = 11,
    dev12 = 12,
    dev13 = 13,
    dev14 = 14,
    dev15 = 15,
    dev16 = 16,
    dev17 = 17,
    dev18 = 18,
    dev19 = 19,
    dev20 = 20,
    dev21 = 21,
    dev22 = 22,
    dev23 = 23,
    dev24 = 24,
    dev25 = 25,
    dev26 = 26,
    dev27 = 27,
    dev28 = 28,
    dev29 = 29,
    dev30 = 30,
);

/// Called by `isr_common` with the saved frame, interrupts disabled.
extern "C" fn dispatch(regs: &mut Registers) {
    match regs.vector {
        0..=31 => fault::exception(regs),
        v if v == u64::from(TIMER_VECTOR) => {
            super::clock::on_timer_interrupt(regs);
            lapic::eoi();
        }
        // The LAPIC does not expect an EOI for spurious interrupts.
        v if v == u64::from(SPURIOUS_VECTOR) => {}
        v => {
            let handler = v
                .checked_sub(u64::from(DEVICE_VECTOR_BASE))
                .and_then(|i| DEVICE_HANDLERS.get(i as usize))
                .and_then(Once::get);
            match handler {
                Some(handler) => handler(),
                None => {
                    UNEXPECTED_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
                }
            }
            lapic::eoi();
        }
    }
}

static IDT: Once<InterruptDescriptorTable> = Once::new();

fn addr(f: unsafe extern "C" fn()) -> VirtAddr {
    VirtAddr::new(f as usize as u64)
}

pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        // SAFETY: every address below is a naked stub above that follows the
        // interrupt entry protocol for its vector (error code pushed by the CPU
        // exactly for 8, 10-14, 17, 21, 29, 30) and ends in iretq or never
        // returns; IST indices refer to stacks installed by gdt::init.
        unsafe {
            idt.divide_error.set_handler_addr(addr(vec0));
            idt.debug.set_handler_addr(addr(vec1));
            idt.non_maskable_interrupt
                .set_handler_addr(addr(vec2))
                .set_stack_index(gdt::NMI_IST);
            idt.breakpoint.set_handler_addr(addr(vec3));
            idt.overflow.set_handler_addr(addr(vec4));
            idt.bound_range_exceeded.set_handler_addr(addr(vec5));
            idt.invalid_opcode.set_handler_addr(addr(vec6));
            idt.device_not_available.set_handler_addr(addr(vec7));
            idt.double_fault
                .set_handler_addr(addr(vec8))
                .set_stack_index(gdt::DOUBLE_FAULT_IST);
            idt.invalid_tss.set_handler_addr(addr(vec10));
            idt.segment_not_present.set_handler_addr(addr(vec11));
            idt.stack_segment_fault.set_handler_addr(addr(vec12));
            idt.general_protection_fault.set_handler_addr(addr(vec13));
            idt.page_fault
                .set_handler_addr(addr(vec14))
                .set_stack_index(gdt::PAGE_FAULT_IST);
            idt.x87_floating_point.set_handler_addr(addr(vec16));
            idt.alignment_check.set_handler_addr(addr(vec17));
            idt.machine_check.set_handler_addr(addr(vec18));
            idt.simd_floating_point.set_handler_addr(addr(vec19));
            idt.virtualization.set_handler_addr(addr(vec20));
            idt.cp_protection_exception.set_handler_addr(addr(vec21));
            idt.hv_injection_exception.set_handler_addr(addr(vec28));
            idt.vmm_communication_exception
                .set_handler_addr(addr(vec29));
            idt.security_exception.set_handler_addr(addr(vec30));
            idt[TIMER_VECTOR].set_handler_addr(addr(vec_timer));
            for (i, stub) in DEVICE_STUBS.iter().enumerate() {
                idt[DEVICE_VECTOR_BASE + i as u8].set_handler_addr(addr(*stub));
            }
            idt[SPURIOUS_VECTOR].set_handler_addr(addr(vec_spurious));
        }
        idt
    });
    idt.load();
}
