//! PCI in the explorer: random cold-plug topologies (root ports, bridges
//! nested in bridges, devices behind them, multifunction slots, large,
//! 64-bit prefetchable, I/O and ROM BARs) and hot-plug operations on every
//! slot of the topology that takes hot-plugs.

use std::collections::BTreeMap;

use anyhow::{Result, ensure};

use super::plan::{ColdDevice, Plan};
use super::rng::Rng;
use super::{BusExplorer, BusFuture, join_all};
use crate::driverfs::Snapshot;
use crate::hotplug::{Plug, UnplugOrder, pci_slot_of};
use crate::profile::Profile;
use crate::vm::Vm;

/// Devices for cold-plugging: (driver, extra properties). Together they
/// cover memory, I/O, 64-bit prefetchable (up to 256 MiB) and ROM BARs.
const COLD_DEVICES: &[(&str, &str)] = &[
    ("edu", ""),
    ("pci-testdev", ""),
    ("pci-testdev", "membar=16M"),
    ("pci-testdev", "membar=256M"),
    ("e1000", ""),
    ("virtio-net-pci", "disable-legacy=off"),
    ("virtio-rng-pci", "disable-legacy=off"),
];

/// Devices for hot-plugging: each fits the hot-plug room of any slot.
const HOT_DEVICES: &[&str] = &["edu", "pci-testdev", "e1000", "virtio-rng-pci"];

/// Slots tried on a bridge's bus.
const BRIDGE_SLOTS: [u8; 3] = [1, 2, 3];

fn is_q35(profile: &Profile) -> bool {
    profile.machine == "q35"
}

/// Slots of the profile's own hot-plug list the explorer uses (pc has 20).
const PROFILE_SLOTS: usize = 4;

/// q35 in QEMU's default mode (ACPI hot-plug) unless the profile turns it off.
fn acpi_hotplug(profile: &Profile) -> bool {
    !is_q35(profile) || !profile.args.iter().any(|a| a.contains("acpi-pci-hotplug-with-bridge-support=off"))
}

/// Root ports the profile itself brings (`rp1`...).
fn profile_root_ports(profile: &Profile) -> Vec<String> {
    profile.devices.iter().filter(|d| d.driver == "pcie-root-port").filter_map(|d| d.id.clone()).collect()
}

/// Slots of the root bus that the profile's own devices hold (its
/// virtio-scsi HBA at 00:04.0, for one): no cold-plugged device may take them.
fn profile_root_slots(profile: &Profile, root_bus: &str) -> Vec<u8> {
    profile
        .devices
        .iter()
        .filter(|d| d.props.iter().all(|(k, v)| k != "bus" || v == root_bus))
        .filter_map(|d| d.props.iter().find(|(k, _)| k == "addr"))
        .filter_map(|(_, addr)| {
            let slot = addr.split('.').next()?;
            u8::from_str_radix(slot.trim_start_matches("0x"), 16).ok()
        })
        .collect()
}

/// A `pci-bridge` `id` at slot 4 of bridge `parent`'s bus, and its slots
/// as places for devices.
fn nest_bridge(
    out: &mut Vec<ColdDevice>,
    places: &mut Vec<(Option<String>, Vec<u8>)>,
    id: String,
    parent: String,
    chassis: u32,
) {
    out.push(ColdDevice::new(
        "pci-bridge",
        &[("id", id.clone()), ("bus", parent), ("chassis_nr", chassis.to_string()), ("addr", "0x4".into())],
    ));
    places.push((Some(id), BRIDGE_SLOTS.to_vec()));
}

/// A random cold-plug topology on top of the profile's own devices.
pub fn cold_plug(rng: &mut Rng, profile: &Profile) -> Vec<ColdDevice> {
    let mut out = Vec::new();
    let mut n = 0;
    let mut next_id = || {
        n += 1;
        format!("c{n}")
    };
    // (bus, free slots): where devices may still go.
    let mut places: Vec<(Option<String>, Vec<u8>)> = Vec::new();
    let mut chassis = 10;
    if is_q35(profile) {
        let mut ports = profile_root_ports(profile);
        for extra in 0..rng.range(0, 2) {
            let id = next_id();
            chassis += 1;
            out.push(ColdDevice::new(
                "pcie-root-port",
                &[
                    ("id", id.clone()),
                    ("bus", "pcie.0".into()),
                    ("chassis", chassis.to_string()),
                    ("slot", chassis.to_string()),
                    ("addr", format!("{:#x}", 0x13 + extra)),
                ],
            ));
            ports.push(id);
        }
        // Some root ports get a device or a pcie-pci-bridge (maybe with a
        // pci-bridge below it); the others stay free for hot-plug.
        for port in ports {
            match rng.below(4) {
                0 => places.push((Some(port), vec![0])),
                1 => {
                    let bridge = next_id();
                    out.push(ColdDevice::new(
                        "pcie-pci-bridge",
                        &[("id", bridge.clone()), ("bus", port), ("addr", "0x0".into())],
                    ));
                    places.push((Some(bridge.clone()), BRIDGE_SLOTS.to_vec()));
                    if rng.chance(40) {
                        chassis += 1;
                        nest_bridge(&mut out, &mut places, next_id(), bridge, chassis);
                    }
                }
                _ => {}
            }
        }
        let taken = profile_root_slots(profile, "pcie.0");
        places.push((Some("pcie.0".into()), (2..=6).filter(|s| !taken.contains(s)).collect()));
    } else {
        let taken = profile_root_slots(profile, "pci.0");
        let mut root: Vec<u8> = (9..=14).filter(|s| !taken.contains(s)).collect();
        for _ in 0..rng.range(0, 2) {
            let bridge = next_id();
            chassis += 1;
            let slot = root.remove(rng.below(root.len()));
            out.push(ColdDevice::new(
                "pci-bridge",
                &[("id", bridge.clone()), ("chassis_nr", chassis.to_string()), ("addr", format!("{slot:#x}"))],
            ));
            places.push((Some(bridge.clone()), BRIDGE_SLOTS.to_vec()));
            if rng.chance(30) {
                chassis += 1;
                nest_bridge(&mut out, &mut places, next_id(), bridge, chassis);
            }
        }
        places.push((None, root));
    }
    // Endpoints wherever there is room, one of them maybe multifunction.
    for _ in 0..rng.range(0, 3) {
        let Some(i) = (!places.is_empty()).then(|| rng.below(places.len())) else { break };
        if places[i].1.is_empty() {
            continue;
        }
        let pick = rng.below(places[i].1.len());
        let slot = places[i].1.remove(pick);
        let bus = places[i].0.clone();
        let multifunction = slot != 0 && rng.chance(25);
        let functions = if multifunction { 2 } else { 1 };
        for func in 0..functions {
            let (driver, extra) = *rng.pick(COLD_DEVICES).expect("non-empty");
            let mut props = vec![("id", next_id())];
            if let Some(bus) = &bus {
                props.push(("bus", bus.clone()));
            }
            props.push(("addr", if multifunction { format!("{slot:#x}.{func}") } else { format!("{slot:#x}") }));
            if multifunction && func == 0 {
                props.push(("multifunction", "on".into()));
            }
            if let Some((k, v)) = extra.split_once('=') {
                props.push((k, v.to_string()));
            }
            out.push(ColdDevice::new(driver, &props));
        }
    }
    out
}

/// A slot that takes hot-plugs: the QEMU bus and the `addr`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HotSlot {
    /// The QEMU bus id.
    pub bus: String,
    /// The `addr` property on that bus.
    pub addr: String,
}

/// Every slot of the topology where the guest follows hot-plug, minus the
/// ones cold-plugged devices occupy.
pub fn hot_slots(profile: &Profile, plan: &Plan) -> Vec<HotSlot> {
    let occupied = |bus: &str, slot: u8| {
        plan.devices.iter().any(|d| {
            d.bus().unwrap_or(if is_q35(profile) { "pcie.0" } else { "pci.0" }) == bus && d.slot() == Some(slot)
        })
    };
    let mut out = Vec::new();
    for slot in profile.pci_slots.iter().take(PROFILE_SLOTS) {
        let number = u8::from_str_radix(slot.addr.trim_start_matches("0x"), 16).unwrap_or(0);
        if !occupied(&slot.bus, number) {
            out.push(HotSlot { bus: slot.bus.clone(), addr: format!("{number:#x}") });
        }
    }
    for port in plan.devices.iter().filter(|d| d.driver() == "pcie-root-port").filter_map(|d| d.id()) {
        if !occupied(port, 0) {
            out.push(HotSlot { bus: port.to_string(), addr: "0x0".into() });
        }
    }
    if acpi_hotplug(profile) {
        for bridge in plan.devices.iter().filter(|d| matches!(d.driver(), "pci-bridge" | "pcie-pci-bridge")) {
            let Some(id) = bridge.id() else { continue };
            for slot in BRIDGE_SLOTS {
                if !occupied(id, slot) {
                    out.push(HotSlot { bus: id.to_string(), addr: format!("{slot:#x}") });
                }
            }
        }
    }
    out
}

/// Explores PCI hot-plug: single plugs, waves, held reads across removal, devrefs across re-add.
pub struct PciExplorer {
    slots: Vec<HotSlot>,
    /// Hot-plugged devices: id → (driver, slot).
    plugged: BTreeMap<String, (String, HotSlot)>,
    next: usize,
}

impl PciExplorer {
    /// An explorer over the hot-plug slots of the profile and the plan's cold-plugged devices.
    pub fn new(profile: &Profile, plan: &Plan) -> PciExplorer {
        PciExplorer { slots: hot_slots(profile, plan), plugged: BTreeMap::new(), next: 0 }
    }

    fn free_slots(&self) -> Vec<HotSlot> {
        self.slots.iter().filter(|s| !self.plugged.values().any(|(_, p)| p == *s)).cloned().collect()
    }

    fn fresh_id(&mut self) -> String {
        self.next += 1;
        format!("h{}", self.next)
    }

    fn slot_of(&self, bus: &str, addr: &str) -> Option<HotSlot> {
        self.slots.iter().find(|s| s.bus == bus && s.addr == addr).cloned()
    }
}

fn plug_for(driver: &str, id: &str, slot: &HotSlot) -> Plug {
    Plug::new(driver, id).bus(&slot.bus).prop("addr", slot.addr.clone())
}

impl BusExplorer for PciExplorer {
    fn name(&self) -> &'static str {
        "pci"
    }

    fn generate(&mut self, rng: &mut Rng) -> Option<String> {
        let free = self.free_slots();
        let plugged: Vec<String> = self.plugged.keys().cloned().collect();
        let has_free = u64::from(!free.is_empty());
        let has_plugged = u64::from(!plugged.is_empty());
        let weights =
            [30 * has_free, 25 * has_plugged, 25 * u64::from(free.len() >= 2), 8 * has_plugged, 8 * has_plugged];
        let op = match rng.weighted(&weights)? {
            0 => {
                let slot = rng.pick(&free)?.clone();
                let driver = rng.pick(HOT_DEVICES)?;
                format!("add {driver} {} {} {}", self.fresh_id(), slot.bus, slot.addr)
            }
            1 => format!("del {}", rng.pick(&plugged)?),
            2 => {
                // Several slots busy at once: QEMU's ~50 ms DEVICE_DELETED
                // floor is paid once for the whole wave.
                let count = rng.range(2, free.len().min(4));
                let mut parts = Vec::new();
                let mut free = free;
                for _ in 0..count {
                    let slot = free.remove(rng.below(free.len()));
                    let driver = rng.pick(HOT_DEVICES)?;
                    parts.push(format!("{driver}:{}@{}/{}", self.fresh_id(), slot.bus, slot.addr));
                }
                format!("wave {}", parts.join(" "))
            }
            3 => format!("held-del {}", rng.pick(&plugged)?),
            _ => {
                let id = rng.pick(&plugged)?.clone();
                let driver = rng.pick(HOT_DEVICES)?;
                format!("devref-readd {id} {driver} {}", self.fresh_id())
            }
        };
        Some(op)
    }

    fn accept(&mut self, op: &str) -> bool {
        let words: Vec<&str> = op.split_whitespace().collect();
        let free = self.free_slots();
        match words.as_slice() {
            ["add", driver, id, bus, addr] => match self.slot_of(bus, addr) {
                Some(slot) if free.contains(&slot) && !self.plugged.contains_key(*id) => {
                    self.plugged.insert(id.to_string(), (driver.to_string(), slot));
                    true
                }
                _ => false,
            },
            ["del" | "held-del", id] => self.plugged.remove(*id).is_some(),
            ["devref-readd", id, driver, new] => match self.plugged.remove(*id) {
                Some((_, slot)) if !self.plugged.contains_key(*new) => {
                    self.plugged.insert(new.to_string(), (driver.to_string(), slot));
                    true
                }
                Some(old) => {
                    self.plugged.insert(id.to_string(), old);
                    false
                }
                None => false,
            },
            ["wave", parts @ ..] => {
                let Some(wave) = parse_wave(parts) else { return false };
                // Distinct free slots and fresh ids; a wave leaves nothing plugged.
                let mut seen = Vec::new();
                !wave.is_empty()
                    && wave.iter().all(|(_, id, bus, addr)| {
                        let slot = self.slot_of(bus, addr);
                        let fine = slot.as_ref().is_some_and(|s| free.contains(s) && !seen.contains(s))
                            && !self.plugged.contains_key(*id);
                        seen.extend(slot);
                        fine
                    })
            }
            _ => false,
        }
    }

    fn run<'a>(&'a self, vm: &'a mut Vm, op: &'a str) -> BusFuture<'a> {
        Box::pin(async move {
            let words: Vec<&str> = op.split_whitespace().collect();
            match words.as_slice() {
                ["add", driver, id, bus, addr] => {
                    vm.plug(&plug_for(driver, id, &HotSlot { bus: bus.to_string(), addr: addr.to_string() })).await?;
                }
                ["del", id] => {
                    let unplugged = vm.unplug(id).await?;
                    ensure!(
                        unplugged.order == UnplugOrder::RemovedBeforeEject,
                        "ejected before removal: {unplugged:?}"
                    );
                }
                ["held-del", id] => held_read_across_removal(vm, id).await?,
                ["devref-readd", id, driver, new] => {
                    let Some((_, slot)) = self.plugged.get(*new) else { anyhow::bail!("{new} has no slot") };
                    devref_across_readd(vm, id, driver, new, slot).await?
                }
                ["wave", parts @ ..] => {
                    let wave = parse_wave(parts).unwrap_or_default();
                    let plugs: Vec<Plug> = wave
                        .iter()
                        .map(|(driver, id, bus, addr)| {
                            plug_for(driver, id, &HotSlot { bus: bus.to_string(), addr: addr.to_string() })
                        })
                        .collect();
                    let vm_ref: &Vm = vm;
                    let adds: Vec<
                        std::pin::Pin<Box<dyn std::future::Future<Output = Result<crate::hotplug::Plugged>> + Send>>,
                    > = plugs.iter().map(|p| Box::pin(vm_ref.plug(p)) as _).collect();
                    for r in join_all(adds).await {
                        r?;
                    }
                    vm.checked_snapshot().await?;
                    let vm_ref: &Vm = vm;
                    let dels: Vec<
                        std::pin::Pin<Box<dyn std::future::Future<Output = Result<crate::hotplug::Unplugged>> + Send>>,
                    > = wave.iter().map(|(_, id, _, _)| Box::pin(vm_ref.unplug(id)) as _).collect();
                    for r in join_all(dels).await {
                        let unplugged = r?;
                        ensure!(unplugged.order == UnplugOrder::RemovedBeforeEject, "{unplugged:?}");
                    }
                }
                _ => anyhow::bail!("not a pci operation: {op}"),
            }
            Ok(())
        })
    }

    fn check<'a>(&'a self, vm: &'a Vm, snapshot: &'a Snapshot) -> BusFuture<'a> {
        Box::pin(async move {
            // The snapshot against query-pci, and the model against QEMU:
            // exactly the devices the operations left plugged are there.
            let qemu = vm.query_pci().await?;
            crate::checks::pci_matches_qemu(snapshot, &qemu)?;
            for id in self.plugged.keys() {
                ensure!(qemu.iter().any(|f| &f.qdev_id == id), "{id} should be plugged but QEMU does not list it");
            }
            for f in qemu.iter().filter(|f| f.qdev_id.starts_with('h')) {
                ensure!(self.plugged.contains_key(&f.qdev_id), "QEMU still has {} ({})", f.qdev_id, f.devpath);
            }
            Ok(())
        })
    }

    fn teardown(&self) -> Vec<String> {
        self.plugged.keys().map(|id| format!("del {id}")).collect()
    }
}

/// `driver:id@bus/addr` parts of a wave.
fn parse_wave<'a>(parts: &[&'a str]) -> Option<Vec<(&'a str, &'a str, &'a str, &'a str)>> {
    parts
        .iter()
        .map(|p| {
            let (driver, rest) = p.split_once(':')?;
            let (id, place) = rest.split_once('@')?;
            let (bus, addr) = place.split_once('/')?;
            Some((driver, id, bus, addr))
        })
        .collect()
}

/// A read held inside show() while the device is unplugged: the guest may
/// not eject until the read ends, the read returns the old value.
async fn held_read_across_removal(vm: &mut Vm, id: &str) -> Result<()> {
    let devpath = vm.pci_devpath(id).await?;
    let vendor_path = format!("{devpath}/vendor");
    let vendor = vm.snapshot().await?.value(&vendor_path).map(str::to_string);
    let handle = vm.call_text(&format!("open {vendor_path}")).await?;
    vm.call(&format!("hold {vendor_path}")).await?;
    let read = vm.send(&format!("read {handle}")).await?;
    vm.wait_stats("the held read", |s| s.devices.get(&devpath).is_some_and(|d| d.active == 1)).await?;
    let (ucursor, qcursor) = (vm.control.uevent_cursor(), vm.qmp.cursor());
    vm.device_del(id).await?;
    vm.wait_uevent(ucursor, &format!("remove {devpath}"), |u| u.action == "remove" && u.devpath == devpath).await?;
    ensure!(vm.qemu_has_device(id).await?, "QEMU lost {id} while a read was held (the guest ejected early)");
    ensure!(!vm.device_deleted_since(qcursor, id), "DEVICE_DELETED for {id} while a read was held");
    vm.call(&format!("unhold {vendor_path}")).await?;
    let got = String::from_utf8_lossy(&vm.wait_reply(read).await?).trim_end().to_string();
    ensure!(Some(got.as_str()) == vendor.as_deref(), "the held read returned {got:?}, not {vendor:?}");
    vm.wait_device_deleted(qcursor, id).await?;
    ensure!(vm.expect_errno(&format!("read {handle}")).await? == "ENODEV", "a stale handle must read ENODEV");
    vm.call(&format!("close {handle}")).await?;
    Ok(())
}

/// A reference kept on an unplugged device across plugging another into
/// its slot: the new one waits (`hotplug busy`) until the reference goes.
async fn devref_across_readd(vm: &mut Vm, id: &str, driver: &str, new: &str, slot: &HotSlot) -> Result<()> {
    let devpath = vm.pci_devpath(id).await?;
    vm.call(&format!("devref get {devpath}")).await?;
    vm.unplug(id).await?;
    let (ucursor, ncursor) = (vm.control.uevent_cursor(), vm.control.notice_cursor());
    vm.device_add(&plug_for(driver, new, slot)).await?;
    let busy = format!("hotplug busy {}", pci_slot_of(&devpath)?);
    vm.wait_notice(ncursor, &busy, |n| n == busy).await?;
    ensure!(
        !vm.control.uevents_since(ucursor).iter().any(|u| u.action == "add"),
        "{new} registered before the release"
    );
    vm.call(&format!("devref put {devpath}")).await?;
    vm.wait_uevent(ucursor, &format!("add {devpath}"), |u| u.action == "add" && u.devpath == devpath).await?;
    Ok(())
}
