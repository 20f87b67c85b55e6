//! A fake host controller with QEMU 7.2's USB devices behind it, for host
//! tests of everything above the [`HostController`] seam.
//!
//! The devices answer as QEMU's do (hw/usb/dev-hid.c, dev-hub.c, desc.c;
//! observed behaviour in the comments): a device answers only once its
//! port is reset *and* enabled; at address 0 only in the default state;
//! descriptors are truncated to wLength; strings are UTF-16LE; a hub port
//! reset sets C_RESET|C_ENABLE and the hub keeps reporting the port on its
//! status pipe until both are cleared; no change on the status pipe is a
//! NAK (the transfer stays queued); `unplug` takes the whole subtree away
//! and the port above sees CONN go with C_CONNECTION (root: CSC and PEC).
//! Transfers to a device that is not there fail as UHCI reports QEMU's
//! NODEV: no response.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::hcd::{HostController, Pipe, PortStatus, Transfer, TransferId, UsbError, port};
use super::request::Setup;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    Keyboard,
    Mouse,
    Tablet,
    Hub,
    /// usb-storage with a 4 MiB disk (Bulk-Only Transport, see [`Bot`]).
    Storage,
}

impl Model {
    fn identity(self) -> (u16, u16, u16, &'static str, &'static str) {
        match self {
            Model::Keyboard => (0x0627, 0x0001, 0x0000, "QEMU USB Keyboard", "68284"),
            Model::Mouse => (0x0627, 0x0001, 0x0000, "QEMU USB Mouse", "89126"),
            Model::Tablet => (0x0627, 0x0001, 0x0000, "QEMU USB Tablet", "28754"),
            Model::Hub => (0x0409, 0x55aa, 0x0101, "QEMU USB Hub", "314159"),
            Model::Storage => (0x46f4, 0x0001, 0x0000, "QEMU USB HARDDRIVE", "1"),
        }
    }

    fn device_descriptor(self) -> Vec<u8> {
        let (vendor, product, bcd, _, _) = self.identity();
        let (bcd_usb, class) = if self == Model::Hub { (0x0110u16, 9) } else { (0x0200, 0) };
        let mut d = vec![18, 1];
        d.extend(bcd_usb.to_le_bytes());
        d.extend([class, 0, 0, 8]);
        d.extend(vendor.to_le_bytes());
        d.extend(product.to_le_bytes());
        d.extend(bcd.to_le_bytes());
        d.extend([1, 2, 3, 1]);
        d
    }

    fn report_descriptor_len(self) -> u16 {
        match self {
            Model::Keyboard => 63,
            Model::Mouse => 52,
            Model::Tablet => 74,
            Model::Hub | Model::Storage => 0,
        }
    }

    fn config_descriptor(self) -> Vec<u8> {
        if self == Model::Storage {
            let mut d = vec![9, 2, 32, 0, 1, 1, 0, 0xc0, 50, 9, 4, 0, 0, 2, 8, 6, 0x50, 0];
            d.extend([7, 5, 0x81, 2, 64, 0, 0, 7, 5, 0x02, 2, 64, 0, 0]);
            return d;
        }
        let (class, sub, proto, mps, attrs, power) = match self {
            Model::Keyboard => (3, 1, 1, 8, 0xa0, 50),
            Model::Mouse => (3, 1, 2, 4, 0xa0, 50),
            Model::Tablet => (3, 0, 0, 8, 0xa0, 50),
            Model::Hub => (9, 0, 0, 2, 0xe0, 0),
            Model::Storage => unreachable!("returned above"),
        };
        let mut body = vec![9, 4, 0, 0, 1, class, sub, proto, 0];
        if class == 3 {
            let [l0, l1] = self.report_descriptor_len().to_le_bytes();
            body.extend([9, 0x21, 0x11, 0x01, 0, 1, 0x22, l0, l1]);
        }
        let interval = if self == Model::Hub { 0xff } else { 10 };
        body.extend([7, 5, 0x81, 3, mps, 0, interval]);
        let total = (9 + body.len()) as u16;
        let [t0, t1] = total.to_le_bytes();
        let mut d = vec![9, 2, t0, t1, 1, 1, 0, attrs, power];
        d.extend(body);
        d
    }
}

/// Hub port status as QEMU's usb-hub keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakePort {
    pub status: u16,
    pub change: u16,
}

pub struct FakeDevice {
    pub model: Model,
    pub address: Cell<u8>,
    /// Reset since attach (QEMU: USB_STATE_DEFAULT or later).
    pub reset: Cell<bool>,
    pub configured: Cell<u8>,
    /// usb-hub only: 8 ports.
    pub ports: RefCell<Vec<(FakePort, Option<Rc<FakeDevice>>)>>,
    /// Vanish right after answering SET_ADDRESS (an unplug racing
    /// enumeration at that step).
    pub vanish_after_set_address: Cell<bool>,
    /// Requests seen, as (bmRequestType, bRequest, wValue, wIndex).
    pub requests: RefCell<Vec<(u8, u8, u16, u16)>>,
    /// usb-storage only.
    pub bot: RefCell<Bot>,
}

impl FakeDevice {
    pub fn new(model: Model) -> Rc<FakeDevice> {
        let ports = if model == Model::Hub {
            // Powered from hub reset: 0x0100.
            (0..8).map(|_| (FakePort { status: port::POWER, change: 0 }, None)).collect()
        } else {
            Vec::new()
        };
        Rc::new(FakeDevice {
            model,
            address: Cell::new(0),
            reset: Cell::new(false),
            configured: Cell::new(0),
            ports: RefCell::new(ports),
            vanish_after_set_address: Cell::new(false),
            requests: RefCell::new(Vec::new()),
            bot: RefCell::new(Bot::default()),
        })
    }

    /// `usb_device_reset`: default state at address 0, then the class's
    /// own reset (usb-storage: [`Bot::port_reset`]).
    fn usb_reset(&self) {
        self.reset.set(true);
        self.address.set(0);
        self.configured.set(0);
        if self.model == Model::Storage {
            self.bot.borrow_mut().port_reset();
        }
    }

    fn string(&self, index: u8) -> Option<Vec<u8>> {
        let (_, _, _, product, serial) = self.model.identity();
        let text = match index {
            0 => return Some(vec![4, 3, 0x09, 0x04]),
            1 => String::from("QEMU"),
            2 => String::from(product),
            3 => alloc::format!("{serial}-0000:00:01.2-1"),
            _ => return None,
        };
        let mut d = vec![(2 + 2 * text.len()) as u8, 3];
        for c in text.encode_utf16() {
            d.extend(c.to_le_bytes());
        }
        Some(d)
    }

    /// A control request; `Err(Stall)` as QEMU's devices do.
    fn control(&self, setup: &Setup) -> Result<Vec<u8>, UsbError> {
        self.requests.borrow_mut().push((setup.request_type, setup.request, setup.value, setup.index));
        let len = usize::from(setup.length);
        let truncate = |d: Vec<u8>| Ok(d.into_iter().take(len).collect());
        match (setup.request_type, setup.request) {
            (0x80, 6) => match (setup.value >> 8) as u8 {
                1 => truncate(self.model.device_descriptor()),
                2 => truncate(self.model.config_descriptor()),
                3 => self.string(setup.value as u8).map_or(Err(UsbError::Stall), truncate),
                _ => Err(UsbError::Stall),
            },
            (0x81, 6) if setup.value >> 8 == 0x22 && self.model != Model::Hub => {
                truncate(vec![0x05; usize::from(self.model.report_descriptor_len())])
            }
            (0x00, 5) => {
                self.address.set(setup.value as u8);
                Ok(Vec::new())
            }
            (0x00, 9) => {
                self.configured.set(setup.value as u8);
                Ok(Vec::new())
            }
            (0xa0, 6) if self.model == Model::Hub => {
                truncate(vec![0x0a, 0x29, 0x08, 0x0a, 0x00, 0x01, 0x00, 0x00, 0x00, 0xff])
            }
            (0xa3, 0) if self.model == Model::Hub => {
                let ports = self.ports.borrow();
                let (p, _) = ports.get(usize::from(setup.index).wrapping_sub(1)).ok_or(UsbError::Stall)?;
                let mut d = p.status.to_le_bytes().to_vec();
                d.extend(p.change.to_le_bytes());
                truncate(d)
            }
            (0x23, 3) if self.model == Model::Hub => {
                let mut ports = self.ports.borrow_mut();
                let (p, child) = ports.get_mut(usize::from(setup.index).wrapping_sub(1)).ok_or(UsbError::Stall)?;
                match setup.value {
                    // RESET: instantaneous; device reset, EN, C_RESET|C_ENABLE.
                    4 => {
                        if let Some(child) = child {
                            child.usb_reset();
                            p.status |= port::ENABLE;
                            p.change |= port::C_RESET | port::C_ENABLE;
                        }
                        Ok(Vec::new())
                    }
                    2 | 8 => Ok(Vec::new()),
                    _ => Err(UsbError::Stall),
                }
            }
            (0x23, 1) if self.model == Model::Hub => {
                let mut ports = self.ports.borrow_mut();
                let (p, _) = ports.get_mut(usize::from(setup.index).wrapping_sub(1)).ok_or(UsbError::Stall)?;
                match setup.value {
                    1 => p.status &= !port::ENABLE,
                    2 | 8 => {}
                    16 => p.change &= !port::C_CONNECTION,
                    17 => p.change &= !port::C_ENABLE,
                    18 => p.change &= !port::C_SUSPEND,
                    19 => p.change &= !port::C_OVER_CURRENT,
                    20 => p.change &= !port::C_RESET,
                    _ => return Err(UsbError::Stall),
                }
                Ok(Vec::new())
            }
            _ => Err(UsbError::Stall),
        }
    }

    /// The hub's status-change bitmap, `None` (NAK) when nothing changed.
    fn status_bitmap(&self) -> Option<Vec<u8>> {
        let ports = self.ports.borrow();
        let mut bits = 0u16;
        for (i, (p, _)) in ports.iter().enumerate() {
            if p.change != 0 {
                bits |= 1 << (i + 1);
            }
        }
        (bits != 0).then(|| bits.to_le_bytes().to_vec())
    }
}

struct RootPort {
    device: Option<Rc<FakeDevice>>,
    /// UHCI PORTSC as hub-style bits: CONNECTION, ENABLE; C_CONNECTION (CSC),
    /// C_ENABLE (PEC).
    state: PortStatus,
}

enum Pending {
    Done(Result<Vec<u8>, UsbError>),
    /// An interrupt IN the device NAKs for now.
    Nak {
        address: u8,
        length: usize,
    },
}

/// The fake controller: two root ports, transfers answered at once.
pub struct FakeHcd {
    roots: RefCell<[RootPort; 2]>,
    transfers: RefCell<BTreeMap<u32, Pending>>,
    next: Cell<u32>,
    pub shut_down: Cell<bool>,
    /// Every address whose pipes' data toggles were started over.
    pub pipes_reset: RefCell<Vec<u8>>,
}

impl Default for FakeHcd {
    fn default() -> Self {
        let empty = || RootPort { device: None, state: PortStatus { status: port::POWER, change: 0 } };
        FakeHcd {
            roots: RefCell::new([empty(), empty()]),
            transfers: RefCell::new(BTreeMap::new()),
            next: Cell::new(1),
            shut_down: Cell::new(false),
            pipes_reset: RefCell::new(Vec::new()),
        }
    }
}

impl FakeHcd {
    /// `device_add ... port=<path>`: QEMU refuses a port that does not
    /// exist or is taken; so does this (returns false).
    pub fn plug(&self, path: &[u8], device: Rc<FakeDevice>) -> bool {
        match path {
            [root] => {
                let mut roots = self.roots.borrow_mut();
                let Some(r) = roots.get_mut(usize::from(*root) - 1) else { return false };
                if r.device.is_some() {
                    return false;
                }
                r.device = Some(device);
                r.state.status |= port::CONNECTION;
                r.state.change |= port::C_CONNECTION;
                true
            }
            [upper @ .., last] => {
                let Some(hub) = self.find(upper) else { return false };
                let mut ports = hub.ports.borrow_mut();
                let Some((p, child)) = ports.get_mut(usize::from(*last) - 1) else { return false };
                if child.is_some() {
                    return false;
                }
                *child = Some(device);
                p.status |= port::CONNECTION;
                p.change |= port::C_CONNECTION;
                true
            }
            [] => false,
        }
    }

    /// `device_del`: the device (and, for a hub, everything behind it) is
    /// gone at once; the port above reports the disconnect.
    pub fn unplug(&self, path: &[u8]) {
        match path {
            [root] => {
                let mut roots = self.roots.borrow_mut();
                let r = &mut roots[usize::from(*root) - 1];
                r.device = None;
                let was_enabled = r.state.status & port::ENABLE != 0;
                r.state.status &= !(port::CONNECTION | port::ENABLE);
                r.state.change |= port::C_CONNECTION | if was_enabled { port::C_ENABLE } else { 0 };
            }
            [upper @ .., last] => {
                if let Some(hub) = self.find(upper) {
                    let mut ports = hub.ports.borrow_mut();
                    let (p, child) = &mut ports[usize::from(*last) - 1];
                    *child = None;
                    // Detach: CONN/EN/SUSP cleared → 0x0100, change 0x0003.
                    p.status = port::POWER;
                    p.change |= port::C_CONNECTION | port::C_ENABLE;
                }
            }
            [] => {}
        }
    }

    /// Put another device on an occupied port without a connect change, in
    /// the old one's USB state (address, configuration), as a device does
    /// whose firmware changed while it was in use: only a reset and a new
    /// look at its descriptors tell.
    pub fn replace_silently(&self, path: &[u8], device: Rc<FakeDevice>) {
        let old = self.find(path).expect("a device on the port");
        device.reset.set(old.reset.get());
        device.address.set(old.address.get());
        device.configured.set(old.configured.get());
        match path {
            [root] => self.roots.borrow_mut()[usize::from(*root) - 1].device = Some(device),
            [upper @ .., last] => {
                let hub = self.find(upper).expect("a hub above the port");
                hub.ports.borrow_mut()[usize::from(*last) - 1].1 = Some(device);
            }
            [] => {}
        }
    }

    /// The device at a port path, attached or not.
    pub fn find(&self, path: &[u8]) -> Option<Rc<FakeDevice>> {
        let (first, rest) = path.split_first()?;
        let mut dev = self.roots.borrow().get(usize::from(*first) - 1)?.device.clone()?;
        for p in rest {
            let next = dev.ports.borrow().get(usize::from(*p) - 1)?.1.clone()?;
            dev = next;
        }
        Some(dev)
    }

    /// The change bits a hub port still reports.
    pub fn hub_port(&self, hub: &[u8], p: u8) -> FakePort {
        self.find(hub).map(|h| h.ports.borrow()[usize::from(p) - 1].0).unwrap_or_default()
    }

    /// The device answering at `address`: searched through enabled ports
    /// only (QEMU's `usb_find_device`), and at address 0 only after reset.
    fn answering(&self, address: u8) -> Option<Rc<FakeDevice>> {
        fn walk(dev: &Rc<FakeDevice>, address: u8) -> Option<Rc<FakeDevice>> {
            if dev.reset.get() && dev.address.get() == address {
                return Some(Rc::clone(dev));
            }
            for (p, child) in dev.ports.borrow().iter() {
                if let Some(child) = child
                    && p.status & port::ENABLE != 0
                    && let Some(found) = walk(child, address)
                {
                    return Some(found);
                }
            }
            None
        }
        let roots = self.roots.borrow();
        roots.iter().filter(|r| r.state.status & port::ENABLE != 0).find_map(|r| walk(r.device.as_ref()?, address))
    }

    fn run(&self, pipe: Pipe, transfer: &Transfer) -> Pending {
        let Some(dev) = self.answering(pipe.address) else { return Pending::Done(Err(UsbError::NoDevice)) };
        match transfer {
            Transfer::Control { setup, .. } => {
                let result = dev.control(setup);
                if setup.request == 5 && setup.request_type == 0 && dev.vanish_after_set_address.get() {
                    let path = self.path_of(&dev).expect("an answering device has a path");
                    self.unplug(&path);
                }
                Pending::Done(result)
            }
            Transfer::Out { data } if dev.model == Model::Storage && pipe.endpoint == 2 => {
                Pending::Done(dev.bot.borrow_mut().out(data))
            }
            Transfer::In { length } if dev.model == Model::Storage && pipe.endpoint == 1 => {
                Pending::Done(dev.bot.borrow_mut().input(*length))
            }
            Transfer::In { length } if pipe.endpoint == 1 && dev.model == Model::Hub => {
                Pending::Nak { address: pipe.address, length: *length }
            }
            _ => Pending::Done(Err(UsbError::Stall)),
        }
    }

    fn path_of(&self, target: &Rc<FakeDevice>) -> Option<Vec<u8>> {
        fn walk(dev: &Rc<FakeDevice>, target: &Rc<FakeDevice>, path: &mut Vec<u8>) -> bool {
            if Rc::ptr_eq(dev, target) {
                return true;
            }
            for (i, (_, child)) in dev.ports.borrow().iter().enumerate() {
                if let Some(child) = child {
                    path.push(i as u8 + 1);
                    if walk(child, target, path) {
                        return true;
                    }
                    path.pop();
                }
            }
            false
        }
        for (i, r) in self.roots.borrow().iter().enumerate() {
            let mut path = vec![i as u8 + 1];
            if let Some(dev) = &r.device
                && walk(dev, target, &mut path)
            {
                return Some(path);
            }
        }
        None
    }
}

impl HostController for FakeHcd {
    fn product(&self) -> &'static str {
        "Fake Host Controller"
    }

    fn root_ports(&self) -> u8 {
        2
    }

    fn root_port_status(&self, p: u8) -> PortStatus {
        self.roots.borrow()[usize::from(p) - 1].state
    }

    fn root_port_clear_change(&self, p: u8, change: u16) {
        self.roots.borrow_mut()[usize::from(p) - 1].state.change &= !change;
    }

    fn root_port_reset(&self, p: u8) {
        let mut roots = self.roots.borrow_mut();
        let r = &mut roots[usize::from(p) - 1];
        if let Some(dev) = &r.device {
            dev.usb_reset();
            // UHCI: PE is the guest's to set, and the write is dropped
            // without a connection.
            r.state.status |= port::ENABLE;
        }
    }

    fn submit(&self, pipe: Pipe, transfer: Transfer) -> Result<TransferId, UsbError> {
        if self.shut_down.get() {
            return Err(UsbError::NoDevice);
        }
        let id = self.next.get();
        self.next.set(id + 1);
        let pending = self.run(pipe, &transfer);
        self.transfers.borrow_mut().insert(id, pending);
        Ok(TransferId(id))
    }

    fn poll(&self, id: TransferId) -> Option<Result<Vec<u8>, UsbError>> {
        let mut transfers = self.transfers.borrow_mut();
        let pending = transfers.get(&id.0)?;
        let result = match pending {
            Pending::Done(r) => r.clone(),
            Pending::Nak { address, length } => {
                let Some(hub) = self.answering(*address) else {
                    transfers.remove(&id.0);
                    return Some(Err(UsbError::NoDevice));
                };
                let bitmap = hub.status_bitmap()?;
                // A buffer shorter than the bitmap babbles (a 1-byte one
                // gets 1 byte: QEMU's FreeBSD workaround).
                if *length < bitmap.len() && *length != 1 {
                    Err(UsbError::Babble)
                } else {
                    Ok(bitmap.into_iter().take(*length).collect())
                }
            }
        };
        transfers.remove(&id.0);
        Some(result)
    }

    fn cancel(&self, id: TransferId) {
        self.transfers.borrow_mut().remove(&id.0);
    }

    fn reset_pipes(&self, address: u8) {
        self.pipes_reset.borrow_mut().push(address);
    }

    fn shutdown(&self) {
        self.shut_down.set(true);
    }
}

/// QEMU's usb-storage over its scsi-disk, as far as the stack uses it
/// (hw/usb/dev-storage.c): the CBW must be exactly 31 bytes with the right
/// signature, and a packet in the wrong phase is refused, each with a STALL
/// of that packet only; data-in is padded to the CBW's length (the residue
/// says how much was real); the first command after plug fails with unit
/// attention 6/29/00; the sense survives only until the next command that
/// is not REQUEST SENSE. A CBW whose direction disagrees with its command's
/// data is accepted, then the device goes to `needs_reset`: every bulk
/// packet STALLs until a port reset (class reset and CLEAR_FEATURE(HALT)
/// do not clear it; [`Bot::port_reset`] does).
#[derive(Default)]
pub struct Bot {
    /// (tag, transfer length, data, status) of the command in flight.
    command: Option<(u32, u32, Vec<u8>, u8)>,
    data_sent: bool,
    powered_on: bool,
    sense: Option<[u8; 3]>,
    /// QEMU's `needs_reset`.
    pub needs_reset: bool,
    /// Bulk packets answered with STALL.
    pub stalls: u32,
    /// Port resets seen.
    pub resets: u32,
    /// Every CDB's opcode, in order.
    pub opcodes: Vec<u8>,
}

/// 4 MiB, an MBR with signature 0x20021007 and one partition at 2048.
pub const STORAGE_SECTORS: u32 = 8192;

impl Bot {
    fn stall(&mut self) -> Result<Vec<u8>, UsbError> {
        self.stalls += 1;
        Err(UsbError::Stall)
    }

    /// `usb_msd_handle_reset`: the command in flight is cancelled, the
    /// device waits for a CBW and `needs_reset` is cleared. The disk
    /// itself is not reset (no new unit attention).
    pub fn port_reset(&mut self) {
        self.command = None;
        self.data_sent = false;
        self.needs_reset = false;
        self.resets += 1;
    }

    fn out(&mut self, data: &[u8]) -> Result<Vec<u8>, UsbError> {
        if self.needs_reset || self.command.is_some() || data.len() != 31 || data[0..4] != *b"USBC" {
            return self.stall();
        }
        let tag = u32::from_le_bytes(data[4..8].try_into().unwrap());
        let length = u32::from_le_bytes(data[8..12].try_into().unwrap());
        let data_in = data[12] & 0x80 != 0;
        let cdb = &data[15..15 + usize::from(data[14])];
        self.opcodes.push(cdb[0]);
        let (status, reply) = self.execute(cdb);
        if length > 0 && !data_in && !reply.is_empty() {
            // The disk offers data in while the CBW said out: QEMU's
            // usb_msd_transfer_data sees the mismatch once the CBW is taken.
            self.needs_reset = true;
            self.command = Some((tag, length, Vec::new(), status));
            return Ok(Vec::new());
        }
        let mut reply = reply;
        let real = reply.len().min(length as usize) as u32;
        reply.resize(length as usize, 0);
        self.command = Some((tag, length - real, reply, status));
        self.data_sent = length == 0;
        Ok(Vec::new())
    }

    fn execute(&mut self, cdb: &[u8]) -> (u8, Vec<u8>) {
        if cdb[0] == 0x03 {
            let (key, asc, ascq) = self.sense.take().unwrap_or([0, 0, 0]).into();
            let mut s = vec![0u8; 18];
            s[0] = 0x70;
            s[2] = key;
            s[7] = 10;
            s[12] = asc;
            s[13] = ascq;
            return (0, s);
        }
        self.sense = None;
        // QEMU takes a CDB's length from its opcode's group and refuses a
        // shorter one as an invalid opcode (scsi_req_parse_cdb).
        let needed = match cdb[0] >> 5 {
            0 => 6,
            1 | 2 => 10,
            4 => 16,
            5 => 12,
            _ => 0,
        };
        if cdb.len() < needed {
            self.sense = Some([5, 0x20, 0]);
            return (1, Vec::new());
        }
        if !self.powered_on {
            self.powered_on = true;
            self.sense = Some([6, 0x29, 0]);
            return (1, Vec::new());
        }
        match cdb[0] {
            0x00 => (0, Vec::new()),
            0x12 => {
                let mut d = vec![0u8, 0, 5, 0x12, 31, 0, 0, 0];
                d.extend(b"QEMU    QEMU HARDDISK   2.5+");
                (0, d)
            }
            0x25 => {
                let mut d = (STORAGE_SECTORS - 1).to_be_bytes().to_vec();
                d.extend(512u32.to_be_bytes());
                (0, d)
            }
            0x28 => {
                let mut d = vec![0u8; 512];
                d[440..444].copy_from_slice(&0x2002_1007u32.to_le_bytes());
                d[446 + 4] = 0x83;
                d[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
                d[446 + 12..446 + 16].copy_from_slice(&2048u32.to_le_bytes());
                d[510] = 0x55;
                d[511] = 0xaa;
                (0, d)
            }
            0xa0 => (0, vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            _ => {
                self.sense = Some([5, 0x20, 0]);
                (1, Vec::new())
            }
        }
    }

    fn input(&mut self, length: usize) -> Result<Vec<u8>, UsbError> {
        if self.needs_reset {
            return self.stall();
        }
        let Some((tag, residue, data, status)) = self.command.as_mut() else {
            return self.stall();
        };
        if !self.data_sent {
            self.data_sent = true;
            return Ok(data.iter().copied().take(length).collect());
        }
        if length < 13 {
            return self.stall();
        }
        let mut csw = b"USBS".to_vec();
        csw.extend(tag.to_le_bytes());
        csw.extend(residue.to_le_bytes());
        csw.push(*status);
        self.command = None;
        Ok(csw)
    }
}
