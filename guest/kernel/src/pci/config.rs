//! PCI configuration space access. Bus logic is written against
//! [`ConfigSpace`], so host tests run it on a fake ([`super::fake`]).

use core::fmt;

use crate::hw::Platform;

/// Bus/device/function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl Bdf {
    pub const fn new(bus: u8, dev: u8, func: u8) -> Self {
        Bdf { bus, dev, func }
    }
}

/// The 2.5 driverfs name: `%02x:%02x.%d`.
impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

/// Register offsets used across the PCI code (PCI Local Bus spec 3.0, §6.1).
pub mod reg {
    pub const VENDOR: u8 = 0x00;
    pub const DEVICE: u8 = 0x02;
    pub const COMMAND: u8 = 0x04;
    pub const STATUS: u8 = 0x06;
    pub const CLASS_REV: u8 = 0x08;
    pub const HEADER_TYPE: u8 = 0x0e;
    pub const BAR0: u8 = 0x10;
    pub const CAP_PTR: u8 = 0x34;
    pub const ROM: u8 = 0x30;
    pub const BRIDGE_ROM: u8 = 0x38;
    pub const INTERRUPT_LINE: u8 = 0x3c;
    pub const INTERRUPT_PIN: u8 = 0x3d;
    // Type 1 (bridge) header.
    pub const PRIMARY_BUS: u8 = 0x18;
    pub const SECONDARY_BUS: u8 = 0x19;
    pub const SUBORDINATE_BUS: u8 = 0x1a;
    pub const IO_BASE: u8 = 0x1c;
    pub const IO_LIMIT: u8 = 0x1d;
    pub const MEMORY_BASE: u8 = 0x20;
    pub const MEMORY_LIMIT: u8 = 0x22;
    pub const PREF_MEMORY_BASE: u8 = 0x24;
    pub const PREF_MEMORY_LIMIT: u8 = 0x26;
    pub const PREF_BASE_UPPER: u8 = 0x28;
    pub const PREF_LIMIT_UPPER: u8 = 0x2c;
    pub const IO_BASE_UPPER: u8 = 0x30;
    pub const IO_LIMIT_UPPER: u8 = 0x32;
    pub const BRIDGE_CONTROL: u8 = 0x3e;

    pub const COMMAND_IO: u16 = 0x1;
    pub const COMMAND_MEMORY: u16 = 0x2;
    pub const COMMAND_MASTER: u16 = 0x4;

    pub const STATUS_CAP_LIST: u16 = 0x10;
}

/// Configuration space of every function on every bus.
pub trait ConfigSpace {
    fn read32(&self, bdf: Bdf, offset: u8) -> u32;
    fn write32(&self, bdf: Bdf, offset: u8, value: u32);
    fn read16(&self, bdf: Bdf, offset: u8) -> u16;
    fn write16(&self, bdf: Bdf, offset: u8, value: u16);
    fn read8(&self, bdf: Bdf, offset: u8) -> u8;
    fn write8(&self, bdf: Bdf, offset: u8, value: u8);
}

/// Configuration mechanism #1: address at 0xcf8, data at 0xcfc..0xcff.
/// Sub-dword accesses go to 0xcfc + (offset & 3), so writing one register
/// never rewrites its neighbours (which matters for write-1-to-clear bits).
pub struct PortConfig<'a> {
    platform: &'a dyn Platform,
}

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

impl<'a> PortConfig<'a> {
    pub fn new(platform: &'a dyn Platform) -> Self {
        PortConfig { platform }
    }

    fn select(&self, bdf: Bdf, offset: u8) {
        let address = 0x8000_0000
            | (u32::from(bdf.bus) << 16)
            | (u32::from(bdf.dev & 0x1f) << 11)
            | (u32::from(bdf.func & 0x7) << 8)
            | u32::from(offset & 0xfc);
        self.platform.outl(CONFIG_ADDRESS, address);
    }
}

impl ConfigSpace for PortConfig<'_> {
    fn read32(&self, bdf: Bdf, offset: u8) -> u32 {
        self.select(bdf, offset);
        self.platform.inl(CONFIG_DATA)
    }
    fn write32(&self, bdf: Bdf, offset: u8, value: u32) {
        self.select(bdf, offset);
        self.platform.outl(CONFIG_DATA, value);
    }
    fn read16(&self, bdf: Bdf, offset: u8) -> u16 {
        self.select(bdf, offset);
        self.platform.inw(CONFIG_DATA + u16::from(offset & 2))
    }
    fn write16(&self, bdf: Bdf, offset: u8, value: u16) {
        self.select(bdf, offset);
        self.platform.outw(CONFIG_DATA + u16::from(offset & 2), value);
    }
    fn read8(&self, bdf: Bdf, offset: u8) -> u8 {
        self.select(bdf, offset);
        self.platform.inb(CONFIG_DATA + u16::from(offset & 3))
    }
    fn write8(&self, bdf: Bdf, offset: u8, value: u8) {
        self.select(bdf, offset);
        self.platform.outb(CONFIG_DATA + u16::from(offset & 3), value);
    }
}

/// Walk the capability list for `id`; returns the capability's offset.
pub fn find_capability(cfg: &dyn ConfigSpace, bdf: Bdf, id: u8) -> Option<u8> {
    if cfg.read16(bdf, reg::STATUS) & reg::STATUS_CAP_LIST == 0 {
        return None;
    }
    let mut ptr = cfg.read8(bdf, reg::CAP_PTR) & 0xfc;
    // At most 48 capabilities fit in 256 bytes; bound the walk against loops.
    for _ in 0..48 {
        if ptr < 0x40 {
            return None;
        }
        if cfg.read8(bdf, ptr) == id {
            return Some(ptr);
        }
        ptr = cfg.read8(bdf, ptr + 1) & 0xfc;
    }
    None
}
