//! The harness CLI: `harness matrix | bench | run`. Usually started through
//! `cargo xtask`, which builds the guest first and passes its path in
//! `GUEST_KERNEL`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use harness::qemu::{Accel, Firmware};
use harness::{Vm, VmConfig, bench, matrix, profile};

#[derive(Parser)]
#[command(name = "harness", about = "Boot the guest under QEMU, hot-plug hardware, check driverfs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hardware matrix (profiles x scenarios) from a matrix file.
    Matrix {
        /// The matrix file.
        #[arg(long, default_value = "matrix.toml")]
        file: PathBuf,
        /// Cells run at once (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Where junit.xml and summary.json go.
        #[arg(long, default_value = "target/matrix")]
        out: PathBuf,
        /// Seconds a cell may take before it is stopped and failed (its
        /// QEMU killed, its artifacts kept).
        #[arg(long, default_value_t = matrix::CELL_TIMEOUT.as_secs())]
        cell_timeout: u64,
    },
    /// Measure latencies; medians as a table and as JSON.
    Bench {
        /// Runs per measurement.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Profiles to measure (repeatable).
        #[arg(long = "profile", default_values_t = ["pc".to_string(), "q35".to_string()])]
        profiles: Vec<String>,
        /// Firmwares to compare (repeatable): qboot, seabios.
        #[arg(long = "firmware", default_values_t = ["qboot".to_string(), "seabios".to_string()])]
        firmwares: Vec<String>,
        /// Only these groups (repeatable): boot, hotplug, usb, media.
        #[arg(long)]
        only: Vec<String>,
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
    /// Boot one profile, send control requests, print the replies (a
    /// snapshot when no request is given), power off.
    Run {
        #[arg(long, default_value = "pc")]
        profile: String,
        #[arg(long, default_value = "qboot")]
        firmware: String,
        /// tcg, kvm (only where the CPU has vmx/svm), or auto (KVM if a
        /// self-test passes on this host). Default: $HARNESS_ACCEL, else tcg.
        #[arg(long)]
        accel: Option<String>,
        /// Kernel command line.
        #[arg(long, default_value = "")]
        append: String,
        /// Requests, e.g. "stats" "testdev add t1".
        requests: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(dispatch(cli.command)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("harness: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> Result<bool> {
    match command {
        Command::Matrix { file, jobs, out, cell_timeout } => {
            let file = matrix::MatrixFile::load(&file)?;
            let qemu = harness::qemu::locate()?;
            for profile in &file.profiles {
                profile.check_against_qemu(&qemu)?;
            }
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let cell_timeout = std::time::Duration::from_secs(cell_timeout);
            let results = matrix::run(&file, &matrix::Options { jobs, out_dir: out, cell_timeout }).await?;
            Ok(results.iter().all(|r| r.outcome != matrix::Outcome::Failed))
        }
        Command::Bench { runs, profiles, firmwares, only, out } => {
            let firmwares = firmwares.iter().map(|f| Firmware::parse(f)).collect::<Result<Vec<_>>>()?;
            for p in &profiles {
                profile::Profile::get(p)?;
            }
            if let Some(bad) = only.iter().find(|g| !["boot", "hotplug", "usb", "media"].contains(&g.as_str())) {
                anyhow::bail!("unknown bench group {bad:?} (boot, hotplug, usb, media)");
            }
            bench::run(&bench::Options { runs: runs.max(1), profiles, firmwares, only }, &out).await?;
            Ok(true)
        }
        Command::Run { profile, firmware, accel, append, requests } => {
            let chosen = profile::Profile::get(&profile)?;
            chosen.check_against_qemu(&harness::qemu::locate()?)?;
            let mut config = VmConfig::with_profile(chosen, &format!("run-{profile}"))?;
            config.firmware = Firmware::parse(&firmware)?;
            if let Some(accel) = accel {
                config.accel = Accel::parse(&accel)?;
            }
            config.append = append;
            let mut vm = Vm::boot(config).await?;
            if requests.is_empty() {
                print!("{}", vm.snapshot().await?.render());
            }
            for request in &requests {
                match vm.try_call(request).await? {
                    Ok(payload) => {
                        let text = String::from_utf8_lossy(&payload);
                        // Some replies (a path, a handle) have no newline.
                        if text.is_empty() || text.ends_with('\n') { print!("{text}") } else { println!("{text}") }
                    }
                    Err(e) => println!("{request}: {e}"),
                }
            }
            vm.shutdown().await?;
            Ok(true)
        }
    }
}
