//! Scenarios: what one matrix cell does to a booted guest. The end-to-end
//! tests in `harness/tests` run these same functions (one thin `#[test]`
//! per scenario and profile), so the matrix and the tests never drift.
//!
//! A scenario returns the snapshots it wants compared with the committed
//! goldens: tests assert them with insta (so `cargo insta review` shows
//! changes), the matrix compares them with the same files.

pub mod boot;
pub mod ide;
pub mod model;
pub mod pci;
pub mod scsi;
pub mod topology;
pub mod usb;

use std::future::Future;
use std::pin::Pin;

use anyhow::Result;

use crate::vm::Vm;

/// Snapshots to compare with `harness/tests/snapshots/<name>@<profile>.snap`.
#[derive(Debug, Default)]
pub struct Goldens(pub Vec<(&'static str, String)>);

impl Goldens {
    /// No goldens.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add snapshot `text` to compare with golden `name`.
    pub fn push(&mut self, name: &'static str, text: String) {
        self.0.push((name, text));
    }
}

/// What a scenario's `run` returns.
pub type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = Result<Goldens>> + Send + 'a>>;

/// A scenario: a test body that runs on a freshly booted guest, shared by the end-to-end tests and the matrix.
pub struct Scenario {
    /// Its name in `matrix.toml` and the README.
    pub name: &'static str,
    /// One line saying what it proves.
    pub summary: &'static str,
    /// Capabilities a profile must provide (see
    /// [`crate::profile::CAPABILITIES`]); on a profile without them the
    /// cell is skipped, with that reason.
    pub needs: &'static [&'static str],
    /// The body; the goldens it returns are compared with the committed snapshots.
    pub run: for<'a> fn(&'a mut Vm) -> ScenarioFuture<'a>,
    /// The guest's kernel command line for this scenario (usually empty).
    pub append: &'static str,
}

const NOTHING: &[&str] = &[];
const PCI_HOTPLUG: &[&str] = &["pci-hotplug"];
const PCIE_HOTPLUG: &[&str] = &["pci-hotplug", "pcie-hotplug"];
const BRIDGE_HOTPLUG: &[&str] = &["pci-hotplug", "pci-bridge-hotplug"];
const IDE_DISK: &[&str] = &["ide-disk"];
const IDE_CD: &[&str] = &["ide-cd"];
const IDE_DISK_AND_CD: &[&str] = &["ide-disk", "ide-cd"];
const USB_UHCI: &[&str] = &["usb-uhci"];
const USB_UHCI_AND_PCI_HOTPLUG: &[&str] = &["usb-uhci", "pci-hotplug"];
const SCSI: &[&str] = &["scsi-disk"];
const SCSI_AND_PCI_HOTPLUG: &[&str] = &["scsi-disk", "pci-hotplug"];

/// Every scenario, in the README's order.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "boot",
            summary: "boot snapshot equals the golden and matches query-pci; no BUGs or leaks",
            needs: NOTHING,
            run: |vm| Box::pin(boot::boot(vm)),
            append: "",
        },
        Scenario {
            name: "testbus-held-read",
            summary: "a read held in show() across device removal: removal waits, old data, ENODEV/ENOENT/EBUSY",
            needs: NOTHING,
            run: |vm| Box::pin(model::held_read_across_removal(vm)),
            append: "",
        },
        Scenario {
            name: "testbus-stale-handle",
            summary: "a handle kept across re-adding the same name reads ENODEV; new generation",
            needs: NOTHING,
            run: |vm| Box::pin(model::stale_handle_after_same_name_is_readded(vm)),
            append: "",
        },
        Scenario {
            name: "testbus-depth-first",
            summary: "removing a parent removes children first (uevents, release order)",
            needs: NOTHING,
            run: |vm| Box::pin(model::parent_removal_is_depth_first(vm)),
            append: "",
        },
        Scenario {
            name: "testbus-child-pins-parent",
            summary: "a removed parent stays unreleased while a driver references its child",
            needs: NOTHING,
            run: |vm| Box::pin(model::child_reference_pins_parent(vm)),
            append: "",
        },
        Scenario {
            name: "testbus-store-removes-self",
            summary: "a store() that unregisters its own device does not deadlock",
            needs: NOTHING,
            run: |vm| Box::pin(model::store_that_removes_its_own_device(vm)),
            append: "",
        },
        Scenario {
            name: "testbus-rebind",
            summary: "unbind and bind through the control channel",
            needs: NOTHING,
            run: |vm| Box::pin(model::unbind_and_rebind(vm)),
            append: "",
        },
        Scenario {
            name: "pci-add-remove-readd",
            summary: "add edu, pci-testdev, virtio-net-pci; remove the middle; re-add e1000 in its slot",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(pci::add_remove_readd(vm)),
            append: "",
        },
        Scenario {
            name: "pci-held-read-eject",
            summary: "a held read blocks the guest's eject, so DEVICE_DELETED waits for it",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(pci::held_read_blocks_eject(vm)),
            append: "",
        },
        Scenario {
            name: "pci-fifty-cycles",
            summary: "50 plug/unplug cycles on one slot end at the stats baseline",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(pci::fifty_cycles(vm)),
            append: "",
        },
        Scenario {
            name: "pci-refusals",
            summary: "QEMU's refusals carry its text and leave the VM usable",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(pci::refusals(vm)),
            append: "",
        },
        Scenario {
            name: "pci-bridge-controller",
            summary: "a hot-added bridge and SCSI controller get the right class and resources",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(pci::bridge_and_controller(vm)),
            append: "",
        },
        Scenario {
            name: "pci-readd-waits-release",
            summary: "a device plugged into a slot whose old device is still referenced waits for its release",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(pci::readd_waits_for_release(vm)),
            append: "",
        },
        Scenario {
            name: "pci-stale-bus-numbers",
            summary: "bridges the firmware numbered in another order: no phantom functions, hot-add still seen",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(topology::stale_bus_numbers(vm)),
            append: "",
        },
        Scenario {
            name: "pci-io-space",
            summary: "a fourth root port: every I/O BAR and window still gets an address",
            needs: PCIE_HOTPLUG,
            run: |vm| Box::pin(topology::io_space(vm)),
            append: "",
        },
        Scenario {
            name: "pci-hotplug-behind-bridge",
            summary: "hot-add and remove behind a cold-plugged bridge (its own ACPI bsel)",
            needs: BRIDGE_HOTPLUG,
            run: |vm| Box::pin(topology::hotplug_behind_bridge(vm)),
            append: "",
        },
        Scenario {
            name: "ide-disk",
            summary: "the disk's capacity, MBR signature and partitions match the image recipe",
            needs: IDE_DISK,
            run: |vm| Box::pin(ide::disk_matches_recipe(vm)),
            append: "",
        },
        Scenario {
            name: "ide-media",
            summary: "insert, change and eject a CD; query-block and the guest agree after every step",
            needs: IDE_CD,
            run: |vm| Box::pin(ide::media_insert_change_eject(vm)),
            append: "",
        },
        Scenario {
            name: "ide-stale-capacity",
            summary: "a read held on the old medium's capacity across a change: old value, then ENODEV",
            needs: IDE_CD,
            run: |vm| Box::pin(ide::stale_capacity_across_change(vm)),
            append: "",
        },
        Scenario {
            name: "ide-medium-waits-release",
            summary: "a reference held on the old medium delays the new one until release",
            needs: IDE_CD,
            run: |vm| Box::pin(ide::new_medium_waits_for_release(vm)),
            append: "",
        },
        Scenario {
            name: "ide-fifty-changes",
            summary: "50 media changes end at the stats baseline",
            needs: IDE_CD,
            run: |vm| Box::pin(ide::fifty_changes(vm)),
            append: "",
        },
        Scenario {
            name: "ide-refusals",
            summary: "device_add/device_del on IDE is refused with QEMU's text; the VM carries on",
            needs: IDE_DISK_AND_CD,
            run: |vm| Box::pin(ide::refusals(vm)),
            append: "",
        },
        Scenario {
            name: "ide-locked-tray",
            summary: "a tray locked by the guest refuses eject; force works",
            needs: IDE_CD,
            run: |vm| Box::pin(ide::locked_tray(vm)),
            append: "",
        },
        Scenario {
            name: "ide-rebind-busy",
            summary: "rebinding piix-ide while an old drive is referenced is EBUSY, then works after release",
            needs: IDE_DISK_AND_CD,
            run: |vm| Box::pin(ide::rebind_waits_for_release(vm)),
            append: "",
        },
        Scenario {
            name: "scsi-disk",
            summary: "the cold-plugged disk's capacity, MBR signature and partitions, read through the bus",
            needs: SCSI,
            run: |vm| Box::pin(scsi::disk(vm)),
            append: "",
        },
        Scenario {
            name: "scsi-add-remove-readd",
            summary: "disks at targets 1, 2 (LUN 1), 3; the middle one replaced by a different size",
            needs: SCSI,
            run: |vm| Box::pin(scsi::add_remove_readd(vm)),
            append: "",
        },
        Scenario {
            name: "scsi-held-read-surprise-removal",
            summary: "a read held on capacity while QEMU removes the disk: DEVICE_DELETED without the guest, old value, ENODEV/ENOENT",
            needs: SCSI,
            run: |vm| Box::pin(scsi::held_read_surprise_removal(vm)),
            append: "",
        },
        Scenario {
            name: "scsi-readd-waits-release",
            summary: "a devref on an unplugged LUN delays the disk re-plugged at its address; a stale handle never reads the new size",
            needs: SCSI,
            run: |vm| Box::pin(scsi::readd_waits_release(vm)),
            append: "",
        },
        Scenario {
            name: "scsi-events-missed",
            summary: "no event buffers posted: the rescan finds every add and removal",
            needs: SCSI,
            run: |vm| Box::pin(scsi::events_missed(vm)),
            append: "scsi.event_buffers=0",
        },
        Scenario {
            name: "scsi-hba-hotplug",
            summary: "a hot-added HBA with two disks, unplugged: LUN, target, host, function removed depth first, then ejected",
            needs: SCSI_AND_PCI_HOTPLUG,
            run: |vm| Box::pin(scsi::hba_hotplug(vm)),
            append: "",
        },
        Scenario {
            name: "scsi-cd-media",
            summary: "a scsi-cd's medium changed and ejected: change uevents, old medium's handles ENODEV",
            needs: SCSI,
            run: |vm| Box::pin(scsi::cd_media(vm)),
            append: "",
        },
        Scenario {
            name: "scsi-fifty-cycles",
            summary: "50 plug/unplug cycles of a disk end at the stats baseline, refcounts included",
            needs: SCSI,
            run: |vm| Box::pin(scsi::fifty_cycles(vm)),
            append: "",
        },
        Scenario {
            name: "scsi-refusals",
            summary: "unknown bus, scsi-id out of range, duplicate address, missing drive: QEMU's text, the VM carries on",
            needs: SCSI,
            run: |vm| Box::pin(scsi::refusals(vm)),
            append: "",
        },
        Scenario {
            name: "scsi-race-command-in-flight",
            summary: "checkpoint scsi-io: the disk is deleted with a command in flight; its waiter fails ENODEV, no leak",
            needs: SCSI,
            run: |vm| Box::pin(scsi::removal_with_command_in_flight(vm)),
            append: "",
        },
        Scenario {
            name: "scsi-race-mid-scan",
            summary: "checkpoint scsi-scan: the disk is deleted while the guest scans it; no half-registered LUN, no leak",
            needs: SCSI,
            run: |vm| Box::pin(scsi::removal_mid_scan(vm)),
            append: "",
        },
        Scenario {
            name: "usb-hid",
            summary: "usb-kbd, usb-mouse, usb-tablet on both root ports and behind a hub: IDs, strings, interfaces",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::hid(vm)),
            append: "",
        },
        Scenario {
            name: "usb-hub-tree",
            summary: "a hub behind a hub with devices on each; removing the middle hub is depth first, nothing leaks",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::hub_tree(vm)),
            append: "",
        },
        Scenario {
            name: "usb-replug-different-device",
            summary: "device_del + device_add of another model on one port while stopped: old goes, new is found",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::replug_different_device(vm)),
            append: "",
        },
        Scenario {
            name: "usb-port-reuse-stale-handle",
            summary: "a device on a port whose old device is referenced waits for its release; stale handle ENODEV",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::port_reuse_stale_handle(vm)),
            append: "",
        },
        Scenario {
            name: "usb-fifty-cycles",
            summary: "50 USB plug/unplug cycles end at the stats baseline, refcounts included",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::fifty_cycles(vm)),
            append: "",
        },
        Scenario {
            name: "usb-refusals",
            summary: "occupied port, missing port, unknown model: QEMU's text, and the VM keeps working",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::refusals(vm)),
            append: "",
        },
        Scenario {
            name: "usb-controller-hotplug",
            summary: "a second UHCI hot-added over PCI with devices and a hub behind it, then unplugged: everything below goes first",
            needs: USB_UHCI_AND_PCI_HOTPLUG,
            run: |vm| Box::pin(usb::controller_hotplug(vm)),
            append: "",
        },
        Scenario {
            name: "usb-held-read",
            summary: "a read held on a keyboard's product while QEMU removes it: removal drains it, old value, ENODEV",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::held_read_across_surprise_removal(vm)),
            append: "",
        },
        Scenario {
            name: "usb-unplug-during-enumeration",
            summary: "the device removed between SET_ADDRESS and SET_CONFIGURATION (checkpoint usb-enum): nothing registered",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::unplug_during_enumeration(vm)),
            append: "",
        },
        Scenario {
            name: "usb-storage",
            summary: "a usb-storage stick: its disk's capacity, signature and partitions over Bulk-Only Transport; LUN, target, host, interface, device removed in order",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::storage(vm)),
            append: "",
        },
        Scenario {
            name: "usb-storage-held-read",
            summary: "a read held on a stick's disk capacity while QEMU removes it: LUN, target, host, interface, device; old value, ENODEV",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::storage_held_read(vm)),
            append: "",
        },
        Scenario {
            name: "usb-storage-reset-recovery",
            summary: "a command whose data direction disagrees with its CDB stalls the stick (needs_reset): port reset, same address and objects, no uevent, the disk answers again",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::storage_reset_recovery(vm)),
            append: "",
        },
    ]
}

/// The scenario called `name`; an error lists the known ones.
pub fn get(name: &str) -> Result<Scenario> {
    all().into_iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = all().iter().map(|s| s.name).collect();
        anyhow::anyhow!("unknown scenario {name:?}; known scenarios: {}", names.join(", "))
    })
}
