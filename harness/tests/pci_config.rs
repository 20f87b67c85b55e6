//! The real configuration space of every boot-time PCI function, as the
//! guest reads it under QEMU (`pci config <bb:ss.f>`), kept as goldens
//! (`pci_config@<profile>.snap`). The guest kernel's host tests compare
//! its fake chipsets with these files, so the fakes cannot drift from QEMU
//! unnoticed: a QEMU that changes a function changes a golden here, and
//! the fake must follow.

mod common;

use anyhow::{Result, ensure};

async fn dump_config_space(profile: &str) -> Result<()> {
    let vm = common::boot(profile, "pci_config").await?;
    let snapshot = vm.checked_snapshot().await?;
    let functions = harness::checks::snapshot_pci_functions(&snapshot);
    ensure!(!functions.is_empty(), "the snapshot lists no PCI function");
    let mut text = String::new();
    for name in functions.keys() {
        let dump = vm.call_text(&format!("pci config {name}")).await?;
        ensure!(dump.lines().count() >= 16, "pci config {name} is not a full dump: {dump:?}");
        text.push_str(&format!("function {name}\n{dump}"));
    }
    ensure!(vm.expect_errno("pci config 00:1e.7").await? == "ENOENT", "an absent function must be ENOENT");
    ensure!(vm.expect_errno("pci config nonsense").await? == "EINVAL");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_suffix(profile);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_snapshot_path("snapshots");
    settings.bind(|| insta::assert_snapshot!("pci_config", text));
    vm.shutdown().await
}

#[tokio::test]
async fn config_space_of_boot_functions_pc() -> Result<()> {
    dump_config_space("pc").await
}

#[tokio::test]
async fn config_space_of_boot_functions_q35() -> Result<()> {
    dump_config_space("q35").await
}
