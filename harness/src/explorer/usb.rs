//! USB in the explorer, on the profile's UHCI controller `uhci` (two root
//! ports): keyboards, mice, tablets, hubs (two deep at most, devices
//! behind them at `port=N.M` and `N.M.K`) and usb-storage sticks (each on
//! a `null-co` node of its own), always plugged with an explicit
//! `bus=uhci.0,port=...`; removals, of a hub with its subtree too (QEMU
//! deletes the children itself and the model follows); a read held across
//! a surprise removal; a `devref` held across plugging another device into
//! the same port (`* usb busy`).
//!
//! Operations (`usb <op>` in a plan):
//!
//! ```text
//! add <model> <id> <port> [<sectors>]       (sectors: usb-storage only)
//! del <id>      held-del <id>      devref-readd <id> <model> <new id> [<sectors>]
//! ```
//!
//! The oracle: the guest's USB tree against QEMU's
//! ([`crate::bus::usb::usb_matches_qemu`]; a stick's disk is in the SCSI
//! explorer's oracle), and the model against QEMU's USB devices.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};

use super::rng::Rng;
use super::surprise::{add_null_node, del_node, held_read_across_removal, node_name};
use super::{BusExplorer, BusFuture};
use crate::bus::usb::{qemu_usb_devices, root_hubs, usb_matches_qemu};
use crate::driverfs::Snapshot;
use crate::hotplug::{Plug, UnplugOrder};
use crate::profile::Profile;
use crate::vm::Vm;

/// The profile's controller (the `usb-uhci` capability) and its bus.
const CONTROLLER: &str = "uhci";
const BUS: &str = "uhci.0";
/// UHCI's root ports.
const ROOT_PORTS: [&str; 2] = ["1", "2"];
/// The ports of a hub the explorer uses (QEMU's usb-hub has 8).
const HUB_PORTS: [u32; 4] = [1, 2, 3, 8];
/// A hub goes at most this deep (`1.2`: behind one hub), so devices are at
/// most three deep.
const HUB_DEPTH: usize = 2;
/// Most devices plugged at once.
const MAX_DEVICES: usize = 8;
/// usb-storage disk sizes in sectors.
const STICK_SECTORS: [u64; 3] = [2048, 4097, 65536];
/// The models and how often each is drawn.
const MODELS: [(&str, u64); 5] =
    [("usb-kbd", 2), ("usb-mouse", 2), ("usb-tablet", 2), ("usb-hub", 3), ("usb-storage", 2)];

/// A plugged USB device, as the model has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsbDevice {
    /// QEMU's model (`usb-kbd`, ...).
    pub model: String,
    /// `1`, `1.2`, `1.2.8`.
    pub port: String,
    /// A stick's disk size in sectors.
    pub sectors: Option<u64>,
}

fn depth(port: &str) -> usize {
    port.split('.').count()
}

/// The port a device at `port` hangs from (`1.2.8` → `1.2`), if not a root port.
fn parent_port(port: &str) -> Option<&str> {
    port.rsplit_once('.').map(|(p, _)| p)
}

/// Explores USB hot-plug on the profile's UHCI controller.
pub struct UsbExplorer {
    /// Plugged devices by id.
    devices: BTreeMap<String, UsbDevice>,
    /// Every device as it was plugged, by id: a removal's `run` (after
    /// `accept` dropped it) still knows which node a stick had.
    plugged_as: BTreeMap<String, UsbDevice>,
    next: usize,
}

impl UsbExplorer {
    /// `None` when the profile has no UHCI controller with id `uhci`.
    pub fn new(profile: &Profile) -> Option<UsbExplorer> {
        profile.devices.iter().find(|d| d.driver.contains("uhci") && d.id.as_deref() == Some(CONTROLLER))?;
        Some(UsbExplorer { devices: BTreeMap::new(), plugged_as: BTreeMap::new(), next: 0 })
    }

    fn occupied(&self, port: &str) -> bool {
        self.devices.values().any(|d| d.port == port)
    }

    fn is_hub_at(&self, port: &str) -> bool {
        self.devices.values().any(|d| d.port == port && d.model == "usb-hub")
    }

    /// Every port a device could go now: free root ports, free ports of
    /// plugged hubs.
    fn free_ports(&self) -> Vec<String> {
        let mut out: Vec<String> = ROOT_PORTS.iter().map(|p| p.to_string()).collect();
        for hub in self.devices.values().filter(|d| d.model == "usb-hub") {
            out.extend(HUB_PORTS.iter().map(|n| format!("{}.{n}", hub.port)));
        }
        out.retain(|p| !self.occupied(p));
        out
    }

    /// Can a new `model` go at `port`?
    fn fits(&self, model: &str, port: &str, sectors: Option<u64>) -> bool {
        let known = MODELS.iter().any(|(m, _)| *m == model);
        let well_formed = ROOT_PORTS.contains(&port.split('.').next().unwrap_or_default())
            && port.split('.').skip(1).all(|n| n.parse().is_ok_and(|n: u32| HUB_PORTS.contains(&n)));
        let parent_ok = parent_port(port).is_none_or(|p| self.is_hub_at(p));
        let hub_ok = model != "usb-hub" || depth(port) <= HUB_DEPTH;
        let size_ok = (model == "usb-storage") == sectors.is_some();
        known && well_formed && parent_ok && hub_ok && size_ok && !self.occupied(port)
    }

    /// The ids of the device at `port`'s subtree.
    fn subtree(&self, port: &str) -> Vec<String> {
        let below = format!("{port}.");
        self.devices
            .iter()
            .filter(|(_, d)| d.port == port || d.port.starts_with(&below))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn remove(&mut self, id: &str) -> Option<UsbDevice> {
        let device = self.devices.get(id)?.clone();
        for gone in self.subtree(&device.port) {
            self.devices.remove(&gone);
        }
        Some(device)
    }

    fn insert(&mut self, id: &str, device: UsbDevice) {
        self.plugged_as.insert(id.to_string(), device.clone());
        self.devices.insert(id.to_string(), device);
    }

    fn fresh_id(&mut self) -> String {
        self.next += 1;
        format!("u{}", self.next)
    }

    /// A model that may go at `port`, with a size for a stick.
    fn draw_model(rng: &mut Rng, port: &str) -> (&'static str, Option<u64>) {
        let weights: Vec<u64> =
            MODELS.iter().map(|(m, w)| if *m == "usb-hub" && depth(port) > HUB_DEPTH { 0 } else { *w }).collect();
        let model = MODELS[rng.weighted(&weights).unwrap_or(0)].0;
        let sectors = (model == "usb-storage").then(|| *rng.pick(&STICK_SECTORS).expect("non-empty"));
        (model, sectors)
    }
}

/// `<model> <id> [<sectors>]` as plan text.
fn device_words(model: &str, id: &str, sectors: Option<u64>) -> String {
    match sectors {
        Some(s) => format!("{model} {id} {s}"),
        None => format!("{model} {id}"),
    }
}

impl BusExplorer for UsbExplorer {
    fn name(&self) -> &'static str {
        "usb"
    }

    fn generate(&mut self, rng: &mut Rng) -> Option<String> {
        let free = self.free_ports();
        let ids: Vec<String> = self.devices.keys().cloned().collect();
        let room = u64::from(!free.is_empty() && ids.len() < MAX_DEVICES);
        let has = u64::from(!ids.is_empty());
        let op = match rng.weighted(&[30 * room, 18 * has, 8 * has, 8 * has])? {
            0 => {
                let port = rng.pick(&free)?.clone();
                let (model, sectors) = Self::draw_model(rng, &port);
                let id = self.fresh_id();
                match sectors {
                    Some(s) => format!("add {model} {id} {port} {s}"),
                    None => format!("add {model} {id} {port}"),
                }
            }
            1 => format!("del {}", rng.pick(&ids)?),
            2 => format!("held-del {}", rng.pick(&ids)?),
            _ => {
                let old = rng.pick(&ids)?.clone();
                let port = self.devices[&old].port.clone();
                let (model, sectors) = Self::draw_model(rng, &port);
                let new = self.fresh_id();
                format!("devref-readd {old} {}", device_words(model, &new, sectors))
            }
        };
        Some(op)
    }

    fn accept(&mut self, op: &str) -> bool {
        let words: Vec<&str> = op.split_whitespace().collect();
        let sectors = |w: Option<&&str>| -> Option<Option<u64>> {
            match w {
                None => Some(None),
                Some(s) => s.parse().ok().filter(|n| *n > 0).map(Some),
            }
        };
        match words.as_slice() {
            ["add", model, id, port, rest @ ..] if rest.len() <= 1 => {
                let Some(size) = sectors(rest.first()) else { return false };
                if self.devices.contains_key(*id) || !self.fits(model, port, size) {
                    return false;
                }
                self.insert(id, UsbDevice { model: model.to_string(), port: port.to_string(), sectors: size });
                true
            }
            ["del" | "held-del", id] => self.remove(id).is_some(),
            ["devref-readd", old, model, new, rest @ ..] if rest.len() <= 1 => {
                let Some(size) = sectors(rest.first()) else { return false };
                let Some(current) = self.devices.get(*old).cloned() else { return false };
                if new == old || self.devices.contains_key(*new) {
                    return false;
                }
                let removed: Vec<(String, UsbDevice)> = self
                    .subtree(&current.port)
                    .into_iter()
                    .map(|id| {
                        let d = self.devices.remove(&id).expect("in the subtree");
                        (id, d)
                    })
                    .collect();
                if !self.fits(model, &current.port, size) {
                    self.devices.extend(removed);
                    return false;
                }
                self.insert(new, UsbDevice { model: model.to_string(), port: current.port, sectors: size });
                true
            }
            _ => false,
        }
    }

    fn run<'a>(&'a self, vm: &'a mut Vm, op: &'a str) -> BusFuture<'a> {
        Box::pin(async move {
            let words: Vec<&str> = op.split_whitespace().collect();
            match words.as_slice() {
                ["add", _, id, ..] => {
                    let plug = self.make_plug(vm, id).await?;
                    vm.usb_plug(&plug).await?;
                }
                ["del", id] => {
                    let sticks = sticks_below(vm, id).await?;
                    let unplugged = vm.unplug(id).await?;
                    ensure!(unplugged.order == UnplugOrder::NoEject, "{unplugged:?}");
                    drop_nodes(vm, &sticks).await?;
                }
                ["held-del", id] => {
                    let sticks = sticks_below(vm, id).await?;
                    let devpath = vm.usb_devpath(id).await?;
                    held_read_across_removal(vm, id, &devpath, "product").await?;
                    drop_nodes(vm, &sticks).await?;
                }
                ["devref-readd", old, _, new, ..] => self.devref_across_readd(vm, old, new).await?,
                _ => bail!("not a usb operation: {op}"),
            }
            vm.settle().await
        })
    }

    fn check<'a>(&'a self, vm: &'a Vm, snapshot: &'a Snapshot) -> BusFuture<'a> {
        Box::pin(async move {
            let qemu = qemu_usb_devices(vm).await?;
            usb_matches_qemu(snapshot, &qemu, &root_hubs(vm, snapshot).await?)?;
            // The model against QEMU: exactly the devices the operations
            // left (a removed hub's children gone with it), at their ports.
            let controller = format!("/machine/peripheral/{CONTROLLER}");
            let ours: BTreeMap<String, (String, String)> = qemu
                .iter()
                .filter(|d| d.controller == controller)
                .map(|d| (d.id.clone().unwrap_or_else(|| d.qom_path.clone()), (d.model.clone(), d.port.clone())))
                .collect();
            let want: BTreeMap<String, (String, String)> =
                self.devices.iter().map(|(id, d)| (id.clone(), (d.model.clone(), d.port.clone()))).collect();
            ensure!(ours == want, "the USB model disagrees with QEMU on {BUS}:\n  QEMU  {ours:?}\n  model {want:?}");
            Ok(())
        })
    }

    fn teardown(&self) -> Vec<String> {
        self.devices.iter().filter(|(_, d)| depth(&d.port) == 1).map(|(id, _)| format!("del {id}")).collect()
    }
}

/// The usb-storage sticks QEMU has at or below the device it calls `id`
/// (a hub's subtree goes with it): their nodes are dropped once they are gone.
async fn sticks_below(vm: &Vm, id: &str) -> Result<Vec<String>> {
    let qemu = qemu_usb_devices(vm).await?;
    let top =
        qemu.iter().find(|d| d.id.as_deref() == Some(id)).with_context(|| format!("QEMU has no USB device {id}"))?;
    let below = format!("{}.", top.port);
    Ok(qemu
        .iter()
        .filter(|d| d.controller == top.controller && d.model == "usb-storage")
        .filter(|d| d.port == top.port || d.port.starts_with(&below))
        .filter_map(|d| d.id.clone())
        .collect())
}

async fn drop_nodes(vm: &Vm, sticks: &[String]) -> Result<()> {
    for stick in sticks {
        del_node(vm, &node_name(stick)).await?;
    }
    Ok(())
}

impl UsbExplorer {
    /// The `device_add` for device `id` as plugged, its stick's node made first.
    async fn make_plug(&self, vm: &Vm, id: &str) -> Result<Plug> {
        let device = self.plugged_as.get(id).context("accepted")?;
        let mut plug = Plug::new(&device.model, id).bus(BUS).prop("port", device.port.clone());
        if let Some(sectors) = device.sectors {
            let node = node_name(id);
            add_null_node(vm, &node, sectors).await?;
            plug = plug.prop("drive", node);
        }
        Ok(plug)
    }

    /// A `devref` kept on device `old` across its unplug and another device
    /// plugged into the same port: the guest holds the new one back
    /// (`* usb busy 1-2`, no `add`) until the reference is put.
    async fn devref_across_readd(&self, vm: &Vm, old: &str, new: &str) -> Result<()> {
        let devpath = vm.usb_devpath(old).await?;
        let sticks = sticks_below(vm, old).await?;
        vm.call(&format!("devref get {devpath}")).await?;
        vm.unplug(old).await?;
        drop_nodes(vm, &sticks).await?;
        let plug = self.make_plug(vm, new).await?;
        let (ucursor, ncursor) = (vm.control.uevent_cursor(), vm.control.notice_cursor());
        vm.device_add(&plug).await.with_context(|| format!("device_add {} id={new}", plug.driver))?;
        let busy = format!("usb busy {}", devpath.rsplit('/').next().unwrap_or_default());
        vm.wait_notice(ncursor, &busy, |n| n == busy).await?;
        ensure!(
            !vm.control.uevents_since(ucursor).iter().any(|u| u.action == "add" && u.devpath == devpath),
            "{new} registered at {devpath} before the old device's release"
        );
        vm.call(&format!("devref put {devpath}")).await?;
        vm.wait_uevent(ucursor, &format!("add {devpath}"), |u| u.action == "add" && u.devpath == devpath).await?;
        let interface = format!("{devpath}/");
        vm.wait_uevent(ucursor, &format!("add of an interface below {devpath}"), |u| {
            u.action == "add" && u.devpath.starts_with(&interface) && u.devpath.contains(':')
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explorer() -> UsbExplorer {
        UsbExplorer::new(&Profile::get("pc").unwrap()).expect("pc has uhci")
    }

    #[test]
    fn ports_need_a_hub_above_them_and_hubs_stop_two_deep() {
        let mut usb = explorer();
        assert!(!usb.accept("add usb-kbd u1 1.1"), "no hub at 1");
        assert!(!usb.accept("add usb-kbd u1 3"), "UHCI has two root ports");
        assert!(usb.accept("add usb-hub u1 1"));
        assert!(usb.accept("add usb-hub u2 1.2"));
        assert!(!usb.accept("add usb-hub u3 1.2.1"), "a third hub level");
        assert!(!usb.accept("add usb-kbd u3 1.5"), "a hub port the explorer does not use");
        assert!(usb.accept("add usb-storage u3 1.2.8 2048"));
        assert!(!usb.accept("add usb-storage u4 2"), "a stick needs a size");
        assert!(!usb.accept("add usb-mouse u4 2 2048"), "only a stick has one");
        assert!(!usb.accept("add usb-mouse u4 1.2.8"), "occupied");
        assert!(usb.accept("add usb-mouse u4 1.1"));
        assert_eq!(usb.teardown(), ["del u1"]);
        // Removing the middle hub takes its stick; the mouse on the upper hub stays.
        assert!(usb.accept("del u2"));
        assert_eq!(usb.devices.keys().collect::<Vec<_>>(), ["u1", "u4"]);
        assert!(!usb.accept("held-del u3"), "gone with its hub");
        // A hub replaced by a keyboard loses its children.
        assert!(usb.accept("devref-readd u1 usb-kbd u5"));
        assert_eq!(usb.devices.keys().collect::<Vec<_>>(), ["u5"]);
        assert!(!usb.accept("add usb-kbd u6 1.1"), "no hub at 1 any more");
        assert!(!usb.accept("devref-readd u5 usb-kbd u5"), "the same id");
        assert_eq!(usb.devices.len(), 1, "a refused re-add leaves the model as it was");
    }

    #[test]
    fn generated_operations_are_valid_and_cover_every_kind() {
        let mut usb = explorer();
        let mut rng = Rng::new(11);
        let mut seen = std::collections::BTreeSet::new();
        let mut deepest = 0;
        for _ in 0..2000 {
            let op = usb.generate(&mut rng).expect("always something to do");
            assert!(usb.accept(&op), "{op}");
            seen.insert(op.split(' ').take(2).collect::<Vec<_>>().join(" "));
            deepest = deepest.max(usb.devices.values().map(|d| depth(&d.port)).max().unwrap_or(0));
            assert!(usb.devices.len() <= MAX_DEVICES);
        }
        for want in ["add usb-kbd", "add usb-mouse", "add usb-tablet", "add usb-hub", "add usb-storage"] {
            assert!(seen.contains(want), "{want} never drawn: {seen:?}");
        }
        assert!(seen.iter().any(|s| s.starts_with("held-del")) && seen.iter().any(|s| s.starts_with("devref-readd")));
        assert_eq!(deepest, 3, "devices behind two hubs");
        for op in usb.teardown() {
            assert!(usb.accept(&op), "{op}");
        }
        assert!(usb.devices.is_empty());
    }
}
