//! The process's memory allocator, chosen when the node is built, by a cargo
//! feature of `vc-signaling`:
//!
//! - `jemalloc`: jemalloc (`tikv-jemallocator`) with its background threads on,
//!   which purge dirty pages after `dirty_decay_ms` (10 s by default) even while
//!   the node is idle, so memory taken by a burst of sessions goes back to the
//!   operating system;
//! - `mimalloc`: Microsoft's mimalloc (`mimalloc`);
//! - neither: the system allocator (glibc's `malloc`).
//!
//! With both features on, mimalloc is used. [`NAME`] says which one this build
//! has; the node reports it as the `allocator` label of `vc_node_info` and in its
//! start-up log line. `docs/benchmarks.md` ("Memory after a burst") has the
//! measurements behind the default.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The allocator this build uses: `jemalloc`, `mimalloc` or `system`.
pub const NAME: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else if cfg!(feature = "jemalloc") {
    "jemalloc"
} else {
    "system"
};
