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
pub mod usb;

use std::future::Future;
use std::pin::Pin;

use anyhow::Result;

use crate::vm::Vm;

/// Snapshots to compare with `harness/tests/snapshots/<name>@<profile>.snap`.
#[derive(Debug, Default)]
pub struct Goldens(pub Vec<(&'static str, String)>);

impl Goldens {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, name: &'static str, text: String) {
        self.0.push((name, text));
    }
}

pub type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = Result<Goldens>> + Send + 'a>>;

pub struct Scenario {
    pub name: &'static str,
    pub summary: &'static str,
    /// Capabilities a profile must provide (see
    /// [`crate::profile::CAPABILITIES`]); on a profile without them the
    /// cell is skipped, with that reason.
    pub needs: &'static [&'static str],
    pub run: for<'a> fn(&'a mut Vm) -> ScenarioFuture<'a>,
}

const NOTHING: &[&str] = &[];
const PCI_HOTPLUG: &[&str] = &["pci-hotplug"];
const IDE_DISK: &[&str] = &["ide-disk"];
const IDE_CD: &[&str] = &["ide-cd"];
const IDE_DISK_AND_CD: &[&str] = &["ide-disk", "ide-cd"];
const USB_UHCI: &[&str] = &["usb-uhci"];
const USB_UHCI_AND_PCI_HOTPLUG: &[&str] = &["usb-uhci", "pci-hotplug"];

pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "boot",
            summary: "boot snapshot equals the golden and matches query-pci; no BUGs or leaks",
            needs: NOTHING,
            run: |vm| Box::pin(boot::boot(vm)),
        },
        Scenario {
            name: "testbus-held-read",
            summary: "a read held in show() across device removal: removal waits, old data, ENODEV/ENOENT/EBUSY",
            needs: NOTHING,
            run: |vm| Box::pin(model::held_read_across_removal(vm)),
        },
        Scenario {
            name: "testbus-stale-handle",
            summary: "a handle kept across re-adding the same name reads ENODEV; new generation",
            needs: NOTHING,
            run: |vm| Box::pin(model::stale_handle_after_same_name_is_readded(vm)),
        },
        Scenario {
            name: "testbus-depth-first",
            summary: "removing a parent removes children first (uevents, release order)",
            needs: NOTHING,
            run: |vm| Box::pin(model::parent_removal_is_depth_first(vm)),
        },
        Scenario {
            name: "testbus-child-pins-parent",
            summary: "a removed parent stays unreleased while a driver references its child",
            needs: NOTHING,
            run: |vm| Box::pin(model::child_reference_pins_parent(vm)),
        },
        Scenario {
            name: "testbus-store-removes-self",
            summary: "a store() that unregisters its own device does not deadlock",
            needs: NOTHING,
            run: |vm| Box::pin(model::store_that_removes_its_own_device(vm)),
        },
        Scenario {
            name: "testbus-rebind",
            summary: "unbind and bind through the control channel",
            needs: NOTHING,
            run: |vm| Box::pin(model::unbind_and_rebind(vm)),
        },
        Scenario {
            name: "pci-add-remove-readd",
            summary: "add edu, pci-testdev, virtio-net-pci; remove the middle; re-add e1000 in its slot",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(pci::add_remove_readd(vm)),
        },
        Scenario {
            name: "pci-held-read-eject",
            summary: "a held read blocks the guest's eject, so DEVICE_DELETED waits for it",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(pci::held_read_blocks_eject(vm)),
        },
        Scenario {
            name: "pci-fifty-cycles",
            summary: "50 plug/unplug cycles on one slot end at the stats baseline",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(pci::fifty_cycles(vm)),
        },
        Scenario {
            name: "pci-refusals",
            summary: "QEMU's refusals carry its text and leave the VM usable",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(pci::refusals(vm)),
        },
        Scenario {
            name: "pci-bridge-controller",
            summary: "a hot-added bridge and SCSI controller get the right class and resources",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(pci::bridge_and_controller(vm)),
        },
        Scenario {
            name: "pci-readd-waits-release",
            summary: "a device plugged into a slot whose old device is still referenced waits for its release",
            needs: PCI_HOTPLUG,
            run: |vm| Box::pin(pci::readd_waits_for_release(vm)),
        },
        Scenario {
            name: "ide-disk",
            summary: "the disk's capacity, MBR signature and partitions match the image recipe",
            needs: IDE_DISK,
            run: |vm| Box::pin(ide::disk_matches_recipe(vm)),
        },
        Scenario {
            name: "ide-media",
            summary: "insert, change and eject a CD; query-block and the guest agree after every step",
            needs: IDE_CD,
            run: |vm| Box::pin(ide::media_insert_change_eject(vm)),
        },
        Scenario {
            name: "ide-stale-capacity",
            summary: "a read held on the old medium's capacity across a change: old value, then ENODEV",
            needs: IDE_CD,
            run: |vm| Box::pin(ide::stale_capacity_across_change(vm)),
        },
        Scenario {
            name: "ide-medium-waits-release",
            summary: "a reference held on the old medium delays the new one until release",
            needs: IDE_CD,
            run: |vm| Box::pin(ide::new_medium_waits_for_release(vm)),
        },
        Scenario {
            name: "ide-fifty-changes",
            summary: "50 media changes end at the stats baseline",
            needs: IDE_CD,
            run: |vm| Box::pin(ide::fifty_changes(vm)),
        },
        Scenario {
            name: "ide-refusals",
            summary: "device_add/device_del on IDE is refused with QEMU's text; the VM carries on",
            needs: IDE_DISK_AND_CD,
            run: |vm| Box::pin(ide::refusals(vm)),
        },
        Scenario {
            name: "ide-locked-tray",
            summary: "a tray locked by the guest refuses eject; force works",
            needs: IDE_CD,
            run: |vm| Box::pin(ide::locked_tray(vm)),
        },
        Scenario {
            name: "ide-rebind-busy",
            summary: "rebinding piix-ide while an old drive is referenced is EBUSY, then works after release",
            needs: IDE_DISK_AND_CD,
            run: |vm| Box::pin(ide::rebind_waits_for_release(vm)),
        },
        Scenario {
            name: "usb-hid",
            summary: "usb-kbd, usb-mouse, usb-tablet on both root ports and behind a hub: IDs, strings, interfaces",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::hid(vm)),
        },
        Scenario {
            name: "usb-hub-tree",
            summary: "a hub behind a hub with devices on each; removing the middle hub is depth first, nothing leaks",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::hub_tree(vm)),
        },
        Scenario {
            name: "usb-replug-different-device",
            summary: "device_del + device_add of another model on one port while stopped: old goes, new is found",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::replug_different_device(vm)),
        },
        Scenario {
            name: "usb-port-reuse-stale-handle",
            summary: "a device on a port whose old device is referenced waits for its release; stale handle ENODEV",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::port_reuse_stale_handle(vm)),
        },
        Scenario {
            name: "usb-fifty-cycles",
            summary: "50 USB plug/unplug cycles end at the stats baseline, refcounts included",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::fifty_cycles(vm)),
        },
        Scenario {
            name: "usb-refusals",
            summary: "occupied port, missing port, unknown model: QEMU's text, and the VM keeps working",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::refusals(vm)),
        },
        Scenario {
            name: "usb-controller-hotplug",
            summary: "a second UHCI hot-added over PCI with devices and a hub behind it, then unplugged: everything below goes first",
            needs: USB_UHCI_AND_PCI_HOTPLUG,
            run: |vm| Box::pin(usb::controller_hotplug(vm)),
        },
        Scenario {
            name: "usb-held-read",
            summary: "a read held on a keyboard's product while QEMU removes it: removal drains it, old value, ENODEV",
            needs: USB_UHCI,
            run: |vm| Box::pin(usb::held_read_across_surprise_removal(vm)),
        },
    ]
}

pub fn get(name: &str) -> Result<Scenario> {
    all().into_iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = all().iter().map(|s| s.name).collect();
        anyhow::anyhow!("unknown scenario {name:?}; known scenarios: {}", names.join(", "))
    })
}
