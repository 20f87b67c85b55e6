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
