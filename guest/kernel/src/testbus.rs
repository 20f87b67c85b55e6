//! A software-only bus, like Linux's platform bus: devices that exist because
//! someone said so (`testdev add <name> [parent]`), bound by a default driver.
//! It lets races be driven end to end with no hot-plug hardware at all, and
//! stays in production builds so users can test their own model changes.
//!
//! Layout: a bus-less root device `root/testbus`, devices under it (or under
//! another test device), `bus/testbus/devices/<name>` links, and the driver
//! `bus/testbus/drivers/testdrv`.
//!
//! As a [`Subsystem`] it owns the `testdev` verb.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use crate::base::device::LocalFuture;
use crate::base::{Attribute, BusId, Core, CoreRef, DeviceData, DeviceId, Driver, StoreEffect, device_unregister};
use crate::control::request::{Reply, Request, fail, with_context};
use crate::errno::Errno;
use crate::subsystem::{ServicesRef, Subsystem};

pub const BUS_NAME: &str = "testbus";
pub const DRIVER_NAME: &str = "testdrv";

/// The bus-less parent of every top-level test device.
struct TestRoot;

impl DeviceData for TestRoot {
    fn description(&self) -> String {
        String::from("Test bus")
    }
    fn show(&self, _attr: &str) -> Option<String> {
        None
    }
}

/// A test device. `value` is read-write, `remove` unregisters the device when
/// written (a store that removes its own device), `bound` tells whether the
/// driver's probe ran.
pub struct TestDevice {
    name: String,
    value: String,
    bound: bool,
}

impl DeviceData for TestDevice {
    fn description(&self) -> String {
        format!("Test device {}", self.name)
    }

    fn attributes(&self) -> Vec<Attribute> {
        alloc::vec![Attribute::rw("value"), Attribute::ro("bound"), Attribute::rw("remove")]
    }

    fn show(&self, attr: &str) -> Option<String> {
        match attr {
            "value" => Some(format!("{}\n", self.value)),
            "bound" => Some(format!("{}\n", u8::from(self.bound))),
            "remove" => Some(String::new()),
            _ => None,
        }
    }

    fn store(&mut self, attr: &str, value: &[u8]) -> Result<StoreEffect, Errno> {
        let text = core::str::from_utf8(value).map_err(|_| Errno::EINVAL)?.trim_end_matches('\n');
        match attr {
            "value" => {
                self.value = String::from(text);
                Ok(StoreEffect::None)
            }
            "remove" if text == "1" => Ok(StoreEffect::UnregisterSelf),
            "remove" => Err(Errno::EINVAL),
            _ => Err(Errno::EACCES),
        }
    }

    fn uevent_env(&self, env: &mut Vec<(&'static str, String)>) {
        env.push(("TESTDEV", self.name.clone()));
    }
}

/// The default driver: binds every test device.
struct TestDriver;

impl Driver for TestDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }
    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        core.data::<TestDevice>(dev).is_some()
    }
    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        let d = core.data_mut::<TestDevice>(dev).ok_or(Errno::ENODEV)?;
        d.bound = true;
        Ok(())
    }
    fn remove(&self, core: &mut Core, dev: DeviceId) {
        if let Some(d) = core.data_mut::<TestDevice>(dev) {
            d.bound = false;
        }
    }
}

#[derive(Clone, Copy)]
pub struct TestBus {
    pub bus: BusId,
    pub root: DeviceId,
}

impl TestBus {
    pub fn init(core: &mut Core) -> TestBus {
        let bus = core.bus_register(BUS_NAME);
        let root =
            core.device_register(BUS_NAME, None, None, Box::new(TestRoot)).expect("testbus root registers at boot");
        core.driver_register(bus, Rc::new(TestDriver));
        TestBus { bus, root }
    }

    /// `testdev add <name> [parent]`. The device's first value is its name.
    pub fn add(&self, core: &mut Core, name: &str, parent: Option<&str>) -> Result<DeviceId, Errno> {
        if !valid_name(name) {
            return Err(Errno::EINVAL);
        }
        let parent = match parent {
            None => self.root,
            Some(p) => core.bus_find_device(self.bus, p).ok_or(Errno::ENOENT)?,
        };
        let data = TestDevice { name: String::from(name), value: String::from(name), bound: false };
        core.device_register(name, Some(parent), Some(self.bus), Box::new(data))
    }

    /// `testdev del <name>`: unregister it and its children, depth first.
    pub async fn del(&self, core: &CoreRef, name: &str) -> Result<(), Errno> {
        let dev = core.borrow().bus_find_device(self.bus, name).ok_or(Errno::ENOENT)?;
        device_unregister(core, dev).await
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        && name != "."
        && name != ".."
}

/// Boot: register the test bus, its root and its driver.
pub fn register(sys: &ServicesRef) -> Rc<dyn Subsystem> {
    Rc::new(TestBus::init(&mut sys.core.borrow_mut()))
}

impl Subsystem for TestBus {
    fn name(&self) -> &'static str {
        BUS_NAME
    }

    fn verbs(&self) -> &'static [&'static str] {
        &["testdev"]
    }

    /// `testdev add <name> [parent]` answers the new device's path;
    /// `testdev del <name>` answers once the removal has completed.
    fn serve(self: Rc<Self>, sys: ServicesRef, req: Request) -> LocalFuture<'static, Reply> {
        Box::pin(async move {
            let args = req.args();
            match args.first().copied() {
                Some("add") if (2..=3).contains(&args.len()) => {
                    let mut core = sys.core.borrow_mut();
                    let dev =
                        self.add(&mut core, args[1], args.get(2).copied()).map_err(|e| with_context(e, args[1]))?;
                    Ok(core.device_path(dev).into_bytes())
                }
                Some("del") if args.len() == 2 => {
                    self.del(&sys.core, args[1]).await.map_err(|e| with_context(e, args[1]))?;
                    Ok(Vec::new())
                }
                _ => fail(Errno::EINVAL, "usage: testdev add <name> [parent] | testdev del <name>"),
            }
        })
    }
}
