//! Memory: physical frames, the kernel's page tables, the heap, and what the
//! loader handed over in memory (site bundle, command line).
pub mod frames;
pub mod handover;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod paging;
