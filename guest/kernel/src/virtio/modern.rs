//! The modern (virtio 1.0) PCI transport: vendor-specific capabilities
//! (id 0x09) in config space point at register blocks inside memory BARs.
//!
//! Capability: `+3 cfg_type, +4 bar, +8 offset u32, +12 length u32`, and for
//! the notify block `+16 notify_off_multiplier u32`. QEMU puts all four
//! blocks in one 64-bit prefetchable BAR (BAR4): common at 0, ISR at
//! 0x1000, device config at 0x2000, notify at 0x3000.
//!
//! Common configuration block:
//! ```text
//! 0x00 device_feature_select u32   0x16 queue_select u16
//! 0x04 device_feature u32          0x18 queue_size u16
//! 0x08 driver_feature_select u32   0x1c queue_enable u16
//! 0x0c driver_feature u32          0x1e queue_notify_off u16
//! 0x12 num_queues u16              0x20 queue_desc u64
//! 0x14 device_status u8            0x28 queue_driver (avail) u64
//!                                  0x30 queue_device (used) u64
//! ```

use crate::errno::Errno;
use crate::hw::Platform;
use crate::pci::config::{ConfigSpace, reg};
use crate::pci::device::PciFunction;

use super::Transport;
use super::virtqueue::Virtqueue;

pub const CAP_VENDOR: u8 = 0x09;

/// `cfg_type` values.
pub mod cfg_type {
    pub const COMMON: u8 = 1;
    pub const NOTIFY: u8 = 2;
    pub const ISR: u8 = 3;
    pub const DEVICE: u8 = 4;
}

pub mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0c;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_ENABLE: u64 = 0x1c;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DEVICE: u64 = 0x30;
}

pub struct ModernTransport {
    platform: &'static dyn Platform,
    common: u64,
    notify: u64,
    notify_multiplier: u32,
    device: u64,
    /// Each set-up queue's notify address, so a notify is one MMIO write
    /// (every MMIO access is a VM exit that takes QEMU's big lock).
    notify_addrs: core::cell::RefCell<alloc::collections::BTreeMap<u16, u64>>,
}

/// Where one capability's block lives: physical address and length.
fn block(cfg: &dyn ConfigSpace, function: &PciFunction, cap: u8) -> Result<(u64, u32), Errno> {
    let bdf = function.bdf;
    let bar_index = cfg.read8(bdf, cap + 4);
    let offset = cfg.read32(bdf, cap + 8);
    let length = cfg.read32(bdf, cap + 12);
    let bar = function.bars.iter().find(|b| b.index == bar_index).ok_or(Errno::ENODEV)?;
    let base = bar.base.ok_or(Errno::ENODEV)?;
    if u64::from(offset) + u64::from(length) > bar.size {
        return Err(Errno::EINVAL);
    }
    Ok((base + u64::from(offset), length))
}

impl ModernTransport {
    /// Find the common, notify and device blocks; ENODEV if one is missing
    /// or its BAR got no address.
    pub fn new(platform: &'static dyn Platform, cfg: &dyn ConfigSpace, function: &PciFunction) -> Result<Self, Errno> {
        let bdf = function.bdf;
        let (mut common, mut notify, mut device) = (None, None, None);
        let mut notify_multiplier = 0;
        if cfg.read16(bdf, reg::STATUS) & reg::STATUS_CAP_LIST == 0 {
            return Err(Errno::ENODEV);
        }
        let mut ptr = cfg.read8(bdf, reg::CAP_PTR) & 0xfc;
        for _ in 0..48 {
            if ptr < 0x40 {
                break;
            }
            if cfg.read8(bdf, ptr) == CAP_VENDOR {
                // The first capability of each type is the one to use.
                match cfg.read8(bdf, ptr + 3) {
                    cfg_type::COMMON if common.is_none() => common = Some(block(cfg, function, ptr)?),
                    cfg_type::NOTIFY if notify.is_none() => {
                        notify = Some(block(cfg, function, ptr)?);
                        notify_multiplier = cfg.read32(bdf, ptr + 16);
                    }
                    cfg_type::DEVICE if device.is_none() => device = Some(block(cfg, function, ptr)?),
                    _ => {}
                }
            }
            ptr = cfg.read8(bdf, ptr + 1) & 0xfc;
        }
        let (common, notify, device) = match (common, notify, device) {
            (Some(c), Some(n), Some(d)) => (c.0, n.0, d.0),
            _ => return Err(Errno::ENODEV),
        };
        Ok(ModernTransport { platform, common, notify, notify_multiplier, device, notify_addrs: Default::default() })
    }

    fn select_queue(&self, index: u16) {
        self.platform.mmio_write16(self.common + common::QUEUE_SELECT, index);
    }
}

impl Transport for ModernTransport {
    fn kind(&self) -> &'static str {
        "modern"
    }

    fn device_features(&self) -> u64 {
        let p = self.platform;
        p.mmio_write32(self.common + common::DEVICE_FEATURE_SELECT, 0);
        let low = p.mmio_read32(self.common + common::DEVICE_FEATURE);
        p.mmio_write32(self.common + common::DEVICE_FEATURE_SELECT, 1);
        let high = p.mmio_read32(self.common + common::DEVICE_FEATURE);
        u64::from(high) << 32 | u64::from(low)
    }

    fn set_driver_features(&self, features: u64) {
        let p = self.platform;
        p.mmio_write32(self.common + common::DRIVER_FEATURE_SELECT, 0);
        p.mmio_write32(self.common + common::DRIVER_FEATURE, features as u32);
        p.mmio_write32(self.common + common::DRIVER_FEATURE_SELECT, 1);
        p.mmio_write32(self.common + common::DRIVER_FEATURE, (features >> 32) as u32);
    }

    fn status(&self) -> u8 {
        self.platform.mmio_read8(self.common + common::DEVICE_STATUS)
    }

    fn set_status(&self, status: u8) {
        self.platform.mmio_write8(self.common + common::DEVICE_STATUS, status);
    }

    fn queue_max_size(&self, index: u16) -> u16 {
        if index >= self.platform.mmio_read16(self.common + common::NUM_QUEUES) {
            return 0;
        }
        self.select_queue(index);
        self.platform.mmio_read16(self.common + common::QUEUE_SIZE)
    }

    fn setup_queue(&self, queue: &Virtqueue) -> Result<(), Errno> {
        let max = self.queue_max_size(queue.index());
        if max == 0 || queue.size() > max {
            return Err(Errno::EINVAL);
        }
        let p = self.platform;
        self.select_queue(queue.index());
        p.mmio_write16(self.common + common::QUEUE_SIZE, queue.size());
        // QEMU's common block takes at most 4-byte accesses: write halves.
        for (reg, addr) in [
            (common::QUEUE_DESC, queue.desc_addr()),
            (common::QUEUE_DRIVER, queue.avail_addr()),
            (common::QUEUE_DEVICE, queue.used_addr()),
        ] {
            p.mmio_write32(self.common + reg, addr as u32);
            p.mmio_write32(self.common + reg + 4, (addr >> 32) as u32);
        }
        let off = p.mmio_read16(self.common + common::QUEUE_NOTIFY_OFF);
        let addr = self.notify + u64::from(off) * u64::from(self.notify_multiplier);
        self.notify_addrs.borrow_mut().insert(queue.index(), addr);
        p.mmio_write16(self.common + common::QUEUE_ENABLE, 1);
        Ok(())
    }

    fn notify(&self, index: u16) {
        let addr = self.notify_addrs.borrow().get(&index).copied();
        if let Some(addr) = addr {
            self.platform.mmio_write16(addr, index);
        }
    }

    fn config_read8(&self, offset: u16) -> u8 {
        self.platform.mmio_read8(self.device + u64::from(offset))
    }

    fn config_read16(&self, offset: u16) -> u16 {
        self.platform.mmio_read16(self.device + u64::from(offset))
    }

    fn config_read32(&self, offset: u16) -> u32 {
        self.platform.mmio_read32(self.device + u64::from(offset))
    }
}
