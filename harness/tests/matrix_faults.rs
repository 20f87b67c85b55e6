//! The matrix under faults, through the real CLI: a hung cell is stopped at
//! its own timeout and reported with its artifacts while the other cells
//! pass; Ctrl-C (SIGINT) stops the run, kills every QEMU it started and
//! still writes the JUnit and the summary for every cell.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// `pc` passes `boot`; `hangs` is pc with a guest that never answers (the
/// later `-append` wins), so its `boot` cell can only end by its timeout.
const MATRIX: &str = r#"
profiles = ["pc", "hangs"]
scenarios = ["boot"]

[profile.hangs]
machine = "pc"
summary = "a guest that never answers (selftest.hang)"
args = ["-append", "selftest.hang"]
"#;

fn start(dir: &Path, extra: &[&str]) -> Result<Child> {
    std::fs::write(dir.join("matrix.toml"), MATRIX)?;
    Ok(Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("matrix")
        .arg("--file")
        .arg(dir.join("matrix.toml"))
        .arg("--out")
        .arg(dir.join("out"))
        .args(["--jobs", "2"])
        .args(extra)
        .env("HARNESS_ARTIFACTS_DIR", dir.join("artifacts"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// QEMUs whose command line mentions `dir` (their console log is in it).
fn qemus_under(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains("qemu-system") && cmdline.contains(&needle)
        })
        .collect()
}

async fn no_qemu_left(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = qemus_under(dir);
        if left.is_empty() {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "QEMU processes left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cells(dir: &Path) -> Result<Vec<Value>> {
    let summary = std::fs::read_to_string(dir.join("out/summary.json")).context("summary.json")?;
    ensure!(dir.join("out/junit.xml").exists(), "junit.xml was not written");
    let summary: Value = serde_json::from_str(&summary)?;
    summary["cells"].as_array().cloned().context("summary.json has no cells")
}

fn cell<'a>(cells: &'a [Value], profile: &str) -> Result<&'a Value> {
    cells.iter().find(|c| c["profile"] == profile).with_context(|| format!("no {profile} cell"))
}

async fn wait_exit(child: &mut Child, within: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the matrix did not end within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_hung_cell_is_stopped_at_its_timeout_and_the_others_pass() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut matrix = start(dir.path(), &["--cell-timeout", "4"])?;
    let status = wait_exit(&mut matrix, Duration::from_secs(120)).await?;
    ensure!(!status.success(), "a failed cell fails the matrix");
    let cells = cells(dir.path())?;
    ensure!(cell(&cells, "pc")?["outcome"] == "pass", "the healthy cell is not affected: {cells:?}");
    let hung = cell(&cells, "hangs")?;
    ensure!(hung["outcome"] == "FAIL", "{hung}");
    ensure!(hung["error"].as_str().unwrap_or("").contains("did not finish within 4s"), "{hung}");
    let artifacts = Path::new(hung["artifacts"].as_str().context("artifacts")?);
    for file in ["console.log", "qmp.log", "control.log", "qemu-command.txt"] {
        ensure!(artifacts.join(file).exists(), "{file} not kept in {}", artifacts.display());
    }
    no_qemu_left(dir.path()).await
}

#[tokio::test]
async fn ctrl_c_kills_every_qemu_and_still_writes_the_reports() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut matrix = start(dir.path(), &[])?;
    // Wait until the pc cell has finished and the hung one is running.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pc_done = std::fs::read_dir(dir.path().join("artifacts"))
            .map(|d| d.flatten().all(|e| !e.file_name().to_string_lossy().starts_with("matrix-pc-")))
            .unwrap_or(false);
        if pc_done && !qemus_under(dir.path()).is_empty() {
            break;
        }
        ensure!(Instant::now() < deadline, "the matrix did not get going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let interrupted_at = Instant::now();
    let status = Command::new("kill").args(["-INT", &matrix.id().to_string()]).status()?;
    ensure!(status.success());
    let status = wait_exit(&mut matrix, Duration::from_secs(20)).await?;
    eprintln!("matrix: Ctrl-C to exit {:?}", interrupted_at.elapsed());
    ensure!(!status.success(), "an interrupted matrix is not a success");
    no_qemu_left(dir.path()).await?;
    let cells = cells(dir.path())?;
    ensure!(cell(&cells, "pc")?["outcome"] == "pass", "{cells:?}");
    let hung = cell(&cells, "hangs")?;
    ensure!(hung["error"].as_str().unwrap_or("").contains("interrupted"), "{hung}");
    Ok(())
}
