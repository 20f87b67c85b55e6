//! virtio over PCI: the transports and the split virtqueue, separate from
//! the devices that use them.
//!
//! - [`Transport`]: what a virtio device driver needs from the bus (status,
//!   features, queues, notifications, device config). Two implementations:
//!   [`legacy::LegacyTransport`] (the I/O BAR of a transitional device,
//!   1af4:1000–103f, what QEMU gives on `pc`) and
//!   [`modern::ModernTransport`] (vendor capabilities pointing into memory
//!   BARs, 1af4:1040 and up, what QEMU gives behind a q35 root port).
//! - [`virtqueue::Virtqueue`]: a split ring in DMA memory. The guest polls
//!   the used ring: under TCG QEMU handles a notify asynchronously in its
//!   main loop, and the guest runs with interrupts off.
//! - [`initialize`]: the status handshake and feature negotiation both
//!   transports share.

pub mod legacy;
pub mod modern;
pub mod scsi;
pub mod virtqueue;

use alloc::boxed::Box;

use crate::base::Core;
use crate::base::DeviceId;
use crate::errno::Errno;
use crate::hw::Platform;
use crate::pci::config::{ConfigSpace, reg};
use crate::pci::device::PciFunction;
use virtqueue::Virtqueue;

pub const VENDOR: u16 = 0x1af4;

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const FAILED: u8 = 0x80;
}

/// Transport-level feature bits.
pub mod feature {
    /// The device is modern (virtio 1.0); a modern transport must ack it.
    pub const VERSION_1: u64 = 1 << 32;
    /// Legacy only: QEMU offers it so that a guest acking *everything* is
    /// caught as broken. Never ack it.
    pub const BAD_FEATURE: u64 = 1 << 30;
}

/// What a virtio device driver needs from the bus it sits on.
pub trait Transport {
    /// "legacy" or "modern", for messages and attributes.
    fn kind(&self) -> &'static str;
    fn device_features(&self) -> u64;
    fn set_driver_features(&self, features: u64);
    fn status(&self) -> u8;
    fn set_status(&self, status: u8);
    /// Writing 0 to the status resets the device: it forgets its queues and
    /// every request in them.
    fn reset(&self) {
        self.set_status(0);
    }
    /// The largest size queue `index` supports; 0 if it does not exist.
    fn queue_max_size(&self, index: u16) -> u16;
    /// Tell the device where the queue lives and enable it.
    fn setup_queue(&self, queue: &Virtqueue) -> Result<(), Errno>;
    /// Tell the device queue `index` has new buffers.
    fn notify(&self, index: u16);
    /// Device-specific configuration, little-endian fields.
    fn config_read8(&self, offset: u16) -> u8;
    fn config_read16(&self, offset: u16) -> u16;
    fn config_read32(&self, offset: u16) -> u32;
    /// Does the device still answer? (A surprise-removed function reads all
    /// ones.)
    fn present(&self) -> bool {
        self.status() != 0xff
    }
}

/// The transport for a virtio PCI function, chosen by its device id:
/// 0x1000..=0x103f are transitional (legacy I/O BAR), 0x1040 and up are
/// modern-only. Bus mastering is enabled here: the device must reach the
/// virtqueues in guest memory.
pub fn transport_for(
    platform: &'static dyn Platform,
    cfg: &dyn ConfigSpace,
    function: &PciFunction,
) -> Result<Box<dyn Transport>, Errno> {
    let command = cfg.read16(function.bdf, reg::COMMAND);
    cfg.write16(function.bdf, reg::COMMAND, command | reg::COMMAND_MASTER);
    if function.device >= 0x1040 {
        Ok(Box::new(modern::ModernTransport::new(platform, cfg, function)?))
    } else {
        Ok(Box::new(legacy::LegacyTransport::new(platform, function)?))
    }
}

/// Reset the device and bring it to the point where queues can be set up:
/// ACKNOWLEDGE, DRIVER, features negotiated (the device's offer intersected
/// with `wanted`, plus VERSION_1 on a modern transport), FEATURES_OK when
/// modern. Returns the negotiated features. The caller sets up its queues,
/// then calls [`driver_ok`].
pub fn initialize(transport: &dyn Transport, wanted: u64) -> Result<u64, Errno> {
    transport.reset();
    transport.set_status(status::ACKNOWLEDGE);
    transport.set_status(status::ACKNOWLEDGE | status::DRIVER);
    let offered = transport.device_features();
    let modern = transport.kind() == "modern";
    let mut features = offered & wanted & !feature::BAD_FEATURE;
    if modern {
        if offered & feature::VERSION_1 == 0 {
            transport.set_status(status::FAILED);
            return Err(Errno::EIO);
        }
        features |= feature::VERSION_1;
    } else {
        features &= 0xffff_ffff;
    }
    transport.set_driver_features(features);
    if modern {
        transport.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        if transport.status() & status::FEATURES_OK == 0 {
            transport.set_status(status::FAILED);
            return Err(Errno::EIO);
        }
    }
    Ok(features)
}

/// The last step of initialization: the device may now use its queues (and
/// QEMU starts delivering events).
pub fn driver_ok(transport: &dyn Transport) {
    let features_ok = if transport.kind() == "modern" { status::FEATURES_OK } else { 0 };
    transport.set_status(status::ACKNOWLEDGE | status::DRIVER | features_ok | status::DRIVER_OK);
}

/// The PCI function a virtio driver was bound to, copied out of the core.
pub fn pci_function(core: &Core, dev: DeviceId) -> Option<PciFunction> {
    core.data::<PciFunction>(dev).cloned()
}
