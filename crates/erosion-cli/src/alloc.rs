//! The allocator of the `erosion` binary, and the process's peak memory (the benchmark includes
//! this file, so it measures what users run).
//!
//! candle allocates a fresh buffer for every op; glibc's allocator hands large ones back to the
//! kernel each time, and zeroing the pages again cost a third of a CPU training step. mimalloc
//! reuses them, and with [`keep_freed_pages`] never hands them back.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` (`mi_option_purge_delay` in mimalloc.h; libmimalloc-sys names no
/// constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed pages instead of purging them after a delay: tensors of the same sizes are freed
/// and allocated again every layer, and faulting in and zeroing purged pages cost about 10% of a
/// forward pass. The price: resident memory stays at its peak until the process ends.
pub fn keep_freed_pages() {
    // SAFETY: sets one allocator option; mimalloc allows that at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Peak resident set size of this process in MiB, from `VmHWM` in /proc/self/status: the
/// high-water mark of this program's own memory (a fresh one at exec, unlike a parent's
/// `ru_maxrss` of its child, which includes the parent's own peak when the child was spawned
/// with a shared address space).
pub fn peak_rss_mb() -> anyhow::Result<f64> {
    use anyhow::Context;
    let status = std::fs::read_to_string("/proc/self/status")
        .context("reading /proc/self/status (peak memory is measured on Linux only)")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("/proc/self/status has no VmHWM line")?;
    let kb: f64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM line has no value")?
        .parse()
        .with_context(|| format!("VmHWM value in `{line}`"))?;
    Ok(kb / 1024.0)
}
