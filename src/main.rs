//! The `rebuy` binary: parse the command line, run the command, map the outcome to an exit code.

/// mimalloc: imports and ticks allocate many small strings; glibc's allocator spent a third of
/// an import in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Give freed memory back at once instead of after a delay that only runs out when the
    // freeing thread allocates again: async tasks move between worker threads, and an idle
    // worker kept the metrics refresh's freed vectors, so the segment evaluation after it
    // peaked 100 MB higher (350 MB instead of 230 MB at a million customers). Measured cost
    // on the orders import: within run-to-run noise.
    // (`rebuy serve` sets it back: see `cli::purge_freed_memory_after`.)
    rebuy::cli::purge_freed_memory_after(0);
    rebuy::cli::main()
}
