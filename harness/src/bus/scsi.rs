//! SCSI: where the guest shows a SCSI device QEMU has, from QEMU's own view.
//! QEMU unplugs a SCSI device without asking the guest, so "gone" is
//! DEVICE_DELETED plus the guest's `remove` uevent, with no eject.
//!
//! The naming contract with the guest (Linux's):
//! - QEMU's view: `qom-get` of the device's `parent_bus` (a QOM path ending
//!   in the bus name, e.g. `/machine/peripheral/scsi0/virtio-backend/scsi0.0`;
//!   QEMU 7.2 has no readable `bus` property), `scsi-id` and `lun`. The HBA's
//!   id is the bus name up to its last `.` (`scsi0.0` → `scsi0`), and the
//!   HBA's PCI function is where `query-pci` puts that id;
//! - the guest names the host `host<H>` directly under the HBA's function
//!   (H is the guest's own number: exactly one `host*` directory must be
//!   there), the target `target<H>:0:<id>` under the host, and the LUN
//!   `<H>:0:<id>:<lun>` under the target:
//!   `root/pci0/00:04.0/host0/target0:0:1/0:0:1:0`.
//!
//! [`scsi_matches_qemu`] is the oracle every checked snapshot runs: each
//! `scsi-hd`/`scsi-cd` QEMU has (QOM) is where the rules above put it, with
//! QEMU's model and size (`query-block`), and the guest shows no other LUN.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{Location, Removal, qom_get};
use crate::checks::QemuFunction;
use crate::driverfs::{Entry, Snapshot, unescape};
use crate::vm::Vm;

/// Where QEMU has a SCSI device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScsiAddress {
    /// The id of the HBA the device is plugged into (`scsi0`).
    pub hba: String,
    /// The device's `scsi-id`: its target.
    pub target: u32,
    /// The device's `lun`.
    pub lun: u32,
}

/// The bus name at the end of QEMU's `parent_bus` QOM path
/// (`/machine/peripheral/scsi0/virtio-backend/scsi0.0` → `scsi0.0`).
pub fn bus_name(parent_bus: &str) -> Result<&str> {
    match parent_bus.rsplit('/').next() {
        Some(name) if !name.is_empty() => Ok(name),
        _ => bail!("QEMU's parent_bus {parent_bus:?} does not end in a bus name"),
    }
}

/// The HBA's id from its bus name: everything before the last `.`
/// (`scsi0.0` → `scsi0`).
pub fn hba_of_bus(bus: &str) -> Result<&str> {
    match bus.rsplit_once('.') {
        Some((hba, number)) if !hba.is_empty() && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(hba)
        }
        _ => bail!("SCSI bus name {bus:?} is not <hba id>.<number>"),
    }
}

/// The address from the three `qom-get` answers: `parent_bus`, `scsi-id`,
/// `lun`.
pub fn address_from_qom(parent_bus: &Value, scsi_id: &Value, lun: &Value) -> Result<ScsiAddress> {
    let parent_bus = parent_bus.as_str().with_context(|| format!("parent_bus is not a string: {parent_bus}"))?;
    let hba = hba_of_bus(bus_name(parent_bus)?)?.to_string();
    let number = |what: &str, v: &Value| -> Result<u32> {
        v.as_u64().and_then(|n| u32::try_from(n).ok()).with_context(|| format!("{what} is not a number: {v}"))
    };
    Ok(ScsiAddress { hba, target: number("scsi-id", scsi_id)?, lun: number("lun", lun)? })
}

/// The guest's number for the host under the HBA's function at
/// `hba_devpath`, from the guest's `snapshot <hba_devpath>` answer: the one
/// `host<H>` directory directly under it.
pub fn host_number(subtree: &str, hba_devpath: &str) -> Result<u32> {
    let prefix = format!("d {hba_devpath}/host");
    let hosts: Vec<&str> =
        subtree.lines().filter_map(|line| line.strip_prefix(&prefix)).filter(|rest| !rest.contains('/')).collect();
    match hosts.as_slice() {
        [number] => number
            .parse()
            .ok()
            .filter(|_| number.bytes().all(|b| b.is_ascii_digit()))
            .with_context(|| format!("{hba_devpath}/host{number} is not host<number>")),
        [] => bail!("the guest shows no host<N> directory under the SCSI HBA at {hba_devpath}"),
        many => bail!("the guest shows {} host directories under the SCSI HBA at {hba_devpath}: {many:?}", many.len()),
    }
}

/// The LUN's devpath: `<hba>/host<H>/target<H>:0:<id>/<H>:0:<id>:<lun>`.
pub fn lun_devpath(hba_devpath: &str, host: u32, address: &ScsiAddress) -> String {
    let ScsiAddress { target, lun, .. } = address;
    format!("{hba_devpath}/host{host}/target{host}:0:{target}/{host}:0:{target}:{lun}")
}

/// Where QEMU has the SCSI device it calls `id`.
pub async fn address(vm: &Vm, id: &str) -> Result<ScsiAddress> {
    let parent_bus = qom_get(vm, id, "parent_bus").await?;
    let scsi_id = qom_get(vm, id, "scsi-id").await?;
    let lun = qom_get(vm, id, "lun").await?;
    address_from_qom(&parent_bus, &scsi_id, &lun).with_context(|| format!("QEMU's address of SCSI device {id}"))
}

/// Where the guest shows the SCSI device QEMU calls `id`: QEMU's address,
/// the HBA's function from `query-pci`, and the guest's host number read
/// from its snapshot of that function.
pub async fn locate(vm: &Vm, id: &str) -> Result<Location> {
    let address = address(vm, id).await?;
    let hba_devpath = vm.pci_devpath(&address.hba).await.with_context(|| format!("the HBA of SCSI device {id}"))?;
    let subtree = vm.call_text(&format!("snapshot {hba_devpath}")).await?;
    let host = host_number(&subtree, &hba_devpath)?;
    Ok(Location { devpath: lun_devpath(&hba_devpath, host, &address), removal: Removal::QemuAlone })
}

/// A SCSI device as QEMU has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuScsiDevice {
    /// QEMU's id (or QOM path, for a device without one).
    pub id: String,
    /// `scsi-cd` rather than `scsi-hd`.
    pub cdrom: bool,
    /// Where the LUN sits: HBA, target and LUN numbers.
    pub address: ScsiAddress,
    /// INQUIRY's product: the device's `product` property.
    pub model: String,
    /// The medium's size in bytes from `query-block`; `None`: no medium.
    pub bytes: Option<u64>,
}

impl QemuScsiDevice {
    fn describe(&self) -> String {
        let kind = if self.cdrom { "scsi-cd" } else { "scsi-hd" };
        let ScsiAddress { hba, target, lun } = &self.address;
        format!("{} ({kind} on {hba}, target {target} LUN {lun})", self.id)
    }
}

/// `qom-get` of a property at a QOM path.
async fn qom_get_path(vm: &Vm, path: &str, property: &str) -> Result<Value> {
    vm.qmp
        .execute_raw("qom-get", json!({"path": path, "property": property}))
        .await
        .with_context(|| format!("qom-get {path} {property}"))
}

/// Every `scsi-hd` and `scsi-cd` QEMU has (named or not), with its address,
/// model and medium size.
pub async fn qemu_scsi_devices(vm: &Vm) -> Result<Vec<QemuScsiDevice>> {
    let blocks = vm.qmp.execute_raw("query-block", json!({})).await.context("query-block")?;
    let blocks = blocks.as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    // A usb-storage stick makes its own disk, without an id: a `scsi-disk`
    // on the stick's SCSI bus (`/machine/peripheral/stick/stick.0/legacy[0]`).
    let mut containers: Vec<String> = vec!["/machine/peripheral".into(), "/machine/peripheral-anon".into()];
    while let Some(container) = containers.pop() {
        let container = container.as_str();
        let children = vm
            .qmp
            .execute_raw("qom-list", json!({"path": container}))
            .await
            .with_context(|| format!("qom-list {container}"))?;
        for child in children.as_array().into_iter().flatten() {
            let (Some(name), Some(kind)) = (child["name"].as_str(), child["type"].as_str()) else { continue };
            let cdrom = match kind {
                "child<scsi-hd>" | "child<scsi-disk>" => false,
                "child<scsi-cd>" => true,
                "child<usb-storage>" => {
                    containers.push(format!("{container}/{name}"));
                    continue;
                }
                "child<SCSI>" if container.starts_with("/machine/peripheral") => {
                    containers.push(format!("{container}/{name}"));
                    continue;
                }
                _ => continue,
            };
            let path = format!("{container}/{name}");
            let id = if container == "/machine/peripheral" { name.to_string() } else { path.clone() };
            let address = address_from_qom(
                &qom_get_path(vm, &path, "parent_bus").await?,
                &qom_get_path(vm, &path, "scsi-id").await?,
                &qom_get_path(vm, &path, "lun").await?,
            )
            .with_context(|| format!("QEMU's address of SCSI device {id}"))?;
            let model = qom_get_path(vm, &path, "product").await?;
            let model = model.as_str().with_context(|| format!("{id}'s product is not a string: {model}"))?;
            let block = blocks.iter().find(|b| b["qdev"] == json!(id) || b["qdev"] == json!(path));
            let bytes = block.and_then(|b| b["inserted"]["image"]["virtual-size"].as_u64());
            out.push(QemuScsiDevice { id, cdrom, address, model: model.to_string(), bytes });
        }
    }
    Ok(out)
}

/// The guest's LUNs in a snapshot: `H:0:id:lun` → directory, found through
/// the `bus/scsi/devices` links.
pub fn snapshot_luns(snapshot: &Snapshot) -> Vec<(String, String)> {
    snapshot
        .entries()
        .iter()
        .filter_map(|e| match e {
            Entry::Link { path, target } => {
                let name = path.strip_prefix("bus/scsi/devices/")?;
                (name.split(':').count() == 4).then(|| (name.to_string(), target.trim_start_matches("../").to_string()))
            }
            _ => None,
        })
        .collect()
}

/// Every SCSI device QEMU has is in the snapshot where the naming rules put
/// it (under the one `host<H>` of its HBA's function, from `query-pci`),
/// with QEMU's model, the right peripheral type, and its size: a disk's
/// `capacity` in 512-byte sectors, a CD's `media_present` and its `disc`'s
/// `capacity`. The guest shows no other LUN. Each problem names the device
/// and the field.
///
/// `usb_adapters` maps a usb-storage stick's id to its interface's
/// directory: the stick is the HBA of the disk QEMU made for it.
pub fn scsi_matches_qemu(
    snapshot: &Snapshot,
    qemu: &[QemuScsiDevice],
    pci: &[QemuFunction],
    usb_adapters: &BTreeMap<String, String>,
) -> Result<()> {
    let mut problems = Vec::new();
    let mut expected = BTreeSet::new();
    let text = |path: &str| snapshot.value(path).map(|v| String::from_utf8_lossy(&unescape(v)).trim_end().to_string());
    for device in qemu {
        let what = device.describe();
        let adapter = pci
            .iter()
            .find(|f| f.qdev_id == device.address.hba)
            .map(|f| f.devpath.clone())
            .or_else(|| usb_adapters.get(&device.address.hba).cloned());
        let Some(adapter) = adapter else {
            problems.push(format!("{what}: its HBA {} is neither in query-pci nor a usb-storage", device.address.hba));
            continue;
        };
        let hosts: Vec<&str> = snapshot
            .children(&adapter)
            .into_iter()
            .filter(|c| c.strip_prefix("host").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
            .collect();
        let [host] = hosts.as_slice() else {
            problems.push(format!("{what}: the guest shows {} host<N> directories under {adapter}", hosts.len()));
            continue;
        };
        let number: u32 = host["host".len()..].parse().expect("digits");
        let dir = lun_devpath(&adapter, number, &device.address);
        expected.insert(dir.clone());
        if !matches!(snapshot.get(&dir), Some(Entry::Dir { .. })) {
            problems.push(format!("{what} is in QEMU but the snapshot has no LUN at {dir}"));
            continue;
        }
        let mut field = |attr: &str, want: String| {
            let got = text(&format!("{dir}/{attr}"));
            if got.as_deref() != Some(want.as_str()) {
                problems.push(format!("{what} {attr}: guest {got:?}, QEMU {want:?}"));
            }
        };
        field("model", device.model.clone());
        field("type", (if device.cdrom { "5" } else { "0" }).to_string());
        match (device.cdrom, device.bytes) {
            (false, Some(bytes)) => field("capacity", (bytes / 512).to_string()),
            (false, None) => problems.push(format!("{what}: query-block gives no medium for a disk")),
            (true, medium) => {
                field("media_present", (if medium.is_some() { "1" } else { "0" }).to_string());
                let disc = format!("{dir}/disc");
                match medium {
                    Some(bytes) => {
                        let got = text(&format!("{disc}/capacity"));
                        if got != Some((bytes / 512).to_string()) {
                            problems.push(format!("{what} disc/capacity: guest {got:?}, QEMU {} sectors", bytes / 512));
                        }
                    }
                    None if snapshot.get(&disc).is_some() => {
                        problems.push(format!("{what} disc: the guest shows a medium, QEMU has none"))
                    }
                    None => {}
                }
            }
        }
    }
    for (name, dir) in snapshot_luns(snapshot) {
        if !expected.contains(&dir) {
            problems.push(format!("LUN {name} at {dir} is in the snapshot but QEMU has no SCSI device there"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("the guest's SCSI view disagrees with QEMU's:\n  {}", problems.join("\n  "))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn qemus_view_gives_the_hba_target_and_lun() {
        let parent_bus = json!("/machine/peripheral/scsi0/virtio-backend/scsi0.0");
        let address = address_from_qom(&parent_bus, &json!(1), &json!(0)).unwrap();
        assert_eq!(address, ScsiAddress { hba: "scsi0".into(), target: 1, lun: 0 });
        // An id with dots keeps all but the bus number.
        let dotted = json!("/machine/peripheral/hba.two/virtio-backend/hba.two.0");
        assert_eq!(address_from_qom(&dotted, &json!(3), &json!(1)).unwrap().hba, "hba.two");
    }

    #[test]
    fn malformed_qom_answers_are_refused_with_what_was_wrong() {
        let err = |p: Value, id: Value, lun: Value| format!("{:#}", address_from_qom(&p, &id, &lun).unwrap_err());
        assert!(err(json!(42), json!(1), json!(0)).contains("parent_bus is not a string"));
        assert!(err(json!("/machine/x/"), json!(1), json!(0)).contains("does not end in a bus name"));
        assert!(err(json!("/machine/peripheral/scsi0/bus"), json!(1), json!(0)).contains("is not <hba id>.<number>"));
        assert!(err(json!("/m/scsi0.x"), json!(1), json!(0)).contains("is not <hba id>.<number>"));
        assert!(err(json!("/m/.0"), json!(1), json!(0)).contains("is not <hba id>.<number>"));
        assert!(err(json!("/m/scsi0.0"), json!("1"), json!(0)).contains("scsi-id is not a number"));
        assert!(err(json!("/m/scsi0.0"), json!(1), json!(-1)).contains("lun is not a number"));
    }

    #[test]
    fn the_lun_lives_under_the_one_host_of_the_hbas_function() {
        // What the guest answers `snapshot root/pci0/00:04.0` with.
        let s = "d root/pci0/00:04.0\n\
                 f root/pci0/00:04.0/class 0x010000\n\
                 d root/pci0/00:04.0/host2\n\
                 d root/pci0/00:04.0/host2/target2:0:1\n\
                 d root/pci0/00:04.0/host2/target2:0:1/2:0:1:0\n\
                 l root/pci0/00:04.0/host2/target2:0:1/2:0:1:0/driver -> ../../../../../../bus/scsi/drivers/sd\n";
        let host = host_number(s, "root/pci0/00:04.0").unwrap();
        assert_eq!(host, 2);
        let address = ScsiAddress { hba: "scsi0".into(), target: 1, lun: 0 };
        assert_eq!(lun_devpath("root/pci0/00:04.0", host, &address), "root/pci0/00:04.0/host2/target2:0:1/2:0:1:0");
        let address = ScsiAddress { hba: "scsi0".into(), target: 3, lun: 1 };
        assert_eq!(
            lun_devpath("root/pci0/00:10.0/01:00.0", 0, &address),
            "root/pci0/00:10.0/01:00.0/host0/target0:0:3/0:0:3:1"
        );
    }

    #[test]
    fn no_host_two_hosts_or_a_bad_name_are_errors() {
        let none = "d root/pci0/00:04.0\nf root/pci0/00:04.0/host 1\n";
        assert!(format!("{:#}", host_number(none, "root/pci0/00:04.0").unwrap_err()).contains("no host<N> directory"));
        let two = "d root/pci0/00:04.0\nd root/pci0/00:04.0/host0\nd root/pci0/00:04.0/host1\n";
        assert!(format!("{:#}", host_number(two, "root/pci0/00:04.0").unwrap_err()).contains("2 host directories"));
        let bad = "d root/pci0/00:04.0\nd root/pci0/00:04.0/hostx\n";
        assert!(format!("{:#}", host_number(bad, "root/pci0/00:04.0").unwrap_err()).contains("not host<number>"));
        let signed = "d root/pci0/00:04.0\nd root/pci0/00:04.0/host+1\n";
        assert!(host_number(signed, "root/pci0/00:04.0").is_err());
        // A host of another function does not count.
        let other = "d root/pci0/00:04.0\nd root/pci0/00:05.0\nd root/pci0/00:05.0/host0\n";
        assert!(host_number(other, "root/pci0/00:04.0").is_err());
    }
    /// A guest with one host under 00:04.0 and one disk at target 1 LUN 0.
    const ONE_DISK: &str = "d bus\n\
        d bus/scsi\n\
        d bus/scsi/devices\n\
        l bus/scsi/devices/0:0:1:0 -> ../../../root/pci0/00:04.0/host0/target0:0:1/0:0:1:0\n\
        l bus/scsi/devices/host0 -> ../../../root/pci0/00:04.0/host0\n\
        d root\n\
        d root/pci0\n\
        d root/pci0/00:04.0\n\
        d root/pci0/00:04.0/host0\n\
        d root/pci0/00:04.0/host0/target0:0:1\n\
        d root/pci0/00:04.0/host0/target0:0:1/0:0:1:0\n\
        f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/capacity 8192\n\
        f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/model QEMU HARDDISK\n\
        f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/type 0\n";

    fn hba() -> Vec<QemuFunction> {
        vec![QemuFunction {
            name: "00:04.0".into(),
            vendor: 0x1af4,
            device: 0x1004,
            class: 0x0100,
            irq: None,
            bars: vec![],
            bridge: None,
            qdev_id: "scsi0".into(),
            devpath: "root/pci0/00:04.0".into(),
            parent: None,
        }]
    }

    fn disk(id: &str, target: u32, lun: u32, bytes: u64) -> QemuScsiDevice {
        QemuScsiDevice {
            id: id.into(),
            cdrom: false,
            address: ScsiAddress { hba: "scsi0".into(), target, lun },
            model: "QEMU HARDDISK".into(),
            bytes: Some(bytes),
        }
    }

    fn check(snapshot: &str, qemu: &[QemuScsiDevice]) -> Result<()> {
        scsi_matches_qemu(&Snapshot::parse(snapshot.as_bytes()).unwrap(), qemu, &hba(), &BTreeMap::new())
    }

    fn problem(snapshot: &str, qemu: &[QemuScsiDevice]) -> String {
        format!("{:#}", check(snapshot, qemu).expect_err("the check must fail"))
    }

    #[test]
    fn the_scsi_view_matches_when_guest_and_qemu_agree() {
        check(ONE_DISK, &[disk("sd0", 1, 0, 8192 * 512)]).unwrap();
    }

    #[test]
    fn a_wrong_size_is_named() {
        let e = problem(ONE_DISK, &[disk("sd0", 1, 0, 4096 * 512)]);
        assert!(e.contains("sd0 (scsi-hd on scsi0, target 1 LUN 0) capacity") && e.contains("\"4096\""), "{e}");
    }

    #[test]
    fn a_wrong_model_or_type_is_named() {
        let mut cd = disk("cd1", 1, 0, 8192 * 512);
        cd.cdrom = true;
        cd.model = "QEMU CD-ROM".into();
        let e = problem(ONE_DISK, &[cd]);
        assert!(e.contains("cd1 (scsi-cd on scsi0, target 1 LUN 0) model"), "{e}");
        assert!(e.contains("type: guest Some(\"0\"), QEMU \"5\""), "{e}");
        assert!(e.contains("media_present"), "{e}");
    }

    #[test]
    fn a_missing_lun_is_named() {
        let e = problem(ONE_DISK, &[disk("sd0", 1, 0, 8192 * 512), disk("sd1", 1, 1, 512)]);
        assert!(e.contains("sd1 (scsi-hd on scsi0, target 1 LUN 1) is in QEMU but the snapshot has no LUN at root/pci0/00:04.0/host0/target0:0:1/0:0:1:1"), "{e}");
    }

    #[test]
    fn an_extra_lun_is_named() {
        let e = problem(ONE_DISK, &[]);
        assert!(e.contains("LUN 0:0:1:0 at root/pci0/00:04.0/host0/target0:0:1/0:0:1:0 is in the snapshot but QEMU has no SCSI device there"), "{e}");
    }

    #[test]
    fn a_lun_in_the_wrong_place_is_named_at_both_ends() {
        let e = problem(ONE_DISK, &[disk("sd0", 2, 0, 8192 * 512)]);
        assert!(e.contains("sd0 (scsi-hd on scsi0, target 2 LUN 0) is in QEMU but the snapshot has no LUN at root/pci0/00:04.0/host0/target0:0:2/0:0:2:0"), "{e}");
        assert!(
            e.contains("LUN 0:0:1:0 at root/pci0/00:04.0/host0/target0:0:1/0:0:1:0 is in the snapshot but QEMU"),
            "{e}"
        );
        let mut elsewhere = disk("sd0", 1, 0, 8192 * 512);
        elsewhere.address.hba = "scsi9".into();
        assert!(problem(ONE_DISK, &[elsewhere]).contains("its HBA scsi9 is neither in query-pci nor a usb-storage"));
    }
}
