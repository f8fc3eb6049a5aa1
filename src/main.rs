//! The `nabla` command. Pipelines (`nabla pipelines/part4.toml`) arrive with
//! the pipeline runner; until then the command reports what the engine has.

use nabla::gemm::KernelChoice;
use std::process::ExitCode;

const HELP: &str = "\
nabla: a small deep-learning engine you can read in an afternoon

USAGE:
    nabla kernels      list the SGEMM microkernels this CPU can run
    nabla --version    print the version
    nabla --help       print this help

Benchmarks: cargo bench --bench sgemm | mlp_step
Tests:      cargo test --release
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("kernels") => {
            let avail = KernelChoice::available();
            for k in &avail {
                println!("{}{}", k.name(), if Some(k) == avail.last() { "  (default)" } else { "" });
            }
            ExitCode::SUCCESS
        }
        Some("--version") | Some("-V") => {
            println!("nabla {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        None | Some("--help") | Some("-h") => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("nabla: unknown command '{other}' (pipeline files are not supported yet)\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}
