//! The kill table: does the suite catch a broken driver model?
//!
//! The guest has planted bugs compiled in (`fault=<name>` on its command
//! line, listed by its `faults` verb). [`run`] runs the matrix's cells once
//! clean and once per planted bug, all in one parallel pool, and reports for
//! each bug the cells that failed. A bug is *caught* when at least one cell
//! failed with it planted; every cell must pass clean, so each kill is the
//! bug's doing and not a flaky cell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::matrix::{self, CellResult, MatrixFile, Outcome};
use crate::scenario;
use crate::vm::{Timeouts, Vm, VmConfig};

/// How to run the kill table.
pub struct Options {
    /// Cells run at once.
    pub jobs: usize,
    /// Where the reports go.
    pub out_dir: PathBuf,
    /// Only these faults (all the guest has when empty).
    pub only: Vec<String>,
}

/// One row of the table: a planted bug (or `None`: the clean run).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The planted bug (`None`: the clean run).
    pub fault: Option<String>,
    /// `profile/scenario` of every cell that failed.
    pub failed: Vec<String>,
    /// The first line of each failed cell's error, same order.
    pub reasons: Vec<String>,
    /// Cells run.
    pub cells: usize,
    /// What the row means.
    pub verdict: Verdict,
}

/// What a row of the kill table says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The clean run passed every cell.
    Clean,
    /// The clean run failed a cell: no kill below means anything.
    Dirty,
    /// A planted bug failed at least one cell.
    Caught,
    /// A planted bug failed no cell: the tests miss it.
    Uncaught,
}

/// The matrix run once clean and once per planted guest bug.
#[derive(Debug, Serialize)]
pub struct KillTable {
    /// One row per run.
    pub rows: Vec<Row>,
    /// Wall-clock time of the whole table.
    pub seconds: f64,
}

impl KillTable {
    /// Green: the clean run passed and every bug was caught.
    pub fn ok(&self) -> bool {
        self.rows.iter().all(|r| matches!(r.verdict, Verdict::Clean | Verdict::Caught))
    }
}

/// Waits in a cell are short here: a planted bug often makes the guest
/// never answer, and the clean run (same timeouts) shows they suffice.
fn timeouts() -> Timeouts {
    Timeouts { request: Duration::from_secs(5), event: Duration::from_secs(5), ..Timeouts::default() }
}

/// The planted bugs the guest knows, from its `faults` verb.
pub async fn guest_faults() -> Result<Vec<String>> {
    let vm = Vm::boot(VmConfig::new("pc", "mutants-faults")?).await?;
    let list = vm.call_text("faults").await?;
    vm.shutdown().await?;
    let names: Vec<String> = list.lines().map(|l| l.split(' ').next().unwrap_or("").to_string()).collect();
    if names.is_empty() || names.iter().any(|n| n.is_empty()) {
        bail!("the guest's fault list is empty or malformed: {list:?}");
    }
    Ok(names)
}

/// Run the matrix clean, then once per planted bug; print and return the table.
pub async fn run(file: &MatrixFile, options: &Options) -> Result<KillTable> {
    let start = Instant::now();
    let known = guest_faults().await.context("asking the guest for its planted bugs")?;
    for name in &options.only {
        if !known.contains(name) {
            bail!("unknown fault {name:?}; the guest has: {}", known.join(", "));
        }
    }
    let faults: Vec<Option<String>> = std::iter::once(None)
        .chain(known.into_iter().filter(|f| options.only.is_empty() || options.only.contains(f)).map(Some))
        .collect();

    let mut cells = Vec::new();
    for profile in &file.profiles {
        for name in &file.scenarios {
            let scenario = scenario::get(name)?;
            if profile.lacks(scenario.needs).is_none() {
                cells.push((profile.clone(), scenario.name));
            }
        }
    }
    let limit = Arc::new(Semaphore::new(options.jobs.max(1)));
    let mut handles = Vec::new();
    for fault in &faults {
        for (profile, scenario_name) in &cells {
            let (limit, fault, profile, scenario_name) =
                (Arc::clone(&limit), fault.clone(), profile.clone(), *scenario_name);
            handles.push(tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore is never closed");
                let scenario = scenario::get(scenario_name).expect("listed above");
                let label = fault.as_deref().unwrap_or("clean");
                let name = format!("mutants-{label}-{}-{scenario_name}", profile.name);
                let result = matrix::run_cell_with(profile, &scenario, &name, |config| {
                    config.timeouts = timeouts();
                    if let Some(fault) = &fault {
                        config.append = format!("{} fault={fault}", config.append).trim_start().to_string();
                    }
                })
                .await;
                eprintln!("mutants: {label} {}/{scenario_name} {:?}", result.profile, result.outcome);
                (fault, result)
            }));
        }
    }
    let mut by_fault: BTreeMap<Option<String>, Vec<CellResult>> = BTreeMap::new();
    for handle in handles {
        let (fault, result) = handle.await.context("a mutants cell panicked")?;
        by_fault.entry(fault).or_default().push(result);
    }
    let rows = faults
        .iter()
        .map(|fault| {
            let results = by_fault.remove(fault).unwrap_or_default();
            let failed: Vec<&CellResult> = results.iter().filter(|r| r.outcome == Outcome::Failed).collect();
            let verdict = match (fault, failed.is_empty()) {
                (None, true) => Verdict::Clean,
                (None, false) => Verdict::Dirty,
                (Some(_), false) => Verdict::Caught,
                (Some(_), true) => Verdict::Uncaught,
            };
            Row {
                fault: fault.clone(),
                failed: failed.iter().map(|r| format!("{}/{}", r.profile, r.scenario)).collect(),
                reasons: failed
                    .iter()
                    .map(|r| r.error.as_deref().unwrap_or("").lines().next().unwrap_or("").to_string())
                    .collect(),
                cells: results.len(),
                verdict,
            }
        })
        .collect();
    let table = KillTable { rows, seconds: start.elapsed().as_secs_f64() };
    write_reports(&table, &options.out_dir)?;
    print!("{}", render_text(&table));
    Ok(table)
}

/// `profile/scenario` cells grouped by scenario: `boot (pc, q35)`.
fn by_scenario(cells: &[String]) -> Vec<String> {
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for cell in cells {
        let (profile, scenario) = cell.split_once('/').unwrap_or(("", cell));
        match grouped.iter_mut().find(|(s, _)| s == scenario) {
            Some((_, profiles)) => profiles.push(profile.to_string()),
            None => grouped.push((scenario.to_string(), vec![profile.to_string()])),
        }
    }
    grouped.into_iter().map(|(s, p)| format!("{s} ({})", p.join(", "))).collect()
}

fn verdict_text(row: &Row) -> String {
    match row.verdict {
        Verdict::Clean => format!("clean: {}/{} cells passed", row.cells, row.cells),
        Verdict::Dirty => format!("DIRTY: {} of {} cells failed clean", row.failed.len(), row.cells),
        Verdict::Caught => format!("caught ({}/{} cells)", row.failed.len(), row.cells),
        Verdict::Uncaught => "UNCAUGHT".to_string(),
    }
}

/// The table as text for a terminal.
pub fn render_text(table: &KillTable) -> String {
    let mut out = format!("{:<32} {:<26} caught by\n", "planted bug", "verdict");
    for row in &table.rows {
        let caught = by_scenario(&row.failed);
        let first = caught.first().cloned().unwrap_or_else(|| "-".to_string());
        out += &format!("{:<32} {:<26} {first}\n", row.fault.as_deref().unwrap_or("(none)"), verdict_text(row));
        for more in caught.iter().skip(1) {
            out += &format!("{:<32} {:<26} {more}\n", "", "");
        }
    }
    let uncaught: Vec<&str> =
        table.rows.iter().filter(|r| r.verdict == Verdict::Uncaught).filter_map(|r| r.fault.as_deref()).collect();
    out += &format!(
        "\n{} planted bugs, {} caught, {} uncaught{}; clean run {}; {:.0} s\n",
        table.rows.iter().filter(|r| r.fault.is_some()).count(),
        table.rows.iter().filter(|r| r.verdict == Verdict::Caught).count(),
        uncaught.len(),
        if uncaught.is_empty() { String::new() } else { format!(" ({})", uncaught.join(", ")) },
        if table.rows.iter().any(|r| r.verdict == Verdict::Dirty) { "FAILED" } else { "passed" },
        table.seconds
    );
    out
}

/// The table as Markdown (for the README).
pub fn render_markdown(table: &KillTable) -> String {
    let mut out = String::from("| planted bug | verdict | caught by |\n|---|---|---|\n");
    for row in &table.rows {
        let caught = by_scenario(&row.failed);
        out += &format!(
            "| `{}` | {} | {} |\n",
            row.fault.as_deref().unwrap_or("(none)"),
            verdict_text(row),
            if caught.is_empty() { "-".to_string() } else { caught.join("<br>") }
        );
    }
    out
}

fn write_reports(table: &KillTable, out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    std::fs::write(out_dir.join("kill-table.json"), serde_json::to_string_pretty(table)?)?;
    std::fs::write(out_dir.join("kill-table.md"), render_markdown(table))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fault: Option<&str>, failed: &[&str], verdict: Verdict) -> Row {
        Row {
            fault: fault.map(str::to_string),
            failed: failed.iter().map(|s| s.to_string()).collect(),
            reasons: failed.iter().map(|_| "why".to_string()).collect(),
            cells: 4,
            verdict,
        }
    }

    #[test]
    fn an_uncaught_bug_or_a_dirty_clean_run_is_not_ok() {
        let caught = row(Some("a"), &["pc/boot", "q35/boot", "pc/ide-media"], Verdict::Caught);
        let good = KillTable { rows: vec![row(None, &[], Verdict::Clean), caught.clone()], seconds: 1.0 };
        assert!(good.ok());
        let text = render_text(&good);
        assert!(text.contains("boot (pc, q35)") && text.contains("ide-media (pc)"), "{text}");
        let uncaught = KillTable {
            rows: vec![row(None, &[], Verdict::Clean), caught.clone(), row(Some("b"), &[], Verdict::Uncaught)],
            seconds: 1.0,
        };
        assert!(!uncaught.ok());
        assert!(render_text(&uncaught).contains("1 uncaught (b)"));
        let dirty = KillTable { rows: vec![row(None, &["pc/boot"], Verdict::Dirty), caught], seconds: 1.0 };
        assert!(!dirty.ok());
        assert!(render_markdown(&dirty).contains("DIRTY"));
    }
}
