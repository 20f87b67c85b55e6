//! Removable media on IDE CD drives, through QMP, checked against the guest.
//!
//! Each operation waits for QEMU's DEVICE_TRAY_MOVED and for the guest's
//! `change` uevent on the drive (with the MEDIA_PRESENT it must report).
//! [`Vm::check_media`] compares QEMU's `query-block` with what the guest
//! shows after every step.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::driverfs::Snapshot;
use crate::qmp::QmpError;
use crate::vm::Vm;

/// A drive's state as QEMU's `query-block` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockState {
    /// The drive's qdev id (`cd0`).
    pub id: String,
    /// Is the tray open?
    pub tray_open: bool,
    /// Has the guest locked the tray (PREVENT MEDIUM REMOVAL)?
    pub locked: bool,
    /// Size in bytes of the inserted medium.
    pub inserted: Option<u64>,
}

impl Vm {
    /// `query-block`, read as JSON (robust to schema drift between QEMU
    /// versions), one entry per device with a qdev id.
    pub async fn query_block(&self) -> Result<Vec<BlockState>> {
        let reply = self.qmp.execute_raw("query-block", json!({})).await?;
        let Some(entries) = reply.as_array() else { bail!("query-block returned {reply}") };
        let mut out = Vec::new();
        for e in entries {
            let Some(qdev) = e.get("qdev").and_then(Value::as_str) else { continue };
            let id = qdev.trim_start_matches("/machine/peripheral/").split('/').next().unwrap_or(qdev).to_string();
            let inserted = e
                .get("inserted")
                .map(|i| i.get("image").and_then(|img| img.get("virtual-size")).and_then(Value::as_u64).unwrap_or(0));
            out.push(BlockState {
                id,
                tray_open: e.get("tray_open").and_then(Value::as_bool).unwrap_or(false),
                locked: e.get("locked").and_then(Value::as_bool).unwrap_or(false),
                inserted,
            });
        }
        Ok(out)
    }

    /// Insert or change the medium (`blockdev-change-medium`): the tray
    /// opens and closes, the guest reports the new medium.
    pub async fn change_media(&self, drive: &str, image: &Path) -> Result<()> {
        let devpath = &self.config.profile.ide_drive(drive)?.devpath;
        let ucursor = self.control.uevent_cursor();
        self.change_media_in_qemu(drive, image).await?;
        self.wait_media_uevent(ucursor, devpath, true).await?;
        self.forget_media_node(drive, None).await;
        Ok(())
    }

    /// The QEMU half of [`Vm::change_media`]: `blockdev-change-medium`, then
    /// the tray closing. The guest's report is not waited for, so tests can
    /// look at the guest while it is still catching up.
    pub async fn change_media_in_qemu(&self, drive: &str, image: &Path) -> Result<()> {
        let qcursor = self.qmp.cursor();
        self.qmp
            .execute_raw(
                "blockdev-change-medium",
                json!({"id": drive, "filename": image.display().to_string(), "format": "raw", "read-only-mode": "read-only"}),
            )
            .await
            .with_context(|| format!("blockdev-change-medium {drive} {}", image.display()))?;
        self.wait_tray(qcursor, drive, false).await
    }

    /// Insert a medium into an empty drive the long way: `blockdev-add` a
    /// read-only node, `blockdev-open-tray` (unless open), `blockdev-insert-
    /// medium`, `blockdev-close-tray`; each tray move is waited for, then the
    /// guest's report of the new medium.
    pub async fn insert_media(&self, drive: &str, image: &Path) -> Result<()> {
        let devpath = &self.config.profile.ide_drive(drive)?.devpath;
        let state = self.block_state(drive).await?;
        if state.inserted.is_some() {
            bail!("{drive} already holds a medium: eject it first or use change_media");
        }
        if state.locked && !state.tray_open {
            bail!("{drive}'s tray is locked by the guest: QEMU would only forward the open request");
        }
        let node = format!("{drive}-medium-{}", self.qmp.cursor());
        self.qmp
            .execute_raw(
                "blockdev-add",
                json!({"driver": "raw", "node-name": node, "read-only": true,
                       "file": {"driver": "file", "filename": image.display().to_string(), "read-only": true}}),
            )
            .await
            .with_context(|| format!("blockdev-add {}", image.display()))?;
        let ucursor = self.control.uevent_cursor();
        if !state.tray_open {
            let qcursor = self.qmp.cursor();
            self.qmp.execute_raw("blockdev-open-tray", json!({"id": drive})).await.context("blockdev-open-tray")?;
            self.wait_tray(qcursor, drive, true).await?;
        }
        self.qmp
            .execute_raw("blockdev-insert-medium", json!({"id": drive, "node-name": node}))
            .await
            .context("blockdev-insert-medium")?;
        let qcursor = self.qmp.cursor();
        self.qmp.execute_raw("blockdev-close-tray", json!({"id": drive})).await.context("blockdev-close-tray")?;
        self.wait_tray(qcursor, drive, false).await?;
        self.wait_media_uevent(ucursor, devpath, true).await?;
        self.forget_media_node(drive, Some(node)).await;
        Ok(())
    }

    /// Remember the node `insert_media` created for `drive` and delete the
    /// one it replaces, which no device uses any more.
    async fn forget_media_node(&self, drive: &str, new: Option<String>) {
        let old = {
            let mut nodes = self.media_nodes.lock().unwrap();
            match new {
                Some(n) => nodes.insert(drive.to_string(), n),
                None => nodes.remove(drive),
            }
        };
        if let Some(old) = old {
            // Best effort: QEMU refuses while the node is still inserted.
            let _ = self.qmp.execute_raw("blockdev-del", json!({"node-name": old})).await;
        }
    }

    async fn block_state(&self, drive: &str) -> Result<BlockState> {
        self.query_block()
            .await?
            .into_iter()
            .find(|b| b.id == drive)
            .with_context(|| format!("query-block lacks {drive}"))
    }

    /// `eject`; refused by QEMU (with its text) when the guest locked the
    /// tray, unless `force`.
    pub async fn eject(&self, drive: &str, force: bool) -> Result<()> {
        let devpath = &self.config.profile.ide_drive(drive)?.devpath;
        let (ucursor, qcursor) = (self.control.uevent_cursor(), self.qmp.cursor());
        self.eject_command(drive, force).await?;
        self.wait_tray(qcursor, drive, true).await?;
        self.wait_media_uevent(ucursor, devpath, false).await?;
        self.forget_media_node(drive, None).await;
        Ok(())
    }

    /// Only the QMP `eject` command, for tests of its refusal.
    pub async fn eject_command(&self, drive: &str, force: bool) -> Result<(), QmpError> {
        self.qmp.execute_raw("eject", json!({"id": drive, "force": force})).await.map(drop)
    }

    async fn wait_tray(&self, from: usize, drive: &str, open: bool) -> Result<()> {
        let what = format!("DEVICE_TRAY_MOVED {drive} tray-open={open}");
        self.wait_qmp_event(from, &what, |e| {
            e.name == "DEVICE_TRAY_MOVED"
                && e.str("id") == Some(drive)
                && e.data.get("tray-open").and_then(Value::as_bool) == Some(open)
        })
        .await
        .map(drop)
    }

    async fn wait_media_uevent(&self, from: usize, devpath: &str, present: bool) -> Result<()> {
        let want = if present { "1" } else { "0" };
        let what = format!("change {devpath} MEDIA_PRESENT={want}");
        self.wait_uevent(from, &what, |u| {
            u.action == "change" && u.devpath == devpath && u.get("MEDIA_PRESENT") == Some(want)
        })
        .await
        .map(drop)
    }

    /// QEMU's `query-block` and the guest agree on every IDE drive of the
    /// profile (see [`crate::checks::ide_matches_qemu`]).
    pub async fn check_media(&mut self) -> Result<Snapshot> {
        let snapshot = self.snapshot().await?;
        let blocks = self.query_block().await?;
        crate::checks::ide_matches_qemu(&snapshot, &self.config.profile.ide, &blocks)?;
        Ok(snapshot)
    }
}
