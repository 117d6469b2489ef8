//! The `switchyard` binary: see [`switchyard::cli`].

/// mimalloc: per-thread free lists make the allocations of connection
/// set-up (tasks, buffers, headers) cheaper than glibc's bins, and return
/// freed memory to the OS more readily.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main(std::env::args().skip(1).collect())
}
