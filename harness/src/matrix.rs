//! The hardware matrix: profiles × scenarios from a TOML file, run in
//! parallel, reported as a table, JUnit XML and a JSON summary. Failed
//! cells keep their artifacts under `target/harness-artifacts/matrix-*`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::profile::{Profile, ProfileSpec, Profiles};
use crate::scenario::{self, Scenario};
use crate::vm::{Vm, VmConfig};

/// `matrix.toml`: which profiles and scenarios to cross, and where more
/// profiles come from. Profiles are the built-in ones (`profiles.toml` at
/// the repository root), a `profiles.toml` beside the matrix file, the
/// files listed in `profile-files` (relative to the matrix file) and the
/// matrix file's own `[profile.<name>]` tables; a name declared twice is an
/// error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MatrixSpec {
    profiles: Vec<String>,
    scenarios: Vec<String>,
    #[serde(default)]
    profile_files: Vec<PathBuf>,
    #[serde(default)]
    profile: std::collections::BTreeMap<String, ProfileSpec>,
}

#[derive(Debug)]
pub struct MatrixFile {
    /// The profiles to run, in matrix order.
    pub profiles: Vec<Profile>,
    pub scenarios: Vec<String>,
    /// Every profile the file can name.
    pub known: Profiles,
}

impl MatrixFile {
    pub fn load(path: &Path) -> Result<MatrixFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let spec: MatrixSpec = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut known = Profiles::builtin()?.clone();
        let same_file = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let beside = dir.join("profiles.toml");
        let mut files = Vec::new();
        if beside.is_file() && !same_file(&beside, &crate::profile::builtin_file()) {
            files.push(beside);
        }
        files.extend(spec.profile_files.iter().map(|f| dir.join(f)));
        for file in files {
            known.merge(Profiles::load(&file)?)?;
        }
        known.merge(Profiles::from_specs(spec.profile, &path.display().to_string())?)?;
        let profiles = spec
            .profiles
            .iter()
            .map(|p| known.get(p).cloned().with_context(|| format!("{}: profiles", path.display())))
            .collect::<Result<Vec<_>>>()?;
        for s in &spec.scenarios {
            scenario::get(s).with_context(|| format!("{}: scenarios", path.display()))?;
        }
        if profiles.is_empty() || spec.scenarios.is_empty() {
            bail!("{} lists no profiles or no scenarios", path.display());
        }
        Ok(MatrixFile { profiles, scenarios: spec.scenarios, known })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
    /// The scenario does not apply to the profile (IDE on q35): listed, so
    /// nothing is skipped silently.
    Skipped,
}

#[derive(Clone, Debug, Serialize)]
pub struct CellResult {
    pub profile: String,
    pub scenario: String,
    pub outcome: Outcome,
    pub seconds: f64,
    /// The error chain, for failures.
    pub error: Option<String>,
    pub artifacts: Option<PathBuf>,
}

pub struct Options {
    pub jobs: usize,
    pub out_dir: PathBuf,
    /// A cell that has not finished by then is failed and its QEMU killed;
    /// its artifacts stay. Other cells are not affected.
    pub cell_timeout: Duration,
}

/// The default [`Options::cell_timeout`]: several times the slowest cell.
pub const CELL_TIMEOUT: Duration = Duration::from_secs(300);

/// Run every applicable cell; print the table; write the reports.
///
/// Ctrl-C (SIGINT) stops the run: cells still running are failed as
/// interrupted and their QEMUs killed, and the reports are still written for
/// every cell.
pub async fn run(file: &MatrixFile, options: &Options) -> Result<Vec<CellResult>> {
    let limit = Arc::new(Semaphore::new(options.jobs.max(1)));
    // Cells in matrix order: a skip is decided now, the rest run in parallel.
    enum Cell {
        Skipped(CellResult),
        Running { profile: String, scenario: String, handle: tokio::task::JoinHandle<CellResult> },
    }
    let mut cells = Vec::new();
    for profile in &file.profiles {
        for name in &file.scenarios {
            let scenario = scenario::get(name)?;
            if let Some(reason) = profile.lacks(scenario.needs) {
                cells.push(Cell::Skipped(CellResult {
                    profile: profile.name.clone(),
                    scenario: scenario.name.to_string(),
                    outcome: Outcome::Skipped,
                    seconds: 0.0,
                    error: Some(reason),
                    artifacts: None,
                }));
                continue;
            }
            let (limit, task_profile) = (Arc::clone(&limit), profile.clone());
            let timeout = options.cell_timeout;
            let handle = tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore is never closed");
                let name = format!("matrix-{}-{}", task_profile.name, scenario.name);
                let profile_name = task_profile.name.clone();
                // On timeout the cell's future is dropped, which kills its
                // QEMU; its artifacts stay (the run never passed).
                let result =
                    tokio::time::timeout(timeout, run_cell(task_profile, &scenario)).await.unwrap_or_else(|_| {
                        CellResult {
                            profile: profile_name,
                            scenario: scenario.name.to_string(),
                            outcome: Outcome::Failed,
                            seconds: timeout.as_secs_f64(),
                            error: Some(format!(
                                "the cell did not finish within {timeout:?}: stopped, its QEMU killed"
                            )),
                            artifacts: Some(crate::artifacts::root().join(name)),
                        }
                    });
                eprintln!("matrix: {}/{} {:?}", result.profile, scenario.name, result.outcome);
                result
            });
            cells.push(Cell::Running { profile: profile.name.clone(), scenario: name.clone(), handle });
        }
    }
    let mut results = Vec::new();
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut interrupted = false;
    for cell in cells {
        results.push(match cell {
            Cell::Skipped(result) => result,
            Cell::Running { profile, scenario, mut handle } => {
                let mut joined = None;
                if !interrupted {
                    tokio::select! {
                        result = &mut handle => joined = Some(result),
                        _ = &mut interrupt => {
                            eprintln!("matrix: interrupted; stopping the cells still running");
                            interrupted = true;
                        }
                    }
                }
                let joined = match joined {
                    Some(result) => result,
                    None => {
                        // Dropping the cell's future kills its QEMU.
                        handle.abort();
                        handle.await
                    }
                };
                let artifacts = crate::artifacts::root().join(format!("matrix-{profile}-{scenario}"));
                match joined {
                    Ok(result) => result,
                    Err(e) if e.is_cancelled() => CellResult {
                        profile,
                        scenario,
                        outcome: Outcome::Failed,
                        seconds: 0.0,
                        error: Some("interrupted (Ctrl-C) before it finished".into()),
                        artifacts: artifacts.exists().then_some(artifacts),
                    },
                    // A panicking cell is a failed cell, not the end of the matrix.
                    Err(e) => CellResult {
                        profile,
                        scenario,
                        outcome: Outcome::Failed,
                        seconds: 0.0,
                        error: Some(format!("the cell panicked: {e}")),
                        artifacts: Some(artifacts),
                    },
                }
            }
        });
    }
    write_reports(&results, &options.out_dir)?;
    print_table(&results);
    Ok(results)
}

async fn run_cell(profile: Profile, scenario: &Scenario) -> CellResult {
    let name = format!("matrix-{}-{}", profile.name, scenario.name);
    run_cell_with(profile, scenario, &name, |_| {}).await
}

/// One cell, its artifacts under `name`, its VM configured by `adjust`
/// (`cargo xtask mutants` plants a fault through the command line).
pub async fn run_cell_with(
    profile: Profile,
    scenario: &Scenario,
    name: &str,
    adjust: impl FnOnce(&mut VmConfig),
) -> CellResult {
    let start = Instant::now();
    let artifacts = crate::artifacts::root().join(name);
    let profile_name = profile.name.clone();
    let outcome: Result<()> = async {
        let mut config = VmConfig::with_profile(profile, name)?;
        adjust(&mut config);
        let mut vm = Vm::boot(config).await?;
        let goldens = (scenario.run)(&mut vm).await?;
        for (golden, text) in &goldens.0 {
            if let Err(e) = crate::golden::check(golden, &profile_name, text) {
                vm.save_artifact(&format!("{golden}.actual.txt"), text);
                return Err(e);
            }
        }
        vm.shutdown().await
    }
    .await;
    CellResult {
        profile: profile_name,
        scenario: scenario.name.to_string(),
        outcome: if outcome.is_ok() { Outcome::Passed } else { Outcome::Failed },
        seconds: start.elapsed().as_secs_f64(),
        artifacts: outcome.is_err().then_some(artifacts),
        error: outcome.err().map(|e| format!("{e:#}")),
    }
}

fn print_table(results: &[CellResult]) {
    println!("{:<8} {:<28} {:<6} {:>8}  artifacts", "profile", "scenario", "result", "time");
    for r in results {
        println!(
            "{:<8} {:<28} {:<6} {:>7.2}s  {}",
            r.profile,
            r.scenario,
            match r.outcome {
                Outcome::Passed => "pass",
                Outcome::Failed => "FAIL",
                Outcome::Skipped => "skip",
            },
            r.seconds,
            r.artifacts.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    for r in results.iter().filter(|r| r.outcome == Outcome::Failed) {
        println!("\n{}/{} failed:\n{}", r.profile, r.scenario, r.error.as_deref().unwrap_or(""));
    }
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    println!(
        "\n{} cells: {} passed, {} failed, {} skipped (not applicable)",
        results.len(),
        count(Outcome::Passed),
        count(Outcome::Failed),
        count(Outcome::Skipped)
    );
}

fn write_reports(results: &[CellResult], out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut report = quick_junit::Report::new("hardware-matrix");
    let mut suite = quick_junit::TestSuite::new("matrix");
    for r in results {
        let status = match r.outcome {
            Outcome::Passed => quick_junit::TestCaseStatus::success(),
            Outcome::Failed => {
                let mut s = quick_junit::TestCaseStatus::non_success(quick_junit::NonSuccessKind::Failure);
                s.set_message(r.error.clone().unwrap_or_default());
                s
            }
            Outcome::Skipped => {
                let mut s = quick_junit::TestCaseStatus::skipped();
                s.set_message(r.error.clone().unwrap_or_default());
                s
            }
        };
        let mut case = quick_junit::TestCase::new(format!("{}/{}", r.profile, r.scenario), status);
        case.set_classname(r.profile.clone());
        case.set_time(Duration::from_secs_f64(r.seconds));
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    let xml = report.to_string().context("rendering JUnit XML")?;
    std::fs::write(out_dir.join("junit.xml"), xml)?;
    std::fs::write(out_dir.join("summary.json"), serde_json::to_string_pretty(results)?)?;
    Ok(())
}
