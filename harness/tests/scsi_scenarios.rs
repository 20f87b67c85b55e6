//! SCSI end to end on both profiles (virtio-scsi: legacy on `pc`, modern
//! behind a root port on `q35`). The bodies live in `harness::scenario::scsi`.

mod common;

use anyhow::Result;

#[tokio::test]
async fn disk_pc() -> Result<()> {
    common::scenario("pc", "scsi-disk").await
}

#[tokio::test]
async fn disk_q35() -> Result<()> {
    common::scenario("q35", "scsi-disk").await
}

#[tokio::test]
async fn add_remove_readd_pc() -> Result<()> {
    common::scenario("pc", "scsi-add-remove-readd").await
}

#[tokio::test]
async fn add_remove_readd_q35() -> Result<()> {
    common::scenario("q35", "scsi-add-remove-readd").await
}

#[tokio::test]
async fn held_read_surprise_removal_pc() -> Result<()> {
    common::scenario("pc", "scsi-held-read-surprise-removal").await
}

#[tokio::test]
async fn held_read_surprise_removal_q35() -> Result<()> {
    common::scenario("q35", "scsi-held-read-surprise-removal").await
}

#[tokio::test]
async fn readd_waits_release_pc() -> Result<()> {
    common::scenario("pc", "scsi-readd-waits-release").await
}

#[tokio::test]
async fn readd_waits_release_q35() -> Result<()> {
    common::scenario("q35", "scsi-readd-waits-release").await
}

#[tokio::test]
async fn events_missed_pc() -> Result<()> {
    common::scenario("pc", "scsi-events-missed").await
}

#[tokio::test]
async fn events_missed_q35() -> Result<()> {
    common::scenario("q35", "scsi-events-missed").await
}

#[tokio::test]
async fn hba_hotplug_pc() -> Result<()> {
    common::scenario("pc", "scsi-hba-hotplug").await
}

#[tokio::test]
async fn hba_hotplug_q35() -> Result<()> {
    common::scenario("q35", "scsi-hba-hotplug").await
}

#[tokio::test]
async fn cd_media_pc() -> Result<()> {
    common::scenario("pc", "scsi-cd-media").await
}

#[tokio::test]
async fn cd_media_q35() -> Result<()> {
    common::scenario("q35", "scsi-cd-media").await
}

#[tokio::test]
async fn fifty_cycles_pc() -> Result<()> {
    common::scenario("pc", "scsi-fifty-cycles").await
}

#[tokio::test]
async fn fifty_cycles_q35() -> Result<()> {
    common::scenario("q35", "scsi-fifty-cycles").await
}

#[tokio::test]
async fn refusals_pc() -> Result<()> {
    common::scenario("pc", "scsi-refusals").await
}

#[tokio::test]
async fn refusals_q35() -> Result<()> {
    common::scenario("q35", "scsi-refusals").await
}

#[tokio::test]
async fn race_command_in_flight_pc() -> Result<()> {
    common::scenario("pc", "scsi-race-command-in-flight").await
}

#[tokio::test]
async fn race_command_in_flight_q35() -> Result<()> {
    common::scenario("q35", "scsi-race-command-in-flight").await
}

#[tokio::test]
async fn race_mid_scan_pc() -> Result<()> {
    common::scenario("pc", "scsi-race-mid-scan").await
}

#[tokio::test]
async fn race_mid_scan_q35() -> Result<()> {
    common::scenario("q35", "scsi-race-mid-scan").await
}
