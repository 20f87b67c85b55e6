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

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{Location, Removal, qom_get};
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
}
