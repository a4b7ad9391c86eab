//! The `windtunnel` binary: parse the command line, run the command (see `windtunnel::cli`).

fn main() -> std::process::ExitCode {
    windtunnel::cli::main()
}
