//! `mutants`: the kill table. Runs the matrix's cells once clean and once
//! per bug planted in the guest (`fault=<name>`), prints bug -> the cells
//! that caught it -> verdict, writes `kill-table.json` and `kill-table.md`,
//! and fails unless the clean run passed and every bug was caught. Usually
//! started through `cargo xtask mutants`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use harness::{matrix, mutants};

#[derive(Parser)]
#[command(name = "mutants", about = "Run the matrix once per planted guest bug; print the kill table")]
struct Cli {
    /// The matrix file whose cells are run (`matrix.toml` for all of them).
    #[arg(long, default_value = "mutants.toml")]
    file: PathBuf,
    /// Cells run at once (default: the number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// Only this planted bug (repeatable; default: every one the guest has).
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// Where kill-table.json and kill-table.md go.
    #[arg(long, default_value = "target/mutants")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        let file = matrix::MatrixFile::load(&cli.file)?;
        let jobs = cli.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        mutants::run(&file, &mutants::Options { jobs, out_dir: cli.out, only: cli.faults }).await
    });
    match result {
        Ok(table) if table.ok() => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("mutants: a planted bug went uncaught or the clean run failed (see the table)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mutants: {e:#}");
            ExitCode::FAILURE
        }
    }
}
