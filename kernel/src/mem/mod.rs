//! Memory: physical frames, the kernel's page tables, and the heap.
pub mod frames;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod paging;
