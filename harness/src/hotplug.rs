//! Hot-plug through QMP, checked against the guest.
//!
//! `plug`: `device_add`, then wait for the guest's `add` uevent for the
//! device path QEMU's own `query-pci` places it at. `unplug`: `device_del`,
//! then wait for both QEMU's DEVICE_DELETED (matched on `data.device`) and
//! the guest's `remove` uevent, and record which came first. A refusal is a
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

/// Which side finished an unplug first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnplugOrder {
    /// The guest announced `remove`, then QEMU sent DEVICE_DELETED: the
    /// guest removed the device from its model before ejecting it.
    GuestFirst,
    QemuFirst,
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

    /// Where the guest's snapshot must show the PCI device QEMU calls `id`:
    /// `root/pci0/<bb:ss.f>`, nested under each bridge on the way.
    pub async fn pci_devpath(&self, id: &str) -> Result<String> {
        let buses = self.qmp(qapi::qmp::query_pci {}).await?;
        fn find(devices: &[qapi::qmp::PciDeviceInfo], prefix: &str, id: &str) -> Option<String> {
            for d in devices {
                let path = format!("{prefix}/{:02x}:{:02x}.{}", d.bus, d.slot, d.function);
                if d.qdev_id == id {
                    return Some(path);
                }
                if let Some(found) =
                    d.pci_bridge.as_ref().and_then(|b| b.devices.as_ref()).and_then(|c| find(c, &path, id))
                {
                    return Some(found);
                }
            }
            None
        }
        buses
            .iter()
            .find_map(|b| find(&b.devices, "root/pci0", id))
            .with_context(|| format!("QEMU's query-pci does not list a device with id {id:?}"))
    }

    /// Add a PCI device and wait until the guest has registered it.
    pub async fn plug(&self, plug: &Plug) -> Result<Plugged> {
        let cursor = self.control.uevent_cursor();
        self.device_add(plug).await.with_context(|| format!("device_add {} id={}", plug.driver, plug.id))?;
        let returned = Instant::now();
        let devpath = self.pci_devpath(&plug.id).await?;
        let what = format!("add {devpath} (device_add {} id={})", plug.driver, plug.id);
        let matches = |u: &crate::control::Uevent| u.action == "add" && u.devpath == devpath;
        let index = self
            .within(&format!("the uevent {what}"), self.config.timeouts.event, async {
                Ok(self.control.wait_uevent(cursor, matches).await?.0)
            })
            .await?;
        let at = self.control.uevent_received_at(index).unwrap_or_else(Instant::now);
        Ok(Plugged { id: plug.id.clone(), devpath, add_latency: at.saturating_duration_since(returned) })
    }

    /// Remove a PCI device: `device_del`, then wait for DEVICE_DELETED and
    /// the guest's `remove` uevent.
    pub async fn unplug(&self, id: &str) -> Result<Unplugged> {
        let devpath = self.pci_devpath(id).await?;
        let (ucursor, qcursor) = (self.control.uevent_cursor(), self.qmp.cursor());
        self.device_del(id).await.with_context(|| format!("device_del {id}"))?;
        let returned = Instant::now();
        let deleted = self.wait_device_deleted(qcursor, id);
        let what = format!("the uevent remove {devpath}");
        let removed = self.within(&what, self.config.timeouts.event, async {
            Ok(self.control.wait_uevent(ucursor, |u| u.action == "remove" && u.devpath == devpath).await?.0)
        });
        let (deleted_at, removed_index) = tokio::try_join!(deleted, removed)?;
        let removed_at = self.control.uevent_received_at(removed_index).unwrap_or_else(Instant::now);
        let order = if removed_at <= deleted_at { UnplugOrder::GuestFirst } else { UnplugOrder::QemuFirst };
        Ok(Unplugged {
            id: id.into(),
            devpath,
            deleted_after: deleted_at.saturating_duration_since(returned),
            removed_after: removed_at.saturating_duration_since(returned),
            order,
        })
    }

    /// Wait for `DEVICE_DELETED` with `data.device == id` from event
    /// position `from`; returns when the harness read it.
    pub async fn wait_device_deleted(&self, from: usize, id: &str) -> Result<Instant> {
        self.within(&format!("DEVICE_DELETED for {id}"), self.config.timeouts.event, async {
            let (_, event) =
                self.qmp.wait_event(from, |e| e.name == "DEVICE_DELETED" && e.str("device") == Some(id)).await?;
            Ok(event.received)
        })
        .await
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
