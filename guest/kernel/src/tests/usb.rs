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
    assert_eq!(bot.stalls, 0, "a packet was refused: {:02x?}", bot.opcodes);
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

impl Usb {
    /// A `scsi` verb, run to completion.
    fn scsi_verb(&mut self, args: &[&str]) -> Result<String, (crate::errno::Errno, String)> {
        let scsi = Rc::clone(&self.scsi);
        let args: Vec<String> = args.iter().map(|a| String::from(*a)).collect();
        let result = Rc::new(core::cell::RefCell::new(None));
        let slot = result.clone();
        self.exec.spawner().spawn(async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            *slot.borrow_mut() = Some(crate::scsi::verbs::serve(&scsi, &args).await);
        });
        self.settle();
        result.borrow_mut().take().expect("the verb finished")
    }

    /// The registered objects below (and including) `top`, with their
    /// generations: what must survive a port reset unchanged.
    fn objects_below(&self, top: &str) -> Vec<(String, DeviceId, u64)> {
        let core = self.core.borrow();
        let top = alloc::format!("{ROOT}/{top}");
        core.device_ids()
            .filter(|d| core.state(*d) == DeviceState::Registered)
            .map(|d| (core.device_path(d), d, core.generation(d)))
            .filter(|(p, _, _)| *p == top || p.starts_with(&alloc::format!("{top}/")))
            .collect()
    }
}

/// INQUIRY with a CBW that says "out": QEMU's stick takes the CBW, then
/// stalls every bulk packet (`needs_reset`) until its port is reset.
const MISMATCHED_INQUIRY: [&str; 5] = ["cmd", "0:0:0:0", "120000002400", "out", "36"];
const READ_CAPACITY: [&str; 5] = ["cmd", "0:0:0:0", "25000000000000000000", "in", "8"];

fn stall_and_recover(path: &[u8]) {
    let mut usb = Usb::new();
    let stick = usb.plug(path, Model::Storage);
    let name = crate::usb::device::device_name(1, path);
    let top = name.clone();
    let dev_path = if path.len() == 1 { top.clone() } else { alloc::format!("1-{}/{name}", path[0]) };
    let before = usb.objects_below(&dev_path);
    assert!(before.iter().any(|(p, _, _)| p.ends_with("/0:0:0:0")), "{before:?}");
    let address = stick.address.get();
    let resets = stick.bot.borrow().resets;
    let hcd = Rc::clone(&usb.hcd);
    let toggles_restarted = || hcd.pipes_reset.borrow().iter().filter(|a| **a == address).count();
    let restarts = toggles_restarted();
    usb.events();

    let err = usb.scsi_verb(&MISMATCHED_INQUIRY).unwrap_err();
    assert_eq!(err.0, crate::errno::Errno::EIO, "{err:?}");
    assert!(err.1.contains("reset"), "{err:?}");
    {
        let bot = stick.bot.borrow();
        assert!(bot.stalls > 0, "the device stalled");
        assert!(!bot.needs_reset, "the port reset cleared needs_reset");
        assert_eq!(bot.resets, resets + 1, "one port reset");
    }
    assert_eq!(usb.events(), [alloc::format!("* usb reset {name}")], "no uevent: the objects stay");
    assert_eq!(usb.objects_below(&dev_path), before, "the same objects, same generations");
    assert_eq!(stick.address.get(), address, "re-addressed at its old address");
    assert_eq!(stick.configured.get(), 1, "SET_CONFIGURATION re-applied");
    assert_eq!(toggles_restarted(), restarts + 1, "the pipes start at DATA0 again");
    let sectors = crate::usb::fake::STORAGE_SECTORS - 1;
    let expected = alloc::format!("status 0x00\nresidue 0\nsense \ndata {sectors:08x}00000200\n");
    assert_eq!(usb.scsi_verb(&READ_CAPACITY).as_deref(), Ok(expected.as_str()), "commands work again");
}

#[test]
fn a_stalled_stick_on_a_root_port_is_reset_and_keeps_its_objects() {
    stall_and_recover(&[1]);
}

#[test]
fn a_stalled_stick_behind_a_hub_is_reset_through_the_hub_port() {
    let mut usb = Usb::new();
    drop(usb.plug(&[2], Model::Hub));
    let stick = usb.plug(&[2, 3], Model::Storage);
    let before = usb.objects_below("1-2/1-2.3");
    let hub = usb.hcd.find(&[2]).unwrap();
    let port_resets = || hub.requests.borrow().iter().filter(|r| **r == (0x23, 3, 4, 3)).count();
    let resets = port_resets();
    usb.events();
    assert!(usb.scsi_verb(&MISMATCHED_INQUIRY).is_err());
    assert_eq!(port_resets(), resets + 1, "SET_PORT_FEATURE(RESET) on the hub's port 3");
    assert_eq!(usb.events(), ["* usb reset 1-2.3"]);
    assert_eq!(usb.objects_below("1-2/1-2.3"), before);
    assert_eq!(usb.hcd.hub_port(&[2], 3).change, 0, "C_RESET and C_ENABLE cleared");
    assert!(!stick.bot.borrow().needs_reset);
    assert!(usb.scsi_verb(&READ_CAPACITY).unwrap().starts_with("status 0x00\n"));
}

#[test]
fn the_midlayer_retries_its_command_once_after_the_reset() {
    let mut usb = Usb::new();
    let stick = usb.plug(&[1], Model::Storage);
    usb.events();
    // The stick went to needs_reset on its own: the rescan's INQUIRY
    // stalls, the port is reset, the INQUIRY is sent again and succeeds.
    stick.bot.borrow_mut().needs_reset = true;
    let sent = stick.bot.borrow().opcodes.len();
    assert_eq!(usb.scsi_verb(&["rescan", "0:0:0:0"]), Ok(String::new()));
    assert_eq!(usb.events(), ["* usb reset 1-1"]);
    let bot = stick.bot.borrow();
    assert_eq!(bot.stalls, 1, "the first INQUIRY's CBW stalled");
    assert_eq!(bot.opcodes[sent..], [0x12, 0x00], "INQUIRY again after the reset, then TEST UNIT READY");
}

#[test]
fn a_stick_unplugged_during_its_reset_goes_depth_first_and_nothing_leaks() {
    let mut usb = Usb::new();
    let baseline = usb.live();
    let stick = usb.plug(&[1], Model::Storage);
    usb.events();
    stick.vanish_after_set_address.set(true);
    let err = usb.scsi_verb(&MISMATCHED_INQUIRY).unwrap_err();
    assert_eq!(err.0, crate::errno::Errno::ENODEV, "{err:?}");
    usb.settle();
    let events = usb.events();
    assert!(!events.iter().any(|e| e.starts_with("add") || e.starts_with("* usb reset")), "{events:?}");
    let removes: Vec<&str> =
        events.iter().map(String::as_str).filter(|e| e.starts_with("remove") && !e.contains("/part")).collect();
    assert_eq!(
        removes,
        [
            "remove 1-1/1-1:1.0/host0/target0:0:0/0:0:0:0",
            "remove 1-1/1-1:1.0/host0/target0:0:0",
            "remove 1-1/1-1:1.0/host0",
            "remove 1-1/1-1:1.0",
            "remove 1-1",
        ]
    );
    assert_eq!(usb.live(), baseline, "nothing leaked");
    assert_eq!(usb.ctx.host(1).unwrap().addresses_in_use(), 0);
}

#[test]
fn another_device_found_by_the_reset_replaces_the_stick() {
    let mut usb = Usb::new();
    let baseline = usb.live();
    usb.plug(&[1], Model::Storage);
    usb.events();
    usb.hcd.replace_silently(&[1], FakeDevice::new(Model::Keyboard));
    let err = usb.scsi_verb(&MISMATCHED_INQUIRY).unwrap_err();
    assert_eq!(err.0, crate::errno::Errno::ENODEV, "{err:?}");
    usb.settle();
    let events: Vec<String> = usb.events().into_iter().filter(|e| !e.contains("/part")).collect();
    assert_eq!(
        events,
        [
            "remove 1-1/1-1:1.0/host0/target0:0:0/0:0:0:0",
            "remove 1-1/1-1:1.0/host0/target0:0:0",
            "remove 1-1/1-1:1.0/host0",
            "remove 1-1/1-1:1.0",
            "remove 1-1",
            "add 1-1",
            "add 1-1/1-1:1.0",
        ]
    );
    assert_eq!(usb.show("1-1", "product").as_deref(), Some("QEMU USB Keyboard\n"));
    usb.hcd.unplug(&[1]);
    usb.settle();
    assert_eq!(usb.live(), baseline);
}

/// Unbinding `hub` from a hub's interface disconnects everything behind
/// it (Linux's `hub_disconnect`), depth first; the hub itself stays.
/// Binding it again finds the devices still plugged and enumerates them.
#[test]
fn unbinding_the_hub_driver_disconnects_the_devices_behind_it() {
    let mut usb = Usb::new();
    usb.plug(&[1], Model::Hub);
    usb.plug(&[1, 2], Model::Hub);
    usb.plug(&[1, 2, 1], Model::Keyboard);
    usb.plug(&[1, 4], Model::Mouse);
    usb.events();
    let live = usb.live();
    let iface = usb.find("1-1/1-1:1.0").unwrap();
    let core = usb.core.clone();
    usb.exec.spawner().spawn(async move {
        crate::base::dd::device_release_driver(&core, iface).await.unwrap();
    });
    usb.settle();
    let removes: Vec<String> = usb.events().into_iter().filter(|e| e.starts_with("remove")).collect();
    assert_eq!(
        removes,
        [
            "remove 1-1/1-1.2/1-1.2.1/1-1.2.1:1.0",
            "remove 1-1/1-1.2/1-1.2.1",
            "remove 1-1/1-1.2/1-1.2:1.0",
            "remove 1-1/1-1.2",
            "remove 1-1/1-1.4/1-1.4:1.0",
            "remove 1-1/1-1.4",
        ],
        "children depth first; the hub and its interface stay"
    );
    assert!(usb.find("1-1").is_some() && usb.find("1-1/1-1:1.0").is_some());
    assert_eq!(usb.ctx.host(1).unwrap().addresses_in_use(), 1, "only the hub keeps its address");
    let bus = usb.ctx.bus;
    {
        let mut c = usb.core.borrow_mut();
        let hub = c.find_driver(bus, "hub").unwrap();
        crate::base::dd::bind(&mut c, bus, iface, hub).unwrap();
    }
    usb.settle();
    let adds: Vec<String> = usb.events().into_iter().filter(|e| e.starts_with("add")).collect();
    assert_eq!(adds.len(), 6, "the same devices enumerate again: {adds:?}");
    assert_eq!(usb.live(), live);
}

#[test]
fn scsi_cmd_refuses_bad_input_with_a_clear_error_and_sends_nothing() {
    use crate::errno::Errno;
    let mut usb = Usb::new();
    let stick = usb.plug(&[1], Model::Storage);
    let sent = stick.bot.borrow().opcodes.len();
    for (args, errno, text) in [
        (&["cmd", "0:0:0:0", "12000"][..], Errno::EINVAL, "bad CDB"),
        (&["cmd", "0:0:0:0", "12zz00002400"], Errno::EINVAL, "bad CDB"),
        (&["cmd", "0:0:0:0", "00112233445566778899aabbccddeeff00"], Errno::EINVAL, "bad CDB"),
        (&["cmd", "0:0:0:0", "120000002400", "in", "0"], Errno::EINVAL, "bad data length"),
        (&["cmd", "0:0:0:0", "120000002400", "in", "65537"], Errno::EINVAL, "bad data length"),
        (&["cmd", "0:0:0:0", "120000002400", "sideways", "36"], Errno::EINVAL, "usage"),
        (&["cmd", "0:0:5:0", "120000002400", "in", "36"], Errno::ENOENT, "no LUN registered"),
        (&["cmd", "7:0:0:0", "120000002400", "in", "36"], Errno::ENOENT, "no such host"),
    ] {
        let err = usb.scsi_verb(args).unwrap_err();
        assert_eq!(err.0, errno, "{args:?}: {err:?}");
        assert!(err.1.contains(text), "{args:?}: {err:?}");
    }
    assert_eq!(stick.bot.borrow().opcodes.len(), sent, "nothing reached the device");
    let inquiry = usb.scsi_verb(&["cmd", "0:0:0:0", "120000002400", "in", "36"]).unwrap();
    assert!(inquiry.starts_with("status 0x00\nresidue 0\nsense \ndata 000005121f"), "{inquiry}");
}
