//! The driver model's lifetime rules, end to end on the real guest through
//! the software test bus. The bodies live in `harness::scenario::model`, so
//! the hardware matrix runs exactly these checks too.

mod common;

use anyhow::Result;

#[tokio::test]
async fn held_read_across_removal_pc() -> Result<()> {
    common::scenario("pc", "testbus-held-read").await
}

#[tokio::test]
async fn held_read_across_removal_q35() -> Result<()> {
    common::scenario("q35", "testbus-held-read").await
}

#[tokio::test]
async fn stale_handle_after_same_name_is_readded_pc() -> Result<()> {
    common::scenario("pc", "testbus-stale-handle").await
}

#[tokio::test]
async fn stale_handle_after_same_name_is_readded_q35() -> Result<()> {
    common::scenario("q35", "testbus-stale-handle").await
}

#[tokio::test]
async fn parent_removal_is_depth_first_pc() -> Result<()> {
    common::scenario("pc", "testbus-depth-first").await
}

#[tokio::test]
async fn parent_removal_is_depth_first_q35() -> Result<()> {
    common::scenario("q35", "testbus-depth-first").await
}

#[tokio::test]
async fn child_reference_pins_parent_pc() -> Result<()> {
    common::scenario("pc", "testbus-child-pins-parent").await
}

#[tokio::test]
async fn child_reference_pins_parent_q35() -> Result<()> {
    common::scenario("q35", "testbus-child-pins-parent").await
}

#[tokio::test]
async fn store_that_removes_its_own_device_pc() -> Result<()> {
    common::scenario("pc", "testbus-store-removes-self").await
}

#[tokio::test]
async fn store_that_removes_its_own_device_q35() -> Result<()> {
    common::scenario("q35", "testbus-store-removes-self").await
}

#[tokio::test]
async fn unbind_and_rebind_pc() -> Result<()> {
    common::scenario("pc", "testbus-rebind").await
}

#[tokio::test]
async fn unbind_and_rebind_q35() -> Result<()> {
    common::scenario("q35", "testbus-rebind").await
}
