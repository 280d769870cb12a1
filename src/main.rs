//! The `mxsim` command-line tool: see `mxsim --help`.

fn main() {
    std::process::exit(mxsim::cli::main());
}
