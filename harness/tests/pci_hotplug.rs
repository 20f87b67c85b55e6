//! PCI hot-plug end to end on both machines: ACPI hot-plug on `pc`, native
//! PCIe on `q35`'s root ports. The bodies live in `harness::scenario::pci`.

mod common;

use anyhow::Result;

#[tokio::test]
async fn add_remove_readd_pc() -> Result<()> {
    common::scenario("pc", "pci-add-remove-readd").await
}

#[tokio::test]
async fn add_remove_readd_q35() -> Result<()> {
    common::scenario("q35", "pci-add-remove-readd").await
}

#[tokio::test]
async fn held_read_blocks_eject_pc() -> Result<()> {
    common::scenario("pc", "pci-held-read-eject").await
}

#[tokio::test]
async fn held_read_blocks_eject_q35() -> Result<()> {
    common::scenario("q35", "pci-held-read-eject").await
}

#[tokio::test]
async fn fifty_cycles_pc() -> Result<()> {
    common::scenario("pc", "pci-fifty-cycles").await
}

#[tokio::test]
async fn fifty_cycles_q35() -> Result<()> {
    common::scenario("q35", "pci-fifty-cycles").await
}

#[tokio::test]
async fn refusals_pc() -> Result<()> {
    common::scenario("pc", "pci-refusals").await
}

#[tokio::test]
async fn refusals_q35() -> Result<()> {
    common::scenario("q35", "pci-refusals").await
}

#[tokio::test]
async fn bridge_and_controller_pc() -> Result<()> {
    common::scenario("pc", "pci-bridge-controller").await
}

#[tokio::test]
async fn bridge_and_controller_q35() -> Result<()> {
    common::scenario("q35", "pci-bridge-controller").await
}

#[tokio::test]
async fn readd_waits_for_release_pc() -> Result<()> {
    common::scenario("pc", "pci-readd-waits-release").await
}

#[tokio::test]
async fn readd_waits_for_release_q35() -> Result<()> {
    common::scenario("q35", "pci-readd-waits-release").await
}
