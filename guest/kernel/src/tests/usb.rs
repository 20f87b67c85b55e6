//! USB above the host-controller seam, on a fake controller whose devices
//! answer as QEMU's do (`usb::fake`): enumeration and Linux's names,
//! hubs behind hubs, surprise removal of a subtree, an unplug between
//! SET_ADDRESS and SET_CONFIGURATION, and a port reused while the old
//! device is still referenced; a usb-storage stick over Bulk-Only Transport.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use crate::base::{Core, CoreRef, DeviceData, DeviceId, DeviceState, KernelEvent};
use crate::executor::Executor;
use crate::fake_platform::FakePlatform;
use crate::pci::fake::FakePci;
use crate::usb::fake::{FakeDevice, FakeHcd, Model};
use crate::usb::{UsbContext, add_host};

struct Controller;

impl DeviceData for Controller {
    fn description(&self) -> String {
        String::from("fake USB controller")
    }
    fn show(&self, _attr: &str) -> Option<String> {
        None
    }
}

struct Usb {
    core: CoreRef,
    exec: Executor,
    ctx: Rc<UsbContext>,
    hcd: Rc<FakeHcd>,
    scsi: Rc<crate::scsi::Scsi>,
}

const ROOT: &str = "root/ctl/usb1";

impl Usb {
    fn new() -> Usb {
        let platform = FakePlatform::new(FakePci::new()).leak();
        let core = Core::new_shared();
        let exec = Executor::new();
        let (ctx, hcd, scsi) = {
            let mut c = core.borrow_mut();
            let pci = c.bus_register("pci");
            let ctx = UsbContext::register(&mut c, &core, platform, exec.spawner(), Rc::default(), pci);
            ctx.root_poll_passes.set(1);
            let scsi = crate::scsi::Scsi::register(&mut c, &core, platform, exec.spawner(), Rc::default());
            let storage = crate::usb::storage::StorageDriver::new(Rc::clone(&ctx), Rc::clone(&scsi));
            c.driver_register(ctx.bus, Rc::new(storage));
            let controller = c.device_register("ctl", None, None, Box::new(Controller)).unwrap();
            let hcd = Rc::new(FakeHcd::default());
            add_host(&ctx, &mut c, controller, "0000:00:01.2", "uhci_hcd", hcd.clone()).unwrap();
            (ctx, hcd, scsi)
        };
        let mut usb = Usb { core, exec, ctx, hcd, scsi };
        usb.settle();
        usb.events();
        usb
    }

    /// Run passes until no port work is in flight, then a few more for the
    /// hub thread to look at every port again.
    fn settle(&mut self) {
        for _ in 0..2000 {
            self.exec.run_pass();
            if self.ctx.work.count() + self.scsi.work.count() == 0 {
                for _ in 0..8 {
                    self.exec.run_pass();
                }
                if self.ctx.work.count() + self.scsi.work.count() == 0 {
                    return;
                }
            }
        }
        panic!("USB work still in flight after 2000 passes");
    }

    fn plug(&mut self, path: &[u8], model: Model) -> Rc<FakeDevice> {
        let dev = FakeDevice::new(model);
        assert!(self.hcd.plug(path, dev.clone()), "plug {path:?}");
        self.settle();
        dev
    }

    /// `<action> <devpath relative to usb1>` lines since the last call.
    fn events(&self) -> Vec<String> {
        let events = self.core.borrow_mut().take_events();
        events
            .into_iter()
            .filter_map(|e| match e {
                KernelEvent::Uevent(u) if matches!(u.action.as_str(), "add" | "remove") => {
                    let path = u.devpath.strip_prefix(ROOT).unwrap_or(&u.devpath).trim_start_matches('/');
                    Some(alloc::format!("{} {path}", u.action.as_str()))
                }
                KernelEvent::Notice(n) => Some(alloc::format!("* {n}")),
                _ => None,
            })
            .collect()
    }

    fn find(&self, path: &str) -> Option<DeviceId> {
        let core = self.core.borrow();
        core.device_ids().find(|d| {
            core.device_path(*d) == alloc::format!("{ROOT}/{path}") && core.state(*d) == DeviceState::Registered
        })
    }

    fn show(&self, path: &str, attr: &str) -> Option<String> {
        let dev = self.find(path)?;
        self.core.borrow().show_attr_ref(dev, attr)
    }

    fn driver(&self, path: &str) -> Option<&'static str> {
        let dev = self.find(path)?;
        let core = self.core.borrow();
        core.driver(dev).map(|d| core.driver_name(d))
    }

    fn live(&self) -> u64 {
        self.core.borrow().totals().live
    }
}

#[test]
fn a_keyboard_enumerates_with_linux_names_attributes_and_drivers() {
    let mut usb = Usb::new();
    let kbd = usb.plug(&[1], Model::Keyboard);
    assert_eq!(usb.events(), ["add 1-1", "add 1-1/1-1:1.0"]);
    assert_eq!(usb.show("1-1", "idVendor").as_deref(), Some("0627\n"));
    assert_eq!(usb.show("1-1", "product").as_deref(), Some("QEMU USB Keyboard\n"));
    assert_eq!(usb.show("1-1", "manufacturer").as_deref(), Some("QEMU\n"));
    assert_eq!(usb.show("1-1", "speed").as_deref(), Some("12\n"));
    assert_eq!(usb.show("1-1", "bNumInterfaces").as_deref(), Some(" 1\n"));
    assert_eq!(usb.show("1-1/1-1:1.0", "bInterfaceProtocol").as_deref(), Some("01\n"));
    assert_eq!(usb.show("1-1/1-1:1.0", "report_descriptor_length").as_deref(), Some("63\n"));
    assert_eq!(usb.show("1-1/1-1:1.0", "boot_protocol").as_deref(), Some("keyboard\n"));
    assert_eq!((usb.driver("1-1"), usb.driver("1-1/1-1:1.0")), (Some("usb"), Some("usbhid")));
    assert_eq!(kbd.configured.get(), 1, "SET_CONFIGURATION reached the device");
    assert_ne!(kbd.address.get(), 0, "the device left address 0");
}

#[test]
fn hubs_behind_hubs_enumerate_and_both_reset_changes_are_cleared() {
    let mut usb = Usb::new();
    usb.plug(&[2], Model::Hub);
    usb.plug(&[2, 3], Model::Hub);
    usb.plug(&[2, 3, 8], Model::Mouse);
    usb.plug(&[2, 1], Model::Tablet);
    assert_eq!(
        usb.events(),
        [
            "add 1-2",
            "add 1-2/1-2:1.0",
            "add 1-2/1-2.3",
            "add 1-2/1-2.3/1-2.3:1.0",
            "add 1-2/1-2.3/1-2.3.8",
            "add 1-2/1-2.3/1-2.3.8/1-2.3.8:1.0",
            "add 1-2/1-2.1",
            "add 1-2/1-2.1/1-2.1:1.0",
        ]
    );
    assert_eq!(usb.driver("1-2/1-2.3/1-2.3:1.0"), Some("hub"));
    assert_eq!(usb.show("1-2/1-2.3/1-2.3.8", "product").as_deref(), Some("QEMU USB Mouse\n"));
    // QEMU keeps reporting a port until C_RESET *and* C_ENABLE are clear.
    // Clearing only C_RESET would leave the port in the status bitmap and
    // cost another round of GET_PORT_STATUS on it.
    for (hub, port) in [(&[2][..], 3), (&[2, 3][..], 8), (&[2][..], 1)] {
        assert_eq!(usb.hcd.hub_port(hub, port).change, 0, "hub {hub:?} port {port}");
        let hub_dev = usb.hcd.find(hub).unwrap();
        let polls = hub_dev.requests.borrow().iter().filter(|r| **r == (0xa3, 0, 0, u16::from(port))).count();
        assert_eq!(polls, 3, "hub {hub:?} port {port}: the hub's first scan, the connect change, after the reset");
    }
    // Every address is distinct and in use once.
    let addresses: Vec<u8> =
        [&[2][..], &[2, 3], &[2, 3, 8], &[2, 1]].iter().map(|p| usb.hcd.find(p).unwrap().address.get()).collect();
    let mut unique = addresses.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 4, "{addresses:?}");
}

#[test]
fn unplugging_a_hub_removes_its_subtree_depth_first_and_releases_everything() {
    let mut usb = Usb::new();
    let baseline = usb.live();
    usb.plug(&[1], Model::Hub);
    usb.plug(&[1, 2], Model::Hub);
    usb.plug(&[1, 2, 1], Model::Keyboard);
    usb.plug(&[1, 2, 4], Model::Tablet);
    usb.plug(&[1, 5], Model::Mouse);
    usb.events();
    // QEMU deletes the children itself; the guest sees only 1-1's port 2.
    usb.hcd.unplug(&[1, 2]);
    usb.settle();
    assert_eq!(
        usb.events(),
        [
            "remove 1-1/1-1.2/1-1.2.4/1-1.2.4:1.0",
            "remove 1-1/1-1.2/1-1.2.4",
            "remove 1-1/1-1.2/1-1.2.1/1-1.2.1:1.0",
            "remove 1-1/1-1.2/1-1.2.1",
            "remove 1-1/1-1.2/1-1.2:1.0",
            "remove 1-1/1-1.2",
        ]
    );
    assert!(usb.find("1-1/1-1.5").is_some(), "the sibling stays");
    let host = usb.ctx.host(1).unwrap();
    assert_eq!(host.hubs.borrow().len(), 2, "the root hub and 1-1 are still watched");
    assert_eq!(host.addresses_in_use(), 2);
    usb.hcd.unplug(&[1]);
    usb.settle();
    assert_eq!(usb.events(), ["remove 1-1/1-1.5/1-1.5:1.0", "remove 1-1/1-1.5", "remove 1-1/1-1:1.0", "remove 1-1"]);
    assert_eq!(usb.live(), baseline, "every object was released");
    assert_eq!(host.addresses_in_use(), 0);
    assert!(host.hubs.borrow().iter().all(|h| h.path.is_empty()));
}

#[test]
fn an_unplug_between_set_address_and_set_configuration_leaves_nothing_behind() {
    let mut usb = Usb::new();
    let baseline = usb.live();
    let dev = FakeDevice::new(Model::Keyboard);
    dev.vanish_after_set_address.set(true);
    assert!(usb.hcd.plug(&[1], dev.clone()));
    usb.settle();
    assert!(usb.events().is_empty(), "no half-registered device");
    assert!(dev.requests.borrow().iter().any(|r| r.1 == 5), "SET_ADDRESS was sent");
    assert!(!dev.requests.borrow().iter().any(|r| r.1 == 9), "SET_CONFIGURATION never was");
    assert_eq!(usb.ctx.host(1).unwrap().addresses_in_use(), 0, "the address was given back");
    assert_eq!(usb.live(), baseline);
    // The port works again for the next device.
    usb.plug(&[1], Model::Mouse);
    assert_eq!(usb.events(), ["add 1-1", "add 1-1/1-1:1.0"]);
    assert_eq!(usb.show("1-1", "product").as_deref(), Some("QEMU USB Mouse\n"));
}

#[test]
fn a_port_reused_while_the_old_device_is_referenced_waits_for_its_release() {
    let mut usb = Usb::new();
    usb.plug(&[1], Model::Keyboard);
    let old = usb.find("1-1").unwrap();
    usb.core.borrow_mut().get(old); // a driver's reference, kept past removal
    let handle = usb.core.borrow_mut().fs.open(&alloc::format!("{ROOT}/1-1/product")).unwrap();
    usb.events();
    usb.hcd.unplug(&[1]);
    usb.settle();
    usb.plug(&[1], Model::Mouse);
    assert_eq!(usb.events(), ["remove 1-1/1-1:1.0", "remove 1-1", "* usb busy 1-1"]);
    assert_eq!(usb.core.borrow().state(old), DeviceState::Deleted);
    assert!(usb.find("1-1").is_none(), "the new device waits");
    usb.core.borrow_mut().put(old);
    usb.settle();
    assert_eq!(usb.events(), ["add 1-1", "add 1-1/1-1:1.0"]);
    let new = usb.find("1-1").unwrap();
    assert!(usb.core.borrow().generation(new) > 0 && new != old);
    assert_eq!(usb.show("1-1", "product").as_deref(), Some("QEMU USB Mouse\n"));
    let stale = usb.spawn_read(handle);
    assert_eq!(stale, Err(crate::errno::Errno::ENODEV), "the stale handle never reads the new device");
}

#[test]
fn a_disconnected_device_fails_new_transfers_with_enodev() {
    let mut usb = Usb::new();
    usb.plug(&[2], Model::Keyboard);
    let host = usb.ctx.host(1).unwrap();
    let dev = host.device_at(&[2]).unwrap();
    usb.hcd.unplug(&[2]);
    usb.settle();
    assert!(!dev.alive());
    let ctx = usb.ctx.clone();
    let result = Rc::new(core::cell::RefCell::new(None));
    let slot = result.clone();
    usb.exec.spawner().spawn(async move {
        let r = crate::usb::control(&ctx, &host, &dev, crate::usb::request::device_descriptor(18), Vec::new()).await;
        *slot.borrow_mut() = Some(r);
    });
    usb.settle();
    assert_eq!(*result.borrow(), Some(Err(crate::usb::hcd::UsbError::NoDevice)));
}

impl Usb {
    fn spawn_read(&mut self, handle: u32) -> Result<Vec<u8>, crate::errno::Errno> {
        let core = self.core.clone();
        let result = Rc::new(core::cell::RefCell::new(None));
        let slot = result.clone();
        self.exec.spawner().spawn(async move {
            *slot.borrow_mut() = Some(crate::driverfs::file::read(&core, handle).await);
        });
        self.settle();
        result.borrow_mut().take().expect("the read finished")
    }
}

/// A stick on a fake that answers as QEMU's usb-storage: the disk shows
/// under the interface's `host<H>` with capacity, signature and partition;
/// every CBW was accepted (exactly 31 bytes, right direction: a stall would
/// stick); the unit attention on the first command was followed at once by
/// REQUEST SENSE; unplugging removes LUN, target, host, interface, device.
#[test]
fn a_usb_stick_shows_its_disk_over_bulk_only_transport_and_goes_depth_first() {
    let mut usb = Usb::new();
    let live = usb.live();
    let stick = usb.plug(&[1], Model::Storage);
    let lun = "1-1/1-1:1.0/host0/target0:0:0/0:0:0:0";
    assert_eq!(usb.driver("1-1/1-1:1.0"), Some("usb-storage"));
    assert_eq!(usb.show(lun, "capacity").as_deref(), Some("8192\n"));
    assert_eq!(usb.show(lun, "signature").as_deref(), Some("0x20021007\n"));
    assert_eq!(usb.show(&alloc::format!("{lun}/part1"), "start").as_deref(), Some("2048\n"));
    let bot = stick.bot.borrow();
    assert!(!bot.stalled, "a CBW was refused: {:02x?}", bot.opcodes);
    assert_eq!(bot.opcodes.get(1), Some(&0x03), "REQUEST SENSE right after the unit attention: {:02x?}", bot.opcodes);
    drop(bot);
    usb.events();
    usb.hcd.unplug(&[1]);
    usb.settle();
    let removes: Vec<String> =
        usb.events().into_iter().filter(|e| e.starts_with("remove") && !e.contains("/part")).collect();
    assert_eq!(
        removes,
        [
            alloc::format!("remove {lun}"),
            String::from("remove 1-1/1-1:1.0/host0/target0:0:0"),
            String::from("remove 1-1/1-1:1.0/host0"),
            String::from("remove 1-1/1-1:1.0"),
            String::from("remove 1-1"),
        ]
    );
    assert_eq!(usb.live(), live, "nothing leaked");
}
