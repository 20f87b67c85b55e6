//! `cargo xtask`: the project's task runner (matklad's cargo-xtask pattern).
//! `main` is only the table of commands; each lives in its own module.

mod build;
mod cmd;
mod images;
mod mutants;
mod qemu;
mod review;
mod run_harness;
mod test;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  build            build the guest image; its path is the last line of output
  test [args]      build the guest and run every test (host unit tests and
                   end-to-end tests against real QEMU); args go to cargo test
  matrix [args]    run the hardware matrix (profiles x scenarios) in parallel,
                   write JUnit XML and summaries under target/matrix
                   (--profile/--scenario globs, --list, --shard K/N)
  merge <dirs>     combine the reports of matrix shards
  bench [args]     measure boot and hot-plug latency; medians as a table and
                   JSON under target/bench
  run [args]       boot one profile and talk to the guest (see --help)
  explore [args]   random topologies and hot-plug sequences, the oracle after
                   every step; failures shrunk to a rerun command and a test
  mutants [args]   run the matrix once clean and once per planted guest bug;
                   print the kill table, write it under target/mutants
  images           build the disk and CD images under target/images
  review           draw changed snapshots beside the committed ones as SVG
                   (target/review), then review them (cargo insta review)
  tree [OLD] NEW   draw a snapshot's device tree as SVG (two: side by side)

matrix, merge, bench, run, tree and explore pass their arguments to the harness CLI
(`cargo xtask matrix --help`).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match command.as_str() {
        "build" => build::run(),
        "test" => test::run(rest),
        "matrix" | "bench" | "run" | "merge" | "tree" | "explore" => run_harness::run(command, rest),
        "mutants" => mutants::run(rest),
        "images" => images::run(),
        "review" => review::run(),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
