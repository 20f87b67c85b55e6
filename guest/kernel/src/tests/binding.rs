//! Binding and unbinding: the driver links, probe/remove, `bound` as the
//! device shows it, and children a driver created being unregistered (newest
//! first) before its `remove()` runs, as devres does for Linux drivers.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::{Fixture, Log};
use crate::base::{Attribute, Core, DeviceData, DeviceId, DeviceState, Driver, dd};
use crate::errno::Errno;

fn bound_attr(fx: &mut Fixture, name: &str) -> Vec<u8> {
    let handle = fx.open(&format!("root/testbus/{name}/bound")).unwrap();
    let value = fx.read(handle).unwrap();
    fx.core.borrow_mut().fs.close(handle).unwrap();
    value
}

#[test]
fn testdrv_binds_unbinds_and_rebinds_with_links_and_events() {
    let mut fx = Fixture::new();
    let dev = fx.add("t1", None);
    let drv = fx.core.borrow().find_driver(fx.tb.bus, "testdrv").unwrap();
    assert_eq!(fx.core.borrow().driver(dev), Some(drv));
    assert_eq!(bound_attr(&mut fx, "t1"), b"1\n");
    {
        let core = fx.core.borrow();
        let driver_dir = core.fs.lookup("bus/testbus/drivers/testdrv").unwrap();
        assert_eq!(core.fs.lookup("root/testbus/t1/driver"), Ok(driver_dir));
        assert_eq!(core.fs.lookup("bus/testbus/drivers/testdrv/t1"), core.fs.lookup("root/testbus/t1"));
        assert_eq!(core.driver_devices(drv), [dev]);
    }
    fx.events();

    let core = fx.core.clone();
    let unbind = fx.spawn(async move { dd::device_release_driver(&core, dev).await });
    fx.run_until_idle();
    assert_eq!(unbind.take(), Some(Ok(())));
    assert_eq!(fx.uevents(), ["unbind root/testbus/t1"]);
    assert_eq!(fx.core.borrow().driver(dev), None);
    assert_eq!(bound_attr(&mut fx, "t1"), b"0\n", "remove() ran");
    assert_eq!(fx.core.borrow().fs.lookup("root/testbus/t1/driver"), Err(Errno::ENOENT));
    assert_eq!(fx.core.borrow().fs.lookup("bus/testbus/drivers/testdrv/t1"), Err(Errno::ENOENT));
    assert!(fx.core.borrow().driver_devices(drv).is_empty());

    let core = fx.core.clone();
    let again = fx.spawn(async move { dd::device_release_driver(&core, dev).await });
    fx.run_until_idle();
    assert_eq!(again.take(), Some(Err(Errno::ENODEV)), "nothing to unbind");

    assert_eq!(dd::bind(&mut fx.core.borrow_mut(), fx.tb.bus, dev, drv), Ok(()));
    assert_eq!(fx.uevents(), ["bind root/testbus/t1"]);
    assert_eq!(bound_attr(&mut fx, "t1"), b"1\n");
    assert_eq!(dd::bind(&mut fx.core.borrow_mut(), fx.tb.bus, dev, drv), Err(Errno::EBUSY));
}

/// A driver of another bus is refused, and a driver that does not match
/// leaves the device alone.
#[test]
fn bind_checks_the_bus_and_the_match() {
    let mut fx = Fixture::new();
    let dev = fx.add("t1", None);
    let core = fx.core.clone();
    let unbind = fx.spawn(async move { dd::device_release_driver(&core, dev).await });
    fx.run_until_idle();
    assert_eq!(unbind.take(), Some(Ok(())));

    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let other_bus = fx.core.borrow_mut().bus_register("otherbus");
    let foreign = fx.core.borrow_mut().driver_register(other_bus, Rc::new(HubDriver { log: log.clone() }));
    assert_eq!(dd::bind(&mut fx.core.borrow_mut(), fx.tb.bus, dev, foreign), Err(Errno::EINVAL));
    let picky = fx.core.borrow_mut().driver_register(fx.tb.bus, Rc::new(HubDriver { log: log.clone() }));
    assert_eq!(dd::bind(&mut fx.core.borrow_mut(), fx.tb.bus, dev, picky), Err(Errno::ENODEV));
    assert_eq!(fx.core.borrow().driver(dev), None);
    assert!(log.borrow().is_empty(), "probe never ran: {:?}", log.borrow());
}

/// What a hub exposes: how many ports its driver creates.
struct HubData {
    ports: u8,
}

impl DeviceData for HubData {
    fn description(&self) -> String {
        format!("Test hub with {} ports", self.ports)
    }
    fn show(&self, _attr: &str) -> Option<String> {
        None
    }
}

/// A port a hub driver created; its `state` attribute can be held.
struct PortData;

impl DeviceData for PortData {
    fn description(&self) -> String {
        String::from("Test hub port")
    }
    fn attributes(&self) -> Vec<Attribute> {
        alloc::vec![Attribute::ro("state")]
    }
    fn show(&self, attr: &str) -> Option<String> {
        (attr == "state").then(|| String::from("connected\n"))
    }
}

/// Creates one managed child per port on probe, like a USB hub driver.
struct HubDriver {
    log: Log,
}

impl Driver for HubDriver {
    fn name(&self) -> &'static str {
        "hubdrv"
    }
    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        core.data::<HubData>(dev).is_some()
    }
    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        let ports = core.data::<HubData>(dev).ok_or(Errno::ENODEV)?.ports;
        let bus = core.find_bus("testbus");
        for port in 0..ports {
            let child = core.device_initialize(&format!("port{port}"), Some(dev), bus, Box::new(PortData));
            core.set_managed(child);
            if let Err(e) = core.device_add(child) {
                core.put(child);
                return Err(e);
            }
        }
        self.log.borrow_mut().push(format!("probe {}", core.name(dev)));
        Ok(())
    }
    fn remove(&self, core: &mut Core, dev: DeviceId) {
        let ports_left = core.children(dev).len();
        self.log.borrow_mut().push(format!("remove {} with {ports_left} ports left", core.name(dev)));
    }
}

fn hub_fixture(log: &Log) -> (Fixture, DeviceId) {
    let fx = Fixture::new();
    fx.core.borrow_mut().driver_register(fx.tb.bus, Rc::new(HubDriver { log: log.clone() }));
    let hub = fx
        .core
        .borrow_mut()
        .device_register("hub", Some(fx.tb.root), Some(fx.tb.bus), Box::new(HubData { ports: 2 }))
        .unwrap();
    (fx, hub)
}

#[test]
fn unbinding_unregisters_the_children_the_driver_created_first() {
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let (mut fx, hub) = hub_fixture(&log);
    let ports = fx.core.borrow().children(hub);
    assert_eq!(ports.len(), 2);
    assert_eq!(
        fx.uevents(),
        ["add root/testbus/hub", "add root/testbus/hub/port0", "add root/testbus/hub/port1", "bind root/testbus/hub"]
    );

    let core = fx.core.clone();
    let unbind = fx.spawn(async move { dd::device_release_driver(&core, hub).await });
    fx.run_until_idle();
    assert_eq!(unbind.take(), Some(Ok(())));
    assert_eq!(
        fx.uevents(),
        ["remove root/testbus/hub/port1", "remove root/testbus/hub/port0", "unbind root/testbus/hub"]
    );
    assert_eq!(*log.borrow(), ["probe hub", "remove hub with 0 ports left"]);
    let states: Vec<DeviceState> = ports.iter().map(|p| fx.core.borrow().state(*p)).collect();
    assert_eq!(states, [DeviceState::Released; 2]);
    assert_eq!(fx.core.borrow().state(hub), DeviceState::Registered);

    // Rebinding creates new objects in the same slots.
    let drv = fx.core.borrow().find_driver(fx.tb.bus, "hubdrv").unwrap();
    dd::bind(&mut fx.core.borrow_mut(), fx.tb.bus, hub, drv).unwrap();
    let new_ports = fx.core.borrow().children(hub);
    assert_eq!(new_ports.len(), 2);
    assert!(new_ports.iter().all(|p| !ports.contains(p)));
    let generations = |ids: &[DeviceId]| ids.iter().map(|p| fx.core.borrow().generation(*p)).max().unwrap();
    assert!(generations(&new_ports) > generations(&ports));

    fx.unregister(hub);
    let totals = fx.core.borrow().totals();
    assert_eq!((totals.leaked, totals.bugs), (0, 0));
    assert_eq!(fx.core.borrow().state(hub), DeviceState::Released);
}

/// A managed child with a read in flight: the unbind waits for it, and the
/// driver's remove() never runs while one of its children is still there.
#[test]
fn unbinding_waits_for_reads_in_flight_on_managed_children() {
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let (mut fx, hub) = hub_fixture(&log);
    let path = "root/testbus/hub/port0/state";
    let handle = fx.open(path).unwrap();
    fx.core.borrow_mut().fs.hold(path).unwrap();
    let read = fx.spawn_read(handle);
    fx.run(1);
    let core = fx.core.clone();
    let unbind = fx.spawn(async move { dd::device_release_driver(&core, hub).await });
    fx.run(5);
    assert_eq!(unbind.borrow().as_ref(), None, "waits for port0 to drain");
    assert!(fx.core.borrow().driver(hub).is_some());
    assert_eq!(*log.borrow(), ["probe hub"]);

    fx.core.borrow_mut().fs.unhold(path).unwrap();
    fx.run_until_idle();
    assert_eq!(read.take(), Some(Ok(b"connected\n".to_vec())));
    assert_eq!(unbind.take(), Some(Ok(())));
    assert_eq!(*log.borrow(), ["probe hub", "remove hub with 0 ports left"]);
    assert_eq!(fx.core.borrow().totals().leaked, 0);
}
