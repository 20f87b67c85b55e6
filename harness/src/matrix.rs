//! The hardware matrix: profiles × scenarios from a TOML file, filtered
//! (`--profile`, `--scenario` globs), split into shards (`--shard K/N`) and
//! run in parallel, with a progress line per cell. Reported as a table, JUnit
//! XML, a JSON summary and a Markdown summary (for a CI job page); shards'
//! reports are combined by [`merge`]. Failed cells keep their artifacts
//! under `target/harness-artifacts/matrix-*`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
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

/// A matrix file (`matrix.toml`): profiles x scenarios.
#[derive(Debug)]
pub struct MatrixFile {
    /// The profiles to run, in matrix order.
    pub profiles: Vec<Profile>,
    /// Scenarios to run on each profile that provides what they need.
    pub scenarios: Vec<String>,
    /// Every profile the file can name.
    pub known: Profiles,
}

impl MatrixFile {
    /// Read and check a matrix file: known profiles and scenarios, none empty.
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

    /// The cells that pass `filter`, in matrix order (profile by profile),
    /// each with its position and, if the profile lacks what the scenario
    /// needs, why it is skipped. A glob that matches nothing is an error.
    pub fn cells(&self, filter: &Filter) -> Result<Vec<Cell>> {
        let profile_names: Vec<&str> = self.profiles.iter().map(|p| p.name.as_str()).collect();
        let scenario_names: Vec<&str> = self.scenarios.iter().map(String::as_str).collect();
        filter.check("--profile", &filter.profiles, &profile_names)?;
        filter.check("--scenario", &filter.scenarios, &scenario_names)?;
        let mut cells = Vec::new();
        for profile in self.profiles.iter().filter(|p| Filter::allows(&filter.profiles, &p.name)) {
            for name in self.scenarios.iter().filter(|s| Filter::allows(&filter.scenarios, s)) {
                let scenario = scenario::get(name)?;
                cells.push(Cell {
                    position: cells.len(),
                    profile: profile.clone(),
                    scenario: scenario.name,
                    skip: profile.lacks(scenario.needs),
                });
            }
        }
        Ok(cells)
    }
}

/// One profile × scenario.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Place in the (filtered) matrix: sharding and merging keep this order.
    pub position: usize,
    /// The profile.
    pub profile: Profile,
    /// The scenario.
    pub scenario: &'static str,
    /// Why the cell does not run on this profile, if it does not.
    pub skip: Option<String>,
}

impl Cell {
    /// `profile/scenario`, the cell's name everywhere.
    pub fn name(&self) -> String {
        format!("{}/{}", self.profile.name, self.scenario)
    }
}

/// `--profile` and `--scenario` globs (`*`, `?`); empty means everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Profile globs.
    pub profiles: Vec<String>,
    /// Scenario globs.
    pub scenarios: Vec<String>,
}

impl Filter {
    fn allows(globs: &[String], name: &str) -> bool {
        globs.is_empty() || globs.iter().any(|g| glob_match(g, name))
    }

    fn check(&self, option: &str, globs: &[String], names: &[&str]) -> Result<()> {
        for glob in globs {
            if !names.iter().any(|n| glob_match(glob, n)) {
                bail!("{option} {glob:?} matches nothing in the matrix; it has: {}", names.join(", "));
            }
        }
        Ok(())
    }
}

/// Shell-style match: `*` any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `--shard K/N`: the cells whose position is K-1 modulo N. Every cell is in
/// exactly one shard, and neighbouring cells (the same profile's scenarios)
/// spread over the shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 1-based.
    pub index: usize,
    /// How many shards.
    pub count: usize,
}

impl Shard {
    /// Parse `K/N` (shard K of N).
    pub fn parse(text: &str) -> Result<Shard> {
        let parsed = text.split_once('/').and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if count >= 1 && (1..=count).contains(&index) => Ok(Shard { index, count }),
            _ => bail!("--shard {text:?}: expected K/N with 1 <= K <= N, e.g. 2/4"),
        }
    }

    /// Does this shard run `cell`?
    pub fn contains(&self, cell: &Cell) -> bool {
        cell.position % self.count == self.index - 1
    }

    /// For file and directory names: `2-of-4`.
    pub fn slug(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// How a cell ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The scenario passed.
    #[serde(rename = "pass")]
    Passed,
    /// The scenario failed; see the error and the artifacts.
    #[serde(rename = "FAIL")]
    Failed,
    /// The profile lacks what the scenario needs: listed, with the reason,
    /// so nothing is skipped silently.
    #[serde(rename = "skip")]
    Skipped,
}

impl Outcome {
    /// The word progress lines, the table, the Markdown and the JSON use.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Passed => "pass",
            Outcome::Failed => "FAIL",
            Outcome::Skipped => "skip",
        }
    }
}

/// One profile x scenario cell's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellResult {
    /// Place in the matrix.
    pub position: usize,
    /// The profile.
    pub profile: String,
    /// The scenario.
    pub scenario: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall-clock time.
    pub seconds: f64,
    /// The error chain for a failure, the reason for a skip.
    pub error: Option<String>,
    /// Where its artifacts are (kept for failures).
    pub artifacts: Option<PathBuf>,
}

impl CellResult {
    /// `profile/scenario`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.profile, self.scenario)
    }
}

/// `summary.json`: the cells one run (or one shard) covered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// The shard this run was, if it was one.
    pub shard: Option<Shard>,
    /// Cells in the whole (filtered) matrix, over every shard.
    pub matrix_cells: usize,
    /// Every cell's result, in matrix order.
    pub cells: Vec<CellResult>,
}

impl Summary {
    /// How many cells ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.cells.iter().filter(|c| c.outcome == outcome).count()
    }

    /// No cell failed.
    pub fn passed(&self) -> bool {
        self.count(Outcome::Failed) == 0
    }

    /// `12 cells: 10 pass, 1 FAIL, 1 skip`.
    pub fn totals(&self) -> String {
        format!(
            "{} cells: {} pass, {} FAIL, {} skip",
            self.cells.len(),
            self.count(Outcome::Passed),
            self.count(Outcome::Failed),
            self.count(Outcome::Skipped)
        )
    }
}

/// How to run the matrix.
pub struct Options {
    /// Cells run at once.
    pub jobs: usize,
    /// Where `junit.xml` and `summary.json` go.
    pub out_dir: PathBuf,
    /// A cell that runs longer fails (its VM is killed, artifacts kept).
    pub cell_timeout: Duration,
    /// Run only this shard of the cells.
    pub shard: Option<Shard>,
}

/// The default [`Options::cell_timeout`]: several times the slowest cell.
pub const CELL_TIMEOUT: Duration = Duration::from_secs(300);

/// Print the cells (`--list`): name, and `run` or `skip: <reason>`.
pub fn list(cells: &[Cell]) {
    for cell in cells {
        match &cell.skip {
            None => println!("{:<40} run", cell.name()),
            Some(reason) => println!("{:<40} skip: {reason}", cell.name()),
        }
    }
}

/// Run `cells` (already filtered and sharded); `matrix_cells` is the size of
/// the whole matrix they came from. Prints progress and the table, writes
/// the reports.
///
/// Ctrl-C (SIGINT) stops the run: cells still running are failed as
/// interrupted and their QEMUs killed, and the reports are still written for
/// every cell.
pub async fn run(cells: Vec<Cell>, matrix_cells: usize, options: &Options) -> Result<Summary> {
    // Ctrl-C stops the cells and still writes the reports (below).
    crate::interrupt::handled_by_caller();
    let limit = Arc::new(Semaphore::new(options.jobs.max(1)));
    let progress = Arc::new(Progress::new(cells.len(), cells.iter().filter(|c| c.skip.is_none()).count()));
    let mut handles = Vec::new();
    for cell in cells {
        let (limit, progress, timeout) = (Arc::clone(&limit), Arc::clone(&progress), options.cell_timeout);
        handles.push((
            cell.clone(),
            tokio::spawn(async move {
                let result = match &cell.skip {
                    Some(reason) => CellResult {
                        position: cell.position,
                        profile: cell.profile.name.clone(),
                        scenario: cell.scenario.to_string(),
                        outcome: Outcome::Skipped,
                        seconds: 0.0,
                        error: Some(reason.clone()),
                        artifacts: None,
                    },
                    None => {
                        let _permit = limit.acquire_owned().await.expect("semaphore is never closed");
                        run_cell(&cell, timeout).await
                    }
                };
                progress.report(&result);
                result
            }),
        ));
    }
    let mut results = Vec::new();
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut interrupted = false;
    for (cell, mut handle) in handles {
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
        let artifacts = crate::artifacts::root().join(artifact_name(&cell));
        let failed = |error: String, artifacts: Option<PathBuf>| CellResult {
            position: cell.position,
            profile: cell.profile.name.clone(),
            scenario: cell.scenario.to_string(),
            outcome: Outcome::Failed,
            seconds: 0.0,
            error: Some(error),
            artifacts,
        };
        results.push(match joined {
            Ok(result) => result,
            Err(e) if e.is_cancelled() => {
                failed("interrupted (Ctrl-C) before it finished".into(), artifacts.exists().then_some(artifacts))
            }
            // A panicking cell is a failed cell, not the end of the matrix.
            Err(e) => failed(format!("the cell panicked: {e}"), Some(artifacts)),
        });
    }
    let summary = Summary { shard: options.shard, matrix_cells, cells: results };
    write_reports(&summary, &options.out_dir)?;
    print_table(&summary);
    Ok(summary)
}

/// `[ 3/40] pass pc/boot 1.2s, ETA 1m05s` on standard error as cells end.
struct Progress {
    started: Instant,
    total: usize,
    to_run: usize,
    done: AtomicUsize,
    ran: AtomicUsize,
}

impl Progress {
    fn new(total: usize, to_run: usize) -> Progress {
        Progress { started: Instant::now(), total, to_run, done: AtomicUsize::new(0), ran: AtomicUsize::new(0) }
    }

    fn report(&self, r: &CellResult) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let ran = if r.outcome == Outcome::Skipped {
            self.ran.load(Ordering::Relaxed)
        } else {
            self.ran.fetch_add(1, Ordering::Relaxed) + 1
        };
        // Cells run in parallel: the time so far per cell run, times the
        // cells still to run, is the wall time left at this parallelism.
        let eta = if ran == 0 {
            String::new()
        } else {
            let left = self.started.elapsed().as_secs_f64() / ran as f64 * (self.to_run - ran) as f64;
            format!(", ETA {}", minutes(left))
        };
        let width = self.total.to_string().len();
        let detail = match r.outcome {
            Outcome::Skipped => format!(" ({})", r.error.as_deref().unwrap_or("")),
            _ => format!(" {:.1}s", r.seconds),
        };
        eprintln!("[{done:>width$}/{}] {} {}{detail}{eta}", self.total, r.outcome.word(), r.name());
    }
}

fn minutes(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}m{:02}s", s / 60, s % 60)
}

fn artifact_name(cell: &Cell) -> String {
    format!("matrix-{}-{}", cell.profile.name, cell.scenario)
}

async fn run_cell(cell: &Cell, timeout: Duration) -> CellResult {
    let start = Instant::now();
    let name = artifact_name(cell);
    let scenario = scenario::get(cell.scenario).expect("cells name known scenarios");
    let result =
        match tokio::time::timeout(timeout, run_cell_with(cell.profile.clone(), &scenario, &name, |_| {})).await {
            Ok(result) => CellResult { position: cell.position, ..result },
            // Dropping the cell's future killed its QEMU; the artifacts stay.
            Err(_) => CellResult {
                position: cell.position,
                profile: cell.profile.name.clone(),
                scenario: cell.scenario.to_string(),
                outcome: Outcome::Failed,
                seconds: start.elapsed().as_secs_f64(),
                error: Some(format!("the cell did not finish within {}s (--cell-timeout)", timeout.as_secs())),
                artifacts: Some(crate::artifacts::root().join(&name)),
            },
        };
    if let Some(dir) = &result.artifacts {
        draw_last_snapshot(dir);
    }
    result
}

/// A failed cell's picture: the golden beside what the guest showed, as
/// `<golden>.svg` in its artifacts. Best effort: the cell has failed already.
fn draw_mismatch(vm: &Vm, golden: &str, profile: &str, actual: &str) {
    let Some(dir) = vm.artifacts_dir() else { return };
    let drawn = (|| -> Result<()> {
        let old = crate::tree::parse_snapshot(&crate::golden::read(golden, profile)?)?;
        let new = crate::tree::parse_snapshot(actual)?;
        let title = format!("{golden}@{profile}: committed (old) and this run (new)");
        crate::tree::render(Some(&old), &new, &title, &dir.join(format!("{golden}.svg")))
    })();
    if let Err(e) = drawn {
        vm.save_artifact(&format!("{golden}.svg.error.txt"), format!("{e:#}\n"));
    }
}

/// The device tree of the last snapshot a failed cell took, as `tree.svg`
/// in its artifacts (best effort).
fn draw_last_snapshot(dir: &Path) {
    let number = |p: &Path| -> Option<u64> {
        p.file_name()?.to_str()?.strip_prefix("snapshot-")?.strip_suffix(".txt")?.parse().ok()
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let Some(last) =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| number(p).is_some()).max_by_key(|p| number(p))
    else {
        return;
    };
    let drawn = crate::tree::read_snapshot(&last).and_then(|snapshot| {
        let title = format!("{} (the cell's last snapshot)", last.display());
        crate::tree::render(None, &snapshot, &title, &dir.join("tree.svg"))
    });
    if let Err(e) = drawn {
        let _ = std::fs::write(dir.join("tree.svg.error.txt"), format!("{e:#}\n"));
    }
}

/// One cell, its artifacts under `name`, its VM configured by `adjust`
/// (`cargo xtask mutants` plants a fault through the command line). The
/// result's `position` is 0: callers that order cells set it.
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
        config.append = scenario.append.to_string();
        adjust(&mut config);
        let mut vm = Vm::boot(config).await?;
        let goldens = (scenario.run)(&mut vm).await?;
        for (golden, text) in &goldens.0 {
            if let Err(e) = crate::golden::check(golden, &profile_name, text) {
                vm.save_artifact(&format!("{golden}.actual.txt"), text);
                draw_mismatch(&vm, golden, &profile_name, text);
                return Err(e);
            }
        }
        vm.shutdown().await
    }
    .await;
    CellResult {
        position: 0,
        profile: profile_name,
        scenario: scenario.name.to_string(),
        outcome: if outcome.is_ok() { Outcome::Passed } else { Outcome::Failed },
        seconds: start.elapsed().as_secs_f64(),
        artifacts: outcome.is_err().then_some(artifacts),
        error: outcome.err().map(|e| format!("{e:#}")),
    }
}

/// Combine shards' summaries (each a `summary.json` or a directory holding
/// one) into one: every shard of one split exactly once, no cell twice, all
/// of the matrix's cells present. Writes the reports to `out_dir`.
pub fn merge(inputs: &[PathBuf], out_dir: &Path) -> Result<Summary> {
    ensure!(!inputs.is_empty(), "merge needs the shards' summary.json files (or their directories)");
    let mut summaries = Vec::new();
    for input in inputs {
        let file = if input.is_dir() { input.join("summary.json") } else { input.clone() };
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let summary: Summary =
            serde_json::from_str(&text).with_context(|| format!("{} is not a matrix summary", file.display()))?;
        summaries.push((file, summary));
    }
    let merged = merge_summaries(summaries)?;
    write_reports(&merged, out_dir)?;
    print_table(&merged);
    Ok(merged)
}

/// The checks and the combination behind [`merge`].
pub fn merge_summaries(summaries: Vec<(PathBuf, Summary)>) -> Result<Summary> {
    let (first_file, first) = summaries.first().context("no summaries to merge")?;
    let count = first.shard.map_or(1, |s| s.count);
    let matrix_cells = first.matrix_cells;
    let mut seen_shards = vec![None::<&Path>; count];
    for (file, s) in &summaries {
        let shard = s.shard.unwrap_or(Shard { index: 1, count: 1 });
        ensure!(
            shard.count == count && s.matrix_cells == matrix_cells,
            "{} is shard {shard} of a {}-cell matrix, but {} is from a {count}-way split of {matrix_cells} cells",
            file.display(),
            s.matrix_cells,
            first_file.display()
        );
        if let Some(other) = seen_shards[shard.index - 1].replace(file) {
            bail!("shard {shard} is given twice: {} and {}", other.display(), file.display());
        }
    }
    let missing: Vec<String> = seen_shards
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is_none())
        .map(|(i, _)| format!("{}/{count}", i + 1))
        .collect();
    ensure!(missing.is_empty(), "shard(s) {} missing: every shard's summary is needed", missing.join(", "));
    let mut cells: Vec<CellResult> = summaries.into_iter().flat_map(|(_, s)| s.cells).collect();
    cells.sort_by_key(|c| c.position);
    for pair in cells.windows(2) {
        ensure!(pair[0].position != pair[1].position, "cell {} appears in two shards", pair[1].name());
    }
    ensure!(cells.len() == matrix_cells, "the shards hold {} cells, the matrix has {matrix_cells}", cells.len());
    Ok(Summary { shard: None, matrix_cells, cells })
}

fn print_table(summary: &Summary) {
    let results = &summary.cells;
    let width = results.iter().map(|r| r.name().len()).max().unwrap_or(0).max(4);
    println!("{:<width$}  {:<6} {:>8}  artifacts or reason", "cell", "result", "time");
    for r in results {
        let note = match (&r.artifacts, r.outcome) {
            (Some(path), _) => path.display().to_string(),
            (None, Outcome::Skipped) => r.error.clone().unwrap_or_default(),
            (None, _) => String::new(),
        };
        println!("{:<width$}  {:<6} {:>7.2}s  {note}", r.name(), r.outcome.word(), r.seconds);
    }
    for r in results.iter().filter(|r| r.outcome == Outcome::Failed) {
        println!("\n{} FAIL:\n{}", r.name(), r.error.as_deref().unwrap_or(""));
    }
    let shard = summary.shard.map(|s| format!(" (shard {s} of a {}-cell matrix)", summary.matrix_cells));
    println!("\n{}{}", summary.totals(), shard.unwrap_or_default());
}

fn write_reports(summary: &Summary, out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let name = match summary.shard {
        Some(s) => format!("hardware-matrix-shard-{}", s.slug()),
        None => "hardware-matrix".to_string(),
    };
    let mut report = quick_junit::Report::new(name);
    let mut suite = quick_junit::TestSuite::new("matrix");
    for r in &summary.cells {
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
        let mut case = quick_junit::TestCase::new(r.name(), status);
        case.set_classname(r.profile.clone());
        case.set_time(Duration::from_secs_f64(r.seconds));
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    let xml = report.to_string().context("rendering JUnit XML")?;
    std::fs::write(out_dir.join("junit.xml"), xml)?;
    std::fs::write(out_dir.join("summary.json"), serde_json::to_string_pretty(summary)?)?;
    std::fs::write(out_dir.join("summary.md"), markdown(summary))?;
    Ok(())
}

/// The Markdown summary (a CI job page): totals, a table, each failure's error.
pub fn markdown(summary: &Summary) -> String {
    let cell = |text: &str| text.replace('|', "\\|").replace('\n', " ");
    let title = match summary.shard {
        Some(s) => format!("Hardware matrix, shard {s}"),
        None => "Hardware matrix".to_string(),
    };
    let mut md = format!(
        "### {title}: {}\n\n| profile | scenario | result | time | note |\n|---|---|---|---|---|\n",
        summary.totals()
    );
    for r in &summary.cells {
        let note = match r.outcome {
            Outcome::Passed => String::new(),
            Outcome::Skipped => cell(r.error.as_deref().unwrap_or("")),
            Outcome::Failed => {
                let first = r.error.as_deref().unwrap_or("").lines().next().unwrap_or("").to_string();
                let artifacts =
                    r.artifacts.as_ref().map(|p| format!(" (artifacts: `{}`)", p.display())).unwrap_or_default();
                cell(&format!("{first}{artifacts}"))
            }
        };
        let time = if r.outcome == Outcome::Skipped { String::new() } else { format!("{:.1} s", r.seconds) };
        md.push_str(&format!("| {} | {} | {} | {time} | {note} |\n", r.profile, r.scenario, r.outcome.word()));
    }
    for r in summary.cells.iter().filter(|r| r.outcome == Outcome::Failed) {
        md.push_str(&format!(
            "\n<details><summary>{} FAIL</summary>\n\n```\n{}\n```\n</details>\n",
            r.name(),
            r.error.as_deref().unwrap_or("").replace("```", "'''")
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("pci-*", "pci-held-read-eject"));
        assert!(glob_match("*eject", "pci-held-read-eject"));
        assert!(glob_match("q?5", "q35"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("pci-*", "ide-disk"));
        assert!(!glob_match("q35", "q35-acpi"));
        assert!(!glob_match("a*b", "aXbY"));
    }

    #[test]
    fn shards_parse_and_refuse_nonsense() {
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { index: 2, count: 4 });
        for bad in ["0/4", "5/4", "1/0", "2", "a/b", "1/-1"] {
            let e = format!("{:#}", Shard::parse(bad).unwrap_err());
            assert!(e.contains("expected K/N"), "{bad}: {e}");
        }
    }

    fn matrix() -> MatrixFile {
        let known = Profiles::builtin().unwrap().clone();
        MatrixFile {
            profiles: vec![known.get("pc").unwrap().clone(), known.get("q35").unwrap().clone()],
            scenarios: scenario::all().iter().map(|s| s.name.to_string()).collect(),
            known,
        }
    }

    /// Over K = 1..N the shards are disjoint and their union is the matrix,
    /// for every N up to more shards than cells.
    #[test]
    fn shards_are_disjoint_and_complete() {
        let cells = matrix().cells(&Filter::default()).unwrap();
        for count in 1..=cells.len() + 2 {
            let mut owner = vec![None; cells.len()];
            for index in 1..=count {
                let shard = Shard { index, count };
                for cell in cells.iter().filter(|c| shard.contains(c)) {
                    assert_eq!(owner[cell.position].replace(index), None, "{} in two shards of {count}", cell.name());
                }
            }
            assert!(owner.iter().all(Option::is_some), "a cell is in no shard of {count}");
        }
        // Deterministic: the same split twice.
        let again = matrix().cells(&Filter::default()).unwrap();
        assert_eq!(cells.iter().map(Cell::name).collect::<Vec<_>>(), again.iter().map(Cell::name).collect::<Vec<_>>());
    }

    #[test]
    fn filters_select_cells_and_refuse_globs_that_match_nothing() {
        let m = matrix();
        let f = Filter { profiles: vec!["q35".into()], scenarios: vec!["pci-*".into(), "ide-disk".into()] };
        let cells = m.cells(&f).unwrap();
        let names: Vec<String> = cells.iter().map(Cell::name).collect();
        assert!(names.iter().all(|n| n.starts_with("q35/pci-") || n == "q35/ide-disk"), "{names:?}");
        assert!(names.contains(&"q35/pci-held-read-eject".to_string()));
        let ide = cells.iter().find(|c| c.scenario == "ide-disk").unwrap();
        assert_eq!(ide.skip.as_deref(), Some("needs ide-disk, which q35 does not provide"));
        let e = format!("{:#}", m.cells(&Filter { profiles: vec!["pc99".into()], ..Filter::default() }).unwrap_err());
        assert!(e.contains("--profile \"pc99\" matches nothing") && e.contains("pc, q35"), "{e}");
    }

    fn result(position: usize, outcome: Outcome) -> CellResult {
        CellResult {
            position,
            profile: "pc".into(),
            scenario: format!("s{position}"),
            outcome,
            seconds: 1.0,
            error: (outcome != Outcome::Passed).then(|| "why | not".to_string()),
            artifacts: None,
        }
    }

    #[test]
    fn merge_needs_every_shard_once() {
        let shard = |index: usize, positions: &[usize]| {
            let summary = Summary {
                shard: Some(Shard { index, count: 2 }),
                matrix_cells: 4,
                cells: positions.iter().map(|p| result(*p, Outcome::Passed)).collect(),
            };
            (PathBuf::from(format!("shard{index}")), summary)
        };
        let merged = merge_summaries(vec![shard(2, &[1, 3]), shard(1, &[0, 2])]).unwrap();
        assert_eq!(merged.cells.iter().map(|c| c.position).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert!(merged.shard.is_none() && merged.passed());
        let e = format!("{:#}", merge_summaries(vec![shard(1, &[0, 2])]).unwrap_err());
        assert!(e.contains("shard(s) 2/2 missing"), "{e}");
        let e = format!("{:#}", merge_summaries(vec![shard(1, &[0, 2]), shard(1, &[0, 2])]).unwrap_err());
        assert!(e.contains("shard 1/2 is given twice"), "{e}");
        let e = format!("{:#}", merge_summaries(vec![shard(1, &[0, 2]), shard(2, &[1, 2])]).unwrap_err());
        assert!(e.contains("appears in two shards"), "{e}");
    }

    #[test]
    fn markdown_uses_the_table_words_and_escapes_pipes() {
        let summary = Summary {
            shard: Some(Shard { index: 1, count: 3 }),
            matrix_cells: 9,
            cells: vec![result(0, Outcome::Passed), result(3, Outcome::Failed), result(6, Outcome::Skipped)],
        };
        let md = markdown(&summary);
        assert!(md.starts_with("### Hardware matrix, shard 1/3: 3 cells: 1 pass, 1 FAIL, 1 skip"), "{md}");
        assert!(md.contains("| pc | s3 | FAIL | 1.0 s | why \\| not |"), "{md}");
        assert!(md.contains("| pc | s6 | skip |  | why \\| not |"), "{md}");
        assert!(md.contains("<details><summary>pc/s3 FAIL</summary>"), "{md}");
    }
}
