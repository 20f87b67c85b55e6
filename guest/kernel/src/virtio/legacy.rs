//! The legacy virtio-pci transport: registers in I/O BAR0 of a transitional
//! function (QEMU's `hw/virtio/virtio-pci.c` `virtio_ioport_read/write`).
//!
//! ```text
//! 0  HOST_FEATURES  u32 RO      12 QUEUE_NUM     u16 RO (the queue's size)
//! 4  GUEST_FEATURES u32         14 QUEUE_SEL     u16
//! 8  QUEUE_PFN      u32 (addr >> 12; 0 resets)  16 QUEUE_NOTIFY u16
//! 18 STATUS         u8          19 ISR           u8 (read clears)
//! 20 device config (24 once MSI-X is on; the guest never enables it)
//! ```
//! Legacy has no FEATURES_OK and only 32 feature bits, and the queue size is
//! fixed by the device: the driver must use QUEUE_NUM as is.

use crate::errno::Errno;
use crate::hw::Platform;
use crate::pci::device::PciFunction;
use crate::pci::resources::BarKind;

use super::Transport;
use super::virtqueue::Virtqueue;

pub mod reg {
    pub const HOST_FEATURES: u16 = 0;
    pub const GUEST_FEATURES: u16 = 4;
    pub const QUEUE_PFN: u16 = 8;
    pub const QUEUE_NUM: u16 = 12;
    pub const QUEUE_SEL: u16 = 14;
    pub const QUEUE_NOTIFY: u16 = 16;
    pub const STATUS: u16 = 18;
    pub const ISR: u16 = 19;
    pub const CONFIG: u16 = 20;
}

pub struct LegacyTransport {
    platform: &'static dyn Platform,
    base: u16,
}

impl LegacyTransport {
    /// The transport behind the function's I/O BAR0; ENODEV if it has none
    /// or the BAR got no address.
    pub fn new(platform: &'static dyn Platform, function: &PciFunction) -> Result<Self, Errno> {
        let bar = function.bars.iter().find(|b| b.index == 0 && b.kind == BarKind::Io).ok_or(Errno::ENODEV)?;
        let base = bar.base.ok_or(Errno::ENODEV)?;
        Ok(LegacyTransport { platform, base: base as u16 })
    }
}

impl Transport for LegacyTransport {
    fn kind(&self) -> &'static str {
        "legacy"
    }

    fn device_features(&self) -> u64 {
        u64::from(self.platform.inl(self.base + reg::HOST_FEATURES))
    }

    fn set_driver_features(&self, features: u64) {
        self.platform.outl(self.base + reg::GUEST_FEATURES, features as u32);
    }

    fn status(&self) -> u8 {
        self.platform.inb(self.base + reg::STATUS)
    }

    fn set_status(&self, status: u8) {
        self.platform.outb(self.base + reg::STATUS, status);
    }

    fn queue_max_size(&self, index: u16) -> u16 {
        self.platform.outw(self.base + reg::QUEUE_SEL, index);
        self.platform.inw(self.base + reg::QUEUE_NUM)
    }

    fn setup_queue(&self, queue: &Virtqueue) -> Result<(), Errno> {
        // Legacy devices use their own size; a queue of another size would
        // put the rings where the device does not look.
        if self.queue_max_size(queue.index()) != queue.size() {
            return Err(Errno::EINVAL);
        }
        let pfn = queue.desc_addr() >> 12;
        let pfn = u32::try_from(pfn).map_err(|_| Errno::EINVAL)?;
        self.platform.outl(self.base + reg::QUEUE_PFN, pfn);
        Ok(())
    }

    fn notify(&self, index: u16) {
        self.platform.outw(self.base + reg::QUEUE_NOTIFY, index);
    }

    fn config_read8(&self, offset: u16) -> u8 {
        self.platform.inb(self.base + reg::CONFIG + offset)
    }

    fn config_read16(&self, offset: u16) -> u16 {
        self.platform.inw(self.base + reg::CONFIG + offset)
    }

    fn config_read32(&self, offset: u16) -> u32 {
        self.platform.inl(self.base + reg::CONFIG + offset)
    }
}
