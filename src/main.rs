//! The `pushbench` binary: everything lives in the library.
fn main() -> std::process::ExitCode {
    pushbench::cli::main()
}
