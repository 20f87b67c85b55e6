//! Checks that the guest's view is true, not only stable: it is compared
//! with QEMU's own account of the hardware.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use qapi::qmp::PciDeviceInfo;

use crate::driverfs::{Entry, Snapshot, unescape};

/// A PCI function as QEMU reports it, flattened out of the bridge tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuFunction {
    pub name: String,
    pub vendor: u16,
    pub device: u16,
    /// 16-bit base class + subclass.
    pub class: u16,
    /// (bar, kind, address, size) with kind "io" or "mem"; QEMU gives -1
    /// as the address of a BAR it does not map.
    pub bars: Vec<(u8, &'static str, i64, u64)>,
    /// Secondary and subordinate bus numbers, for bridges.
    pub buses: Option<(u8, u8)>,
    pub qdev_id: String,
    /// Where the guest must show it: `root/pci0/<bb:ss.f>`, nested under
    /// each bridge on the way.
    pub devpath: String,
}

/// Flatten `query-pci` (devices behind bridges included).
pub fn flatten_query_pci(buses: &[qapi::qmp::PciInfo]) -> Vec<QemuFunction> {
    fn walk(devices: &[PciDeviceInfo], parent: &str, out: &mut Vec<QemuFunction>) {
        for d in devices {
            let name = format!("{:02x}:{:02x}.{}", d.bus, d.slot, d.function);
            let devpath = format!("{parent}/{name}");
            let bars = d
                .regions
                .iter()
                .map(|r| (r.bar as u8, if r.type_ == "io" { "io" } else { "mem" }, r.address, r.size as u64))
                .collect();
            out.push(QemuFunction {
                name,
                vendor: d.id.vendor as u16,
                device: d.id.device as u16,
                class: d.class_info.class as u16,
                bars,
                buses: d.pci_bridge.as_ref().map(|b| (b.bus.secondary as u8, b.bus.subordinate as u8)),
                qdev_id: d.qdev_id.clone(),
                devpath: devpath.clone(),
            });
            if let Some(children) = d.pci_bridge.as_ref().and_then(|b| b.devices.as_ref()) {
                walk(children, &devpath, out);
            }
        }
    }
    let mut out = Vec::new();
    for bus in buses {
        walk(&bus.devices, "root/pci0", &mut out);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The PCI functions in a snapshot: name → directory path, found through
/// the `bus/pci/devices` links.
pub fn snapshot_pci_functions(snapshot: &Snapshot) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in snapshot.entries() {
        if let Entry::Link { path, target } = e
            && let Some(name) = path.strip_prefix("bus/pci/devices/")
        {
            // Targets are relative to bus/pci/devices: strip the three `..`.
            out.insert(name.to_string(), target.trim_start_matches("../").to_string());
        }
    }
    out
}

fn hex_attr(snapshot: &Snapshot, path: &str) -> Result<u64> {
    let Some(value) = snapshot.value(path) else { bail!("{path} is missing") };
    let digits = value.strip_prefix("0x").unwrap_or(value);
    u64::from_str_radix(digits, 16).map_err(|_| anyhow::anyhow!("{path} is not hex: {value:?}"))
}

/// Every function QEMU reports is in the snapshot with the same vendor,
/// device, class, BAR placement and (bridges) bus range, and the snapshot
/// has nothing else.
pub fn pci_matches_qemu(snapshot: &Snapshot, qemu: &[QemuFunction]) -> Result<()> {
    let guest = snapshot_pci_functions(snapshot);
    let mut problems = Vec::new();
    for f in qemu {
        let Some(dir) = guest.get(&f.name) else {
            problems.push(format!(
                "{} ({:04x}:{:04x}, {}) is in query-pci but not in the snapshot",
                f.name, f.vendor, f.device, f.qdev_id
            ));
            continue;
        };
        let check =
            |attr: &str, want: u64, problems: &mut Vec<String>| match hex_attr(snapshot, &format!("{dir}/{attr}")) {
                Ok(got) if got == want => {}
                Ok(got) => problems.push(format!("{} {attr}: guest {got:#x}, QEMU {want:#x}", f.name)),
                Err(e) => problems.push(e.to_string()),
            };
        check("vendor", u64::from(f.vendor), &mut problems);
        check("device", u64::from(f.device), &mut problems);
        match hex_attr(snapshot, &format!("{dir}/class")) {
            Ok(class) if (class >> 8) as u16 == f.class => {}
            Ok(class) => problems.push(format!("{} class: guest {class:#08x}, QEMU {:#06x}", f.name, f.class)),
            Err(e) => problems.push(e.to_string()),
        }
        let resource = snapshot.value(&format!("{dir}/resource")).map(unescape).unwrap_or_default();
        let resource = String::from_utf8_lossy(&resource);
        for (bar, kind, address, size) in &f.bars {
            // QEMU calls the expansion ROM BAR 6; the guest calls it `rom`.
            let label = if *bar == 6 { "rom ".to_string() } else { format!("bar{bar} ") };
            let line = resource.lines().find(|l| l.starts_with(&label));
            let Some(line) = line else {
                problems.push(format!("{} BAR{bar} ({kind}, {size:#x} bytes) is missing from resource", f.name));
                continue;
            };
            let Some(end) = u64::try_from(*address).ok().and_then(|a| a.checked_add(size.saturating_sub(1))) else {
                if !line.contains("unassigned") {
                    problems.push(format!("{} BAR{bar}: QEMU does not map it, guest says {line:?}", f.name));
                }
                continue;
            };
            let want = format!("{address:#x}-{end:#x}");
            let kind_ok = if *kind == "io" { line.contains(" io ") } else { line.contains(" mem") };
            if !line.ends_with(&want) || !kind_ok {
                problems.push(format!("{} BAR{bar}: guest {line:?}, QEMU {kind} {want}", f.name));
            }
        }
        if let Some((secondary, subordinate)) = f.buses {
            let want = format!("buses {secondary:02x}-{subordinate:02x}");
            if !resource.lines().any(|l| l == want) {
                problems.push(format!("{} bus range: QEMU says {want}, guest resource {resource:?}", f.name));
            }
        }
    }
    for name in guest.keys() {
        if !qemu.iter().any(|f| &f.name == name) {
            problems.push(format!("{name} is in the snapshot but QEMU does not report it"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("the guest's PCI view disagrees with query-pci:\n  {}", problems.join("\n  "))
    }
}
