//! The committed insta snapshots (`harness/tests/snapshots/<name>@<profile>.snap`)
//! read as plain expectations, so the matrix checks the same goldens the
//! tests do and `cargo insta review` stays the one place to accept changes.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// The committed insta file for snapshot `name` on `profile`.
pub fn path(name: &str, profile: &str) -> PathBuf {
    guest_build::workspace_root().join("harness").join("tests").join("snapshots").join(format!("{name}@{profile}.snap"))
}

/// The snapshot body of a committed insta file (its YAML header removed).
pub fn read(name: &str, profile: &str) -> Result<String> {
    let path = path(name, profile);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading the golden snapshot {}", path.display()))?;
    let body = text
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n"))
        .map(|(_, body)| body)
        .with_context(|| format!("{} is not an insta snapshot file", path.display()))?;
    Ok(body.to_string())
}

/// Compare a rendered snapshot with the golden; the error shows a diff.
pub fn check(name: &str, profile: &str, actual: &str) -> Result<()> {
    let expected = read(name, profile)?;
    if expected.trim_end() == actual.trim_end() {
        return Ok(());
    }
    bail!(
        "snapshot differs from {} (review with `cargo xtask review` after `cargo xtask test`):\n{}",
        path(name, profile).display(),
        diff(&expected, actual)
    )
}

/// A minimal line diff: lines only in the golden (-) and only in the actual (+).
pub fn diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.trim_end().lines().collect();
    let a: Vec<&str> = actual.trim_end().lines().collect();
    let mut out = String::new();
    for line in &e {
        if !a.contains(line) {
            out.push_str(&format!("- {line}\n"));
        }
    }
    for line in &a {
        if !e.contains(line) {
            out.push_str(&format!("+ {line}\n"));
        }
    }
    if out.is_empty() {
        out.push_str("(same lines, different order)\n");
    }
    out
}
