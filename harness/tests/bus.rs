//! The bus locators against real QEMU. For SCSI: QEMU's own view of a disk
//! (`qom-get`) names the HBA, target and LUN the guest's naming follows,
//! `query-pci` places the HBA, and QEMU unplugs a disk without asking the
//! guest. (Where the guest shows the disk comes with its SCSI driver; the
//! naming rules are unit-tested in `harness::bus::scsi`.)

use anyhow::{Result, ensure};
use harness::bus::scsi::{ScsiAddress, address};
use harness::bus::{BusKind, locate};
use harness::hotplug::Plug;
use harness::{Vm, VmConfig};

/// The profile's HBA `scsi0` holds `sd0` at target 0; one more disk at
/// target 1 and a node for a hot-plugged one.
const HBA_AND_DISK: &[&str] = &[
    "-blockdev",
    "driver=null-co,node-name=null1,size=1048576,read-zeroes=on",
    "-blockdev",
    "driver=null-co,node-name=null2,size=2097152,read-zeroes=on",
    "-device",
    "scsi-hd,id=disk1,drive=null1,bus=scsi0.0,scsi-id=1,lun=0",
];

#[tokio::test]
async fn qemus_view_of_a_scsi_disk_gives_its_hba_target_and_lun() -> Result<()> {
    let mut config = VmConfig::new("pc", "bus-scsi-qemu-view-pc")?;
    config.extra_args = HBA_AND_DISK.iter().map(|a| a.to_string()).collect();
    let vm = Vm::boot(config).await?;

    ensure!(BusKind::of_device(&vm, "disk1").await? == BusKind::Scsi);
    ensure!(BusKind::of_device(&vm, "scsi0").await? == BusKind::Pci);
    let cold = address(&vm, "disk1").await?;
    ensure!(cold == ScsiAddress { hba: "scsi0".into(), target: 1, lun: 0 }, "{cold:?}");
    let hba = locate(&vm, BusKind::Pci, &cold.hba).await?;
    ensure!(hba.devpath.starts_with("root/pci0/00:"), "the HBA is a function on bus 0: {hba:?}");

    // A hot-added disk reads back the same way; QEMU removes it on its own.
    let disk = Plug::new("scsi-hd", "disk2").bus("scsi0.0").prop("drive", "null2").prop("scsi-id", 2).prop("lun", 1);
    ensure!(disk.kind() == BusKind::Scsi);
    vm.device_add(&disk).await?;
    let hot = address(&vm, "disk2").await?;
    ensure!(hot == ScsiAddress { hba: "scsi0".into(), target: 2, lun: 1 }, "{hot:?}");
    let cursor = vm.qmp.cursor();
    vm.device_del("disk2").await?;
    vm.wait_device_deleted(cursor, "disk2").await?;
    ensure!(!vm.qemu_has_device("disk2").await?);
    vm.shutdown().await
}
