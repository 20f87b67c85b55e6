//! PCI hot-plug on `pc` (ACPI) and `q35` (native PCIe root ports): every
//! change goes through the guest's driver model, the guest ejects only after
//! removal completed, and the snapshot matches query-pci after every step.

mod common;

use anyhow::{Result, ensure};
use harness::Vm;
use harness::hotplug::{Plug, UnplugOrder};

async fn slot(vm: &Vm, n: u8) -> Result<harness::profile::PciSlot> {
    vm.config.profile.pci_slot(n)
}

/// Add edu, pci-testdev and virtio-net-pci, remove the middle one, re-add a
/// different device in its slot; snapshot and query-pci agree throughout.
async fn add_remove_readd(profile: &str) -> Result<()> {
    let mut vm = common::boot(profile, "pci_add_remove_readd").await?;
    let baseline = vm.stats().await?;
    let devices = [("edu", "edu1"), ("pci-testdev", "test2"), ("virtio-net-pci", "net3")];
    for (n, (driver, id)) in devices.iter().enumerate() {
        let plugged = vm.plug(&Plug::new(driver, id).at(&slot(&vm, n as u8 + 1).await?)).await?;
        vm.checked_snapshot().await.map_err(|e| e.context(format!("after adding {id} at {}", plugged.devpath)))?;
    }
    let all_three = vm.checked_snapshot().await?;
    assert_profile_snapshot!(profile, "pci_three_added", all_three.subtree("root/pci0").render());

    let unplugged = vm.unplug("test2").await?;
    ensure!(unplugged.order == UnplugOrder::GuestFirst, "the guest must remove before QEMU deletes: {unplugged:?}");
    vm.checked_snapshot().await?;
    vm.plug(&Plug::new("e1000", "nic2").at(&slot(&vm, 2).await?)).await?;
    let readded = vm.checked_snapshot().await?;
    assert_profile_snapshot!(profile, "pci_middle_replaced", readded.subtree("root/pci0").render());

    for id in ["edu1", "nic2", "net3"] {
        vm.unplug(id).await?;
        vm.checked_snapshot().await?;
    }
    vm.stats().await?.check_baseline(&baseline)?;
    vm.shutdown().await
}

#[tokio::test]
async fn add_remove_readd_pc() -> Result<()> {
    add_remove_readd("pc").await
}

#[tokio::test]
async fn add_remove_readd_q35() -> Result<()> {
    add_remove_readd("q35").await
}
