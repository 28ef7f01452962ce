//! A counting global allocator for the fuzz targets: the bytes live now and the peak since the
//! last [`reset_peak`], over every thread of the process. A fuzz test binary installs it:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: erosion_testkit::fuzz::Counting = erosion_testkit::fuzz::Counting;
//! ```
//!
//! Allocation sizes are what the program asked for (not the allocator's rounding, nor RSS), so
//! the numbers are the same on every machine. An allocation that would take the live bytes past
//! [`set_ceiling`] fails (the process aborts with Rust's "memory allocation failed" message)
//! instead of taking the machine down: a runaway case ends the run, loudly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static CEILING: AtomicUsize = AtomicUsize::new(usize::MAX);

/// `System`, counting.
pub struct Counting;

impl Counting {
    fn add(size: usize) -> bool {
        let now = CURRENT.fetch_add(size, Relaxed) + size;
        if now > CEILING.load(Relaxed) {
            CURRENT.fetch_sub(size, Relaxed);
            return false;
        }
        PEAK.fetch_max(now, Relaxed);
        true
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated around it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::add(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::add(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !Self::add(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        match (p.is_null(), new_size > old) {
            (true, true) => {
                CURRENT.fetch_sub(new_size - old, Relaxed);
            }
            (false, false) => {
                CURRENT.fetch_sub(old - new_size, Relaxed);
            }
            _ => {}
        }
        p
    }
}

/// Bytes allocated and not yet freed.
pub fn current() -> usize {
    CURRENT.load(Relaxed)
}

/// The most bytes live at once since the last [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Relaxed)
}

/// Starts a new peak at the bytes live now.
pub fn reset_peak() {
    PEAK.store(CURRENT.load(Relaxed), Relaxed);
}

/// Live bytes past which allocations fail (`usize::MAX`: none).
pub fn set_ceiling(bytes: usize) {
    CEILING.store(bytes, Relaxed);
}

/// Whether [`Counting`] is the process's allocator: a fresh allocation moves the count.
pub fn installed() -> bool {
    let before = current();
    let probe = std::hint::black_box(vec![0u8; 1 << 16]);
    let moved = current() >= before + (1 << 16);
    drop(probe);
    moved
}
