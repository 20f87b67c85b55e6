//! Checks that the guest's view is true, not only stable: it is compared
//! with QEMU's own account of the hardware (`query-pci`).
//!
//! For every function: its place in the tree (the bridge it sits behind),
//! vendor, device, class, interrupt line, every BAR (index, type, address,
//! size), and for bridges the bus range and the io, memory and prefetchable
//! windows. Every BAR of a function behind a bridge must lie inside that
//! bridge's window of its type. Whatever the guest shows that QEMU does not
//! report (a function, a BAR) is an error too. Each problem names the
//! function and the field.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use qapi::qmp::PciDeviceInfo;

use crate::driverfs::{Entry, Snapshot, unescape};
use crate::media::BlockState;
use crate::profile::IdeDrive;

/// The type of a BAR as QEMU reports it (`type`, `mem_type_64`, `prefetch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarType {
    /// An I/O-space BAR.
    Io,
    /// A 32-bit memory BAR.
    Mem32,
    /// A 64-bit memory BAR.
    Mem64,
}

/// One BAR of a function as QEMU reports it. BAR 6 is the expansion ROM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuBar {
    /// BAR number (6: the expansion ROM).
    pub index: u8,
    /// I/O or memory, 32 or 64 bits.
    pub kind: BarType,
    /// A prefetchable memory BAR.
    pub prefetchable: bool,
    /// `None` when QEMU does not map it (it reports address -1).
    pub address: Option<u64>,
    /// Size in bytes.
    pub size: u64,
}

impl QemuBar {
    /// The guest's label: `bar<N>`, or `rom` for BAR 6.
    pub fn label(&self) -> String {
        if self.index == 6 { "rom".to_string() } else { format!("bar{}", self.index) }
    }

    /// The guest's word for the type: io, mem32, mem64, with `-pref`.
    pub fn guest_kind(&self) -> String {
        let base = match self.kind {
            BarType::Io => return "io".to_string(),
            BarType::Mem32 => "mem32",
            BarType::Mem64 => "mem64",
        };
        if self.prefetchable { format!("{base}-pref") } else { base.to_string() }
    }

    fn range(&self) -> Option<(u64, u64)> {
        let start = self.address?;
        Some((start, start.checked_add(self.size.checked_sub(1)?)?))
    }
}

/// A bridge window as QEMU decodes the bridge's registers: closed when
/// `base > limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First address decoded.
    pub base: u64,
    /// Last address decoded.
    pub limit: u64,
}

impl Window {
    /// The window as an inclusive range, if it is open.
    pub fn open(&self) -> Option<(u64, u64)> {
        (self.base <= self.limit).then_some((self.base, self.limit))
    }
}

/// A bridge's bus numbers and windows as QEMU reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuBridge {
    /// Secondary bus number.
    pub secondary: u8,
    /// Subordinate (highest) bus number below it.
    pub subordinate: u8,
    /// The I/O window.
    pub io: Window,
    /// The memory window.
    pub memory: Window,
    /// The prefetchable memory window.
    pub prefetchable: Window,
}

/// A PCI function as QEMU reports it, flattened out of the bridge tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuFunction {
    /// `bb:ss.f`.
    pub name: String,
    /// PCI vendor id.
    pub vendor: u16,
    /// PCI device id.
    pub device: u16,
    /// 16-bit base class + subclass.
    pub class: u16,
    /// The interrupt line, for functions with an interrupt pin.
    pub irq: Option<u8>,
    /// Its BARs.
    pub bars: Vec<QemuBar>,
    /// Bus numbers and windows, for bridges.
    pub bridge: Option<QemuBridge>,
    /// The device's qdev id (`device_add`'s `id`); empty for built-in devices.
    pub qdev_id: String,
    /// Where the guest must show it: `root/pci0/<bb:ss.f>`, nested under
    /// each bridge on the way.
    pub devpath: String,
    /// The bridge it sits behind (`None`: the root bus).
    pub parent: Option<String>,
}

fn window(range: &qapi::qmp::PciMemoryRange) -> Window {
    // A negative value never comes from real registers; make it closed.
    match (u64::try_from(range.base), u64::try_from(range.limit)) {
        (Ok(base), Ok(limit)) => Window { base, limit },
        _ => Window { base: 1, limit: 0 },
    }
}

/// Flatten `query-pci` (devices behind bridges included).
pub fn flatten_query_pci(buses: &[qapi::qmp::PciInfo]) -> Vec<QemuFunction> {
    fn walk(devices: &[PciDeviceInfo], parent: Option<&QemuFunction>, out: &mut Vec<QemuFunction>) {
        for d in devices {
            let name = format!("{:02x}:{:02x}.{}", d.bus, d.slot, d.function);
            let devpath = format!("{}/{name}", parent.map_or("root/pci0", |p| p.devpath.as_str()));
            let bars = d
                .regions
                .iter()
                .map(|r| QemuBar {
                    index: r.bar as u8,
                    kind: match (r.type_.as_str(), r.mem_type_64) {
                        ("io", _) => BarType::Io,
                        (_, Some(true)) => BarType::Mem64,
                        _ => BarType::Mem32,
                    },
                    prefetchable: r.prefetch == Some(true),
                    address: u64::try_from(r.address).ok(),
                    size: r.size as u64,
                })
                .collect();
            let function = QemuFunction {
                name,
                vendor: d.id.vendor as u16,
                device: d.id.device as u16,
                class: d.class_info.class as u16,
                irq: d.irq.map(|i| i as u8),
                bars,
                bridge: d.pci_bridge.as_ref().map(|b| QemuBridge {
                    secondary: b.bus.secondary as u8,
                    subordinate: b.bus.subordinate as u8,
                    io: window(&b.bus.io_range),
                    memory: window(&b.bus.memory_range),
                    prefetchable: window(&b.bus.prefetchable_range),
                }),
                qdev_id: d.qdev_id.clone(),
                devpath,
                parent: parent.map(|p| p.name.clone()),
            };
            out.push(function.clone());
            if let Some(children) = d.pci_bridge.as_ref().and_then(|b| b.devices.as_ref()) {
                walk(children, Some(&function), out);
            }
        }
    }
    let mut out = Vec::new();
    for bus in buses {
        walk(&bus.devices, None, &mut out);
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

/// An inclusive address range; `None` where the guest says unassigned/none.
type Range = Option<(u64, u64)>;

/// A function's `resource` attribute, parsed.
#[derive(Debug, Default)]
struct GuestResources {
    /// label → (kind, range; `None` when unassigned), in the guest's order.
    bars: Vec<(String, String, Range)>,
    buses: Option<String>,
    /// kind (io, mem, pref) → range (`None`: `none`).
    windows: BTreeMap<String, Range>,
    unparsed: Vec<String>,
}

fn parse_range(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once('-')?;
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    Some((hex(a)?, hex(b)?))
}

fn parse_resources(text: &str) -> GuestResources {
    let mut out = GuestResources::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["buses", range] => out.buses = Some(range.to_string()),
            ["window", kind, "none"] => {
                out.windows.insert(kind.to_string(), None);
            }
            ["window", kind, range] if parse_range(range).is_some() => {
                out.windows.insert(kind.to_string(), parse_range(range));
            }
            [label, kind, "unassigned", _size] => out.bars.push((label.to_string(), kind.to_string(), None)),
            [label, kind, range] if parse_range(range).is_some() => {
                out.bars.push((label.to_string(), kind.to_string(), parse_range(range)))
            }
            _ => out.unparsed.push(line.to_string()),
        }
    }
    out
}

fn hex_attr(snapshot: &Snapshot, path: &str) -> Result<u64> {
    let Some(value) = snapshot.value(path) else { bail!("{path} is missing") };
    let digits = value.strip_prefix("0x").unwrap_or(value);
    u64::from_str_radix(digits, 16).map_err(|_| anyhow::anyhow!("{path} is not hex: {value:?}"))
}

fn show_range(range: Option<(u64, u64)>) -> String {
    range.map_or("none".to_string(), |(a, b)| format!("{a:#x}-{b:#x}"))
}

/// Every function QEMU reports is in the snapshot, in the same place, with
/// the same IDs, class, interrupt line, BARs and (bridges) bus range and
/// windows; every BAR behind a bridge is inside that bridge's windows; and
/// the snapshot has no function or BAR that QEMU does not report.
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
        check_function(snapshot, f, dir, &mut problems);
    }
    for name in guest.keys() {
        if !qemu.iter().any(|f| &f.name == name) {
            problems.push(format!("{name} is in the snapshot but QEMU does not report it"));
        }
    }
    for f in qemu {
        check_inside_parent_windows(f, qemu, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("the guest's PCI view disagrees with query-pci:\n  {}", problems.join("\n  "))
    }
}

fn check_function(snapshot: &Snapshot, f: &QemuFunction, dir: &str, problems: &mut Vec<String>) {
    let name = &f.name;
    if dir != f.devpath {
        let behind = f.parent.as_deref().map_or("the root bus".to_string(), |p| format!("bridge {p}"));
        problems
            .push(format!("{name} parent: the guest shows it at {dir}, QEMU has it behind {behind} ({})", f.devpath));
    }
    let mut check = |attr: &str, want: u64| match hex_attr(snapshot, &format!("{dir}/{attr}")) {
        Ok(got) if got == want => {}
        Ok(got) => problems.push(format!("{name} {attr}: guest {got:#x}, QEMU {want:#x}")),
        Err(e) => problems.push(format!("{name} {attr}: {e}")),
    };
    check("vendor", u64::from(f.vendor));
    check("device", u64::from(f.device));
    match hex_attr(snapshot, &format!("{dir}/class")) {
        Ok(class) if (class >> 8) as u16 == f.class => {}
        Ok(class) => problems.push(format!("{name} class: guest {class:#08x}, QEMU {:#06x}", f.class)),
        Err(e) => problems.push(format!("{name} class: {e}")),
    }
    // QEMU reports the interrupt line of functions with a pin; the guest
    // shows 0 for those without one.
    let want_irq = f.irq.unwrap_or(0);
    match snapshot.value(&format!("{dir}/irq")).map(|v| v.parse::<u8>()) {
        Some(Ok(irq)) if irq == want_irq => {}
        Some(Ok(irq)) => problems.push(format!("{name} irq: guest {irq}, QEMU {want_irq}")),
        Some(Err(_)) | None => problems.push(format!("{name} irq: missing or not a number in the snapshot")),
    }

    let text = snapshot.value(&format!("{dir}/resource")).map(unescape).unwrap_or_default();
    let resources = parse_resources(&String::from_utf8_lossy(&text));
    for line in &resources.unparsed {
        problems.push(format!("{name} resource: unreadable line {line:?}"));
    }
    for bar in &f.bars {
        let label = bar.label();
        let Some((_, kind, range)) = resources.bars.iter().find(|(l, _, _)| *l == label) else {
            problems.push(format!(
                "{name} {label}: missing from resource (QEMU: {} {:#x} bytes at {})",
                bar.guest_kind(),
                bar.size,
                show_range(bar.range())
            ));
            continue;
        };
        if *kind != bar.guest_kind() {
            problems.push(format!("{name} {label} type: guest {kind}, QEMU {}", bar.guest_kind()));
        }
        if *range != bar.range() {
            problems.push(format!(
                "{name} {label} address: guest {}, QEMU {}",
                show_range(*range),
                show_range(bar.range())
            ));
        }
    }
    for (label, kind, range) in &resources.bars {
        if !f.bars.iter().any(|b| b.label() == *label) {
            problems.push(format!(
                "{name} {label}: the guest shows {kind} {} but QEMU reports no such BAR",
                show_range(*range)
            ));
        }
    }

    match (&f.bridge, &resources.buses) {
        (Some(b), Some(buses)) if *buses == format!("{:02x}-{:02x}", b.secondary, b.subordinate) => {}
        (Some(b), buses) => problems.push(format!(
            "{name} bus range: guest {}, QEMU {:02x}-{:02x}",
            buses.as_deref().unwrap_or("none"),
            b.secondary,
            b.subordinate
        )),
        (None, Some(buses)) => problems.push(format!("{name} bus range: guest {buses}, but QEMU reports no bridge")),
        (None, None) => {}
    }
    match &f.bridge {
        Some(b) => {
            for (kind, field, window) in [
                ("io", "io window", b.io),
                ("mem", "memory window", b.memory),
                ("pref", "prefetchable window", b.prefetchable),
            ] {
                // The guest lists io and mem always; a prefetchable window
                // only when it opened one.
                let guest = match resources.windows.get(kind) {
                    Some(range) => *range,
                    None if kind == "pref" => None,
                    None => {
                        problems.push(format!("{name} {field}: missing from resource"));
                        continue;
                    }
                };
                if guest != window.open() {
                    problems.push(format!(
                        "{name} {field}: guest {}, QEMU {}",
                        show_range(guest),
                        show_range(window.open())
                    ));
                }
            }
        }
        None if !resources.windows.is_empty() => {
            problems.push(format!("{name} windows: the guest shows bridge windows, but QEMU reports no bridge"))
        }
        None => {}
    }
}

/// Every mapped BAR of a function behind a bridge lies inside the bridge's
/// window of its type (QEMU's registers: what the hardware routes). A
/// prefetchable BAR may sit in the memory window when there is no
/// prefetchable one.
fn check_inside_parent_windows(f: &QemuFunction, qemu: &[QemuFunction], problems: &mut Vec<String>) {
    let Some(parent) = f.parent.as_ref().and_then(|p| qemu.iter().find(|q| &q.name == p)) else { return };
    let Some(bridge) = &parent.bridge else { return };
    for bar in &f.bars {
        let Some((start, end)) = bar.range() else { continue };
        let (field, window) = match bar.kind {
            BarType::Io => ("io window", bridge.io.open()),
            _ if bar.prefetchable && bridge.prefetchable.open().is_some() => {
                ("prefetchable window", bridge.prefetchable.open())
            }
            _ => ("memory window", bridge.memory.open()),
        };
        if !window.is_some_and(|(base, limit)| base <= start && end <= limit) {
            problems.push(format!(
                "{} {} {start:#x}-{end:#x} lies outside the {field} {} of its bridge {}",
                f.name,
                bar.label(),
                show_range(window),
                parent.name
            ));
        }
    }
}

/// The IDE drives in a snapshot: `bus/ide/devices` name → directory path.
pub fn snapshot_ide_drives(snapshot: &Snapshot) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in snapshot.entries() {
        if let Entry::Link { path, target } = e
            && let Some(name) = path.strip_prefix("bus/ide/devices/")
        {
            out.insert(name.to_string(), target.trim_start_matches("../").to_string());
        }
    }
    out
}

/// Every IDE drive of the profile is in the snapshot where the profile
/// puts it, of the right kind, and agrees with QEMU's `query-block`: a
/// disk's capacity; a CD drive's tray, lock, medium present and the
/// medium's capacity. The guest shows no drive the profile lacks.
pub fn ide_matches_qemu(snapshot: &Snapshot, drives: &[IdeDrive], blocks: &[BlockState]) -> Result<()> {
    let mut problems = Vec::new();
    for drive in drives {
        let id = &drive.id;
        let Some(qemu) = blocks.iter().find(|b| b.id == drive.id) else {
            problems.push(format!("{id}: query-block does not list it"));
            continue;
        };
        if snapshot.get(&drive.devpath).is_none() {
            problems.push(format!("{id}: the snapshot has no drive at {}", drive.devpath));
            continue;
        }
        let attr = |name: &str| snapshot.value(&format!("{}/{name}", drive.devpath));
        let want_media = if drive.cdrom { "cdrom" } else { "disk" };
        if attr("media") != Some(want_media) {
            problems.push(format!("{id} media: guest {:?}, QEMU {want_media}", attr("media")));
        }
        let sectors = |bytes: u64| (bytes / 512).to_string();
        if !drive.cdrom {
            let want = qemu.inserted.map(sectors);
            if attr("capacity").map(str::to_string) != want {
                problems.push(format!("{id} capacity: guest {:?}, QEMU {want:?} sectors", attr("capacity")));
            }
            continue;
        }
        let flag = |name: &str| attr(name) == Some("1");
        let present = qemu.inserted.is_some() && !qemu.tray_open;
        for (field, want) in [("media_present", present), ("tray_open", qemu.tray_open), ("locked", qemu.locked)] {
            if flag(field) != want {
                problems.push(format!("{id} {field}: guest {:?}, QEMU {}", attr(field), u8::from(want)));
            }
        }
        let capacity = snapshot.value(&format!("{}/disc/capacity", drive.devpath));
        match (present, qemu.inserted) {
            (true, Some(bytes)) if capacity == Some(sectors(bytes).as_str()) => {}
            (true, Some(bytes)) => {
                problems.push(format!("{id} disc capacity: guest {capacity:?}, QEMU {} sectors", sectors(bytes)))
            }
            _ if capacity.is_some() => {
                problems.push(format!("{id} disc: the guest shows a disc ({capacity:?}) QEMU does not have"))
            }
            _ => {}
        }
    }
    for (name, dir) in snapshot_ide_drives(snapshot) {
        if !drives.iter().any(|d| d.devpath == dir) {
            problems.push(format!("{name} ({dir}) is on bus/ide but QEMU has no such drive"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("the guest's IDE view disagrees with query-block:\n  {}", problems.join("\n  "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A q35 guest with a bridge hot-added behind rp1 and a virtio-scsi
    // controller behind rp2, as the guest and QEMU 7.2 reported it in the
    // pci-bridge-controller scenario.
    const SNAPSHOT: &str = include_str!("../tests/fixtures/q35-bridge-controller.snapshot");
    const QUERY_PCI: &str = include_str!("../tests/fixtures/q35-bridge-controller.query-pci.json");

    fn qemu() -> Vec<QemuFunction> {
        let buses: Vec<qapi::qmp::PciInfo> = serde_json::from_str(QUERY_PCI).expect("fixture is query-pci output");
        flatten_query_pci(&buses)
    }

    fn function<'a>(qemu: &'a mut [QemuFunction], name: &str) -> &'a mut QemuFunction {
        qemu.iter_mut().find(|f| f.name == name).expect("fixture function")
    }

    fn snapshot_with(from: &str, to: &str) -> Snapshot {
        assert!(SNAPSHOT.contains(from), "{from}");
        Snapshot::parse(SNAPSHOT.replacen(from, to, 1).as_bytes()).unwrap()
    }

    /// The check fails, and its message has `needle` in it.
    fn fails(snapshot: &Snapshot, qemu: &[QemuFunction], needle: &str) {
        let err = pci_matches_qemu(snapshot, qemu).expect_err("the check must fail").to_string();
        assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
    }

    fn original() -> Snapshot {
        Snapshot::parse(SNAPSHOT.as_bytes()).unwrap()
    }

    #[test]
    fn the_real_guest_and_qemu_agree() {
        let qemu = qemu();
        assert_eq!(qemu.len(), 9);
        let scsi = qemu.iter().find(|f| f.name == "05:00.0").unwrap();
        assert_eq!(scsi.parent.as_deref(), Some("00:11.0"));
        assert_eq!(scsi.irq, Some(10));
        assert!(scsi.bars.iter().any(|b| b.index == 4 && b.kind == BarType::Mem64 && b.prefetchable));
        pci_matches_qemu(&original(), &qemu).unwrap();
    }

    #[test]
    fn wrong_ids_and_class_are_named() {
        let mut q = qemu();
        function(&mut q, "05:00.0").vendor = 0x1234;
        fails(&original(), &q, "05:00.0 vendor: guest 0x1af4, QEMU 0x1234");
        let mut q = qemu();
        function(&mut q, "05:00.0").device = 0x1000;
        fails(&original(), &q, "05:00.0 device: guest 0x1048, QEMU 0x1000");
        let mut q = qemu();
        function(&mut q, "05:00.0").class = 0x0200;
        fails(&original(), &q, "05:00.0 class");
    }

    #[test]
    fn a_wrong_irq_is_named() {
        let mut q = qemu();
        function(&mut q, "00:1f.3").irq = Some(11);
        fails(&original(), &q, "00:1f.3 irq: guest 10, QEMU 11");
        fails(&snapshot_with("00:1f.3/irq 10", "00:1f.3/irq 5"), &qemu(), "00:1f.3 irq: guest 5, QEMU 10");
    }

    #[test]
    fn missing_extra_and_misplaced_bars_are_named() {
        let missing = snapshot_with("bar1 mem32 0xc0804000-0xc0804fff\\n", "");
        fails(&missing, &qemu(), "05:00.0 bar1: missing from resource");
        let extra = snapshot_with(
            "bar1 mem32 0xc0804000-0xc0804fff",
            "bar1 mem32 0xc0804000-0xc0804fff\\nbar2 io 0xd000-0xd01f",
        );
        fails(&extra, &qemu(), "05:00.0 bar2: the guest shows io 0xd000-0xd01f but QEMU reports no such BAR");
        let moved = snapshot_with("bar1 mem32 0xc0804000-0xc0804fff", "bar1 mem32 0xc0805000-0xc0805fff");
        fails(&moved, &qemu(), "05:00.0 bar1 address: guest 0xc0805000-0xc0805fff, QEMU 0xc0804000-0xc0804fff");
        let mut q = qemu();
        function(&mut q, "05:00.0").bars.retain(|b| b.index != 1);
        fails(&original(), &q, "05:00.0 bar1: the guest shows mem32");
    }

    #[test]
    fn a_wrong_bar_type_is_named() {
        let mut q = qemu();
        let bar4 = function(&mut q, "05:00.0").bars.iter_mut().find(|b| b.index == 4).unwrap();
        bar4.kind = BarType::Mem32;
        fails(&original(), &q, "05:00.0 bar4 type: guest mem64-pref, QEMU mem32-pref");
        let mut q = qemu();
        function(&mut q, "05:00.0").bars.iter_mut().find(|b| b.index == 4).unwrap().prefetchable = false;
        fails(&original(), &q, "05:00.0 bar4 type: guest mem64-pref, QEMU mem64");
        let io = snapshot_with("bar1 mem32 0xc0804000", "bar1 io 0xc0804000");
        fails(&io, &qemu(), "05:00.0 bar1 type: guest io, QEMU mem32");
    }

    #[test]
    fn extra_and_missing_functions_are_named() {
        let mut q = qemu();
        q.retain(|f| f.name != "05:00.0");
        fails(&original(), &q, "05:00.0 is in the snapshot but QEMU does not report it");
        let mut q = qemu();
        let mut ghost = function(&mut q, "00:1f.3").clone();
        ghost.name = "00:1f.4".to_string();
        ghost.devpath = "root/pci0/00:1f.4".to_string();
        q.push(ghost);
        fails(&original(), &q, "00:1f.4 (8086:2930, ) is in query-pci but not in the snapshot");
    }

    #[test]
    fn a_misplaced_function_is_named_with_its_parent() {
        let mut q = qemu();
        let scsi = function(&mut q, "05:00.0");
        scsi.parent = Some("00:12.0".to_string());
        scsi.devpath = "root/pci0/00:12.0/05:00.0".to_string();
        fails(
            &original(),
            &q,
            "05:00.0 parent: the guest shows it at root/pci0/00:11.0/05:00.0, QEMU has it behind bridge 00:12.0",
        );
    }

    #[test]
    fn bridge_bus_range_and_windows_are_compared() {
        let mut q = qemu();
        function(&mut q, "00:11.0").bridge.as_mut().unwrap().subordinate = 9;
        fails(&original(), &q, "00:11.0 bus range: guest 05-08, QEMU 05-09");
        let mut q = qemu();
        function(&mut q, "00:11.0").bridge.as_mut().unwrap().io = Window { base: 0xe000, limit: 0xefff };
        fails(&original(), &q, "00:11.0 io window: guest 0xd000-0xdfff, QEMU 0xe000-0xefff");
        let mut q = qemu();
        function(&mut q, "00:11.0").bridge.as_mut().unwrap().memory.limit = 0xc0cfffff;
        fails(&original(), &q, "00:11.0 memory window: guest 0xc0800000-0xc0bfffff, QEMU 0xc0800000-0xc0cfffff");
        // QEMU's reset value: an open window at 0 the guest never closed.
        let mut q = qemu();
        function(&mut q, "00:11.0").bridge.as_mut().unwrap().prefetchable = Window { base: 0, limit: 0xfffff };
        fails(&original(), &q, "00:11.0 prefetchable window: guest none, QEMU 0x0-0xfffff");
    }

    #[test]
    fn a_bar_outside_its_bridge_window_is_named() {
        // Guest and QEMU agree on a window too small for the child's BARs.
        let mut q = qemu();
        function(&mut q, "00:11.0").bridge.as_mut().unwrap().memory = Window { base: 0xc0a00000, limit: 0xc0bfffff };
        let snapshot = snapshot_with("window mem 0xc0800000-0xc0bfffff", "window mem 0xc0a00000-0xc0bfffff");
        fails(
            &snapshot,
            &q,
            "05:00.0 bar1 0xc0804000-0xc0804fff lies outside the memory window 0xc0a00000-0xc0bfffff of its bridge 00:11.0",
        );
        // An io BAR behind a bridge whose io window is closed.
        let mut q = qemu();
        let scsi = function(&mut q, "05:00.0");
        scsi.bars.push(QemuBar { index: 2, kind: BarType::Io, prefetchable: false, address: Some(0xe000), size: 32 });
        let err = pci_matches_qemu(&original(), &q).unwrap_err().to_string();
        assert!(err.contains("05:00.0 bar2 0xe000-0xe01f lies outside the io window 0xd000-0xdfff"), "{err}");
    }

    const IDE: &str = "\
d bus
d bus/ide
d bus/ide/devices
l bus/ide/devices/0.0 -> ../../../root/pci0/00:01.1/ide0/0.0
l bus/ide/devices/1.0 -> ../../../root/pci0/00:01.1/ide1/1.0
d root
d root/pci0
d root/pci0/00:01.1
d root/pci0/00:01.1/ide0
d root/pci0/00:01.1/ide0/0.0
f root/pci0/00:01.1/ide0/0.0/capacity 8192
f root/pci0/00:01.1/ide0/0.0/media disk
d root/pci0/00:01.1/ide1
d root/pci0/00:01.1/ide1/1.0
d root/pci0/00:01.1/ide1/1.0/disc
f root/pci0/00:01.1/ide1/1.0/disc/capacity 600
f root/pci0/00:01.1/ide1/1.0/locked 1
f root/pci0/00:01.1/ide1/1.0/media cdrom
f root/pci0/00:01.1/ide1/1.0/media_present 1
f root/pci0/00:01.1/ide1/1.0/tray_open 0
";

    fn ide_drives() -> Vec<IdeDrive> {
        vec![
            IdeDrive { id: "hd0".into(), devpath: "root/pci0/00:01.1/ide0/0.0".into(), cdrom: false },
            IdeDrive { id: "cd0".into(), devpath: "root/pci0/00:01.1/ide1/1.0".into(), cdrom: true },
        ]
    }

    fn blocks() -> Vec<BlockState> {
        vec![
            BlockState { id: "hd0".into(), tray_open: false, locked: false, inserted: Some(8192 * 512) },
            BlockState { id: "cd0".into(), tray_open: false, locked: true, inserted: Some(600 * 512) },
        ]
    }

    fn ide_fails(snapshot: &str, drives: &[IdeDrive], blocks: &[BlockState], needle: &str) {
        let snapshot = Snapshot::parse(snapshot.as_bytes()).unwrap();
        let err = ide_matches_qemu(&snapshot, drives, blocks).expect_err("the check must fail").to_string();
        assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
    }

    #[test]
    fn ide_drives_agree_with_query_block() {
        ide_matches_qemu(&Snapshot::parse(IDE.as_bytes()).unwrap(), &ide_drives(), &blocks()).unwrap();
    }

    #[test]
    fn every_ide_field_that_disagrees_is_named() {
        let mut b = blocks();
        b[0].inserted = Some(4096 * 512);
        ide_fails(IDE, &ide_drives(), &b, "hd0 capacity: guest Some(\"8192\"), QEMU Some(\"4096\") sectors");
        let mut b = blocks();
        b[1].locked = false;
        ide_fails(IDE, &ide_drives(), &b, "cd0 locked: guest Some(\"1\"), QEMU 0");
        let mut b = blocks();
        b[1].tray_open = true;
        let err_tray = "cd0 tray_open: guest Some(\"0\"), QEMU 1";
        ide_fails(IDE, &ide_drives(), &b, err_tray);
        ide_fails(IDE, &ide_drives(), &b, "cd0 media_present: guest Some(\"1\"), QEMU 0");
        ide_fails(IDE, &ide_drives(), &b, "cd0 disc: the guest shows a disc");
        let mut b = blocks();
        b[1].inserted = Some(700 * 512);
        ide_fails(IDE, &ide_drives(), &b, "cd0 disc capacity: guest Some(\"600\"), QEMU 700 sectors");
        let swapped = IDE.replacen("0.0/media disk", "0.0/media cdrom", 1);
        ide_fails(&swapped, &ide_drives(), &blocks(), "hd0 media: guest Some(\"cdrom\"), QEMU disk");
    }

    #[test]
    fn missing_and_extra_ide_drives_are_named() {
        ide_fails(
            IDE,
            &ide_drives()[..1],
            &blocks(),
            "1.0 (root/pci0/00:01.1/ide1/1.0) is on bus/ide but QEMU has no such drive",
        );
        ide_fails(IDE, &ide_drives(), &blocks()[..1], "cd0: query-block does not list it");
        let mut drives = ide_drives();
        drives[1].devpath = "root/pci0/00:01.1/ide1/1.1".into();
        ide_fails(IDE, &drives, &blocks(), "cd0: the snapshot has no drive at root/pci0/00:01.1/ide1/1.1");
    }
}
