//! USB, checked against QEMU: where the guest must show each USB device
//! QEMU has (from QOM: the device's `type`, its `port` property and the
//! controller its bus belongs to), plug and unplug through QMP, and the
//! whole-tree comparison run after every step.
//!
//! QEMU unplugs USB devices by itself (there is no guest handshake), so an
//! unplug is `device_del`, QEMU's DEVICE_DELETED, and the guest's `remove`
//! of the device once it saw its port go.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{Location, Removal};
use crate::driverfs::Snapshot;
use crate::hotplug::Plug;
use crate::vm::Vm;

/// What a QEMU USB device model says about itself (QEMU 7.2's descriptor
/// tables): vendor, product, product string.
pub fn model_identity(model: &str) -> Option<(u16, u16, &'static str)> {
    Some(match model {
        "usb-kbd" => (0x0627, 0x0001, "QEMU USB Keyboard"),
        "usb-mouse" => (0x0627, 0x0001, "QEMU USB Mouse"),
        "usb-tablet" => (0x0627, 0x0001, "QEMU USB Tablet"),
        "usb-hub" => (0x0409, 0x55aa, "QEMU USB Hub"),
        "usb-storage" => (0x46f4, 0x0001, "QEMU USB HARDDRIVE"),
        _ => return None,
    })
}

/// One USB device as QEMU has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuUsbDevice {
    /// The QOM path (`/machine/peripheral/kbd1`).
    pub qom_path: String,
    /// The qdev id, if it has one.
    pub id: Option<String>,
    /// QEMU's device model (`usb-kbd`, ...).
    pub model: String,
    /// `1` or `1.2`: the port path below the root hub.
    pub port: String,
    /// The QOM path of the controller whose bus it sits on.
    pub controller: String,
}

async fn qom_get(vm: &Vm, path: &str, property: &str) -> Result<Value> {
    vm.qmp
        .execute_raw("qom-get", json!({"path": path, "property": property}))
        .await
        .with_context(|| format!("qom-get {path} {property}"))
}

async fn qom_list(vm: &Vm, path: &str) -> Result<Vec<(String, String)>> {
    let list =
        vm.qmp.execute_raw("qom-list", json!({"path": path})).await.with_context(|| format!("qom-list {path}"))?;
    let Some(entries) = list.as_array() else { bail!("qom-list {path} returned {list}") };
    Ok(entries
        .iter()
        .filter_map(|e| Some((e.get("name")?.as_str()?.to_string(), e.get("type")?.as_str()?.to_string())))
        .collect())
}

/// Every USB device QEMU has, with and without ids (QEMU's own auto-hub
/// would be one without), sorted by controller and port.
pub async fn qemu_usb_devices(vm: &Vm) -> Result<Vec<QemuUsbDevice>> {
    let mut out = Vec::new();
    for container in ["/machine/peripheral", "/machine/peripheral-anon"] {
        for (name, kind) in qom_list(vm, container).await? {
            let Some(model) = kind.strip_prefix("child<").and_then(|k| k.strip_suffix('>')) else { continue };
            if !model.starts_with("usb-") {
                continue;
            }
            let qom_path = format!("{container}/{name}");
            let port = qom_get(vm, &qom_path, "port").await?;
            let Some(port) = port.as_str() else { bail!("{qom_path}: port is {port}") };
            let bus = qom_get(vm, &qom_path, "parent_bus").await?;
            let Some(bus) = bus.as_str() else { bail!("{qom_path}: parent_bus is {bus}") };
            let controller = bus.rsplit_once('/').map(|(c, _)| c.to_string()).unwrap_or_default();
            out.push(QemuUsbDevice {
                id: (container == "/machine/peripheral").then(|| name.clone()),
                qom_path,
                model: model.to_string(),
                port: port.to_string(),
                controller,
            });
        }
    }
    out.sort_by(|a, b| (&a.controller, &a.port).cmp(&(&b.controller, &b.port)));
    Ok(out)
}

/// The guest's root hub directory for each UHCI controller QEMU reports,
/// keyed by the controller's QOM path.
pub async fn root_hubs(vm: &Vm, snapshot: &Snapshot) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for f in vm.query_pci().await? {
        // Serial bus controller, USB.
        if f.class != 0x0c03 {
            continue;
        }
        let qom = if f.qdev_id.is_empty() {
            continue;
        } else {
            format!("/machine/peripheral/{}", f.qdev_id)
        };
        let hubs: Vec<&str> = snapshot.children(&f.devpath).into_iter().filter(|c| c.starts_with("usb")).collect();
        match hubs.as_slice() {
            [hub] => {
                out.insert(qom, format!("{}/{hub}", f.devpath));
            }
            _ => bail!("the guest shows {} root hubs under {} ({}): {hubs:?}", hubs.len(), f.devpath, f.qdev_id),
        }
    }
    Ok(out)
}

/// Each usb-storage stick QEMU has, by the name its SCSI bus carries (its
/// id), with the guest directory of its interface (`.../1-1/1-1:1.0`),
/// where the stick's `host<H>` must be.
pub fn storage_adapters(qemu: &[QemuUsbDevice], root_hubs: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    qemu.iter()
        .filter(|d| d.model == "usb-storage")
        .filter_map(|d| {
            let device = device_devpath(root_hubs.get(&d.controller)?, &d.port);
            let name = device.rsplit('/').next()?.to_string();
            let hba = d.qom_path.rsplit('/').next()?.to_string();
            Some((hba, format!("{device}/{name}:1.0")))
        })
        .collect()
}

/// Where the guest shows the USB device QEMU has at `port` (`2`, or `2.1`
/// behind a hub) of the controller whose root hub is at `root_hub`
/// (`root/pci0/00:01.2/usb1` and `2.1` give `.../usb1/1-2/1-2.1`).
pub fn device_devpath(root_hub: &str, port: &str) -> String {
    let bus = root_hub.rsplit('/').next().unwrap_or_default().trim_start_matches("usb");
    let mut path = root_hub.to_string();
    let mut name = format!("{bus}-");
    for (i, p) in port.split('.').enumerate() {
        if i > 0 {
            name.push('.');
        }
        name.push_str(p);
        path = format!("{path}/{name}");
    }
    path
}

/// The guest's USB devices (not root hubs, not interfaces), from the
/// `bus/usb/devices` links: name → directory.
pub fn snapshot_usb_devices(snapshot: &Snapshot) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in snapshot.entries() {
        if let crate::driverfs::Entry::Link { path, target } = e
            && let Some(name) = path.strip_prefix("bus/usb/devices/")
            && !name.contains(':')
            && !name.starts_with("usb")
        {
            out.insert(name.to_string(), target.trim_start_matches("../").to_string());
        }
    }
    out
}

/// The guest's USB tree equals QEMU's: every device QEMU has is at the path
/// its controller and port give, with its model's IDs and product string;
/// every UHCI controller has its root hub; nothing else is there.
pub fn usb_matches_qemu(
    snapshot: &Snapshot,
    qemu: &[QemuUsbDevice],
    root_hubs: &BTreeMap<String, String>,
) -> Result<()> {
    let guest = snapshot_usb_devices(snapshot);
    let mut expected = BTreeMap::new();
    let mut problems = Vec::new();
    for d in qemu {
        let Some(root) = root_hubs.get(&d.controller) else {
            problems.push(format!("{} sits on {}, which has no root hub in the guest", d.qom_path, d.controller));
            continue;
        };
        let devpath = device_devpath(root, &d.port);
        let name = devpath.rsplit('/').next().unwrap_or_default().to_string();
        expected.insert(name.clone(), devpath.clone());
        match guest.get(&name) {
            None => {
                problems.push(format!("{} ({}, port {}) is not in the guest at {devpath}", d.qom_path, d.model, d.port))
            }
            Some(dir) if *dir != devpath => {
                problems.push(format!("{name}: guest at {dir}, QEMU's port says {devpath}"))
            }
            Some(_) => {
                if let Some((vendor, product, string)) = model_identity(&d.model) {
                    for (attr, want) in [
                        ("idVendor", format!("{vendor:04x}")),
                        ("idProduct", format!("{product:04x}")),
                        ("product", string.to_string()),
                    ] {
                        let got = snapshot.value(&format!("{devpath}/{attr}"));
                        if got != Some(want.as_str()) {
                            problems.push(format!("{name} {attr}: guest {got:?}, {} says {want:?}", d.model));
                        }
                    }
                }
            }
        }
    }
    for (name, dir) in &guest {
        if !expected.contains_key(name) {
            problems.push(format!("{name} ({dir}) is in the guest but QEMU has no device there"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("the guest's USB tree disagrees with QEMU's:\n  {}", problems.join("\n  "))
    }
}

/// A USB device the guest registered, with its first interface.
#[derive(Clone, Debug)]
pub struct UsbPlugged {
    /// The qdev id.
    pub id: String,
    /// Where the guest shows it (`.../usb1/1-1`).
    pub devpath: String,
    /// `device_add` returned → the guest's `add` of the device.
    pub add_latency: Duration,
    /// `device_add` returned → the `add` of its first interface.
    pub interface_latency: Duration,
}

/// Where the guest shows the USB device QEMU calls `id`: its controller's
/// root hub (read from the guest: `usb<N>` under the controller's PCI
/// function) and QOM's `port` (`1-2.3`). USB devices go without asking
/// the guest.
pub async fn locate(vm: &Vm, id: &str) -> Result<Location> {
    let devices = qemu_usb_devices(vm).await?;
    let d = devices
        .iter()
        .find(|d| d.id.as_deref() == Some(id))
        .with_context(|| format!("QEMU has no USB device with id {id:?}"))?;
    let controller = d.controller.rsplit('/').next().unwrap_or_default();
    let function = vm.pci_devpath(controller).await?;
    // The controller's subtree only: a whole snapshot costs far more on a
    // busy machine, and this runs on every USB plug and unplug.
    let subtree = vm.call_text(&format!("snapshot {function}")).await?;
    let prefix = format!("d {function}/");
    let hubs: Vec<&str> = subtree
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter(|name| name.starts_with("usb") && !name.contains('/'))
        .collect();
    let [hub] = hubs.as_slice() else {
        bail!("the guest shows {} root hubs under {function} ({controller}): {hubs:?}", hubs.len())
    };
    Ok(Location { devpath: device_devpath(&format!("{function}/{hub}"), &d.port), removal: Removal::QemuAlone })
}

impl Vm {
    /// Where the guest must show the USB device QEMU calls `id`.
    pub async fn usb_devpath(&self, id: &str) -> Result<String> {
        Ok(locate(self, id).await?.devpath)
    }

    /// `device_add` a USB device (always with `bus` and `port`, or QEMU may
    /// invent a hub) and wait for the guest's `add` of it and of its first
    /// interface.
    pub async fn usb_plug(&self, plug: &Plug) -> Result<UsbPlugged> {
        if plug.bus.is_none() || !plug.props.iter().any(|(k, _)| k == "port") {
            bail!("USB device {} needs bus= and port= (without them QEMU may add a hub of its own)", plug.id);
        }
        let cursor = self.control.uevent_cursor();
        self.device_add(plug).await.with_context(|| format!("device_add {} id={}", plug.driver, plug.id))?;
        let returned = Instant::now();
        let devpath = self.usb_devpath(&plug.id).await?;
        let what = format!("add {devpath} (device_add {} id={})", plug.driver, plug.id);
        let added = self.wait_uevent(cursor, &what, |u| u.action == "add" && u.devpath == devpath).await?;
        let interface = format!("{devpath}/");
        let what = format!("add of an interface below {devpath}");
        let iface = self
            .wait_uevent(cursor, &what, |u| {
                u.action == "add" && u.devpath.starts_with(&interface) && u.devpath.contains(':')
            })
            .await?;
        Ok(UsbPlugged {
            id: plug.id.clone(),
            devpath,
            add_latency: added.at.saturating_duration_since(returned),
            interface_latency: iface.at.saturating_duration_since(returned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "root/pci0/00:01.2/usb1";

    /// A guest snapshot with the given devices (name, product, vendor).
    fn guest(devices: &[(&str, &str, &str)]) -> Snapshot {
        let mut text = String::from("d bus\nd bus/usb\nd bus/usb/devices\n");
        for (name, _, _) in devices {
            let port = name.trim_start_matches("1-");
            text.push_str(&format!("l bus/usb/devices/{name} -> ../../../{}\n", device_devpath(ROOT, port)));
        }
        text.push_str("d root\nd root/pci0\nd root/pci0/00:01.2\nd root/pci0/00:01.2/usb1\n");
        for (name, product, vendor) in devices {
            let path = device_devpath(ROOT, name.trim_start_matches("1-"));
            text.push_str(&format!(
                "d {path}\nf {path}/idProduct 0001\nf {path}/idVendor {vendor}\nf {path}/product {product}\n"
            ));
        }
        Snapshot::parse(text.as_bytes()).unwrap()
    }

    fn qemu(model: &str, port: &str) -> QemuUsbDevice {
        QemuUsbDevice {
            qom_path: format!("/machine/peripheral/{model}{port}"),
            id: Some(format!("{model}{port}")),
            model: model.into(),
            port: port.into(),
            controller: "/machine/peripheral/uhci".into(),
        }
    }

    fn hubs() -> BTreeMap<String, String> {
        BTreeMap::from([("/machine/peripheral/uhci".to_string(), ROOT.to_string())])
    }

    #[test]
    fn the_usb_oracle_accepts_the_same_tree_and_names_each_difference() {
        let kbd = ("1-1", "QEMU USB Keyboard", "0627");
        usb_matches_qemu(&guest(&[kbd]), &[qemu("usb-kbd", "1")], &hubs()).unwrap();
        let missing = usb_matches_qemu(&guest(&[]), &[qemu("usb-kbd", "1")], &hubs()).unwrap_err().to_string();
        assert!(missing.contains("usb-kbd1 (usb-kbd, port 1) is not in the guest"), "{missing}");
        let extra = usb_matches_qemu(&guest(&[kbd]), &[], &hubs()).unwrap_err().to_string();
        assert!(
            extra.contains("1-1 (root/pci0/00:01.2/usb1/1-1) is in the guest but QEMU has no device there"),
            "{extra}"
        );
        let wrong = usb_matches_qemu(&guest(&[kbd]), &[qemu("usb-mouse", "1")], &hubs()).unwrap_err().to_string();
        assert!(wrong.contains("1-1 product") && wrong.contains("QEMU USB Mouse"), "{wrong}");
        let vendor =
            usb_matches_qemu(&guest(&[("1-1", "QEMU USB Keyboard", "46f4")]), &[qemu("usb-kbd", "1")], &hubs())
                .unwrap_err()
                .to_string();
        assert!(vendor.contains("idVendor"), "{vendor}");
        let moved = usb_matches_qemu(&guest(&[kbd]), &[qemu("usb-kbd", "2")], &hubs()).unwrap_err().to_string();
        assert!(moved.contains("port 2") && moved.contains("1-1 ("), "{moved}");
        let no_root =
            usb_matches_qemu(&guest(&[kbd]), &[qemu("usb-kbd", "1")], &BTreeMap::new()).unwrap_err().to_string();
        assert!(no_root.contains("which has no root hub in the guest"), "{no_root}");
    }

    #[test]
    fn devpaths_nest_behind_hubs() {
        assert_eq!(device_devpath("root/pci0/00:01.2/usb1", "2"), "root/pci0/00:01.2/usb1/1-2");
        assert_eq!(device_devpath("root/pci0/00:01.2/usb1", "1.4.2"), "root/pci0/00:01.2/usb1/1-1/1-1.4/1-1.4.2");
    }
}
