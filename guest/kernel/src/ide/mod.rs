//! IDE: the PIIX IDE function's two legacy channels, ATA disks and ATAPI
//! CD-ROMs, polled PIO.
//!
//! - [`ata`]: the taskfile protocol (IDENTIFY, READ SECTORS, PACKET);
//! - [`atapi`]: ATAPI command blocks and replies;
//! - [`identify`], [`mbr`]: parsing what the drives return;
//! - [`device`]: what channels, drives, partitions and media show;
//! - [`cdrom`]: following media changes;
//! - this file: the PCI driver (`piix-ide`) and its static drive slots, and
//!   IDE as a [`Subsystem`] (the `ide` bus, the driver on `pci`, the `ide`
//!   verb).
//!
//! QEMU cannot hot-plug IDE; what changes at run time is the CD's medium,
//! and the drive objects themselves on unbind/bind of the driver. Positions
//! are static, like 2002's `ide_hwifs[]`: a position is reused only after
//! the object that last lived there has been released.

pub mod ata;
pub mod atapi;
pub mod cdrom;
pub mod device;
pub mod identify;
pub mod mbr;

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::cell::RefCell;

use ata::{AtaError, Channel, Probe};
use device::{IdeChannel, IdeDrive, IdePartition, Media};

use crate::base::device::LocalFuture;
use crate::base::{BusId, Core, DeviceId, DeviceState, Driver};
use crate::control::request::{Reply, Request, fail, with_context};
use crate::errno::Errno;
use crate::executor::Spawner;
use crate::hw::Platform;
use crate::klog;
use crate::pci::device::PciFunction;
use crate::subsystem::{PendingWork, ServicesRef, Subsystem};

pub const BUS_NAME: &str = "ide";
pub const DRIVER_NAME: &str = "piix-ide";

const CHANNELS: [Channel; 2] = [ata::PRIMARY, ata::SECONDARY];

/// The objects that last lived in each static position.
#[derive(Default)]
struct Slots {
    channels: [Option<DeviceId>; 2],
    drives: [[Option<DeviceId>; 2]; 2],
}

impl Slots {
    fn all(&self) -> impl Iterator<Item = DeviceId> + '_ {
        self.channels.iter().chain(self.drives.iter().flatten()).flatten().copied()
    }
}

/// What the driver and its pollers share.
pub struct IdeContext {
    pub platform: &'static dyn Platform,
    pub core: Weak<RefCell<Core>>,
    pub spawner: Spawner,
    /// Media changes in progress (`settle` waits for them).
    pub work: PendingWork,
    pub bus: BusId,
    slots: RefCell<Slots>,
}

/// The driver for PIIX3/PIIX4 IDE functions in compatibility mode.
pub struct PiixIde {
    ctx: Rc<IdeContext>,
}

impl PiixIde {
    /// Register the `ide` bus and the driver (which probes 00:01.1 at once
    /// if it is there).
    pub fn register(
        core: &mut Core,
        shared: &crate::base::CoreRef,
        platform: &'static dyn Platform,
        spawner: Spawner,
        pci_bus: BusId,
    ) -> Rc<IdeContext> {
        let bus = core.bus_register(BUS_NAME);
        let ctx = Rc::new(IdeContext {
            platform,
            core: Rc::downgrade(shared),
            spawner,
            work: PendingWork::default(),
            bus,
            slots: RefCell::new(Slots::default()),
        });
        core.driver_register(pci_bus, Rc::new(PiixIde { ctx: Rc::clone(&ctx) }));
        ctx
    }

    fn probe_drive(&self, core: &mut Core, channel_dev: DeviceId, index: u8, unit: u8) -> Option<DeviceId> {
        let p = self.ctx.platform;
        let channel = CHANNELS[usize::from(index)];
        let probe = match channel.identify(p, unit) {
            Ok(probe) => probe,
            Err(AtaError::NoDevice) => return None,
            Err(e) => {
                klog!(p, "ide: {index}.{unit}: {e}");
                return None;
            }
        };
        let name = format!("{index}.{unit}");
        let drive = match probe {
            Probe::Ata(id) => {
                let mut sector = [0u8; 512];
                let mbr = channel.read_sectors(p, unit, 0, &mut sector).ok().and_then(|()| mbr::parse(&sector));
                let data = IdeDrive {
                    channel: index,
                    unit,
                    media: Media::Disk,
                    model: id.model,
                    sectors: id.sectors,
                    signature: mbr.as_ref().map(|m| m.signature),
                    media_present: true,
                    tray_open: false,
                    locked: false,
                };
                let drive = core.device_register(&name, Some(channel_dev), Some(self.ctx.bus), Box::new(data)).ok()?;
                for part in mbr.map(|m| m.partitions).unwrap_or_default() {
                    let _ = core.device_register(
                        &format!("part{}", part.number),
                        Some(drive),
                        None,
                        Box::new(IdePartition(part)),
                    );
                }
                drive
            }
            Probe::Atapi(id) => {
                let data = IdeDrive {
                    channel: index,
                    unit,
                    media: Media::Cdrom,
                    model: id.model,
                    sectors: 0,
                    signature: None,
                    media_present: false,
                    tray_open: false,
                    locked: false,
                };
                let drive = core.device_register(&name, Some(channel_dev), Some(self.ctx.bus), Box::new(data)).ok()?;
                // What is in the drive at boot is part of the boot tree.
                cdrom::install(core, drive, &cdrom::read_medium(p, channel, unit));
                self.ctx.spawner.spawn(cdrom::poll(Rc::clone(&self.ctx), drive, channel, unit));
                drive
            }
        };
        Some(drive)
    }
}

impl PiixIde {
    /// Unregister devices from a task: removal drains reads, which a
    /// synchronous probe cannot wait for.
    fn unregister_later(&self, devices: Vec<DeviceId>) {
        let core = self.ctx.core.clone();
        self.ctx.spawner.spawn(async move {
            let Some(core) = core.upgrade() else { return };
            for dev in devices.into_iter().rev() {
                let _ = crate::base::device_unregister(&core, dev).await;
            }
        });
    }
}

impl Driver for PiixIde {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        core.data::<PciFunction>(dev).is_some_and(|f| f.vendor == 0x8086 && matches!(f.device, 0x7010 | 0x7111))
    }

    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        let unreleased = self.ctx.slots.borrow().all().find(|old| core.state(*old) != DeviceState::Released);
        if let Some(old) = unreleased {
            // The 2003 fix: a static position is reused only once the
            // object that lived there is released. Bind can retry later.
            klog!(self.ctx.platform, "ide: {} is not released yet; position busy", core.device_path(old));
            return Err(Errno::EBUSY);
        }
        let mut slots = Slots::default();
        for index in 0..2u8 {
            let channel =
                core.device_initialize(&format!("ide{index}"), Some(dev), None, Box::new(IdeChannel { index }));
            core.set_managed(channel);
            if let Err(e) = core.device_add(channel) {
                core.put(channel);
                // A failed probe leaves nothing behind: the driver is not
                // bound, so unbind would never remove what was added.
                self.unregister_later(slots.channels.iter().flatten().copied().collect());
                return Err(e);
            }
            slots.channels[usize::from(index)] = Some(channel);
            CHANNELS[usize::from(index)].init(self.ctx.platform);
            for unit in 0..2u8 {
                slots.drives[usize::from(index)][usize::from(unit)] = self.probe_drive(core, channel, index, unit);
            }
        }
        *self.ctx.slots.borrow_mut() = slots;
        Ok(())
    }
}

/// `ide lock <drive> on|off`: PREVENT/ALLOW MEDIUM REMOVAL on a CD drive.
pub fn set_lock(ctx: &IdeContext, core: &mut Core, drive_name: &str, lock: bool) -> Result<(), Errno> {
    let drive = core.bus_find_device(ctx.bus, drive_name).ok_or(Errno::ENOENT)?;
    let (index, unit) = match core.data::<IdeDrive>(drive) {
        Some(d) if d.media == Media::Cdrom => (d.channel, d.unit),
        Some(_) => return Err(Errno::EINVAL),
        None => return Err(Errno::ENODEV),
    };
    let channel = CHANNELS[usize::from(index)];
    cdrom::packet_past_attention(ctx.platform, channel, unit, &atapi::prevent_allow(lock), 0)
        .map_err(|_| Errno::EIO)?;
    let locked = cdrom::lock_state(ctx.platform, channel, unit);
    if let Some(d) = core.data_mut::<IdeDrive>(drive) {
        d.locked = locked;
    }
    if locked != lock { Err(Errno::EIO) } else { Ok(()) }
}

/// `ide tray <drive> <count>`: open and close a CD drive's tray `count`
/// times from the guest (START STOP UNIT, LoEj). QEMU emits a
/// DEVICE_TRAY_MOVED event for each move, so this is how a guest floods
/// the harness's QMP events (its bound is tested with it).
async fn move_tray(ctx: &IdeContext, core: &crate::base::CoreRef, drive_name: &str, count: u64) -> Result<(), Errno> {
    let (index, unit) = {
        let core = core.borrow();
        let drive = core.bus_find_device(ctx.bus, drive_name).ok_or(Errno::ENOENT)?;
        match core.data::<IdeDrive>(drive) {
            Some(d) if d.media == Media::Cdrom => (d.channel, d.unit),
            Some(_) => return Err(Errno::EINVAL),
            None => return Err(Errno::ENODEV),
        }
    };
    let channel = CHANNELS[usize::from(index)];
    for _ in 0..count {
        for open in [true, false] {
            cdrom::packet_past_attention(ctx.platform, channel, unit, &atapi::start_stop_tray(open), 0)
                .map_err(|_| Errno::EIO)?;
        }
        // The media poller and the rest of the guest run between moves.
        crate::executor::yield_now().await;
    }
    Ok(())
}

/// IDE as a subsystem: what the driver and its media pollers share.
pub struct IdeSubsystem {
    ctx: Rc<IdeContext>,
}

/// Boot: register the `ide` bus and `piix-ide` on the `pci` bus, which
/// probes the PIIX function at once (so `pci` is listed before `ide`).
pub fn register(sys: &ServicesRef) -> Rc<dyn Subsystem> {
    let pci_bus = sys.bus(crate::pci::BUS_NAME);
    let ctx = PiixIde::register(&mut sys.core.borrow_mut(), &sys.core, sys.platform, sys.spawner.clone(), pci_bus);
    Rc::new(IdeSubsystem { ctx })
}

impl Subsystem for IdeSubsystem {
    fn name(&self) -> &'static str {
        BUS_NAME
    }

    fn verbs(&self) -> &'static [&'static str] {
        &["ide"]
    }

    /// `ide lock <drive> on|off`, `ide tray <drive> <count>`.
    fn serve(self: Rc<Self>, sys: ServicesRef, req: Request) -> LocalFuture<'static, Reply> {
        Box::pin(async move {
            let args = req.args();
            match (args.first().copied(), args.get(2).copied()) {
                (Some("lock"), Some(state @ ("on" | "off"))) if args.len() == 3 => {
                    set_lock(&self.ctx, &mut sys.core.borrow_mut(), args[1], state == "on")
                        .map_err(|e| with_context(e, args[1]))?;
                    Ok(Vec::new())
                }
                (Some("tray"), Some(count)) if args.len() == 3 => {
                    let Ok(count) = count.parse::<u64>() else {
                        return fail(Errno::EINVAL, "usage: ide tray <drive> <count>");
                    };
                    move_tray(&self.ctx, &sys.core, args[1], count).await.map_err(|e| with_context(e, args[1]))?;
                    Ok(Vec::new())
                }
                _ => fail(Errno::EINVAL, "usage: ide lock <drive> on|off | tray <drive> <count>"),
            }
        })
    }

    fn pending_work(&self) -> u32 {
        self.ctx.work.count()
    }
}
