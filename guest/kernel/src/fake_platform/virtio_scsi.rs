//! A virtio-scsi device for host tests, behind either virtio-pci transport,
//! following QEMU 7.2 (`hw/scsi/virtio-scsi.c`, `hw/scsi/scsi-bus.c`,
//! `hw/scsi/scsi-disk.c`, `hw/virtio/virtio-pci.c`) as observed:
//!
//! - legacy (1af4:1004, I/O BAR0 of 64 bytes): host features 0x79000006,
//!   QUEUE_PFN places a queue (0 resets the device); modern (1af4:1048):
//!   vendor capabilities into a 16 KiB 64-bit BAR4 (common 0, ISR 0x1000,
//!   device config 0x2000, notify 0x3000 with multiplier 4), VERSION_1;
//! - config: num_queues 1, seg_max 254, max_sectors 0xffff, cmd_per_lun
//!   128, event_info_size 16, sense_size 96, cdb_size 32, max_target 255,
//!   max_lun 16383; three queues of 256 entries (control, event, request);
//! - a notify of the request queue is processed later, between two guest
//!   passes (QEMU handles it in its main loop under TCG), so several
//!   commands are in flight at once and complete while the guest submits
//!   more; a test can hold a target, which keeps its commands in flight;
//! - events only after DRIVER_OK and only with F_HOTPLUG acked: hot-add
//!   pushes TRANSPORT_RESET/RESCAN, unplug TRANSPORT_RESET/REMOVED; with no
//!   free event buffer the event is dropped and the next kick of the event
//!   queue delivers EVENTS_MISSED (lun 0, reason 0);
//! - unit attentions: a plugged LUN's first command gets 6/29/00; plug and
//!   unplug set the bus-wide 6/3F/0E (only with F_HOTPLUG acked), reported
//!   once per bus to whichever LUN sends the next command other than
//!   INQUIRY and REPORT LUNS (REPORT LUNS clears it); the device's own UA
//!   comes first; a reset gives every LUN 6/29/00;
//! - an empty target answers BAD_TARGET; commands in flight on a LUN being
//!   unplugged complete ABORTED; REPORT LUNS always lists LUN 0; INQUIRY of
//!   a missing LUN gives PQ 3 (0x7f), or PQ 1 (0x3f) for a missing LUN 0
//!   when the target has others; other commands to a missing LUN get
//!   5/25/00.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::{FakeBarDevice, FakeMemory};
use crate::pci::fake::{FakeBar, FakeFunction, Segment};

pub const LEGACY_FEATURES: u64 = 0x7900_0006;
pub const MODERN_FEATURES: u64 = 0x1_3900_0006;
pub const QUEUE_SIZE: u16 = 256;
const HOTPLUG: u64 = 1 << 1;

const CD_BLOCK: u32 = 2048;

#[derive(Clone, Debug)]
pub enum FakeMedia {
    /// A disk: its content (a multiple of the block size).
    Disk { data: Vec<u8>, block_size: u32 },
    /// A CD drive, with or without a medium (its size in 2 KiB blocks).
    Cd { medium: Option<u32> },
}

#[derive(Clone, Debug)]
struct Lun {
    media: FakeMedia,
    /// The device's own pending unit attention (key, asc, ascq).
    ua: Option<(u8, u8, u8)>,
}

#[derive(Clone, Copy, Default, Debug)]
struct Queue {
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    enabled: bool,
    last_avail: u16,
    used_idx: u16,
}

/// A command the device has taken but not completed.
struct Pending {
    queue: usize,
    head: u16,
    target: u8,
    lun: u16,
    in_segments: Vec<(u64, u32)>,
    mapped: u32,
}

#[derive(Default)]
struct State {
    status: u8,
    driver_features: u64,
    feature_select: u32,
    driver_feature_select: u32,
    queue_select: u16,
    queues: [Queue; 3],
    luns: BTreeMap<(u8, u16), Lun>,
    bus_ua: bool,
    events_dropped: bool,
    held_targets: Vec<u8>,
    pending: Vec<Pending>,
    /// What the test can check: every command's (target, lun, opcode).
    log: Vec<(u8, u16, u8)>,
    resets: u32,
    /// The request queue's avail index at the last notify not processed
    /// yet: the next notify completes up to there, a tick completes all.
    kicked: Option<u16>,
}

pub struct FakeVirtioScsi {
    location: (Segment, u8, u8),
    modern: bool,
    memory: Rc<FakeMemory>,
    state: RefCell<State>,
}

/// Offsets in the modern BAR.
const COMMON: u64 = 0;
const ISR: u64 = 0x1000;
const DEVICE: u64 = 0x2000;
const NOTIFY: u64 = 0x3000;
const NOTIFY_MULTIPLIER: u32 = 4;
const MODERN_BAR: u8 = 4;

impl FakeVirtioScsi {
    pub fn new(location: (Segment, u8, u8), modern: bool, memory: Rc<FakeMemory>) -> Rc<Self> {
        Rc::new(FakeVirtioScsi { location, modern, memory, state: RefCell::new(State::default()) })
    }

    /// The PCI function as QEMU presents it.
    pub fn function(&self) -> FakeFunction {
        if self.modern {
            let cap = |cfg_type: u8, offset: u64, length: u32, extra: Option<u32>| {
                let mut body = alloc::vec![if extra.is_some() { 20 } else { 16 }, cfg_type, MODERN_BAR, 0, 0, 0];
                body.extend_from_slice(&(offset as u32).to_le_bytes());
                body.extend_from_slice(&length.to_le_bytes());
                if let Some(m) = extra {
                    body.extend_from_slice(&m.to_le_bytes());
                }
                body
            };
            FakeFunction::endpoint(0x1af4, 0x1048, 0x01_00_00)
                .revision(1)
                .pin(1)
                .bar(MODERN_BAR, FakeBar::Mem64 { size: 0x4000, prefetchable: true })
                .capability(0x84, 0x09, &cap(1, COMMON, 0x1000, None))
                .capability(0x70, 0x09, &cap(3, ISR, 0x1000, None))
                .capability(0x60, 0x09, &cap(4, DEVICE, 0x1000, None))
                .capability(0x4c, 0x09, &cap(2, NOTIFY, 0x1000, Some(NOTIFY_MULTIPLIER)))
        } else {
            FakeFunction::endpoint(0x1af4, 0x1004, 0x01_00_00).pin(1).bar(0, FakeBar::Io { size: 64 })
        }
    }

    /// A LUN present before boot (cold-plugged: no event, but the first
    /// command still sees the power-on unit attention, as after a reset).
    pub fn attach(&self, target: u8, lun: u16, media: FakeMedia) {
        self.state.borrow_mut().luns.insert((target, lun), Lun { media, ua: Some((6, 0x29, 0)) });
    }

    /// `device_add scsi-hd|scsi-cd`.
    pub fn hot_add(&self, target: u8, lun: u16, media: FakeMedia) {
        let hotplug = {
            let mut s = self.state.borrow_mut();
            s.luns.insert((target, lun), Lun { media, ua: Some((6, 0x29, 0)) });
            s.driver_features & HOTPLUG != 0
        };
        self.push_event(1, target, lun, 1);
        if hotplug {
            self.state.borrow_mut().bus_ua = true;
        }
    }

    /// `device_del` of a LUN: QEMU completes it without the guest.
    pub fn unplug(&self, target: u8, lun: u16) {
        let hotplug = self.state.borrow().driver_features & HOTPLUG != 0;
        self.push_event(1, target, lun, 2);
        let aborted: Vec<Pending> = {
            let mut s = self.state.borrow_mut();
            if hotplug {
                s.bus_ua = true;
            }
            s.luns.remove(&(target, lun));
            let (aborted, kept) =
                core::mem::take(&mut s.pending).into_iter().partition(|p| p.target == target && p.lun == lun);
            s.pending = kept;
            aborted
        };
        for p in aborted {
            self.complete(p, 0, 2, &[], &[]);
        }
    }

    /// Insert or eject the medium of a CD LUN (no event: QEMU reports
    /// media changes through unit attentions only).
    pub fn change_medium(&self, target: u8, lun: u16, medium: Option<u32>) {
        if let Some(l) = self.state.borrow_mut().luns.get_mut(&(target, lun)) {
            l.media = FakeMedia::Cd { medium };
            l.ua = Some((6, 0x28, 0));
        }
    }

    /// Keep commands for `target` in flight until [`release_target`].
    pub fn hold_target(&self, target: u8) {
        self.state.borrow_mut().held_targets.push(target);
    }

    pub fn release_target(&self, target: u8) {
        self.state.borrow_mut().held_targets.retain(|t| *t != target);
        let held: Vec<Pending> = {
            let mut s = self.state.borrow_mut();
            let (run, kept) = core::mem::take(&mut s.pending).into_iter().partition(|p| p.target == target);
            s.pending = kept;
            run
        };
        for p in held {
            let (status, sense, data) = self.scsi_command_for(&p);
            self.complete(p, status, 0, &sense, &data);
        }
    }

    /// Commands in flight (held).
    pub fn in_flight(&self) -> usize {
        self.state.borrow().pending.len()
    }

    /// Every command seen: (target, lun, opcode).
    pub fn command_log(&self) -> Vec<(u8, u16, u8)> {
        self.state.borrow().log.clone()
    }

    pub fn status(&self) -> u8 {
        self.state.borrow().status
    }

    pub fn driver_features(&self) -> u64 {
        self.state.borrow().driver_features
    }

    pub fn resets(&self) -> u32 {
        self.state.borrow().resets
    }

    pub fn queue_sizes(&self) -> [u16; 3] {
        let s = self.state.borrow();
        [s.queues[0].size, s.queues[1].size, s.queues[2].size]
    }

    /// Event buffers the guest has posted and the device has not used.
    pub fn free_event_buffers(&self) -> u16 {
        let s = self.state.borrow();
        let q = s.queues[1];
        if !q.enabled {
            return 0;
        }
        self.memory.u16(q.avail + 2).wrapping_sub(q.last_avail)
    }

    fn reset(&self) {
        let mut s = self.state.borrow_mut();
        s.status = 0;
        s.driver_features = 0;
        s.queues = Default::default();
        s.pending.clear();
        s.events_dropped = false;
        s.bus_ua = false;
        s.resets += 1;
        for lun in s.luns.values_mut() {
            lun.ua = Some((6, 0x29, 0));
        }
    }

    fn push_event(&self, event: u32, target: u8, lun: u16, reason: u32) {
        let (driver_ok, hotplug) = {
            let s = self.state.borrow();
            (s.status & 4 != 0, s.driver_features & HOTPLUG != 0)
        };
        if !driver_ok || !hotplug {
            return;
        }
        if !self.deliver_event(event, target, lun, reason) {
            self.state.borrow_mut().events_dropped = true;
        }
    }

    /// Write an event into the next posted buffer; false if there is none.
    fn deliver_event(&self, event: u32, target: u8, lun: u16, reason: u32) -> bool {
        let Some((head, segments)) = self.pop_chain(1) else { return false };
        let mut raw = [0u8; 16];
        raw[0..4].copy_from_slice(&event.to_le_bytes());
        if event & 0x8000_0000 == 0 {
            raw[4] = 1;
            raw[5] = target;
            raw[6] = if lun > 255 { 0x40 | (lun >> 8) as u8 } else { 0 };
            raw[7] = lun as u8;
        }
        raw[12..16].copy_from_slice(&reason.to_le_bytes());
        let (_, writable) = segments;
        let (addr, len) = writable[0];
        assert!(len >= 16, "event buffer of {len} bytes");
        self.memory.write(addr, &raw);
        self.push_used(1, head, 16);
        true
    }

    /// The next available chain of `queue`: head, (readable, writable) segments.
    #[allow(clippy::type_complexity)]
    fn pop_chain(&self, queue: usize) -> Option<(u16, (Vec<(u64, u32)>, Vec<(u64, u32)>))> {
        let q = {
            let s = self.state.borrow();
            s.queues[queue]
        };
        if !q.enabled || self.memory.u16(q.avail + 2) == q.last_avail {
            return None;
        }
        let head = self.memory.u16(q.avail + 4 + 2 * u64::from(q.last_avail % q.size));
        self.state.borrow_mut().queues[queue].last_avail = q.last_avail.wrapping_add(1);
        let (mut readable, mut writable) = (Vec::new(), Vec::new());
        let mut id = head;
        for _ in 0..q.size {
            let d = q.desc + 16 * u64::from(id);
            let (addr, len, flags, next) =
                (self.memory.u64(d), self.memory.u32(d + 8), self.memory.u16(d + 12), self.memory.u16(d + 14));
            if flags & 2 != 0 {
                writable.push((addr, len));
            } else {
                assert!(writable.is_empty(), "a readable descriptor after a writable one");
                readable.push((addr, len));
            }
            if flags & 1 == 0 {
                break;
            }
            id = next;
        }
        Some((head, (readable, writable)))
    }

    fn push_used(&self, queue: usize, head: u16, len: u32) {
        let q = self.state.borrow().queues[queue];
        let slot = u64::from(q.used_idx % q.size);
        self.memory.store(q.used + 4 + 8 * slot, 4, u64::from(head));
        self.memory.store(q.used + 8 + 8 * slot, 4, u64::from(len));
        let idx = q.used_idx.wrapping_add(1);
        self.memory.store(q.used + 2, 2, u64::from(idx));
        self.state.borrow_mut().queues[queue].used_idx = idx;
    }

    fn notify(&self, queue: u16) {
        match queue {
            1 => {
                let dropped = self.state.borrow().events_dropped;
                if dropped && self.deliver_event(0x8000_0000, 0, 0, 0) {
                    self.state.borrow_mut().events_dropped = false;
                }
            }
            2 => {
                // QEMU works concurrently with the guest: by the time the
                // guest notifies again, what it notified before is done.
                let q = self.state.borrow().queues[2];
                let now = self.memory.u16(q.avail + 2);
                let previous = self.state.borrow_mut().kicked.replace(now);
                if let Some(upto) = previous {
                    self.process_requests(Some(upto));
                }
            }
            _ => {}
        }
    }

    /// Complete the available requests, up to avail index `upto` if given.
    fn process_requests(&self, upto: Option<u16>) {
        loop {
            let last = self.state.borrow().queues[2].last_avail;
            if upto.is_some_and(|u| u == last) {
                break;
            }
            let Some((head, (readable, writable))) = self.pop_chain(2) else { break };
            let (req_addr, req_len) = readable[0];
            assert!(req_len >= 51, "cmd_req of {req_len} bytes");
            assert!(writable.first().is_some_and(|(_, l)| *l >= 108), "cmd_resp missing or short");
            let req = self.memory.bytes(req_addr, 51);
            let (target, lun) = (req[1], u16::from(req[2] & 0x3f) << 8 | u16::from(req[3]));
            let mapped = readable.iter().chain(writable.iter()).map(|(_, l)| *l).sum();
            let pending = Pending { queue: 2, head, target, lun, in_segments: writable[1..].to_vec(), mapped };
            let (opcode, held) = {
                let mut s = self.state.borrow_mut();
                s.log.push((target, lun, req[19]));
                (req[19], s.held_targets.contains(&target))
            };
            let _ = opcode;
            let target_exists = self.state.borrow().luns.keys().any(|(t, _)| *t == target);
            if !target_exists {
                self.complete(pending, 0, 3, &[], &[]);
                continue;
            }
            if held {
                self.state.borrow_mut().pending.push(pending);
                continue;
            }
            let (status, sense, data) = self.scsi_command_for(&pending);
            self.complete(pending, status, 0, &sense, &data);
        }
    }

    fn scsi_command_for(&self, p: &Pending) -> (u8, Vec<u8>, Vec<u8>) {
        // Re-read the CDB from the request (still in guest memory).
        let q = self.state.borrow().queues[p.queue];
        let d = q.desc + 16 * u64::from(p.head);
        let cdb = self.memory.bytes(self.memory.u64(d) + 19, 32);
        self.scsi_command(p.target, p.lun, &cdb)
    }

    /// Run one CDB: (status, sense, data-in).
    fn scsi_command(&self, target: u8, lun: u16, cdb: &[u8]) -> (u8, Vec<u8>, Vec<u8>) {
        let check = |k: u8, asc: u8, ascq: u8| {
            let mut sense = alloc::vec![0u8; 18];
            sense[0] = 0x70;
            sense[2] = k;
            sense[7] = 10;
            sense[12] = asc;
            sense[13] = ascq;
            (2u8, sense, Vec::new())
        };
        let opcode = cdb[0];
        let mut s = self.state.borrow_mut();
        if opcode == 0xa0 {
            // REPORT LUNS: target emulation; clears the bus's pending UA.
            s.bus_ua = false;
            let mut luns: Vec<u16> = s.luns.keys().filter(|(t, _)| *t == target).map(|(_, l)| *l).collect();
            luns.push(0);
            luns.sort_unstable();
            luns.dedup();
            let mut data = alloc::vec![0u8; 8];
            data[0..4].copy_from_slice(&((luns.len() * 8) as u32).to_be_bytes());
            for l in luns {
                let mut e = [0u8; 8];
                if l > 255 {
                    e[0] = 0x40 | (l >> 8) as u8;
                }
                e[1] = l as u8;
                data.extend_from_slice(&e);
            }
            let alloc_len = u32::from_be_bytes([cdb[6], cdb[7], cdb[8], cdb[9]]) as usize;
            data.truncate(alloc_len);
            return (0, Vec::new(), data);
        }
        let has_luns = s.luns.keys().any(|(t, _)| *t == target);
        let Some(dev) = s.luns.get(&(target, lun)).cloned() else {
            if opcode == 0x12 {
                let mut data = alloc::vec![0u8; 36];
                data[0] = if lun == 0 && has_luns { 0x3f } else { 0x7f };
                data[8..16].copy_from_slice(b"QEMU    ");
                data[16..32].copy_from_slice(b"QEMU TARGET     ");
                return (0, Vec::new(), data);
            }
            drop(s);
            return check(5, 0x25, 0);
        };
        if opcode != 0x12 {
            let ua = match dev.ua {
                Some(ua) => {
                    s.luns.get_mut(&(target, lun)).expect("present").ua = None;
                    Some(ua)
                }
                None if s.bus_ua => {
                    s.bus_ua = false;
                    Some((6, 0x3f, 0x0e))
                }
                None => None,
            };
            if let Some((k, asc, ascq)) = ua {
                drop(s);
                return check(k, asc, ascq);
            }
        }
        drop(s);
        let (blocks, block_size) = match &dev.media {
            FakeMedia::Disk { data, block_size } => (Some(data.len() as u64 / u64::from(*block_size)), *block_size),
            FakeMedia::Cd { medium } => (medium.map(u64::from), CD_BLOCK),
        };
        match opcode {
            0x00 => match blocks {
                Some(_) => (0, Vec::new(), Vec::new()),
                None => check(2, 0x3a, 0),
            },
            0x03 => (0, Vec::new(), alloc::vec![0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            0x12 => {
                let mut data = alloc::vec![0u8; 36];
                let cd = matches!(dev.media, FakeMedia::Cd { .. });
                data[0] = if cd { 5 } else { 0 };
                data[1] = if cd { 0x80 } else { 0 };
                data[2] = 5;
                data[3] = 0x12;
                data[4] = 31;
                data[8..16].copy_from_slice(b"QEMU    ");
                data[16..32].copy_from_slice(if cd { b"QEMU CD-ROM     " } else { b"QEMU HARDDISK   " });
                data[32..36].copy_from_slice(b"2.5+");
                let alloc_len = usize::from(cdb[4]);
                data.truncate(alloc_len);
                (0, Vec::new(), data)
            }
            0x25 | 0x9e => {
                let Some(blocks) = blocks else { return check(2, 0x3a, 0) };
                let last = blocks.saturating_sub(1);
                if opcode == 0x25 {
                    let mut data = Vec::new();
                    data.extend_from_slice(&(last.min(u64::from(u32::MAX)) as u32).to_be_bytes());
                    data.extend_from_slice(&block_size.to_be_bytes());
                    (0, Vec::new(), data)
                } else {
                    let mut data = alloc::vec![0u8; 32];
                    data[0..8].copy_from_slice(&last.to_be_bytes());
                    data[8..12].copy_from_slice(&block_size.to_be_bytes());
                    (0, Vec::new(), data)
                }
            }
            0x28 => {
                let lba = u64::from(u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]]));
                let count = u64::from(u16::from_be_bytes([cdb[7], cdb[8]]));
                match &dev.media {
                    FakeMedia::Disk { data, block_size } => {
                        let bs = u64::from(*block_size);
                        if (lba + count) * bs > data.len() as u64 {
                            return check(5, 0x21, 0);
                        }
                        (0, Vec::new(), data[(lba * bs) as usize..((lba + count) * bs) as usize].to_vec())
                    }
                    FakeMedia::Cd { medium: Some(_) } => {
                        (0, Vec::new(), alloc::vec![0u8; (count * u64::from(CD_BLOCK)) as usize])
                    }
                    FakeMedia::Cd { medium: None } => check(2, 0x3a, 0),
                }
            }
            _ => check(5, 0x20, 0),
        }
    }

    /// Write the response (and data-in) of a command and give it back.
    fn complete(&self, p: Pending, status: u8, response: u8, sense: &[u8], data: &[u8]) {
        let q = self.state.borrow().queues[p.queue];
        if !q.enabled {
            return; // reset meanwhile: the request is gone
        }
        // The response descriptor: the first writable one of the chain.
        let mut id = p.head;
        let resp_addr = loop {
            let d = q.desc + 16 * u64::from(id);
            if self.memory.u16(d + 12) & 2 != 0 {
                break self.memory.u64(d);
            }
            id = self.memory.u16(d + 14);
        };
        let mut written = 0usize;
        for (addr, len) in &p.in_segments {
            let n = (*len as usize).min(data.len() - written.min(data.len()));
            if n > 0 {
                self.memory.write(*addr, &data[written..written + n]);
            }
            written += n;
        }
        let wanted: usize = p.in_segments.iter().map(|(_, l)| *l as usize).sum();
        let mut resp = alloc::vec![0u8; 108];
        resp[0..4].copy_from_slice(&(sense.len() as u32).to_le_bytes());
        resp[4..8].copy_from_slice(&((wanted - written) as u32).to_le_bytes());
        resp[10] = status;
        resp[11] = response;
        resp[12..12 + sense.len()].copy_from_slice(sense);
        self.memory.write(resp_addr, &resp);
        self.push_used(p.queue, p.head, p.mapped);
    }

    fn config_read(&self, offset: u64, width: usize) -> u64 {
        let mut config = [0u8; 36];
        let mut put = |at: usize, v: u32, w: usize| config[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
        put(0, 1, 4);
        put(4, 254, 4);
        put(8, 0xffff, 4);
        put(12, 128, 4);
        put(16, 16, 4);
        put(20, 96, 4);
        put(24, 32, 4);
        put(28, 0, 2);
        put(30, 255, 2);
        put(32, 16383, 4);
        let at = offset as usize;
        let mut v = [0u8; 8];
        for (i, byte) in v.iter_mut().take(width).enumerate() {
            *byte = config.get(at + i).copied().unwrap_or(0);
        }
        u64::from_le_bytes(v)
    }

    fn set_status(&self, value: u8) {
        if value == 0 {
            self.reset();
        } else {
            self.state.borrow_mut().status = value;
        }
    }

    fn legacy_read(&self, offset: u64, width: usize) -> u64 {
        let s = self.state.borrow();
        match offset {
            0 => LEGACY_FEATURES,
            4 => s.driver_features,
            8 => {
                let q = s.queues[usize::from(s.queue_select.min(2))];
                q.desc >> 12
            }
            12 => u64::from(if s.queue_select < 3 { QUEUE_SIZE } else { 0 }),
            14 => u64::from(s.queue_select),
            18 => u64::from(s.status),
            19 => 0,
            o if o >= 20 => {
                drop(s);
                self.config_read(o - 20, width)
            }
            _ => 0,
        }
    }

    fn legacy_write(&self, offset: u64, value: u64) {
        match offset {
            4 => self.state.borrow_mut().driver_features = value & 0xffff_ffff,
            8 => {
                if value == 0 {
                    self.reset();
                    return;
                }
                let mut s = self.state.borrow_mut();
                let sel = usize::from(s.queue_select);
                if sel < 3 {
                    let n = u64::from(QUEUE_SIZE);
                    let desc = value << 12;
                    let avail = desc + 16 * n;
                    let used = (avail + 6 + 2 * n).div_ceil(4096) * 4096;
                    s.queues[sel] = Queue { desc, avail, used, size: QUEUE_SIZE, enabled: true, ..Queue::default() };
                }
            }
            14 => self.state.borrow_mut().queue_select = value as u16,
            16 => self.notify(value as u16),
            18 => self.set_status(value as u8),
            _ => {}
        }
    }

    fn modern_read(&self, offset: u64, width: usize) -> u64 {
        if (DEVICE..DEVICE + 0x1000).contains(&offset) {
            return self.config_read(offset - DEVICE, width);
        }
        let s = self.state.borrow();
        let sel = usize::from(s.queue_select);
        let q = s.queues.get(sel).copied().unwrap_or_default();
        match offset {
            0x00 => u64::from(s.feature_select),
            0x04 => (MODERN_FEATURES >> (32 * (s.feature_select & 1))) & 0xffff_ffff,
            0x08 => u64::from(s.driver_feature_select),
            0x0c => (s.driver_features >> (32 * (s.driver_feature_select & 1))) & 0xffff_ffff,
            0x12 => 3,
            0x14 => u64::from(s.status),
            0x16 => u64::from(s.queue_select),
            0x18 => u64::from(if sel < 3 { if q.size == 0 { QUEUE_SIZE } else { q.size } } else { 0 }),
            0x1c => u64::from(q.enabled),
            0x1e => sel as u64,
            0x20 => q.desc & 0xffff_ffff,
            0x24 => q.desc >> 32,
            0x28 => q.avail & 0xffff_ffff,
            0x2c => q.avail >> 32,
            0x30 => q.used & 0xffff_ffff,
            0x34 => q.used >> 32,
            _ => 0,
        }
    }

    fn modern_write(&self, offset: u64, width: usize, value: u64) {
        if (NOTIFY..NOTIFY + 0x1000).contains(&offset) {
            assert_eq!(width, 2, "notify writes are 16-bit");
            let queue = ((offset - NOTIFY) / u64::from(NOTIFY_MULTIPLIER)) as u16;
            assert_eq!(queue, value as u16, "notify written at the queue's own address");
            self.notify(queue);
            return;
        }
        assert!(width <= 4, "QEMU's common block takes at most 4-byte accesses");
        if offset == 0x14 {
            self.set_status(value as u8);
            return;
        }
        let mut s = self.state.borrow_mut();
        let sel = usize::from(s.queue_select);
        let set_half = |field: &mut u64, high: bool| {
            *field = if high {
                (*field & 0xffff_ffff) | value << 32
            } else {
                (*field & !0xffff_ffff) | (value & 0xffff_ffff)
            }
        };
        match offset {
            0x00 => s.feature_select = value as u32,
            0x08 => s.driver_feature_select = value as u32,
            0x0c => {
                let shift = 32 * (s.driver_feature_select & 1);
                s.driver_features = (s.driver_features & !(0xffff_ffff << shift)) | (value & 0xffff_ffff) << shift;
            }
            0x16 => s.queue_select = value as u16,
            0x18 if sel < 3 => s.queues[sel].size = value as u16,
            0x1c if sel < 3 => s.queues[sel].enabled = value == 1,
            0x20 | 0x24 if sel < 3 => set_half(&mut s.queues[sel].desc, offset == 0x24),
            0x28 | 0x2c if sel < 3 => set_half(&mut s.queues[sel].avail, offset == 0x2c),
            0x30 | 0x34 if sel < 3 => set_half(&mut s.queues[sel].used, offset == 0x34),
            _ => {}
        }
        if sel < 3 && s.queues[sel].size == 0 && offset != 0x18 {
            s.queues[sel].size = QUEUE_SIZE;
        }
    }
}

impl FakeBarDevice for FakeVirtioScsi {
    fn location(&self) -> (Segment, u8, u8) {
        self.location
    }

    fn tick(&self) {
        let kicked = self.state.borrow_mut().kicked.take();
        if kicked.is_some() {
            self.process_requests(None);
        }
    }

    fn bar_read(&self, bar: u8, offset: u64, width: usize) -> u64 {
        match (self.modern, bar) {
            (false, 0) => self.legacy_read(offset, width),
            (true, MODERN_BAR) => self.modern_read(offset, width),
            _ => u64::MAX >> (64 - 8 * width),
        }
    }

    fn bar_write(&self, bar: u8, offset: u64, width: usize, value: u64) {
        match (self.modern, bar) {
            (false, 0) => self.legacy_write(offset, value),
            (true, MODERN_BAR) => self.modern_write(offset, width, value),
            _ => {}
        }
    }
}
