//! The `windtunnel` binary: parse the command line, run the command (see `windtunnel::cli`).

/// Task spawns take `malloc` blocks, not `posix_memalign`, and freed blocks are kept per thread
/// for the next allocation of their size (see `windtunnel::alloc`).
#[global_allocator]
static ALLOC: windtunnel::alloc::MallocAligned = windtunnel::alloc::MallocAligned;

fn main() -> std::process::ExitCode {
    windtunnel::cli::main()
}
