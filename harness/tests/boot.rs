//! The walking skeleton, end to end: the guest boots under QEMU on each
//! profile and its driverfs snapshot is true (it matches QEMU's query-pci)
//! and stable (byte-identical across boots, committed with insta).

mod common;

use anyhow::{Result, ensure};

scenario_tests! {
    boot on [pc, q35],
}

/// Two boots of the same hardware give byte-identical snapshots.
async fn deterministic(profile: &str) -> Result<()> {
    let (a, b) = tokio::join!(common::boot(profile, "deterministic_a"), common::boot(profile, "deterministic_b"));
    let (a, b) = (a?, b?);
    let (sa, sb) = (a.call("snapshot").await?, b.call("snapshot").await?);
    ensure!(
        sa == sb,
        "two boots of {profile} gave different snapshots:\n--- first\n{}\n--- second\n{}",
        String::from_utf8_lossy(&sa),
        String::from_utf8_lossy(&sb)
    );
    let (ua, ub) = (a.control.uevents(), b.control.uevents());
    ensure!(ua == ub, "two boots of {profile} sent different boot uevents: {ua:?} vs {ub:?}");
    a.snapshot().await?;
    b.snapshot().await?;
    a.shutdown().await?;
    b.shutdown().await
}

#[tokio::test]
async fn same_hardware_gives_identical_snapshots_pc() -> Result<()> {
    deterministic("pc").await
}

#[tokio::test]
async fn same_hardware_gives_identical_snapshots_q35() -> Result<()> {
    deterministic("q35").await
}

/// The boot uevents announce every PCI function the snapshot lists, in
/// order, with increasing SEQNUMs, and every IDE drive on bus/ide.
#[tokio::test]
async fn boot_uevents_match_the_snapshot() -> Result<()> {
    let vm = common::boot("pc", "boot_uevents").await?;
    let snapshot = vm.snapshot().await?;
    let uevents = vm.control.uevents();
    let added: Vec<&str> = uevents
        .iter()
        .filter(|u| u.action == "add" && u.get("SUBSYSTEM") == Some("pci"))
        .map(|u| u.devpath.as_str())
        .collect();
    let functions = harness::checks::snapshot_pci_functions(&snapshot);
    let expected: Vec<&str> = functions.values().map(String::as_str).collect();
    ensure!(added == expected, "boot uevents {added:?} do not match the snapshot's functions {expected:?}");
    let ide_added: Vec<&str> = uevents
        .iter()
        .filter(|u| u.action == "add" && u.get("SUBSYSTEM") == Some("ide"))
        .map(|u| u.devpath.as_str())
        .collect();
    ensure!(
        ide_added == ["root/pci0/00:01.1/ide0/0.0", "root/pci0/00:01.1/ide1/1.0"],
        "IDE add uevents: {ide_added:?}"
    );
    let seqnums: Vec<u64> = uevents.iter().filter_map(|u| u.seqnum()).collect();
    ensure!(
        seqnums.windows(2).all(|w| w[0] < w[1]) && seqnums.len() == uevents.len(),
        "SEQNUMs not increasing: {seqnums:?}"
    );
    vm.shutdown().await
}
