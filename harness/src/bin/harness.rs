//! The harness CLI: `harness matrix | bench | run`. Usually started through
//! `cargo xtask`, which builds the guest first and passes its path in
//! `GUEST_KERNEL`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use harness::qemu::{Accel, Firmware};
use harness::{Vm, VmConfig, bench, explore, matrix, profile, tree};

#[derive(Parser)]
#[command(name = "harness", about = "Boot the guest under QEMU, hot-plug hardware, check driverfs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hardware matrix (profiles x scenarios) from a matrix file:
    /// progress per cell, then a table; junit.xml, summary.json and
    /// summary.md in the output directory. Exits 1 if a cell failed.
    Matrix {
        /// The matrix file [default: matrix.toml at the project root].
        #[arg(long)]
        file: Option<PathBuf>,
        /// Only profiles matching this glob (`*`, `?`; repeatable).
        #[arg(long = "profile", value_name = "GLOB")]
        profiles: Vec<String>,
        /// Only scenarios matching this glob (repeatable), e.g. 'pci-*'.
        #[arg(long = "scenario", value_name = "GLOB")]
        scenarios: Vec<String>,
        /// Print the cells (and why a cell is skipped) and exit.
        #[arg(long)]
        list: bool,
        /// Run shard K of N: the cells at positions K-1, K-1+N, ... of the
        /// (filtered) matrix. Combine the shards' reports with `merge`.
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
        /// Fail a cell that runs longer than this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = matrix::CELL_TIMEOUT.as_secs())]
        cell_timeout: u64,
        /// Cells run at once (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Where the reports go [default: target/matrix at the project root,
        /// target/matrix/shard-K-of-N for a shard].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Combine the reports of a sharded matrix run (their directories or
    /// summary.json files) into one: every shard exactly once. Exits 1 if a
    /// cell failed.
    Merge {
        /// Where the combined reports go [default: target/matrix at the
        /// project root].
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(required = true)]
        shards: Vec<PathBuf>,
    },
    /// Draw device trees as SVG (Graphviz's dot): one snapshot, or OLD and
    /// NEW side by side with changed, added and removed devices coloured
    /// (attributes on hover). Snapshots are insta files or the guest's text.
    Tree {
        /// SNAPSHOT, or OLD NEW.
        #[arg(num_args = 0..=2)]
        files: Vec<PathBuf>,
        /// Every snapshot insta holds for review (`*.snap.new` under
        /// harness/tests/snapshots) beside its committed version.
        #[arg(long, conflicts_with = "files")]
        pending: bool,
        /// The SVG file [default: target/review/<name>.svg at the project
        /// root]; with --pending, the directory.
        #[arg(long)]
        out: Option<PathBuf>,
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
        /// Only these groups (repeatable): boot, hotplug, usb, media, scsi.
        #[arg(long)]
        only: Vec<String>,
        /// Where bench.json goes [default: target/bench at the project root].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Random topologies and hot-plug sequences with the oracle after every
    /// step; a failure is shrunk and printed as a rerun command and a test.
    Explore {
        /// Seeds to run (repeatable; default: 1).
        #[arg(long = "seed")]
        seeds: Vec<u64>,
        /// Run this many seeds from --seed on (seed, seed+1, ...).
        #[arg(long, default_value_t = 1)]
        seeds_count: u64,
        /// Operations per run.
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// Profiles (repeatable; default: all).
        #[arg(long = "profile", default_values_t = ["pc".to_string(), "q35".to_string(), "q35-acpi".to_string()])]
        profiles: Vec<String>,
        /// Firmwares (repeatable): qboot, seabios.
        #[arg(long = "firmware", default_values_t = ["qboot".to_string(), "seabios".to_string()])]
        firmwares: Vec<String>,
        /// Replay a plan file (printed by a failed run) instead of generating.
        #[arg(long)]
        replay: Option<PathBuf>,
        /// Do not shrink failures.
        #[arg(long)]
        no_shrink: bool,
        /// Most runs one shrink may take.
        #[arg(long, default_value_t = 60)]
        shrink_budget: usize,
        #[arg(long, default_value = "target/explore")]
        out: PathBuf,
        /// Added to the guest's command line of every run (as a plan's
        /// `append` line): `--append fault=scsi-lun-not-drained` explores a
        /// guest with that planted bug.
        #[arg(long, default_value = "")]
        append: String,
    },
    /// Boot one profile, send requests, print each reply labelled with its
    /// request, power off. A request is a control-protocol line or `qmp
    /// <command> [key=value,...]`; one ending in ` &` does not wait for its
    /// reply. Without requests: print the snapshot. Exits 1 if any request
    /// failed.
    Run {
        #[arg(long, default_value = "pc")]
        profile: String,
        /// A profiles file with more profiles (beside the built-in ones).
        #[arg(long)]
        profiles: Option<PathBuf>,
        /// Interactive: read requests from standard input (line editing on
        /// a terminal), send each at once, print uevents, notices and QMP
        /// events as they arrive; end of input powers off.
        #[arg(short, long)]
        interactive: bool,
        /// Cold-plug a device: `--device edu,id=e1` (repeatable).
        #[arg(long = "device", value_name = "DRIVER,PROPS")]
        devices: Vec<String>,
        /// Another QEMU argument, after the profile's (repeatable):
        /// `--qemu-arg=-global --qemu-arg=...`.
        #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
        qemu_args: Vec<String>,
        #[arg(long, default_value = "qboot")]
        firmware: String,
        /// tcg, kvm (only where the CPU has vmx/svm), or auto (KVM if a
        /// self-test passes on this host). Default: $HARNESS_ACCEL, else tcg.
        #[arg(long)]
        accel: Option<String>,
        /// Kernel command line.
        #[arg(long, default_value = "")]
        append: String,
        /// Requests, e.g. "stats" "testdev add t1" "qmp device_add driver=edu,id=e1,addr=5".
        requests: Vec<String>,
    },
}

/// The project root: defaults are anchored there, while paths the user
/// types are relative to where they ran the command.
fn root() -> PathBuf {
    guest_build::workspace_root()
}

/// `run --help` ends with the profiles it can boot.
fn profiles_help() -> String {
    match profile::Profiles::builtin() {
        Ok(profiles) => {
            let mut text = String::from("Profiles (profiles.toml):\n");
            for p in profiles.iter() {
                text.push_str(&format!("  {:<8} {}\n", p.name, p.summary));
            }
            text
        }
        Err(e) => format!("Profiles: {e:#}"),
    }
}

fn main() -> ExitCode {
    let command = Cli::command().mut_subcommand("run", |run| run.after_help(profiles_help()));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
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
        Command::Matrix { file, profiles, scenarios, list, shard, cell_timeout, jobs, out } => {
            let file = matrix::MatrixFile::load(&file.unwrap_or_else(|| root().join("matrix.toml")))?;
            let all = file.cells(&matrix::Filter { profiles, scenarios })?;
            let matrix_cells = all.len();
            let shard = shard.map(|s| matrix::Shard::parse(&s)).transpose()?;
            let cells: Vec<matrix::Cell> = all.into_iter().filter(|c| shard.is_none_or(|s| s.contains(c))).collect();
            if list {
                matrix::list(&cells);
                return Ok(true);
            }
            let qemu = harness::qemu::locate()?;
            for profile in &file.profiles {
                profile.check_against_qemu(&qemu)?;
            }
            let out = out.unwrap_or_else(|| {
                let base = root().join("target").join("matrix");
                match shard {
                    Some(s) => base.join(format!("shard-{}", s.slug())),
                    None => base,
                }
            });
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let options = matrix::Options {
                jobs,
                out_dir: out,
                cell_timeout: std::time::Duration::from_secs(cell_timeout.max(1)),
                shard,
            };
            let summary = matrix::run(cells, matrix_cells, &options).await?;
            Ok(summary.passed())
        }
        Command::Merge { out, shards } => {
            let out = out.unwrap_or_else(|| root().join("target").join("matrix"));
            Ok(matrix::merge(&shards, &out)?.passed())
        }
        Command::Tree { files, pending, out } => {
            let review_dir = root().join("target").join("review");
            if pending {
                let dir = out.unwrap_or(review_dir);
                let drawn = tree::render_pending(&root().join("harness/tests/snapshots"), &dir)?;
                if drawn.is_empty() {
                    println!("no snapshots are waiting for review");
                }
                for path in drawn {
                    println!("{}", path.display());
                }
                return Ok(true);
            }
            let (old, new) = match files.as_slice() {
                [new] => (None, new),
                [old, new] => (Some(old), new),
                _ => anyhow::bail!("tree needs a snapshot file, or an old and a new one (or --pending)"),
            };
            let name = new.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "tree".into());
            let out = out.unwrap_or_else(|| review_dir.join(format!("{name}.svg")));
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let old = old.map(|p| tree::read_snapshot(p)).transpose()?;
            tree::render(old.as_ref(), &tree::read_snapshot(new)?, &name, &out)?;
            println!("{}", out.display());
            Ok(true)
        }
        Command::Bench { runs, profiles, firmwares, only, out } => {
            let firmwares = firmwares.iter().map(|f| Firmware::parse(f)).collect::<Result<Vec<_>>>()?;
            for p in &profiles {
                profile::Profile::get(p)?;
            }
            if let Some(bad) = only.iter().find(|g| !["boot", "hotplug", "usb", "media", "scsi"].contains(&g.as_str()))
            {
                anyhow::bail!("unknown bench group {bad:?} (boot, hotplug, usb, media, scsi)");
            }
            let out = out.unwrap_or_else(|| root().join("target").join("bench"));
            bench::run(&bench::Options { runs: runs.max(1), profiles, firmwares, only }, &out).await?;
            Ok(true)
        }
        Command::Explore {
            seeds,
            seeds_count,
            steps,
            profiles,
            firmwares,
            replay,
            no_shrink,
            shrink_budget,
            out,
            append,
        } => {
            let firmwares = firmwares.iter().map(|f| Firmware::parse(f)).collect::<Result<Vec<_>>>()?;
            for p in &profiles {
                profile::Profile::get(p)?;
            }
            let first = seeds.first().copied().unwrap_or(1);
            let seeds = if seeds.len() > 1 { seeds } else { (first..first + seeds_count.max(1)).collect() };
            let options = harness::explorer::Options {
                seeds,
                steps,
                profiles,
                firmwares,
                replay,
                shrink: !no_shrink,
                shrink_budget,
                out,
                kernel: None,
                append,
            };
            harness::explorer::run(&options).await
        }
        Command::Run { profile, profiles, interactive, devices, qemu_args, firmware, accel, append, requests } => {
            let mut known = profile::Profiles::builtin()?.clone();
            if let Some(file) = profiles {
                known.merge(profile::Profiles::load(&file)?)?;
            }
            let chosen = known.get(&profile)?.clone();
            chosen.check_against_qemu(&harness::qemu::locate()?)?;
            let mut config = VmConfig::with_profile(chosen, &format!("run-{profile}"))?;
            config.firmware = Firmware::parse(&firmware)?;
            if let Some(accel) = accel {
                config.accel = Accel::parse(&accel)?;
            }
            config.append = append;
            for device in devices {
                config.extra_args.extend(["-device".to_string(), device]);
            }
            config.extra_args.extend(qemu_args);
            if interactive && !requests.is_empty() {
                anyhow::bail!("--interactive reads requests from standard input; give none on the command line");
            }
            let vm = Vm::boot(config).await?;
            let failures = if interactive {
                explore::repl(vm).await?
            } else if requests.is_empty() {
                print!("{}", vm.snapshot().await?.render());
                vm.shutdown().await?;
                0
            } else {
                explore::run_requests(vm, &requests).await?
            };
            if failures > 0 {
                eprintln!("harness: {failures} request(s) failed");
            }
            Ok(failures == 0)
        }
    }
}
