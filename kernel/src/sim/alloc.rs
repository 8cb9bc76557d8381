//! A counting allocator for host tests: the system allocator, plus the bytes
//! each thread has allocated and not yet freed, so the simulator can hold the
//! heap of the code it runs to a baseline while other tests run in parallel
//! threads of the same binary.
//!
//! A block freed by another thread than the one that allocated it moves the
//! count of both; the simulator keeps everything it measures on one thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    // Const-initialised and without a destructor: usable from inside the allocator.
    static IN_USE: Cell<isize> = const { Cell::new(0) };
    /// Inside [`measured`]: allocations and frees also count in `MEASURED`.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static MEASURED: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with`: allocations during thread teardown are not counted.
    let _ = IN_USE.try_with(|c| c.set(c.get().wrapping_add(delta)));
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        let _ = MEASURED.try_with(|c| c.set(c.get().wrapping_add(delta)));
    }
}

/// Runs `f` with its allocations and frees counted in [`measured_in_use`]:
/// the simulator wraps every call into the guest, so the count is the
/// guest's heap (a block the guest allocates and something else frees would
/// show as a leak; nothing in the composition hands heap blocks out).
pub fn measured<R>(f: impl FnOnce() -> R) -> R {
    let outer = MEASURING.with(|m| m.replace(true));
    let r = f();
    MEASURING.with(|m| m.set(outer));
    r
}

/// Runs `f` outside the measurement (the simulator's own bookkeeping
/// inside a guest call, such as keeping its log lines).
pub fn unmeasured<R>(f: impl FnOnce() -> R) -> R {
    let outer = MEASURING.with(|m| m.replace(false));
    let r = f();
    MEASURING.with(|m| m.set(outer));
    r
}

/// Net bytes allocated inside [`measured`] on this thread.
pub fn measured_in_use() -> isize {
    MEASURED.try_with(Cell::get).unwrap_or(0)
}

/// Bytes this thread has allocated and not freed (negative when it freed
/// blocks another thread allocated).
pub fn in_use() -> isize {
    IN_USE.try_with(Cell::get).unwrap_or(0)
}

// SAFETY: every call is forwarded to `System` with the caller's arguments;
// the counter is a thread-local `Cell` that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; the block came from `System` through us.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the block came from `System` through us.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[cfg(test)]
mod tests {
    use super::in_use;

    #[test]
    fn counts_this_thread_only() {
        let before = in_use();
        let v = std::vec![0u8; 10_000];
        assert_eq!(in_use() - before, 10_000);
        let other = std::thread::spawn(|| {
            let before = in_use();
            let w = std::vec![1u8; 5_000];
            let grown = in_use() - before;
            drop(w);
            (grown, in_use() - before)
        })
        .join()
        .expect("thread");
        assert_eq!(other, (5_000, 0));
        // Spawning left some bookkeeping of its own on this thread.
        let after_spawn = in_use();
        drop(v);
        assert_eq!(after_spawn - in_use(), 10_000);
    }

    #[test]
    fn measures_only_inside_the_region() {
        let before = super::measured_in_use();
        let outside = std::vec![0u8; 300];
        let inside = super::measured(|| std::vec![0u8; 1000]);
        assert_eq!(super::measured_in_use() - before, 1000);
        super::measured(|| drop(inside));
        drop(outside);
        assert_eq!(super::measured_in_use() - before, 0);
    }
}
