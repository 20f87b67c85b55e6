//! The CI workflow is valid YAML and runs every shard of the matrix exactly
//! once: the `shard` list is 1..=SHARDS, and each job passes its own shard
//! and the same total to `cargo xtask matrix --shard`.

use anyhow::{Context, Result, bail, ensure};
use yaml_rust2::{Yaml, YamlLoader};

fn workflow() -> Result<Yaml> {
    let path = guest_build::workspace_root().join(".github/workflows/matrix.yml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut docs = YamlLoader::load_from_str(&text).with_context(|| format!("{} is not valid YAML", path.display()))?;
    ensure!(docs.len() == 1, "{} holds {} YAML documents", path.display(), docs.len());
    Ok(docs.remove(0))
}

/// The shard numbers the workflow runs and how many shards it says there are.
fn shards(workflow: &Yaml) -> Result<(Vec<i64>, i64)> {
    let total = workflow["env"]["SHARDS"].as_i64().context("env.SHARDS is not a number")?;
    let job = &workflow["jobs"]["shard"];
    let list = job["strategy"]["matrix"]["shard"].as_vec().context("jobs.shard.strategy.matrix.shard is not a list")?;
    let shards = list.iter().map(|s| s.as_i64().context("a shard is not a number")).collect::<Result<Vec<_>>>()?;
    let steps = job["steps"].as_vec().context("jobs.shard.steps")?;
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    let command = "cargo xtask matrix --shard ${{ matrix.shard }}/${{ env.SHARDS }}";
    ensure!(runs.iter().any(|r| r.contains(command)), "no step runs `{command}`: {runs:?}");
    Ok((shards, total))
}

fn check_each_shard_once(shards: &[i64], total: i64) -> Result<()> {
    let mut sorted = shards.to_vec();
    sorted.sort();
    if sorted != (1..=total).collect::<Vec<_>>() {
        bail!("the workflow runs shards {shards:?}, but SHARDS = {total} needs each of 1..={total} exactly once");
    }
    Ok(())
}

#[test]
fn every_shard_runs_exactly_once() -> Result<()> {
    let workflow = workflow()?;
    let (shards, total) = shards(&workflow)?;
    ensure!(total >= 2, "SHARDS = {total}: the point is running shards in parallel");
    check_each_shard_once(&shards, total)?;
    // The merge job needs every shard and reads all their reports.
    let merge = &workflow["jobs"]["merge"];
    ensure!(merge["needs"].as_str() == Some("shard"), "the merge job must wait for the shards");
    let runs: Vec<&str> =
        merge["steps"].as_vec().context("jobs.merge.steps")?.iter().filter_map(|s| s["run"].as_str()).collect();
    ensure!(runs.iter().any(|r| r.contains("cargo xtask merge")), "no merge step: {runs:?}");
    Ok(())
}

#[test]
fn a_missing_or_repeated_shard_is_caught() {
    assert!(check_each_shard_once(&[1, 2, 4], 4).is_err());
    assert!(check_each_shard_once(&[1, 2, 2, 3, 4], 4).is_err());
    assert!(check_each_shard_once(&[1, 2, 3, 4, 5], 4).is_err());
    assert!(check_each_shard_once(&[4, 3, 2, 1], 4).is_ok());
}
