//! Hot-plug through QMP, checked against the guest.
//!
//! `plug`: `device_add`, then wait for the guest's `add` uevent for the
//! device path QEMU's own `query-pci` places it at. `unplug`: `device_del`,
//! then wait for the guest's `remove` uevent, its `* hotplug eject <bb:ss>`
//! notice and QEMU's DEVICE_DELETED (matched on `data.device`), and record
//! whether the guest removed before it ejected. A refusal is a
//! [`QmpError::Qemu`] with QEMU's text; the VM stays usable.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::qmp::QmpError;
use crate::vm::Vm;

/// A device to add.
#[derive(Clone, Debug)]
pub struct Plug {
    pub driver: String,
    pub id: String,
    pub bus: Option<String>,
    pub props: Vec<(String, Value)>,
}

impl Plug {
    pub fn new(driver: &str, id: &str) -> Plug {
        Plug { driver: driver.into(), id: id.into(), bus: None, props: Vec::new() }
    }

    pub fn bus(mut self, bus: &str) -> Plug {
        self.bus = Some(bus.into());
        self
    }

    pub fn prop(mut self, key: &str, value: impl Into<Value>) -> Plug {
        self.props.push((key.into(), value.into()));
        self
    }

    /// At a profile's PCI slot (see [`crate::profile::Profile::pci_slot`]).
    pub fn at(self, slot: &crate::profile::PciSlot) -> Plug {
        self.bus(&slot.bus).prop("addr", slot.addr.clone())
    }
}

#[derive(Clone, Debug)]
pub struct Plugged {
    pub id: String,
    pub devpath: String,
    /// `device_add` returned → the guest's `add` uevent arrived.
    pub add_latency: Duration,
}

/// What the guest did first on an unplug request, as it told the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnplugOrder {
    /// `remove`, then `hotplug eject`: the device left the model (reads
    /// drained) before QEMU was allowed to finish the unplug.
    RemovedBeforeEject,
    /// The eject came first: QEMU could free the device while the guest
    /// still had it in its tree.
    EjectedBeforeRemoval,
}

#[derive(Clone, Debug)]
pub struct Unplugged {
    pub id: String,
    pub devpath: String,
    /// `device_del` returned → DEVICE_DELETED.
    pub deleted_after: Duration,
    /// `device_del` returned → the guest's `remove` uevent.
    pub removed_after: Duration,
    pub order: UnplugOrder,
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

    /// Where the guest's snapshot must show the PCI device QEMU calls `id`.
    pub async fn pci_devpath(&self, id: &str) -> Result<String> {
        let functions = self.query_pci().await?;
        functions
            .into_iter()
            .find(|f| f.qdev_id == id)
            .map(|f| f.devpath)
            .with_context(|| format!("QEMU's query-pci does not list a device with id {id:?}"))
    }

    /// Add a PCI device and wait until the guest has registered it.
    pub async fn plug(&self, plug: &Plug) -> Result<Plugged> {
        let cursor = self.control.uevent_cursor();
        self.device_add(plug).await.with_context(|| format!("device_add {} id={}", plug.driver, plug.id))?;
        let returned = Instant::now();
        let devpath = self.pci_devpath(&plug.id).await?;
        let what = format!("add {devpath} (device_add {} id={})", plug.driver, plug.id);
        let added = self.wait_uevent(cursor, &what, |u| u.action == "add" && u.devpath == devpath).await?;
        Ok(Plugged { id: plug.id.clone(), devpath, add_latency: added.at.saturating_duration_since(returned) })
    }

    /// Remove a PCI device: `device_del`, then wait for the guest's `remove`
    /// uevent, its eject notice and QEMU's DEVICE_DELETED. The order of
    /// `remove` and the eject notice is causal (one channel, written by the
    /// guest in that order), unlike arrival times across channels.
    pub async fn unplug(&self, id: &str) -> Result<Unplugged> {
        let devpath = self.pci_devpath(id).await?;
        let slot = pci_slot_of(&devpath)?;
        let (ucursor, ncursor, qcursor) =
            (self.control.uevent_cursor(), self.control.notice_cursor(), self.qmp.cursor());
        self.device_del(id).await.with_context(|| format!("device_del {id}"))?;
        let returned = Instant::now();
        let (remove_what, eject_notice) = (format!("remove {devpath}"), format!("hotplug eject {slot}"));
        let removed = self.wait_uevent(ucursor, &remove_what, |u| u.action == "remove" && u.devpath == devpath);
        let ejected = self.wait_notice(ncursor, &eject_notice, |n| n == eject_notice);
        let deleted = self.wait_device_deleted(qcursor, id);
        let (removed, ejected, deleted_at) = tokio::try_join!(removed, ejected, deleted)?;
        let order = if removed.frame < ejected.frame {
            UnplugOrder::RemovedBeforeEject
        } else {
            UnplugOrder::EjectedBeforeRemoval
        };
        Ok(Unplugged {
            id: id.into(),
            devpath,
            deleted_after: deleted_at.saturating_duration_since(returned),
            removed_after: removed.at.saturating_duration_since(returned),
            order,
        })
    }

    /// Wait for `DEVICE_DELETED` with `data.device == id` from event
    /// position `from`; returns when the harness read it.
    pub async fn wait_device_deleted(&self, from: usize, id: &str) -> Result<Instant> {
        let what = format!("DEVICE_DELETED for {id}");
        let event =
            self.wait_qmp_event(from, &what, |e| e.name == "DEVICE_DELETED" && e.str("device") == Some(id)).await?;
        Ok(event.received)
    }

    /// Has QEMU sent DEVICE_DELETED for `id` since event position `from`?
    pub fn device_deleted_since(&self, from: usize, id: &str) -> bool {
        self.qmp.events().iter().skip(from).any(|e| e.name == "DEVICE_DELETED" && e.str("device") == Some(id))
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
    let name = devpath.rsplit('/').next().unwrap_or_default();
    match name.rsplit_once('.') {
        Some((slot, _)) if slot.len() == 5 => Ok(slot.to_string()),
        _ => bail!("{devpath} does not end in a PCI function name"),
    }
}
