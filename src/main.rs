//! The `rebuy` binary: parse the command line, run the command, map the outcome to an exit code.

/// mimalloc: imports and ticks allocate many small strings; glibc's allocator spent a third of
/// an import in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (the v2 header's `mi_option_purge_delay`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Give freed memory back at once instead of after a delay that only runs out when the
    // freeing thread allocates again: async tasks move between worker threads, and an idle
    // worker kept the metrics refresh's freed vectors, so the segment evaluation after it
    // peaked 100 MB higher (350 MB instead of 230 MB at a million customers). Measured cost
    // on the orders import: within run-to-run noise.
    // SAFETY: setting an option is a plain store into mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    rebuy::cli::main()
}
