//! The `assetlog` binary: parse the command line and run it. No logic here.

fn main() -> std::process::ExitCode {
    assetlog::cli::main()
}
