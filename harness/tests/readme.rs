//! README's scenario table says where each scenario runs: it must say what
//! `matrix.toml` really runs, cell for cell, so a reader never trusts a
//! profile list that went stale when a profile or a capability was added.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail, ensure};
use harness::matrix::{Filter, MatrixFile};

/// The rows of README's "What the tests and the matrix prove" table:
/// scenario → the profiles its second column lists.
fn readme_table(readme: &str) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let section = readme
        .split("## What the tests and the matrix prove")
        .nth(1)
        .context("README has no section \"What the tests and the matrix prove\"")?;
    let mut rows = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with("| scenario |")).skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let columns: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(name), Some(profiles)) = (columns.get(1), columns.get(2)) else {
            bail!("README table row without two columns: {line}");
        };
        let name = name.trim_matches('`').to_string();
        let profiles = profiles.split(',').map(|p| p.trim().to_string()).collect();
        ensure!(rows.insert(name.clone(), profiles).is_none(), "README lists {name} twice");
    }
    ensure!(!rows.is_empty(), "README's scenario table has no rows");
    Ok(rows)
}

/// scenario → the profiles the matrix runs it on (skipped cells left out).
fn matrix_cells() -> Result<BTreeMap<String, BTreeSet<String>>> {
    let root = guest_build::workspace_root();
    let matrix = MatrixFile::load(&root.join("matrix.toml"))?;
    let mut cells: BTreeMap<String, BTreeSet<String>> =
        matrix.scenarios.iter().map(|s| (s.clone(), BTreeSet::new())).collect();
    for cell in matrix.cells(&Filter::default())? {
        if cell.skip.is_none() {
            cells.entry(cell.scenario.to_string()).or_default().insert(cell.profile.name.clone());
        }
    }
    Ok(cells)
}

fn differences(
    readme: &BTreeMap<String, BTreeSet<String>>,
    matrix: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (scenario, runs_on) in matrix {
        match readme.get(scenario) {
            None => out.push(format!("{scenario}: in matrix.toml, missing from README's table")),
            Some(listed) if listed != runs_on => out.push(format!(
                "{scenario}: README says {}, the matrix runs it on {}",
                listed.iter().cloned().collect::<Vec<_>>().join(", "),
                runs_on.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
            Some(_) => {}
        }
    }
    for scenario in readme.keys().filter(|s| !matrix.contains_key(*s)) {
        out.push(format!("{scenario}: in README's table, not in matrix.toml"));
    }
    out
}

#[test]
fn readme_lists_every_cell_the_matrix_runs() -> Result<()> {
    let readme = std::fs::read_to_string(guest_build::workspace_root().join("README.md"))?;
    let wrong = differences(&readme_table(&readme)?, &matrix_cells()?);
    ensure!(wrong.is_empty(), "README's scenario table is out of date:\n{}", wrong.join("\n"));
    Ok(())
}

#[test]
fn a_stale_row_is_reported() -> Result<()> {
    let readme = "## What the tests and the matrix prove\n\n| scenario | profiles | proves |\n|---|---|---|\n\
                  | `boot` | pc, q35 | x |\n| `gone` | pc | y |\n\nafter\n";
    let table = readme_table(readme)?;
    let matrix: BTreeMap<String, BTreeSet<String>> = [
        ("boot".to_string(), ["pc", "q35", "q35-acpi"].map(String::from).into()),
        ("new".to_string(), ["pc"].map(String::from).into()),
    ]
    .into();
    let wrong = differences(&table, &matrix);
    assert_eq!(
        wrong,
        [
            "boot: README says pc, q35, the matrix runs it on pc, q35, q35-acpi",
            "new: in matrix.toml, missing from README's table",
            "gone: in README's table, not in matrix.toml",
        ]
    );
    Ok(())
}
