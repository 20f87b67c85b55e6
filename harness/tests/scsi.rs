//! virtio-scsi end to end, on both virtio transports QEMU gives by default:
//! transitional (1af4:1004, legacy I/O BAR) on `pc`, modern-only (1af4:1048,
//! memory BARs) behind a q35 `pcie-root-port`. A cold-plugged disk made from
//! the MBR image must show QEMU's identity, the image's size, signature and
//! partitions, all read through the SCSI bus; a hot-added and hot-removed
//! `scsi-hd` must come and go (QEMU unplugs it without asking the guest).

mod common;

use anyhow::{Context, Result, ensure};
use harness::hotplug::Plug;
use harness::{Vm, VmConfig};
use serde_json::json;

/// A second HBA `tscsi` (beside the profile's `scsi0`), its SCSI disk (a
/// private copy of the MBR image) at target 1 LUN 0, and a spare null-co
/// node for hot-plug.
async fn boot_with_hba(profile: &str, test: &str, hba: &str, dir: &std::path::Path) -> Result<Vm> {
    images::ensure().context("building the disk image")?;
    let disk = dir.join("scsi-disk.img");
    std::fs::copy(harness::paths::image(images::DISK.file), &disk).context("copying the disk image")?;
    let mut config = VmConfig::new(profile, &format!("{test}-{profile}"))?;
    config.extra_args = [
        "-blockdev",
        &format!("driver=file,node-name=td0-file,filename={}", disk.display()),
        "-blockdev",
        "driver=raw,node-name=td0,file=td0-file",
        "-blockdev",
        "driver=null-co,node-name=spare,size=2097152,read-zeroes=on",
        "-device",
        hba,
        "-device",
        "scsi-hd,drive=td0,bus=tscsi.0,scsi-id=1,lun=0,id=disk1",
    ]
    .map(String::from)
    .to_vec();
    Vm::boot(config).await
}

fn line<'a>(snapshot: &'a str, path: &str, attr: &str) -> Option<&'a str> {
    let prefix = format!("f {path}/{attr} ");
    snapshot.lines().find_map(|l| l.strip_prefix(prefix.as_str()))
}

async fn disk_and_hotplug(profile: &str, hba: &str, function: &str, device_id: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vm = boot_with_hba(profile, "scsi-transport", hba, dir.path()).await?;
    // The guest numbers hosts in the order it finds them: read ours.
    let subtree = vm.call_text(&format!("snapshot {function}")).await?;
    let number = harness::bus::scsi::host_number(&subtree, function)?;
    let host = format!("{function}/host{number}");
    let lun = format!("{host}/target{number}:0:1/{number}:0:1:0");
    vm.settle().await?;
    let snapshot = vm.call_text(&format!("snapshot {function}")).await?;
    let recipe = &images::DISK;
    let expect = [
        (function.to_string(), "device", device_id.to_string()),
        (lun.clone(), "vendor", "QEMU".into()),
        (lun.clone(), "model", "QEMU HARDDISK".into()),
        (lun.clone(), "type", "0".into()),
        (lun.clone(), "capacity", recipe.sectors.to_string()),
        (lun.clone(), "block_size", "512".into()),
        (lun.clone(), "signature", format!("{:#010x}", recipe.signature)),
    ];
    for (path, attr, value) in &expect {
        let got = line(&snapshot, path, attr);
        ensure!(got == Some(value.as_str()), "{path}/{attr}: {got:?}, expected {value:?}\n{snapshot}");
    }
    for p in recipe.partitions {
        let part = format!("{lun}/part{}", p.number);
        ensure!(line(&snapshot, &part, "start") == Some(p.start.to_string().as_str()), "{part}/start\n{snapshot}");
        ensure!(line(&snapshot, &part, "size") == Some(p.sectors.to_string().as_str()), "{part}/size\n{snapshot}");
    }

    // Hot-add at target 2 LUN 3, then unplug: QEMU completes the unplug by
    // itself; the guest follows the event queue.
    let new_lun = format!("{host}/target{number}:0:2/{number}:0:2:3");
    let cursor = vm.control.uevent_cursor();
    let plug = Plug::new("scsi-hd", "hot1")
        .bus("tscsi.0")
        .prop("scsi-id", json!(2))
        .prop("lun", json!(3))
        .prop("drive", json!("spare"));
    vm.device_add(&plug).await.context("device_add scsi-hd")?;
    vm.wait_uevent(cursor, &format!("add {new_lun}"), |u| u.action == "add" && u.devpath == new_lun).await?;
    ensure!(
        vm.call_text(&format!("read {}", vm.call_text(&format!("open {new_lun}/capacity")).await?)).await? == "4096\n"
    );
    let (cursor, qcursor) = (vm.control.uevent_cursor(), vm.qmp.cursor());
    vm.device_del("hot1").await.context("device_del hot1")?;
    vm.wait_uevent(cursor, &format!("remove {new_lun}"), |u| u.action == "remove" && u.devpath == new_lun).await?;
    vm.wait_device_deleted(qcursor, "hot1").await?;
    vm.settle().await?;
    let after = vm.call_text(&format!("snapshot {host}")).await?;
    ensure!(!after.contains(&format!("target{number}:0:2")), "the target went with its last LUN\n{after}");
    vm.shutdown().await
}

#[tokio::test]
async fn legacy_transport_on_pc() -> Result<()> {
    disk_and_hotplug("pc", "virtio-scsi-pci,id=tscsi,addr=0x6", "root/pci0/00:06.0", "0x1004").await
}

#[tokio::test]
async fn modern_transport_behind_a_q35_root_port() -> Result<()> {
    disk_and_hotplug("q35", "virtio-scsi-pci,id=tscsi,bus=rp1", "root/pci0/00:10.0/01:00.0", "0x1048").await
}
