//! Topologies beyond the profiles' own, under qboot and SeaBIOS, and the
//! q35 profile in QEMU's default ACPI hot-plug mode. The bodies live in
//! `harness::scenario::{topology, pci}`.

mod common;

use anyhow::Result;

#[tokio::test]
async fn stale_bus_numbers_pc() -> Result<()> {
    common::scenario("pc", "pci-stale-bus-numbers").await
}

#[tokio::test]
async fn stale_bus_numbers_q35() -> Result<()> {
    common::scenario("q35", "pci-stale-bus-numbers").await
}

#[tokio::test]
async fn io_space_q35() -> Result<()> {
    common::scenario("q35", "pci-io-space").await
}

#[tokio::test]
async fn hotplug_behind_bridge_pc() -> Result<()> {
    common::scenario("pc", "pci-hotplug-behind-bridge").await
}

#[tokio::test]
async fn hotplug_behind_bridge_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "pci-hotplug-behind-bridge").await
}

#[tokio::test]
async fn boot_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "boot").await
}

#[tokio::test]
async fn add_remove_readd_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "pci-add-remove-readd").await
}

#[tokio::test]
async fn held_read_blocks_eject_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "pci-held-read-eject").await
}

#[tokio::test]
async fn stale_bus_numbers_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "pci-stale-bus-numbers").await
}

#[tokio::test]
async fn io_space_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "pci-io-space").await
}

#[tokio::test]
async fn bridge_and_controller_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "pci-bridge-controller").await
}

#[tokio::test]
async fn depth_first_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "testbus-depth-first").await
}

/// The USB goldens of q35-acpi (the matrix compares with them).
#[tokio::test]
async fn usb_hid_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "usb-hid").await
}

#[tokio::test]
async fn usb_hub_tree_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "usb-hub-tree").await
}

#[tokio::test]
async fn usb_refusals_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "usb-refusals").await
}

#[tokio::test]
async fn usb_controller_hotplug_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "usb-controller-hotplug").await
}

#[tokio::test]
async fn usb_storage_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "usb-storage").await
}

/// The SCSI goldens of q35-acpi (the matrix compares with them): the
/// cold-plugged disk, disks hot-plugged on it, and an HBA hot-plugged into a
/// root port through the ACPI registers.
#[tokio::test]
async fn scsi_disk_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "scsi-disk").await
}

#[tokio::test]
async fn scsi_hba_hotplug_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "scsi-hba-hotplug").await
}

#[tokio::test]
async fn scsi_add_remove_readd_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "scsi-add-remove-readd").await
}

#[tokio::test]
async fn scsi_events_missed_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "scsi-events-missed").await
}

#[tokio::test]
async fn scsi_cd_media_q35_acpi() -> Result<()> {
    common::scenario("q35-acpi", "scsi-cd-media").await
}
