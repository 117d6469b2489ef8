//! The `switchyard` binary: see [`switchyard::cli`].

fn main() -> std::process::ExitCode {
    switchyard::cli::main(std::env::args().skip(1).collect())
}
