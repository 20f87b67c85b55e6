//! UHCI (`piix3-usb-uhci` on `pc`, the ICH9 UHCI functions on `q35`),
//! polled, I/O ports only, as QEMU 7.2 emulates it.
//!
//! The schedule is fixed at start: every frame-list entry points at the
//! first of [`SLOTS`] queue heads, chained horizontally. A transfer takes a
//! free slot, writes its TD chain while the slot's QH element is
//! terminated, and publishes it with one store of the element (after a
//! fence): QEMU reads the schedule concurrently from its main loop, so a
//! TD is never rewritten while reachable. A finished or cancelled slot is
//! reused only after the frame counter moved twice, so QEMU's pass over it
//! has ended.
//!
//! - [`td`]: TD and QH encoding;
//! - this file: [`Uhci`], the [`HostController`] over the registers, and
//!   the PCI driver `uhci_hcd`.

pub mod td;

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use td::{LINK_DEPTH, LINK_QH, LINK_TERMINATE, PID_IN, PID_OUT, PID_SETUP, TD_SIZE, Td, TdStatus};

use super::UsbContext;
use super::hcd::{HostController, Pipe, PortStatus, Speed, Transfer, TransferId, UsbError, port};
use crate::base::{Core, DeviceId, Driver};
use crate::errno::Errno;
use crate::hw::{DmaBuffer, Platform};
use crate::klog;
use crate::pci::config::{ConfigSpace, PortConfig, reg};
use crate::pci::device::PciFunction;
use crate::pci::resources::BarKind;

pub const DRIVER_NAME: &str = "uhci_hcd";

// Registers (16-bit accesses only: QEMU implements them as 16-bit).
const USBCMD: u16 = 0x00;
const USBSTS: u16 = 0x02;
const USBINTR: u16 = 0x04;
const FRNUM: u16 = 0x06;
const FLBASEADD: u16 = 0x08;
const PORTSC1: u16 = 0x10;

const CMD_RS: u16 = 1 << 0;
const CMD_HCRESET: u16 = 1 << 1;
const CMD_CF: u16 = 1 << 6;
const CMD_MAXP: u16 = 1 << 7;
const STS_ALL: u16 = 0x3f;

// PORTSC.
const PORT_CCS: u16 = 1 << 0;
const PORT_CSC: u16 = 1 << 1;
const PORT_PE: u16 = 1 << 2;
const PORT_PEC: u16 = 1 << 3;
const PORT_LSDA: u16 = 1 << 8;
const PORT_PR: u16 = 1 << 9;

/// PCI legacy support register: writing 0x8f00 turns off SMI and trapping
/// and clears their status, as Linux's `uhci_reset_hc` does.
const USBLEGSUP: u8 = 0xc0;
const USBLEGSUP_DEFAULT: u16 = 0x8f00;

const ROOT_PORTS: u8 = 2;
const FRAMES: usize = 1024;
/// Transfers in flight at once (each hub's status pipe holds one).
pub const SLOTS: usize = 24;
/// TDs per slot: a 255-byte control read at 8 bytes a packet needs 34, a
/// 4 KiB bulk transfer at 64 bytes 64.
const TDS_PER_SLOT: usize = 66;
/// Data per slot: the SETUP packet, then up to 4 KiB.
const SLOT_DATA: usize = 8 + 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Setup,
    DataIn,
    DataOut,
    Status,
}

#[derive(Clone, Debug)]
struct TdInfo {
    stage: Stage,
    max_len: usize,
    data_offset: usize,
}

struct Busy {
    id: TransferId,
    pipe: Pipe,
    control: bool,
    tds: Vec<TdInfo>,
}

enum Slot {
    /// Reusable once FRNUM has moved twice past `since` (if set).
    Free {
        since: Option<u16>,
    },
    Busy(Busy),
}

/// One UHCI controller.
pub struct Uhci {
    platform: &'static dyn Platform,
    io: u16,
    frame_list: DmaBuffer,
    qhs: DmaBuffer,
    tds: DmaBuffer,
    data: DmaBuffer,
    slots: RefCell<Vec<Slot>>,
    next_id: Cell<u32>,
    /// Next data toggle of each bulk/interrupt pipe: (address, endpoint, in).
    toggles: RefCell<BTreeMap<(u8, u8, bool), bool>>,
    stopped: Cell<bool>,
}

impl Uhci {
    /// Reset the controller, build the schedule and start it.
    pub fn start(platform: &'static dyn Platform, io: u16) -> Result<Uhci, Errno> {
        let buffer = |len, align| DmaBuffer::new(platform, len, align).map_err(|_| Errno::ENOSPC);
        let hc = Uhci {
            platform,
            io,
            frame_list: buffer(FRAMES * 4, 4096)?,
            qhs: buffer(SLOTS * td::QH_SIZE, 16)?,
            tds: buffer(SLOTS * TDS_PER_SLOT * TD_SIZE, 16)?,
            data: buffer(SLOTS * SLOT_DATA, 16)?,
            slots: RefCell::new((0..SLOTS).map(|_| Slot::Free { since: None }).collect()),
            next_id: Cell::new(1),
            toggles: RefCell::new(BTreeMap::new()),
            stopped: Cell::new(false),
        };
        hc.write(USBCMD, CMD_HCRESET);
        // QEMU resets at once; real controllers clear the bit within 10 ms.
        for _ in 0..100_000 {
            if hc.read(USBCMD) & CMD_HCRESET == 0 {
                break;
            }
            platform.relax();
        }
        for slot in 0..SLOTS {
            let next = if slot + 1 < SLOTS { hc.qh_phys(slot + 1) | LINK_QH } else { LINK_TERMINATE };
            hc.qhs.write_u32(slot * td::QH_SIZE, next);
            hc.qhs.write_u32(slot * td::QH_SIZE + 4, LINK_TERMINATE);
        }
        let first = hc.qh_phys(0) | LINK_QH;
        for frame in 0..FRAMES {
            hc.frame_list.write_u32(frame * 4, first);
        }
        hc.frame_list.fence();
        let base = hc.frame_list.phys() as u32;
        hc.write(USBINTR, 0);
        hc.write(FRNUM, 0);
        hc.write(FLBASEADD, base as u16);
        hc.write(FLBASEADD + 2, (base >> 16) as u16);
        hc.write(USBSTS, STS_ALL);
        hc.write(USBCMD, CMD_RS | CMD_CF | CMD_MAXP);
        Ok(hc)
    }

    fn read(&self, reg: u16) -> u16 {
        self.platform.inw(self.io + reg)
    }

    fn write(&self, reg: u16, value: u16) {
        self.platform.outw(self.io + reg, value)
    }

    fn qh_phys(&self, slot: usize) -> u32 {
        self.qhs.phys_at(slot * td::QH_SIZE) as u32
    }

    fn td_offset(slot: usize, index: usize) -> usize {
        (slot * TDS_PER_SLOT + index) * TD_SIZE
    }

    fn frame(&self) -> u16 {
        self.read(FRNUM) & 0x7ff
    }

    fn portsc(port: u8) -> u16 {
        PORTSC1 + 2 * u16::from(port - 1)
    }

    /// A slot QEMU cannot be looking at any more.
    fn free_slot(&self) -> Option<usize> {
        let slots = self.slots.borrow();
        let mut now = None;
        slots.iter().position(|s| match s {
            Slot::Free { since: None } => true,
            Slot::Free { since: Some(since) } => {
                let frame = *now.get_or_insert_with(|| self.frame());
                frame.wrapping_sub(*since) & 0x7ff >= 2
            }
            Slot::Busy(_) => false,
        })
    }

    /// Unlink a slot's TDs and mark it free from this frame on.
    fn retire(&self, slot: usize) {
        self.qhs.write_u32(slot * td::QH_SIZE + 4, LINK_TERMINATE);
        self.qhs.fence();
        self.slots.borrow_mut()[slot] = Slot::Free { since: Some(self.frame()) };
    }

    fn find(&self, id: TransferId) -> Option<usize> {
        self.slots.borrow().iter().position(|s| matches!(s, Slot::Busy(b) if b.id == id))
    }

    /// The transfer's outcome once every TD that will run has run.
    fn outcome(&self, slot: usize, busy: &Busy) -> Option<Result<Vec<u8>, UsbError>> {
        let mut data = Vec::new();
        let mut completed_data_tds = 0;
        for (i, info) in busy.tds.iter().enumerate() {
            let ctrl = self.tds.read_u32(Self::td_offset(slot, i) + 4);
            match td::status(ctrl) {
                TdStatus::Active => return None,
                TdStatus::Stalled => return Some(Err(UsbError::Stall)),
                TdStatus::Babble => return Some(Err(UsbError::Babble)),
                TdStatus::NoResponse => return Some(Err(UsbError::NoDevice)),
                TdStatus::OtherError => return Some(Err(UsbError::Protocol)),
                TdStatus::Done { actual } => {
                    if matches!(info.stage, Stage::DataIn | Stage::DataOut) {
                        completed_data_tds += 1;
                    }
                    if info.stage == Stage::DataIn {
                        let n = actual.min(info.max_len);
                        data.extend(self.data.to_vec(slot * SLOT_DATA + info.data_offset, n));
                        // A short packet ends a bulk or interrupt transfer
                        // (SPD stops the queue there). A control read goes on
                        // to its status stage: QEMU completes the remaining
                        // IN TDs with 0 bytes.
                        if n < info.max_len && !busy.control {
                            break;
                        }
                    }
                }
            }
        }
        if !busy.control && completed_data_tds % 2 == 1 {
            let key =
                (busy.pipe.address, busy.pipe.endpoint, busy.tds.first().is_some_and(|t| t.stage == Stage::DataIn));
            let mut toggles = self.toggles.borrow_mut();
            let t = toggles.entry(key).or_insert(false);
            *t = !*t;
        }
        Some(Ok(data))
    }

    fn build(&self, slot: usize, pipe: Pipe, transfer: &Transfer) -> Result<Vec<(Td, TdInfo)>, UsbError> {
        let mps = usize::from(pipe.max_packet.max(8));
        let low = pipe.speed == Speed::Low;
        let data_phys = |offset: usize| self.data.phys_at(slot * SLOT_DATA + offset) as u32;
        let mut tds = Vec::new();
        let packets = |len: usize| len.div_ceil(mps);
        match transfer {
            Transfer::Control { setup, out } => {
                let len = usize::from(setup.length);
                if len > SLOT_DATA - 8 || packets(len) + 2 > TDS_PER_SLOT {
                    return Err(UsbError::Protocol);
                }
                self.data.write(slot * SLOT_DATA, &setup.bytes());
                tds.push((
                    Td::new(PID_SETUP, pipe.address, pipe.endpoint, false, 8, data_phys(0), low),
                    TdInfo { stage: Stage::Setup, max_len: 8, data_offset: 0 },
                ));
                let (pid, stage) = if setup.is_in() { (PID_IN, Stage::DataIn) } else { (PID_OUT, Stage::DataOut) };
                if !setup.is_in() {
                    self.data.write(slot * SLOT_DATA + 8, &out[..out.len().min(len)]);
                }
                let mut toggle = true;
                for p in 0..packets(len) {
                    let offset = 8 + p * mps;
                    let n = mps.min(len - p * mps);
                    tds.push((
                        Td::new(pid, pipe.address, pipe.endpoint, toggle, n, data_phys(offset), low),
                        TdInfo { stage, max_len: n, data_offset: offset },
                    ));
                    toggle = !toggle;
                }
                let status_pid = if setup.is_in() && len > 0 { PID_OUT } else { PID_IN };
                let mut status = Td::new(status_pid, pipe.address, pipe.endpoint, true, 0, 0, low);
                status.ctrl |= td::CTRL_IOC;
                tds.push((status, TdInfo { stage: Stage::Status, max_len: 0, data_offset: 0 }));
            }
            Transfer::In { length } => {
                if *length > SLOT_DATA - 8 || packets(*length) > TDS_PER_SLOT {
                    return Err(UsbError::Protocol);
                }
                let mut toggle = *self.toggles.borrow().get(&(pipe.address, pipe.endpoint, true)).unwrap_or(&false);
                for p in 0..packets(*length).max(1) {
                    let offset = 8 + p * mps;
                    let n = mps.min(length - p * mps);
                    let mut t = Td::new(PID_IN, pipe.address, pipe.endpoint, toggle, n, data_phys(offset), low);
                    t.ctrl |= td::CTRL_SPD;
                    tds.push((t, TdInfo { stage: Stage::DataIn, max_len: n, data_offset: offset }));
                    toggle = !toggle;
                }
            }
            Transfer::Out { data } => {
                if data.len() > SLOT_DATA - 8 || packets(data.len()) > TDS_PER_SLOT {
                    return Err(UsbError::Protocol);
                }
                self.data.write(slot * SLOT_DATA + 8, data);
                let mut toggle = *self.toggles.borrow().get(&(pipe.address, pipe.endpoint, false)).unwrap_or(&false);
                for p in 0..packets(data.len()).max(1) {
                    let offset = 8 + p * mps;
                    let n = mps.min(data.len() - p * mps);
                    tds.push((
                        Td::new(PID_OUT, pipe.address, pipe.endpoint, toggle, n, data_phys(offset), low),
                        TdInfo { stage: Stage::DataOut, max_len: n, data_offset: offset },
                    ));
                    toggle = !toggle;
                }
            }
        }
        Ok(tds)
    }
}

impl HostController for Uhci {
    fn product(&self) -> &'static str {
        "UHCI Host Controller"
    }

    fn root_ports(&self) -> u8 {
        ROOT_PORTS
    }

    fn root_port_status(&self, port: u8) -> PortStatus {
        let sc = self.read(Self::portsc(port));
        let mut status = port::POWER;
        let mut change = 0;
        if sc & PORT_CCS != 0 {
            status |= port::CONNECTION;
        }
        if sc & PORT_PE != 0 {
            status |= port::ENABLE;
        }
        if sc & PORT_PR != 0 {
            status |= port::RESET;
        }
        if sc & PORT_LSDA != 0 {
            status |= port::LOW_SPEED;
        }
        if sc & PORT_CSC != 0 {
            change |= port::C_CONNECTION;
        }
        if sc & PORT_PEC != 0 {
            change |= port::C_ENABLE;
        }
        PortStatus { status, change }
    }

    fn root_port_clear_change(&self, port: u8, change: u16) {
        let reg = Self::portsc(port);
        // Every write replaces all the RW bits: keep PE as it is, and set
        // only the change bits meant to be cleared.
        let mut value = self.read(reg) & PORT_PE;
        if change & port::C_CONNECTION != 0 {
            value |= PORT_CSC;
        }
        if change & port::C_ENABLE != 0 {
            value |= PORT_PEC;
        }
        self.write(reg, value);
    }

    fn root_port_reset(&self, port: u8) {
        let reg = Self::portsc(port);
        // QEMU resets the device on the PR edge and enforces no timing; a
        // real port wants PR held 50 ms. PE is never set by the controller.
        self.write(reg, PORT_PR);
        self.write(reg, 0);
        self.write(reg, PORT_PE);
        if self.read(reg) & PORT_PEC != 0 {
            self.write(reg, PORT_PE | PORT_PEC);
        }
    }

    fn submit(&self, pipe: Pipe, transfer: Transfer) -> Result<TransferId, UsbError> {
        if self.stopped.get() {
            return Err(UsbError::NoDevice);
        }
        let slot = self.free_slot().ok_or(UsbError::Busy)?;
        let tds = self.build(slot, pipe, &transfer)?;
        let count = tds.len();
        for (i, (t, _)) in tds.iter().enumerate() {
            let mut t = *t;
            t.link = if i + 1 < count {
                self.tds.phys_at(Self::td_offset(slot, i + 1)) as u32 | LINK_DEPTH
            } else {
                LINK_TERMINATE
            };
            self.tds.write(Self::td_offset(slot, i), &t.bytes());
        }
        let id = TransferId(self.next_id.get());
        self.next_id.set(self.next_id.get().wrapping_add(1));
        let control = matches!(transfer, Transfer::Control { .. });
        self.slots.borrow_mut()[slot] =
            Slot::Busy(Busy { id, pipe, control, tds: tds.into_iter().map(|(_, info)| info).collect() });
        // Publish: the whole chain is in memory before QEMU can reach it.
        self.tds.fence();
        self.qhs.write_u32(slot * td::QH_SIZE + 4, self.tds.phys_at(Self::td_offset(slot, 0)) as u32);
        self.qhs.fence();
        Ok(id)
    }

    fn poll(&self, id: TransferId) -> Option<Result<Vec<u8>, UsbError>> {
        let Some(slot) = self.find(id) else { return Some(Err(UsbError::NoDevice)) };
        if self.stopped.get() {
            self.retire(slot);
            return Some(Err(UsbError::NoDevice));
        }
        let result = {
            let slots = self.slots.borrow();
            let Slot::Busy(busy) = &slots[slot] else { return Some(Err(UsbError::NoDevice)) };
            self.outcome(slot, busy)?
        };
        self.retire(slot);
        Some(result)
    }

    fn cancel(&self, id: TransferId) {
        if let Some(slot) = self.find(id) {
            self.retire(slot);
        }
    }

    fn reset_pipes(&self, address: u8) {
        self.toggles.borrow_mut().retain(|(a, _, _), _| *a != address);
    }

    fn shutdown(&self) {
        self.stopped.set(true);
        self.write(USBCMD, 0);
    }
}

/// The PCI driver: binds every UHCI function (class 0c0300) and puts a USB
/// bus behind it.
pub struct UhciDriver {
    pub ctx: Rc<UsbContext>,
}

impl Driver for UhciDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        core.data::<PciFunction>(dev).is_some_and(|f| f.class == 0x0c0300)
    }

    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        let function = core.data::<PciFunction>(dev).ok_or(Errno::ENODEV)?.clone();
        let io = function.bars.iter().find(|b| b.kind == BarKind::Io).and_then(|b| b.base).ok_or(Errno::ENODEV)?;
        let platform = self.ctx.platform;
        let cfg = PortConfig::new(platform);
        let command = cfg.read16(function.bdf, reg::COMMAND);
        cfg.write16(function.bdf, reg::COMMAND, command | reg::COMMAND_IO | reg::COMMAND_MASTER);
        cfg.write16(function.bdf, USBLEGSUP, USBLEGSUP_DEFAULT);
        let hc = Uhci::start(platform, io as u16)?;
        klog!(platform, "uhci: {} at io {io:#x}", function.bdf);
        let serial = alloc::format!("0000:{}", function.bdf);
        super::add_host(&self.ctx, core, dev, &serial, DRIVER_NAME, Rc::new(hc))
    }

    fn remove(&self, core: &mut Core, dev: DeviceId) {
        super::remove_host(&self.ctx, core, dev);
    }
}
