//! The `ferry` binary: everything lives in the library; see `ferry::cli`.

use std::ffi::{c_int, c_long};

/// Rows are decoded on one thread and written (then freed) on another: mimalloc keeps that
/// cheap where the system allocator serialises on its arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's `mi_option_set_default` (exported by the C library `libmimalloc-sys` builds,
    /// whose Rust bindings for it need the `extended` feature): sets an option unless the
    /// environment (`MIMALLOC_<OPTION>`) already did.
    fn mi_option_set_default(option: c_int, value: c_long);
}

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (include/mimalloc.h; the same index
/// in mimalloc 2): how long freed pages stay committed before they are returned to the OS.
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// Freed memory goes back to the OS after 10 ms instead of mimalloc 3's 1 s: thousands of runs
/// ending one after another (a slot where 10,000 come due) otherwise keep each run's pages
/// until a second after the last, and the peak is their sum, not the live heap (measured:
/// 10,000 due runs, peak RSS 164 MiB with the default, live heap ~20 MiB). mimalloc reuses
/// pages before purging them, so a steady export does not feel it; `MIMALLOC_PURGE_DELAY`
/// still overrides it.
const PURGE_DELAY_MS: c_long = 10;

fn main() -> std::process::ExitCode {
    // SAFETY: a plain setter of mimalloc's option table, called before any other thread exists.
    unsafe { mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    ferry::cli::main()
}
