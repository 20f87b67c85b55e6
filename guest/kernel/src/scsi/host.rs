//! Hosts, scanning, command execution and removal.
//!
//! Scanning a LUN (after Linux's `scsi_probe_and_add_lun`): INQUIRY (the
//! peripheral qualifier must be 0), TEST UNIT READY until the unit
//! attentions are consumed, READ CAPACITY(10) (and (16) when the disk is too
//! big for it), then sector 0 through READ(10) for the MBR. Only then is the
//! LUN registered, with everything its attributes show, so driverfs never
//! shows a half-probed device.
//!
//! Unit attentions (sense key 6) are retried, never a failure: 6/29/00 after
//! a plug or reset, 6/3F/0E (REPORTED LUNS DATA HAS CHANGED, reported once
//! per bus to whichever LUN asks next), 6/28/00 (medium changed).
//!
//! Removal of a LUN (after `scsi_remove_device`): `device_unregister` marks
//! it dying (new commands for it are refused with ENODEV, lookups fail),
//! unbinds `sd`/`sr`, sends `remove`, drains driverfs reads and releases the
//! object on the last put. A target goes with its last LUN. Re-adding the
//! same address while the old object is still referenced waits for its
//! release (`* hotplug busy <H>:0:<id>:<lun>`), counted as bus work so
//! `settle` waits too.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::{Rc, Weak};
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::cdb::{self, Inquiry, Sense, key, status};
use super::device::{DiskInfo, HostData, LunData, MediumInfo, TargetData};
use super::{BUS_NAME, DataDir, Request, Response, ScsiTransport, TransportError, upper};
use crate::base::{BusId, Core, CoreRef, DeviceId, DeviceState, device_unregister};
use crate::checkpoint::Checkpoints;
use crate::errno::Errno;
use crate::executor::{Spawner, wait_until};
use crate::hw::Platform;
use crate::klog;
use crate::subsystem::PendingWork;

/// How often a command is retried past unit attentions and BUSY.
const RETRIES: usize = 8;
/// Targets whose REPORT LUNS a host scan sends at once (three descriptors
/// each: 64 fill most of a 256-entry queue).
const SCAN_BATCH: usize = 64;
/// REPORT LUNS allocation length: 64 LUNs per target are plenty here.
const REPORT_LUNS_LEN: u32 = 8 + 8 * 64;

/// The SCSI subsystem: the bus, its drivers and every host.
pub struct Scsi {
    pub platform: &'static dyn Platform,
    pub core: Weak<RefCell<Core>>,
    pub spawner: Spawner,
    /// Scans, removals and re-adds waiting for a release, for `settle`.
    pub work: PendingWork,
    pub bus: BusId,
    pub checkpoints: Rc<Checkpoints>,
    next_host: Cell<u32>,
    hosts: RefCell<Vec<Rc<ScsiHost>>>,
}

impl Scsi {
    /// Register the `scsi` bus and the `sd` and `sr` drivers.
    pub fn register(
        core: &mut Core,
        shared: &CoreRef,
        platform: &'static dyn Platform,
        spawner: Spawner,
        checkpoints: Rc<Checkpoints>,
    ) -> Rc<Scsi> {
        let bus = core.bus_register(BUS_NAME);
        let scsi = Rc::new(Scsi {
            platform,
            core: Rc::downgrade(shared),
            spawner,
            work: PendingWork::default(),
            bus,
            checkpoints,
            next_host: Cell::new(0),
            hosts: RefCell::new(Vec::new()),
        });
        upper::register(core, &scsi);
        scsi
    }

    /// Register `host<H>` under the adapter's device. H counts up from 0 in
    /// registration order and is never reused, as in Linux.
    pub fn add_host(
        self: &Rc<Self>,
        core: &mut Core,
        parent: DeviceId,
        proc_name: &'static str,
        transport: Rc<dyn ScsiTransport>,
    ) -> Result<Rc<ScsiHost>, Errno> {
        let number = self.next_host.get();
        self.next_host.set(number + 1);
        let dev = core.device_initialize(
            &format!("host{number}"),
            Some(parent),
            Some(self.bus),
            Box::new(HostData { number, proc_name }),
        );
        // The adapter's driver created it: unbinding (or unplugging) the
        // adapter unregisters it, and the core removes children first.
        core.set_managed(dev);
        if let Err(e) = core.device_add(dev) {
            core.put(dev);
            return Err(e);
        }
        let host = Rc::new_cyclic(|me| ScsiHost {
            me: me.clone(),
            scsi: Rc::clone(self),
            number,
            dev,
            transport,
            state: RefCell::new(HostState::default()),
            lock: Cell::new(false),
        });
        self.hosts.borrow_mut().push(Rc::clone(&host));
        Ok(host)
    }

    /// Forget a host whose device is gone (the adapter's remove()).
    pub fn forget_host(&self, host: &ScsiHost) {
        self.hosts.borrow_mut().retain(|h| h.number != host.number);
    }

    pub fn hosts(&self) -> Vec<Rc<ScsiHost>> {
        self.hosts.borrow().clone()
    }

    /// The host and address of a LUN by its name `<H>:0:<id>:<lun>`.
    pub fn find_lun(&self, name: &str) -> Option<(Rc<ScsiHost>, u16, u32)> {
        let mut parts = name.split(':');
        let h: u32 = parts.next()?.parse().ok()?;
        let channel: u32 = parts.next()?.parse().ok()?;
        let id: u16 = parts.next()?.parse().ok()?;
        let lun: u32 = parts.next()?.parse().ok()?;
        if channel != 0 || parts.next().is_some() {
            return None;
        }
        let host = self.hosts.borrow().iter().find(|host| host.number == h).cloned()?;
        Some((host, id, lun))
    }

    pub fn find_host(&self, number: u32) -> Option<Rc<ScsiHost>> {
        self.hosts.borrow().iter().find(|h| h.number == number).cloned()
    }
}

#[derive(Default)]
struct HostState {
    targets: BTreeMap<u16, DeviceId>,
    luns: BTreeMap<(u16, u32), DeviceId>,
    /// The last object registered at each address, kept after removal so a
    /// re-add can wait for its release.
    previous_luns: BTreeMap<(u16, u32), DeviceId>,
    previous_targets: BTreeMap<u16, DeviceId>,
}

/// Why a command did not produce data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// No device there (any more), or it is being removed.
    NoDevice,
    /// CHECK CONDITION with this sense (after retries).
    Check(Sense),
    /// Another status, or CHECK CONDITION without usable sense.
    Status(u8),
    /// The transport reset the device, and again after the one retry.
    Reset,
    Transport(u8),
}

impl CommandError {
    pub fn errno(self) -> Errno {
        match self {
            CommandError::NoDevice => Errno::ENODEV,
            _ => Errno::EIO,
        }
    }
}

/// One adapter's SCSI host.
pub struct ScsiHost {
    me: Weak<ScsiHost>,
    pub scsi: Rc<Scsi>,
    pub number: u32,
    pub dev: DeviceId,
    transport: Rc<dyn ScsiTransport>,
    state: RefCell<HostState>,
    /// The scan lock (Linux's `scan_mutex`): scans and removals of this host
    /// run one at a time, so a LUN is never registered and removed at once.
    lock: Cell<bool>,
}

/// Holds the host's scan lock while alive.
struct ScanLock<'a>(&'a Cell<bool>);

impl Drop for ScanLock<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl ScsiHost {
    fn core(&self) -> Option<CoreRef> {
        self.scsi.core.upgrade()
    }

    /// Still registered: scans stop and commands fail once the host goes.
    pub fn alive(&self) -> bool {
        self.core().is_some_and(|c| c.borrow().state(self.dev) == DeviceState::Registered)
    }

    pub fn lun_name(&self, id: u16, lun: u32) -> String {
        format!("{}:0:{id}:{lun}", self.number)
    }

    /// Registered LUNs, by address.
    pub fn luns(&self) -> Vec<((u16, u32), DeviceId)> {
        self.state.borrow().luns.iter().map(|(k, v)| (*k, *v)).collect()
    }

    pub fn lun_device(&self, id: u16, lun: u32) -> Option<DeviceId> {
        self.state.borrow().luns.get(&(id, lun)).copied()
    }

    async fn lock(&self) -> ScanLock<'_> {
        wait_until(|| !self.lock.get()).await;
        self.lock.set(true);
        ScanLock(&self.lock)
    }

    /// Send one command as is.
    pub async fn send(&self, id: u16, lun: u32, cdb: Vec<u8>, dir: DataDir) -> Result<Response, TransportError> {
        if !self.alive() {
            return Err(TransportError::NoDevice);
        }
        self.transport.queue_command(Request { target: id, lun, cdb, dir }).await
    }

    /// A command with the midlayer's error handling: sense from autosense or
    /// REQUEST SENSE; unit attentions and BUSY retried. A LUN that is
    /// registered and no longer alive refuses new commands.
    pub async fn command(&self, id: u16, lun: u32, cdb: Vec<u8>, dir: DataDir) -> Result<Vec<u8>, CommandError> {
        let mut last = CommandError::Status(status::BUSY);
        let mut reset_retried = false;
        for _ in 0..RETRIES {
            if self.dying_lun(id, lun) {
                return Err(CommandError::NoDevice);
            }
            let response = match self.send(id, lun, cdb.clone(), dir.clone()).await {
                Ok(r) => r,
                Err(TransportError::NoDevice) => return Err(CommandError::NoDevice),
                // The transport reset the device to recover: once more.
                Err(TransportError::Reset) if !reset_retried => {
                    reset_retried = true;
                    last = CommandError::Reset;
                    continue;
                }
                Err(TransportError::Reset) => return Err(CommandError::Reset),
                Err(TransportError::Failed(code)) => return Err(CommandError::Transport(code)),
            };
            match response.status {
                status::GOOD => return Ok(response.data),
                status::CHECK_CONDITION => {
                    let sense = match Sense::parse(&response.sense) {
                        Some(sense) => Some(sense),
                        None => self.request_sense(id, lun).await?,
                    };
                    match sense {
                        Some(s) if s.key == key::UNIT_ATTENTION => {
                            last = CommandError::Check(s);
                            continue;
                        }
                        Some(s) if s.key == key::NO_SENSE => return Ok(response.data),
                        Some(s) => return Err(CommandError::Check(s)),
                        None => return Err(CommandError::Status(status::CHECK_CONDITION)),
                    }
                }
                status::BUSY => last = CommandError::Status(status::BUSY),
                other => return Err(CommandError::Status(other)),
            }
        }
        Err(last)
    }

    async fn request_sense(&self, id: u16, lun: u32) -> Result<Option<Sense>, CommandError> {
        match self.send(id, lun, cdb::request_sense(), DataDir::FromDevice(u32::from(cdb::SENSE_LEN))).await {
            Ok(r) if r.status == status::GOOD => Ok(Sense::parse(&r.data)),
            Ok(_) => Ok(None),
            Err(TransportError::NoDevice) => Err(CommandError::NoDevice),
            Err(TransportError::Reset) => Err(CommandError::Reset),
            Err(TransportError::Failed(code)) => Err(CommandError::Transport(code)),
        }
    }

    /// A registered LUN that has started going away.
    fn dying_lun(&self, id: u16, lun: u32) -> bool {
        let Some(dev) = self.lun_device(id, lun) else { return false };
        self.core().is_none_or(|c| c.borrow().state(dev) != DeviceState::Registered)
    }

    /// INQUIRY: `Ok(None)` when nothing is there (PQ != 0).
    pub async fn inquiry(&self, id: u16, lun: u32) -> Result<Option<Inquiry>, CommandError> {
        let data = self.command(id, lun, cdb::inquiry(), DataDir::FromDevice(u32::from(cdb::INQUIRY_LEN))).await?;
        Ok(Inquiry::parse(&data).filter(|i| i.qualifier == 0))
    }

    /// The LUNs a target reports; `Err(NoDevice)` when there is no target.
    pub async fn report_luns(&self, id: u16) -> Result<Vec<u32>, CommandError> {
        let data = self.command(id, 0, cdb::report_luns(REPORT_LUNS_LEN), DataDir::FromDevice(REPORT_LUNS_LEN)).await;
        match data {
            Ok(data) => Ok(cdb::parse_report_luns(&data)),
            // A target without REPORT LUNS: try LUN 0 alone.
            Err(CommandError::Check(s)) if s.key == key::ILLEGAL_REQUEST => Ok(alloc::vec![0]),
            Err(e) => Err(e),
        }
    }

    /// Scan every target of the host (the initial scan, and EVENTS_MISSED).
    pub async fn scan_host(&self) {
        let max = self.transport.max_target();
        let mut found = Vec::new();
        let mut id = 0u32;
        while id <= u32::from(max) && self.alive() {
            let batch: Vec<u16> = (id..=u32::from(max)).take(SCAN_BATCH).map(|t| t as u16).collect();
            id += batch.len() as u32;
            let futures =
                batch.iter().map(|t| Box::pin(self.report_luns(*t)) as crate::base::device::LocalFuture<'_, _>);
            let results = crate::executor::join_all(futures.collect()).await;
            for (t, result) in batch.iter().zip(results) {
                match result {
                    Ok(luns) => found.push((*t, luns)),
                    Err(CommandError::NoDevice) => {}
                    Err(e) => klog!(self.scsi.platform, "scsi: host{}: REPORT LUNS to target {t}: {e:?}", self.number),
                }
            }
        }
        for (t, luns) in found {
            for lun in luns {
                if lun <= self.transport.max_lun()
                    && let Err(e) = self.scan_lun(t, lun).await
                {
                    klog!(self.scsi.platform, "scsi: {}: scan failed: {e}", self.lun_name(t, lun));
                }
            }
        }
    }

    /// Scan one LUN and register it if a device is there (and it is not
    /// registered already). `Ok(true)` if a LUN was added.
    pub async fn scan_lun(&self, id: u16, lun: u32) -> Result<bool, Errno> {
        let _work = self.scsi.work.start();
        let _lock = self.lock().await;
        if !self.alive() {
            return Err(Errno::ENODEV);
        }
        if self.lun_device(id, lun).is_some() {
            return Ok(false);
        }
        let name = self.lun_name(id, lun);
        if let Some(core) = self.core() {
            self.scsi.checkpoints.reach(&core, "scsi-scan", &name).await;
        }
        let Some(data) = self.probe_lun(id, lun).await.map_err(CommandError::errno)? else {
            return Ok(false);
        };
        let cdrom = data.is_cdrom();
        let dev = self.register_lun(data).await?;
        if cdrom && let Some(me) = self.me.upgrade() {
            self.scsi.spawner.spawn(super::media::poll(me, dev, id, lun));
        }
        Ok(true)
    }

    /// Everything a LUN shows, read through the bus.
    async fn probe_lun(&self, id: u16, lun: u32) -> Result<Option<LunData>, CommandError> {
        let Some(inq) = self.inquiry(id, lun).await? else { return Ok(None) };
        let mut data = LunData {
            host: self.number,
            id,
            lun,
            device_type: inq.device_type,
            vendor: inq.vendor.clone(),
            model: inq.model.clone(),
            rev: inq.rev.clone(),
            scsi_level: inq.scsi_level(),
            removable: inq.removable,
            disk: None,
            medium: None,
        };
        // TEST UNIT READY consumes the pending unit attentions.
        let ready = match self.command(id, lun, cdb::test_unit_ready(), DataDir::None).await {
            Ok(_) => true,
            Err(CommandError::Check(s)) if s.key == key::NOT_READY => false,
            Err(CommandError::Check(s)) if s.is_lun_not_supported() => return Ok(None),
            Err(e) => return Err(e),
        };
        if data.is_disk() {
            data.disk = Some(self.probe_disk(id, lun).await?);
        } else if data.is_cdrom() && ready {
            data.medium = self.probe_medium(id, lun).await?;
        }
        Ok(Some(data))
    }

    /// (512-byte sectors, block size) from READ CAPACITY(10), or (16) when
    /// the last LBA does not fit.
    pub async fn read_capacity(&self, id: u16, lun: u32) -> Result<(u64, u32), CommandError> {
        let data = self.command(id, lun, cdb::read_capacity_10(), DataDir::FromDevice(8)).await?;
        let (last, block) = cdb::parse_capacity_10(&data).ok_or(CommandError::Status(status::GOOD))?;
        let (last, block) = if last == u32::MAX {
            let data = self.command(id, lun, cdb::read_capacity_16(), DataDir::FromDevice(32)).await?;
            cdb::parse_capacity_16(&data).ok_or(CommandError::Status(status::GOOD))?
        } else {
            (u64::from(last), block)
        };
        let bytes = (last + 1).saturating_mul(u64::from(block));
        Ok((bytes / 512, block))
    }

    async fn probe_disk(&self, id: u16, lun: u32) -> Result<DiskInfo, CommandError> {
        let (sectors, block_size) = self.read_capacity(id, lun).await?;
        let mut mbr = None;
        if (512..=65536).contains(&block_size) && sectors > 0 {
            let data = self.command(id, lun, cdb::read_10(0, 1), DataDir::FromDevice(block_size)).await?;
            if data.len() >= 512 {
                let mut sector = [0u8; 512];
                sector.copy_from_slice(&data[..512]);
                mbr = crate::ide::mbr::parse(&sector);
            }
        }
        Ok(DiskInfo { sectors, block_size, mbr })
    }

    async fn probe_medium(&self, id: u16, lun: u32) -> Result<Option<MediumInfo>, CommandError> {
        match self.read_capacity(id, lun).await {
            Ok((sectors, _)) => Ok(Some(MediumInfo { sectors })),
            Err(CommandError::Check(s)) if s.key == key::NOT_READY => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Register a probed LUN (and its target if needed), waiting for the
    /// release of an old object at the same address first.
    async fn register_lun(&self, data: LunData) -> Result<DeviceId, Errno> {
        let core = self.core().ok_or(Errno::ENODEV)?;
        let (id, lun) = (data.id, data.lun);
        let name = self.lun_name(id, lun);
        let mut announced = false;
        loop {
            if !self.alive() {
                return Err(Errno::ENODEV);
            }
            let result = {
                let mut c = core.borrow_mut();
                self.try_register(&mut c, &data)
            };
            match result {
                Err(Errno::EBUSY) => {
                    // The old LUN, and the old target only if it is not the
                    // live one: a target that still has other LUNs stays,
                    // and waiting for its release would wait forever.
                    let old = {
                        let s = self.state.borrow();
                        let live_target = s.targets.get(&id).copied();
                        [
                            s.previous_luns.get(&(id, lun)).copied(),
                            s.previous_targets.get(&id).copied().filter(|t| Some(*t) != live_target),
                        ]
                    };
                    if !announced {
                        core.borrow_mut().notice(format!("hotplug busy {name}"));
                        klog!(self.scsi.platform, "scsi: {name}: the previous object is still referenced; waiting");
                        announced = true;
                    }
                    let alive = |c: &Core| old.iter().flatten().any(|d| c.state(*d) != DeviceState::Released);
                    if !alive(&core.borrow()) {
                        return Err(Errno::EBUSY);
                    }
                    wait_until(|| !alive(&core.borrow()) || !self.alive()).await;
                }
                other => return other,
            }
        }
    }

    fn try_register(&self, core: &mut Core, data: &LunData) -> Result<DeviceId, Errno> {
        let (id, lun) = (data.id, data.lun);
        let existing = self.state.borrow().targets.get(&id).copied();
        let target = match existing {
            Some(t) => t,
            None => {
                let t = core.device_register(
                    &format!("target{}:0:{id}", self.number),
                    Some(self.dev),
                    Some(self.scsi.bus),
                    Box::new(TargetData { host: self.number, id }),
                )?;
                self.state.borrow_mut().targets.insert(id, t);
                t
            }
        };
        match core.device_register(&self.lun_name(id, lun), Some(target), Some(self.scsi.bus), Box::new(data.clone())) {
            Ok(dev) => {
                let mut s = self.state.borrow_mut();
                s.luns.insert((id, lun), dev);
                s.previous_luns.insert((id, lun), dev);
                s.previous_targets.insert(id, target);
                Ok(dev)
            }
            Err(e) => {
                // A target created just now for this LUN goes again.
                if !self.state.borrow().luns.keys().any(|(t, _)| *t == id) {
                    self.state.borrow_mut().targets.remove(&id);
                    self.scsi.spawner.spawn(unregister(self.scsi.core.clone(), target));
                }
                Err(e)
            }
        }
    }

    /// Unregister a LUN (and its target if it was the last). Returns false
    /// if no LUN was registered there.
    pub async fn remove_lun(&self, id: u16, lun: u32) -> bool {
        let _work = self.scsi.work.start();
        let _lock = self.lock().await;
        self.remove_lun_locked(id, lun).await
    }

    async fn remove_lun_locked(&self, id: u16, lun: u32) -> bool {
        let Some(core) = self.core() else { return false };
        let Some(dev) = self.state.borrow_mut().luns.remove(&(id, lun)) else { return false };
        let _ = device_unregister(&core, dev).await;
        let target_empty = !self.state.borrow().luns.keys().any(|(t, _)| *t == id);
        let target = if target_empty { self.state.borrow_mut().targets.remove(&id) } else { None };
        if let Some(target) = target {
            let _ = device_unregister(&core, target).await;
        }
        true
    }

    /// After EVENTS_MISSED: INQUIRY to every known LUN; a LUN whose target
    /// is gone (BAD_TARGET) or that reports PQ != 0 is removed.
    pub async fn probe_known_luns(&self) {
        let _work = self.scsi.work.start();
        for ((id, lun), _) in self.luns() {
            let gone = match self.inquiry(id, lun).await {
                Ok(Some(_)) => false,
                Ok(None) | Err(CommandError::NoDevice) => true,
                Err(_) => false,
            };
            if gone && self.alive() {
                klog!(self.scsi.platform, "scsi: {} is gone (found by probing)", self.lun_name(id, lun));
                self.remove_lun(id, lun).await;
            }
        }
    }

    /// Forget every LUN and target: the core is unregistering them (they
    /// are children of the host, which goes with the adapter).
    pub fn forget_all(&self) {
        let mut s = self.state.borrow_mut();
        s.luns.clear();
        s.targets.clear();
    }
}

async fn unregister(core: Weak<RefCell<Core>>, dev: DeviceId) {
    if let Some(core) = core.upgrade() {
        let _ = device_unregister(&core, dev).await;
    }
}
