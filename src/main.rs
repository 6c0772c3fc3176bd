//! The `ferry` binary: everything lives in the library; see `ferry::cli`.

/// Rows are decoded on one thread and written (then freed) on another: mimalloc keeps that
/// cheap where the system allocator serialises on its arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ferry::cli::main()
}
