//! The harness as a library, on a real guest: the typed driverfs helpers
//! (`read_attr`, `open`, `devref`, `hold_read`), errors that are answers,
//! and artifact directories of runs that share a name.

mod common;

use anyhow::{Result, ensure};
use harness::files::errno;

#[tokio::test]
async fn typed_helpers_on_the_test_bus() -> Result<()> {
    let vm = common::boot("pc", "typed_helpers").await?;
    let baseline = vm.stats().await?;
    vm.call("testdev add t1").await?;
    ensure!(vm.read_attr("root/testbus/t1/value").await? == "t1", "read_attr drops show()'s newline");

    let handle = vm.open("root/testbus/t1/value").await?;
    handle.write("hello").await?;
    ensure!(handle.read_text().await? == "hello");
    handle.close().await?;
    ensure!(vm.read_attr("bus/testbus/devices/t1/value").await? == "hello", "paths through links work");

    // An expected error is an answer: its errno is there, and it does not
    // point at an artifact directory that goes away when the test passes.
    let err = vm.read_attr("root/testbus/nope/value").await.expect_err("no such attribute");
    ensure!(errno(&err) == Some("ENOENT"), "{err:#}");
    ensure!(!format!("{err:#}").contains("artifacts"), "an answer names no artifacts: {err:#}");

    // A held read, opened through a link: hold_read returns once it is
    // inside show(), so the removal started next must wait for it.
    let held = vm.hold_read("bus/testbus/devices/t1/value").await?;
    ensure!(vm.stats().await?.device("root/testbus/t1")?.active == 1, "the read holds an active reference");
    let del = vm.send("testdev del t1").await?;
    vm.wait_stats("t1 dying", |s| s.device("root/testbus/t1").is_ok_and(|d| d.state == "dying")).await?;
    ensure!(!held.is_answered() && !del.is_answered(), "the read and the removal wait for each other's end");
    ensure!(held.release().await? == b"hello\n", "the held read returns the old data");
    vm.wait_reply(del).await?;

    // A device reference keeps the object past its removal, and its name
    // busy, until put.
    vm.call("testdev add t2").await?;
    let reference = vm.devref("root/testbus/t2").await?;
    vm.call("testdev del t2").await?;
    ensure!(vm.stats().await?.device("root/testbus/t2")?.state == "deleted");
    ensure!(vm.expect_errno("testdev add t2").await? == "EBUSY", "the name is busy until the release");
    reference.put().await?;
    ensure!(vm.stats().await?.device("root/testbus/t2").is_err(), "released by the put");

    // Dropping the guard puts the reference too.
    vm.call("testdev add t3").await?;
    drop(vm.devref("root/testbus/t3").await?);
    vm.call("testdev del t3").await?;
    vm.wait_stats("t3 released", |s| s.device("root/testbus/t3").is_err()).await?;

    vm.stats().await?.check_baseline(&baseline)?;
    vm.shutdown().await
}

#[tokio::test]
async fn two_live_runs_with_one_name_keep_separate_artifacts() -> Result<()> {
    let (a, b) = tokio::join!(common::boot("pc", "same_name"), common::boot("pc", "same_name"));
    let (a, b) = (a?, b?);
    let (dir_a, dir_b) = (a.artifacts_dir(), b.artifacts_dir());
    ensure!(dir_a.is_some() && dir_a != dir_b, "{dir_a:?} and {dir_b:?}");
    a.snapshot().await?;
    b.snapshot().await?;
    a.shutdown().await?;
    b.shutdown().await?;
    ensure!(!dir_a.unwrap().exists() && !dir_b.unwrap().exists(), "passing runs leave nothing behind");
    Ok(())
}
