//! The `virtio-scsi` PCI driver: a SCSI host adapter over either virtio
//! transport (1af4:1004 transitional, 1af4:1048 modern).
//!
//! Queues: 0 control (set up, unused), 1 event, 2 request. A command is one
//! DMA buffer laid out as `[cmd_req 51 B][pad][cmd_resp 108 B][pad][data]`
//! and one descriptor chain `req (RO), data-out (RO) | resp (W), data-in
//! (W)`, headers in their own descriptors (QEMU needs that without
//! ANY_LAYOUT). Completions are found by polling the used ring.
//!
//! Hot-plug comes through the event queue (features HOTPLUG and CHANGE are
//! acked): TRANSPORT_RESET/RESCAN scans that LUN, TRANSPORT_RESET/REMOVED
//! unregisters it, and EVENTS_MISSED (QEMU had no free event buffer) scans
//! the whole host and probes every known LUN, because a lost REMOVED is
//! never replayed. `scsi.event_buffers=N` on the kernel command line sets
//! how many event buffers stay posted (default 8). With 0 none stays
//! posted: every event QEMU raises is dropped, and one buffer is posted
//! every [`EVENT_PROBE_PASSES`] passes to collect the EVENTS_MISSED flag
//! (an event raised while that buffer is out arrives as itself).
//!
//! A command that completes ABORTED (its LUN was unplugged in flight),
//! BAD_TARGET or INCORRECT_LUN fails with `NoDevice`, which the midlayer
//! reports as ENODEV. When the adapter itself goes (PCI unplug or unbind),
//! the core first unregisters every LUN, target and the host (children
//! first), then `remove()` resets the device and fails every command still
//! waiting.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::virtqueue::{Segment, Virtqueue};
use super::{Transport, driver_ok, initialize, pci_function, transport_for};
use crate::base::device::LocalFuture;
use crate::base::{Core, DeviceId, Driver};
use crate::errno::Errno;
use crate::executor::{wait_until, yield_now};
use crate::hw::DmaBuffer;
use crate::klog;
use crate::pci::config::PortConfig;
use crate::scsi::{DataDir, Request, Response, Scsi, ScsiHost, ScsiTransport, TransportError};

pub const DRIVER_NAME: &str = "virtio-scsi";

/// Feature bits of the SCSI device.
pub mod feature {
    pub const INOUT: u64 = 1 << 0;
    pub const HOTPLUG: u64 = 1 << 1;
    pub const CHANGE: u64 = 1 << 2;
}

/// Device configuration offsets.
pub mod config {
    pub const NUM_QUEUES: u16 = 0;
    pub const SEG_MAX: u16 = 4;
    pub const MAX_SECTORS: u16 = 8;
    pub const CMD_PER_LUN: u16 = 12;
    pub const EVENT_INFO_SIZE: u16 = 16;
    pub const SENSE_SIZE: u16 = 20;
    pub const CDB_SIZE: u16 = 24;
    pub const MAX_CHANNEL: u16 = 28;
    pub const MAX_TARGET: u16 = 30;
    pub const MAX_LUN: u16 = 32;
}

pub const CONTROL_QUEUE: u16 = 0;
pub const EVENT_QUEUE: u16 = 1;
pub const REQUEST_QUEUE: u16 = 2;

/// Response codes in `cmd_resp.response`.
pub mod response {
    pub const OK: u8 = 0;
    pub const OVERRUN: u8 = 1;
    pub const ABORTED: u8 = 2;
    pub const BAD_TARGET: u8 = 3;
    pub const RESET: u8 = 4;
    pub const INCORRECT_LUN: u8 = 12;
}

/// Event codes.
pub mod event {
    pub const NO_EVENT: u32 = 0;
    pub const TRANSPORT_RESET: u32 = 1;
    pub const ASYNC_NOTIFY: u32 = 2;
    pub const PARAM_CHANGE: u32 = 3;
    pub const EVENTS_MISSED: u32 = 0x8000_0000;
    pub const REASON_HARD: u32 = 0;
    pub const REASON_RESCAN: u32 = 1;
    pub const REASON_REMOVED: u32 = 2;
}

pub const CMD_REQ_LEN: usize = 51;
pub const CMD_RESP_LEN: usize = 108;
pub const CDB_LEN: usize = 32;
pub const SENSE_MAX: usize = 96;
pub const EVENT_LEN: usize = 16;
const RESP_OFFSET: usize = 64;
const DATA_OFFSET: usize = 256;
/// Event buffers kept posted unless the command line says otherwise
/// (Linux's virtio_scsi posts 8).
pub const DEFAULT_EVENT_BUFFERS: u16 = 8;
/// With no standing event buffers: passes between two EVENTS_MISSED probes.
pub const EVENT_PROBE_PASSES: u32 = 64;

/// A command the device holds.
struct InFlight {
    buffer: DmaBuffer,
    /// Set when the used ring gave it back.
    done: bool,
}

/// One virtio-scsi adapter.
pub struct Hba {
    me: Weak<Hba>,
    scsi: Rc<Scsi>,
    transport: Box<dyn Transport>,
    requests: RefCell<Virtqueue>,
    events: RefCell<Virtqueue>,
    _control: Virtqueue,
    in_flight: RefCell<BTreeMap<u16, InFlight>>,
    event_buffers: RefCell<BTreeMap<u16, DmaBuffer>>,
    standing_event_buffers: u16,
    max_target: u16,
    max_lun: u32,
    next_tag: Cell<u64>,
    /// The adapter is gone or being removed: every waiter fails.
    dead: Cell<bool>,
    host: RefCell<Option<Rc<ScsiHost>>>,
}

/// Where a LUN is, as virtio-scsi encodes it: `01 target (0x40|lun>>8) lun`.
pub fn encode_lun(target: u16, lun: u32) -> [u8; 8] {
    [1, target as u8, 0x40 | ((lun >> 8) as u8 & 0x3f), lun as u8, 0, 0, 0, 0]
}

/// (target, lun) from an event's LUN field.
pub fn decode_lun(bytes: &[u8]) -> (u16, u32) {
    (u16::from(bytes[1]), u32::from(bytes[2] & 0x3f) << 8 | u32::from(bytes[3]))
}

impl Hba {
    /// Reset the device, negotiate, set up the queues, post event buffers
    /// and set DRIVER_OK.
    fn start(scsi: &Rc<Scsi>, transport: Box<dyn Transport>, standing_event_buffers: u16) -> Result<Rc<Hba>, Errno> {
        let platform = scsi.platform;
        let features = initialize(&*transport, feature::HOTPLUG | feature::CHANGE)?;
        let queue = |index: u16| -> Result<Virtqueue, Errno> {
            let size = transport.queue_max_size(index);
            if size == 0 || !size.is_power_of_two() {
                return Err(Errno::ENODEV);
            }
            let q = Virtqueue::new(platform, index, size).map_err(|_| Errno::ENOSPC)?;
            transport.setup_queue(&q)?;
            Ok(q)
        };
        let control = queue(CONTROL_QUEUE)?;
        let events = queue(EVENT_QUEUE)?;
        let requests = queue(REQUEST_QUEUE)?;
        let max_target = transport.config_read16(config::MAX_TARGET);
        let max_lun = transport.config_read32(config::MAX_LUN).min(16383);
        klog!(
            platform,
            "virtio-scsi: {} transport, features {features:#x}, max_target {max_target}, max_lun {max_lun}",
            transport.kind()
        );
        let hba = Rc::new_cyclic(|me| Hba {
            me: me.clone(),
            scsi: Rc::clone(scsi),
            transport,
            requests: RefCell::new(requests),
            events: RefCell::new(events),
            _control: control,
            in_flight: RefCell::new(BTreeMap::new()),
            event_buffers: RefCell::new(BTreeMap::new()),
            standing_event_buffers,
            max_target,
            max_lun,
            next_tag: Cell::new(1),
            dead: Cell::new(false),
            host: RefCell::new(None),
        });
        driver_ok(&*hba.transport);
        // Events are delivered only after DRIVER_OK: post the buffers now.
        for _ in 0..standing_event_buffers {
            hba.post_event_buffer()?;
        }
        hba.transport.notify(EVENT_QUEUE);
        Ok(hba)
    }

    fn post_event_buffer(&self) -> Result<(), Errno> {
        let buffer = DmaBuffer::new(self.scsi.platform, EVENT_LEN, 16).map_err(|_| Errno::ENOSPC)?;
        let seg = Segment { phys: buffer.phys(), len: EVENT_LEN as u32, writable: true };
        let head = self.events.borrow_mut().add(&[seg]).ok_or(Errno::ENOSPC)?;
        self.event_buffers.borrow_mut().insert(head, buffer);
        Ok(())
    }

    /// Take finished commands off the used ring.
    fn reap(&self) {
        let mut requests = self.requests.borrow_mut();
        let mut in_flight = self.in_flight.borrow_mut();
        while let Some(used) = requests.pop_used() {
            match in_flight.get_mut(&used.head) {
                Some(cmd) => cmd.done = true,
                None => requests.recycle(used.head),
            }
        }
    }

    /// Events the device delivered: (event, target, lun, reason).
    fn take_events(&self) -> Vec<(u32, u16, u32, u32)> {
        let mut out = Vec::new();
        loop {
            let used = self.events.borrow_mut().pop_used();
            let Some(used) = used else { break };
            self.events.borrow_mut().recycle(used.head);
            let Some(buffer) = self.event_buffers.borrow_mut().remove(&used.head) else { continue };
            let raw = buffer.to_vec(0, EVENT_LEN);
            let code = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let (target, lun) = decode_lun(&raw[4..12]);
            let reason = u32::from_le_bytes([raw[12], raw[13], raw[14], raw[15]]);
            out.push((code, target, lun, reason));
        }
        out
    }

    fn host_number(&self) -> u32 {
        self.host.borrow().as_ref().map_or(u32::MAX, |h| h.number)
    }

    async fn execute(self: Rc<Self>, request: Request) -> Result<Response, TransportError> {
        if self.dead.get() {
            return Err(TransportError::NoDevice);
        }
        let (out_len, in_len) = match &request.dir {
            DataDir::None => (0, 0),
            DataDir::FromDevice(n) => (0, *n as usize),
            DataDir::ToDevice(data) => (data.len(), 0),
        };
        let buffer = DmaBuffer::new(self.scsi.platform, DATA_OFFSET + out_len.max(in_len), 64)
            .map_err(|_| TransportError::Failed(response::RESET))?;
        let tag = self.next_tag.get();
        self.next_tag.set(tag + 1);
        buffer.write(0, &encode_lun(request.target, request.lun));
        buffer.write_u64(8, tag);
        let cdb_len = request.cdb.len().min(CDB_LEN);
        buffer.write(19, &request.cdb[..cdb_len]);
        let mut segments = alloc::vec![Segment { phys: buffer.phys(), len: CMD_REQ_LEN as u32, writable: false }];
        if let DataDir::ToDevice(data) = &request.dir
            && !data.is_empty()
        {
            buffer.write(DATA_OFFSET, data);
            segments.push(Segment { phys: buffer.phys_at(DATA_OFFSET), len: data.len() as u32, writable: false });
        }
        segments.push(Segment { phys: buffer.phys_at(RESP_OFFSET), len: CMD_RESP_LEN as u32, writable: true });
        if in_len > 0 {
            segments.push(Segment { phys: buffer.phys_at(DATA_OFFSET), len: in_len as u32, writable: true });
        }
        // Wait for room in the ring (a full queue drains as QEMU completes).
        wait_until(|| {
            self.reap();
            self.dead.get() || self.requests.borrow().free_descriptors() >= segments.len()
        })
        .await;
        if self.dead.get() {
            return Err(TransportError::NoDevice);
        }
        let head = self.requests.borrow_mut().add(&segments).expect("room checked");
        self.in_flight.borrow_mut().insert(head, InFlight { buffer, done: false });
        self.transport.notify(REQUEST_QUEUE);
        if let Some(core) = self.scsi.core.upgrade() {
            let detail = format!("{}:0:{}:{} {:#04x}", self.host_number(), request.target, request.lun, request.cdb[0]);
            self.scsi.checkpoints.reach(&core, "scsi-io", &detail).await;
        }
        wait_until(|| {
            self.reap();
            self.dead.get() || self.in_flight.borrow().get(&head).is_none_or(|c| c.done)
        })
        .await;
        let Some(cmd) = self.in_flight.borrow_mut().remove(&head) else {
            return Err(TransportError::NoDevice);
        };
        if cmd.done {
            // Only now may the head go to another command.
            self.requests.borrow_mut().recycle(head);
        } else {
            // Failed by remove(): the device was reset, nothing uses the buffer.
            return Err(TransportError::NoDevice);
        }
        let b = &cmd.buffer;
        let sense_len = (b.read_u32(RESP_OFFSET) as usize).min(SENSE_MAX);
        let residue = b.read_u32(RESP_OFFSET + 4);
        let status = b.read_u8(RESP_OFFSET + 10);
        let code = b.read_u8(RESP_OFFSET + 11);
        match code {
            response::OK => {
                let got = in_len.saturating_sub(residue as usize);
                Ok(Response {
                    status,
                    sense: b.to_vec(RESP_OFFSET + 12, sense_len),
                    residue,
                    data: if got > 0 { b.to_vec(DATA_OFFSET, got) } else { Vec::new() },
                })
            }
            response::ABORTED | response::BAD_TARGET | response::INCORRECT_LUN => Err(TransportError::NoDevice),
            other => Err(TransportError::Failed(other)),
        }
    }

    /// Follow the event queue until the adapter goes.
    async fn poll_events(self: Rc<Self>) {
        let mut idle_passes = 0u32;
        loop {
            let host = self.host.borrow().clone();
            let Some(host) = host else { return };
            if self.dead.get() || !host.alive() {
                return;
            }
            let events = self.take_events();
            if events.is_empty() {
                idle_passes += 1;
                // No standing buffers: post one now and then, so QEMU can
                // say that it dropped events.
                if self.standing_event_buffers == 0
                    && self.event_buffers.borrow().is_empty()
                    && idle_passes >= EVENT_PROBE_PASSES
                {
                    idle_passes = 0;
                    if self.post_event_buffer().is_ok() {
                        self.transport.notify(EVENT_QUEUE);
                    }
                }
                yield_now().await;
                continue;
            }
            let _work = self.scsi.work.start();
            // Give the buffers back first, so events raised while these are
            // handled are not dropped.
            let repost = self.standing_event_buffers as usize
                - self.event_buffers.borrow().len().min(self.standing_event_buffers as usize);
            for _ in 0..repost {
                let _ = self.post_event_buffer();
            }
            if repost > 0 {
                self.transport.notify(EVENT_QUEUE);
            }
            for (code, target, lun, reason) in events {
                self.handle_event(&host, code, target, lun, reason).await;
            }
        }
    }

    async fn handle_event(&self, host: &Rc<ScsiHost>, code: u32, target: u16, lun: u32, reason: u32) {
        let p = self.scsi.platform;
        if code & event::EVENTS_MISSED != 0 {
            klog!(p, "virtio-scsi: host{}: events missed; rescanning", host.number);
            host.scan_host().await;
            host.probe_known_luns().await;
            return;
        }
        match (code, reason) {
            (event::TRANSPORT_RESET, event::REASON_RESCAN) => {
                let _ = host.scan_lun(target, lun).await;
            }
            (event::TRANSPORT_RESET, event::REASON_REMOVED) => {
                host.remove_lun(target, lun).await;
            }
            (event::TRANSPORT_RESET, _) => {
                // A hard reset of the target: see what is there now.
                let _ = host.scan_lun(target, lun).await;
            }
            (event::NO_EVENT, _) => {}
            (other, reason) => {
                klog!(p, "virtio-scsi: host{}: event {other:#x} reason {reason:#x} ignored", host.number);
            }
        }
    }

    /// The adapter is going: reset the device (it drops every request and
    /// stops touching guest memory), then fail every waiter.
    fn shutdown(&self) {
        self.dead.set(true);
        if self.transport.present() {
            self.transport.reset();
        }
    }
}

/// What the midlayer holds: the adapter, by reference.
struct HbaTransport(Rc<Hba>);

impl ScsiTransport for HbaTransport {
    fn max_target(&self) -> u16 {
        self.0.max_target
    }

    fn max_lun(&self) -> u32 {
        self.0.max_lun
    }

    fn queue_command(&self, request: Request) -> LocalFuture<'static, Result<Response, TransportError>> {
        let hba = self.0.me.upgrade().expect("the adapter outlives its transport handle");
        Box::pin(hba.execute(request))
    }
}

/// The PCI driver.
pub struct VirtioScsiDriver {
    scsi: Rc<Scsi>,
    standing_event_buffers: u16,
    adapters: RefCell<BTreeMap<DeviceId, Rc<Hba>>>,
}

impl VirtioScsiDriver {
    pub fn new(scsi: Rc<Scsi>, standing_event_buffers: u16) -> Self {
        VirtioScsiDriver { scsi, standing_event_buffers, adapters: RefCell::new(BTreeMap::new()) }
    }

    /// The adapter bound to a PCI function.
    pub fn adapter(&self, function: DeviceId) -> Option<Rc<Hba>> {
        self.adapters.borrow().get(&function).cloned()
    }
}

impl Hba {
    pub fn host(&self) -> Option<Rc<ScsiHost>> {
        self.host.borrow().clone()
    }

    pub fn transport_kind(&self) -> &'static str {
        self.transport.kind()
    }
}

impl Driver for VirtioScsiDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        pci_function(core, dev).is_some_and(|f| f.vendor == super::VENDOR && matches!(f.device, 0x1004 | 0x1048))
    }

    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        let result = self.try_probe(core, dev);
        if let Err(e) = result {
            klog!(self.scsi.platform, "virtio-scsi: {}: probe failed: {e}", core.name(dev));
        }
        result
    }

    fn remove(&self, _core: &mut Core, dev: DeviceId) {
        self.release(dev);
    }
}

impl VirtioScsiDriver {
    fn try_probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        let function = pci_function(core, dev).ok_or(Errno::ENODEV)?;
        let platform = self.scsi.platform;
        let transport = transport_for(platform, &PortConfig::new(platform), &function)?;
        let hba = Hba::start(&self.scsi, transport, self.standing_event_buffers)?;
        let host = match self.scsi.add_host(
            core,
            dev,
            DRIVER_NAME,
            Rc::new(HbaTransport(Rc::clone(&hba))) as Rc<dyn ScsiTransport>,
        ) {
            Ok(host) => host,
            Err(e) => {
                hba.shutdown();
                return Err(e);
            }
        };
        *hba.host.borrow_mut() = Some(Rc::clone(&host));
        self.adapters.borrow_mut().insert(dev, Rc::clone(&hba));
        let work = self.scsi.work.start();
        let scan_host = Rc::clone(&host);
        self.scsi.spawner.spawn(async move {
            scan_host.scan_host().await;
            drop(work);
        });
        self.scsi.spawner.spawn(Rc::clone(&hba).poll_events());
        Ok(())
    }

    fn release(&self, dev: DeviceId) {
        let Some(hba) = self.adapters.borrow_mut().remove(&dev) else { return };
        hba.shutdown();
        if let Some(host) = hba.host.borrow_mut().take() {
            host.forget_all();
            self.scsi.forget_host(&host);
        }
    }
}
