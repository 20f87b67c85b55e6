//! IDE end to end on `pc` (q35 has only AHCI, which has no driver): the
//! bodies live in `harness::scenario::ide`.

mod common;

use anyhow::Result;

#[tokio::test]
async fn disk_matches_recipe() -> Result<()> {
    common::scenario("pc", "ide-disk").await
}

#[tokio::test]
async fn media_insert_change_eject() -> Result<()> {
    common::scenario("pc", "ide-media").await
}

#[tokio::test]
async fn stale_capacity_across_change() -> Result<()> {
    common::scenario("pc", "ide-stale-capacity").await
}

#[tokio::test]
async fn new_medium_waits_for_release() -> Result<()> {
    common::scenario("pc", "ide-medium-waits-release").await
}

#[tokio::test]
async fn fifty_media_changes() -> Result<()> {
    common::scenario("pc", "ide-fifty-changes").await
}

#[tokio::test]
async fn hotplug_refusals() -> Result<()> {
    common::scenario("pc", "ide-refusals").await
}

#[tokio::test]
async fn locked_tray() -> Result<()> {
    common::scenario("pc", "ide-locked-tray").await
}

#[tokio::test]
async fn rebind_waits_for_release() -> Result<()> {
    common::scenario("pc", "ide-rebind-busy").await
}
