//! `harness matrix` from the outside: a cell over its time limit fails with
//! its artifacts kept, and the reports say so in the table's words.

use std::process::Command;

use anyhow::{Context, Result, ensure};

#[test]
fn a_cell_over_its_timeout_fails_and_keeps_its_artifacts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["matrix", "--profile", "pc", "--scenario", "pci-fifty-cycles", "--cell-timeout", "1", "--out"])
        .arg(dir.path().join("reports"))
        .env("HARNESS_ARTIFACTS_DIR", dir.path().join("artifacts"))
        .output()?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.code() == Some(1), "a failed cell must exit 1: {}\n{stdout}{stderr}", out.status);
    ensure!(stderr.contains("[1/1] FAIL pc/pci-fifty-cycles"), "progress line: {stderr}");
    ensure!(stdout.contains("1 cells: 0 pass, 1 FAIL, 0 skip"), "table: {stdout}");
    let summary = std::fs::read_to_string(dir.path().join("reports/summary.json"))?;
    let summary: serde_json::Value = serde_json::from_str(&summary)?;
    let cell = &summary["cells"][0];
    ensure!(cell["outcome"] == "FAIL", "{summary}");
    let error = cell["error"].as_str().context("error")?;
    ensure!(error.contains("did not finish within 1s (--cell-timeout)"), "{error}");
    let artifacts = dir.path().join("artifacts/matrix-pc-pci-fifty-cycles");
    ensure!(artifacts.join("console.log").is_file(), "artifacts not kept in {}", artifacts.display());
    let junit = std::fs::read_to_string(dir.path().join("reports/junit.xml"))?;
    ensure!(junit.contains("<failure") && junit.contains("pc/pci-fifty-cycles"), "{junit}");
    Ok(())
}
