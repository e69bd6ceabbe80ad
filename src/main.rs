//! The `rebuy` binary: parse the command line, run the command, map the outcome to an exit code.

/// mimalloc: imports and ticks allocate many small strings; glibc's allocator spent a third of
/// an import in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rebuy::cli::main()
}
