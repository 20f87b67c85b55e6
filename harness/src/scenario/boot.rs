//! The boot scenario: the snapshot of the boot-time hardware is true (it
//! matches QEMU's query-pci) and nothing is amiss in the stats.

use anyhow::{Result, ensure};

use super::Goldens;
use crate::vm::Vm;

/// The boot tree equals the committed golden and matches QEMU's `query-pci`.
pub async fn boot(vm: &mut Vm) -> Result<Goldens> {
    let snapshot = vm.checked_snapshot().await?;
    let stats = vm.stats().await?;
    ensure!(stats.bugs() == 0 && stats.leaked() == 0 && stats.active() == 0, "unclean stats after boot: {stats:?}");
    let mut goldens = Goldens::new();
    goldens.push("boot", snapshot.render());
    Ok(goldens)
}
