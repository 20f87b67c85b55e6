//! USB end to end on both machines' UHCI controller. The bodies live in
//! `harness::scenario::usb`.

mod common;

use anyhow::Result;

#[tokio::test]
async fn hid_pc() -> Result<()> {
    common::scenario("pc", "usb-hid").await
}

#[tokio::test]
async fn hid_q35() -> Result<()> {
    common::scenario("q35", "usb-hid").await
}

#[tokio::test]
async fn hub_tree_pc() -> Result<()> {
    common::scenario("pc", "usb-hub-tree").await
}

#[tokio::test]
async fn hub_tree_q35() -> Result<()> {
    common::scenario("q35", "usb-hub-tree").await
}

#[tokio::test]
async fn replug_different_device_pc() -> Result<()> {
    common::scenario("pc", "usb-replug-different-device").await
}

#[tokio::test]
async fn replug_different_device_q35() -> Result<()> {
    common::scenario("q35", "usb-replug-different-device").await
}

#[tokio::test]
async fn port_reuse_stale_handle_pc() -> Result<()> {
    common::scenario("pc", "usb-port-reuse-stale-handle").await
}

#[tokio::test]
async fn port_reuse_stale_handle_q35() -> Result<()> {
    common::scenario("q35", "usb-port-reuse-stale-handle").await
}

#[tokio::test]
async fn fifty_cycles_pc() -> Result<()> {
    common::scenario("pc", "usb-fifty-cycles").await
}

#[tokio::test]
async fn fifty_cycles_q35() -> Result<()> {
    common::scenario("q35", "usb-fifty-cycles").await
}

#[tokio::test]
async fn refusals_pc() -> Result<()> {
    common::scenario("pc", "usb-refusals").await
}

#[tokio::test]
async fn refusals_q35() -> Result<()> {
    common::scenario("q35", "usb-refusals").await
}

#[tokio::test]
async fn controller_hotplug_pc() -> Result<()> {
    common::scenario("pc", "usb-controller-hotplug").await
}

#[tokio::test]
async fn controller_hotplug_q35() -> Result<()> {
    common::scenario("q35", "usb-controller-hotplug").await
}

#[tokio::test]
async fn held_read_pc() -> Result<()> {
    common::scenario("pc", "usb-held-read").await
}

#[tokio::test]
async fn held_read_q35() -> Result<()> {
    common::scenario("q35", "usb-held-read").await
}

#[tokio::test]
async fn unplug_during_enumeration_pc() -> Result<()> {
    common::scenario("pc", "usb-unplug-during-enumeration").await
}

#[tokio::test]
async fn unplug_during_enumeration_q35() -> Result<()> {
    common::scenario("q35", "usb-unplug-during-enumeration").await
}

#[tokio::test]
async fn storage_pc() -> Result<()> {
    common::scenario("pc", "usb-storage").await
}

#[tokio::test]
async fn storage_q35() -> Result<()> {
    common::scenario("q35", "usb-storage").await
}

#[tokio::test]
async fn storage_held_read_pc() -> Result<()> {
    common::scenario("pc", "usb-storage-held-read").await
}

#[tokio::test]
async fn storage_held_read_q35() -> Result<()> {
    common::scenario("q35", "usb-storage-held-read").await
}

#[tokio::test]
async fn storage_reset_recovery_pc() -> Result<()> {
    common::scenario("pc", "usb-storage-reset-recovery").await
}

#[tokio::test]
async fn storage_reset_recovery_q35() -> Result<()> {
    common::scenario("q35", "usb-storage-reset-recovery").await
}
