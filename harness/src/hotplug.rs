//! Hot-plug through QMP, checked against the guest, on any bus
//! ([`crate::bus`] says where each bus's devices appear and what "gone"
//! means).
//!
//! `plug`: `device_add`, then wait for the guest's `add` uevent at the
//! devpath QEMU's own view places the device at. `unplug`: `device_del`,
//! then wait until the device is gone as its bus defines it: for PCI the
//! guest's `remove` uevent, its `* hotplug eject <bb:ss>` notice after it
//! and QEMU's DEVICE_DELETED (matched on `data.device`); for SCSI and USB,
//! which QEMU unplugs without asking the guest, DEVICE_DELETED and the
//! guest's `remove`. [`Vm::start_unplug`] splits an unplug in two so a test
//! can look at the guest while it is under way. A refusal is a
//! [`QmpError::Qemu`] with QEMU's text; the VM stays usable.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bus::{self, BusKind, Removal};
use crate::control::Uevent;
use crate::control::client::Received;
use crate::qmp::QmpError;
use crate::vm::{Vm, Waiter};

/// A device to add: hot-plugged with [`Vm::plug`], or cold-plugged on the
/// command line with [`crate::VmConfig::device`].
#[derive(Clone, Debug)]
pub struct Plug {
    /// QEMU's device model (`edu`, `e1000`, `virtio-net-pci`, `scsi-hd`, ...).
    pub driver: String,
    /// The qdev id, which `device_del` and `DEVICE_DELETED` name.
    pub id: String,
    /// The bus to plug into (`pci.0`, `rp1`); QEMU picks one when unset.
    pub bus: Option<String>,
    /// More `device_add` properties (`addr`, `disable-legacy`, ...).
    pub props: Vec<(String, Value)>,
}

impl Plug {
    /// Device model `driver` with qdev id `id`; bus and properties to be set.
    pub fn new(driver: &str, id: &str) -> Plug {
        Plug { driver: driver.into(), id: id.into(), bus: None, props: Vec::new() }
    }

    /// Plug into `bus`.
    pub fn bus(mut self, bus: &str) -> Plug {
        self.bus = Some(bus.into());
        self
    }

    /// Add a `device_add` property.
    pub fn prop(mut self, key: &str, value: impl Into<Value>) -> Plug {
        self.props.push((key.into(), value.into()));
        self
    }

    /// At a profile's PCI slot (see [`crate::profile::Profile::pci_slot`]).
    pub fn at(self, slot: &crate::profile::PciSlot) -> Plug {
        self.bus(&slot.bus).prop("addr", slot.addr.clone())
    }

    /// The bus the device goes on, from its driver (`scsi-hd` → SCSI).
    pub fn kind(&self) -> BusKind {
        BusKind::of_driver(&self.driver)
    }
}

/// A device QEMU added and the guest registered.
#[derive(Clone, Debug)]
pub struct Plugged {
    /// QEMU's id of the device.
    pub id: String,
    /// Where the guest shows it.
    pub devpath: String,
    /// `device_add` returned → the guest's `add` uevent arrived.
    pub add_latency: Duration,
}

/// How an unplug ended, as the guest told the control channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnplugOrder {
    /// `remove`, then `hotplug eject`: the device left the model (reads
    /// drained) before QEMU was allowed to finish the unplug.
    RemovedBeforeEject,
    /// The eject came first: QEMU could free the device while the guest
    /// still had it in its tree.
    EjectedBeforeRemoval,
    /// The bus does not ask the guest (SCSI, USB): QEMU removed the device
    /// on its own and the guest followed with `remove`; there is no eject.
    NoEject,
}

/// A device that is gone, as its bus defines it.
#[derive(Clone, Debug)]
pub struct Unplugged {
    /// QEMU's id of the device.
    pub id: String,
    /// Where the guest showed it.
    pub devpath: String,
    /// `device_del` returned → DEVICE_DELETED.
    pub deleted_after: Duration,
    /// `device_del` returned → the guest's `remove` uevent.
    pub removed_after: Duration,
    /// What the guest did, in the order it told the control channel.
    pub order: UnplugOrder,
}

/// An unplug whose `device_del` has returned and whose end has not been
/// waited for yet ([`Vm::start_unplug`]). It does not borrow the [`Vm`], so
/// the test can snapshot, read and hold in between; [`PendingUnplug::finish`]
/// then waits for what "gone" means on the device's bus.
pub struct PendingUnplug {
    id: String,
    devpath: String,
    removal: Removal,
    /// Uevent, notice and QMP event positions before `device_del`.
    cursors: (usize, usize, usize),
    /// When `device_del` returned.
    returned: Instant,
    waiter: Waiter,
    qmp: crate::qmp::Qmp,
}

impl PendingUnplug {
    /// QEMU's id of the device.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the guest showed the device.
    pub fn devpath(&self) -> &str {
        &self.devpath
    }

    /// Has QEMU sent DEVICE_DELETED for the device yet?
    pub fn deleted(&self) -> bool {
        self.qmp.events_since(self.cursors.2).iter().any(|e| is_deleted(e, &self.id))
    }

    /// Wait for the guest's `remove` uevent for the device (it may already
    /// have come); returns how long after `device_del` it arrived.
    pub async fn removed(&self) -> Result<Duration> {
        Ok(self.wait_removed().await?.at.saturating_duration_since(self.returned))
    }

    async fn wait_removed(&self) -> Result<Received<Uevent>> {
        let what = format!("remove {}", self.devpath);
        self.waiter.wait_uevent(self.cursors.0, &what, |u| u.action == "remove" && u.devpath == self.devpath).await
    }

    /// Wait until the device is gone as its bus defines it, and say how
    /// long each part took.
    pub async fn finish(self) -> Result<Unplugged> {
        let deleted_what = format!("DEVICE_DELETED for {}", self.id);
        let deleted = self.waiter.wait_qmp_event(self.cursors.2, &deleted_what, |e| is_deleted(e, &self.id));
        let (removed, order, deleted) = match &self.removal {
            Removal::GuestEjects { notice } => {
                let ejected = self.waiter.wait_notice(self.cursors.1, notice, |n| n == notice);
                let (removed, ejected, deleted) = tokio::try_join!(self.wait_removed(), ejected, deleted)?;
                // One channel, written by the guest in this order: causal,
                // unlike arrival times across channels.
                let order = if removed.frame < ejected.frame {
                    UnplugOrder::RemovedBeforeEject
                } else {
                    UnplugOrder::EjectedBeforeRemoval
                };
                (removed, order, deleted)
            }
            Removal::QemuAlone => {
                let (removed, deleted) = tokio::try_join!(self.wait_removed(), deleted)?;
                (removed, UnplugOrder::NoEject, deleted)
            }
        };
        Ok(Unplugged {
            deleted_after: deleted.received.saturating_duration_since(self.returned),
            removed_after: removed.at.saturating_duration_since(self.returned),
            order,
            id: self.id,
            devpath: self.devpath,
        })
    }
}

fn is_deleted(event: &crate::qmp::Event, id: &str) -> bool {
    event.name == "DEVICE_DELETED" && event.str("device") == Some(id)
}

impl Vm {
    /// `device_add` alone. QEMU's refusal comes back with its own text.
    pub async fn device_add(&self, plug: &Plug) -> Result<(), QmpError> {
        let mut arguments = qapi::Dictionary::new();
        for (k, v) in &plug.props {
            arguments.insert(k.clone(), v.clone());
        }
        self.qmp
            .execute(qapi::qmp::device_add {
                driver: plug.driver.clone(),
                id: Some(plug.id.clone()),
                bus: plug.bus.clone(),
                arguments,
            })
            .await
            .map(drop)
    }

    /// `device_del` alone.
    pub async fn device_del(&self, id: &str) -> Result<(), QmpError> {
        self.qmp.execute(qapi::qmp::device_del { id: id.into() }).await.map(drop)
    }

    /// Tell the guest which bus each ACPI hot-plug selector (bsel) selects:
    /// QEMU gives every cold-plugged bridge's bus its own, in an order config
    /// space does not reveal, and keeps it in the bus's `acpi-pcihp-bsel`
    /// property (absent when the bus has no ACPI hot-plug, e.g. q35 in
    /// native mode). The guest numbered the buses, `query-pci` shows which
    /// number each bridge got. Returns the (bsel, bus) pairs told.
    pub async fn tell_acpi_hotplug_selectors(&self) -> Result<Vec<(u64, u8)>> {
        let mut told = Vec::new();
        for f in self.query_pci().await? {
            let (Some(secondary), false) = (f.bridge.as_ref().map(|b| b.secondary), f.qdev_id.is_empty()) else {
                continue;
            };
            let path = format!("/machine/peripheral/{0}/{0}", f.qdev_id);
            let reply =
                self.qmp.execute_raw("qom-get", serde_json::json!({"path": path, "property": "acpi-pcihp-bsel"})).await;
            let Ok(bsel) = reply else { continue };
            let Some(bsel) = bsel.as_u64() else { bail!("{path} acpi-pcihp-bsel is not a number: {bsel}") };
            self.call(&format!("pcihp bsel {bsel:x} {secondary:x}")).await?;
            told.push((bsel, secondary));
        }
        Ok(told)
    }

    /// Where the guest's snapshot must show the PCI device QEMU calls `id`.
    pub async fn pci_devpath(&self, id: &str) -> Result<String> {
        let functions = self.query_pci().await?;
        functions
            .into_iter()
            .find(|f| f.qdev_id == id)
            .map(|f| f.devpath)
            .with_context(|| format!("QEMU's query-pci does not list a device with id {id:?}"))
    }

    /// Add a device on any bus and wait until the guest has registered it
    /// where QEMU's view of the device says it must be.
    pub async fn plug(&self, plug: &Plug) -> Result<Plugged> {
        let cursor = self.control.uevent_cursor();
        self.device_add(plug).await.with_context(|| format!("device_add {} id={}", plug.driver, plug.id))?;
        let returned = Instant::now();
        let location = bus::locate(self, plug.kind(), &plug.id).await?;
        let devpath = location.devpath;
        let what = format!("add {devpath} (device_add {} id={})", plug.driver, plug.id);
        let added = self.wait_uevent(cursor, &what, |u| u.action == "add" && u.devpath == devpath).await?;
        Ok(Plugged { id: plug.id.clone(), devpath, add_latency: added.at.saturating_duration_since(returned) })
    }

    /// Remove a device on any bus: `device_del`, then wait until it is gone
    /// as its bus defines it ([`PendingUnplug::finish`]).
    pub async fn unplug(&self, id: &str) -> Result<Unplugged> {
        self.start_unplug(id).await?.finish().await
    }

    /// The first half of [`Vm::unplug`]: find where the guest shows the
    /// device, send `device_del` and return once QEMU accepted it. Look at
    /// the guest, then call [`PendingUnplug::finish`].
    pub async fn start_unplug(&self, id: &str) -> Result<PendingUnplug> {
        let kind = BusKind::of_device(self, id).await.with_context(|| format!("unplug {id}"))?;
        let location = bus::locate(self, kind, id).await?;
        let cursors = (self.control.uevent_cursor(), self.control.notice_cursor(), self.qmp.cursor());
        self.device_del(id).await.with_context(|| format!("device_del {id}"))?;
        Ok(PendingUnplug {
            id: id.into(),
            devpath: location.devpath,
            removal: location.removal,
            cursors,
            returned: Instant::now(),
            waiter: self.waiter(),
            qmp: self.qmp.clone(),
        })
    }

    /// Wait for `DEVICE_DELETED` with `data.device == id` from event
    /// position `from`; returns when the harness read it.
    pub async fn wait_device_deleted(&self, from: usize, id: &str) -> Result<Instant> {
        let what = format!("DEVICE_DELETED for {id}");
        let event = self.wait_qmp_event(from, &what, |e| is_deleted(e, id)).await?;
        Ok(event.received)
    }

    /// Has QEMU sent DEVICE_DELETED for `id` since event position `from`?
    pub fn device_deleted_since(&self, from: usize, id: &str) -> bool {
        self.qmp.events_since(from).iter().any(|e| is_deleted(e, id))
    }

    /// Does QEMU still have a device with this id?
    pub async fn qemu_has_device(&self, id: &str) -> Result<bool> {
        let list = self.qmp.execute_raw("qom-list", serde_json::json!({"path": "/machine/peripheral"})).await?;
        let Some(entries) = list.as_array() else { bail!("qom-list returned {list}") };
        Ok(entries.iter().any(|e| e.get("name").and_then(Value::as_str) == Some(id)))
    }
}

/// `<bb:ss>` of a function's devpath, as the guest names the slot in its
/// `hotplug eject` and `hotplug busy` notices
/// (`root/pci0/00:10.0/05:00.0` → `05:00`).
pub fn pci_slot_of(devpath: &str) -> Result<String> {
    bus::pci::slot_of(devpath)
}
