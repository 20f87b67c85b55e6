//! The subsystem seam, with a fake HBA subsystem listed after the real
//! ones, the way a new bus plugs in: its driver binds a hot-added PCI
//! function (on another subsystem's bus) and builds a host → target → LUN
//! subtree under it; its verb, feature, command-line knob and pending work
//! reach the control module through the seam alone.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::machine::Machine;
use super::system::Message;
use crate::base::device::LocalFuture;
use crate::base::{Attribute, BusId, Core, DeviceData, DeviceId, Driver};
use crate::control::request::{Reply, Request, fail};
use crate::errno::Errno;
use crate::fake_platform::FakePlatform;
use crate::pci::device::PciFunction;
use crate::pci::fake::{FakeBar, FakeFunction, FakePci, Segment};
use crate::subsystem::{PendingWork, Register, ServicesRef, Subsystem, WorkGuard};
use crate::{ide, pci, testbus};

const SLOT: u8 = 5;
const FUNCTION: &str = "root/pci0/00:05.0";
const HOST: &str = "root/pci0/00:05.0/host0";
const TARGET: &str = "root/pci0/00:05.0/host0/target0:0:1";
const LUN: &str = "root/pci0/00:05.0/host0/target0:0:1/0:0:1:0";

/// A node of the fake HBA's subtree; `value` is there to hold reads on.
struct Node(&'static str);

impl DeviceData for Node {
    fn description(&self) -> String {
        format!("fake {}", self.0)
    }
    fn attributes(&self) -> Vec<Attribute> {
        alloc::vec![Attribute::ro("value")]
    }
    fn show(&self, attr: &str) -> Option<String> {
        (attr == "value").then(|| format!("{}\n", self.0))
    }
}

/// Binds 1af4:1004 functions on `pci` and builds the subtree under them.
struct FakeHbaDriver {
    bus: BusId,
}

impl Driver for FakeHbaDriver {
    fn name(&self) -> &'static str {
        "fake-hba"
    }
    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        core.data::<PciFunction>(dev).is_some_and(|f| (f.vendor, f.device) == (0x1af4, 0x1004))
    }
    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        let host = core.device_initialize("host0", Some(dev), Some(self.bus), Box::new(Node("host")));
        core.set_managed(host);
        core.device_add(host)?;
        let target = core.device_register("target0:0:1", Some(host), Some(self.bus), Box::new(Node("target")))?;
        core.device_register("0:0:1:0", Some(target), Some(self.bus), Box::new(Node("lun")))?;
        Ok(())
    }
}

struct FakeHba {
    work: PendingWork,
    held: RefCell<Option<WorkGuard>>,
}

fn fake_hba(sys: &ServicesRef) -> Rc<dyn Subsystem> {
    let pci_bus = sys.bus(pci::BUS_NAME);
    let mut core = sys.core.borrow_mut();
    let bus = core.bus_register("fakescsi");
    core.driver_register(pci_bus, Rc::new(FakeHbaDriver { bus }));
    Rc::new(FakeHba { work: PendingWork::default(), held: RefCell::new(None) })
}

impl Subsystem for FakeHba {
    fn name(&self) -> &'static str {
        "fakescsi"
    }
    fn verbs(&self) -> &'static [&'static str] {
        &["fakehba"]
    }
    fn features(&self) -> &'static [&'static str] {
        &["fakescsi-hotplug"]
    }
    /// `fakehba knob`: the `fakehba.knob` command-line value;
    /// `fakehba work` / `fakehba done`: start and end one piece of work.
    fn serve(self: Rc<Self>, sys: ServicesRef, req: Request) -> LocalFuture<'static, Reply> {
        Box::pin(async move {
            match req.args().as_slice() {
                ["knob"] => Ok(sys.cmdline().value("fakehba.knob").unwrap_or("none").as_bytes().to_vec()),
                ["work"] => {
                    *self.held.borrow_mut() = Some(self.work.start());
                    Ok(Vec::new())
                }
                ["done"] => {
                    self.held.borrow_mut().take();
                    Ok(Vec::new())
                }
                _ => fail(Errno::EINVAL, "usage: fakehba knob|work|done"),
            }
        })
    }
    fn pending_work(&self) -> u32 {
        self.work.count()
    }
}

/// A subsystem that claims a verb someone else owns.
struct Claims(&'static [&'static str]);

impl Subsystem for Claims {
    fn name(&self) -> &'static str {
        "claims"
    }
    fn verbs(&self) -> &'static [&'static str] {
        self.0
    }
}

const WITH_FAKE_HBA: &[Register] = &[testbus::register, pci::register, ide::register, fake_hba];

fn boot() -> Machine {
    let mut m = Machine::boot_with(FakePlatform::new(FakePci::pc()), "console=ttyS0 fakehba.knob=7", WITH_FAKE_HBA);
    m.settle();
    m
}

fn hot_add_hba(m: &mut Machine) {
    let hba = FakeFunction::endpoint(0x1af4, 0x1004, 0x01_00_00).bar(0, FakeBar::Io { size: 64 }).pin(1);
    m.p.pci.insert(Segment::ROOT, SLOT, 0, hba);
    m.p.acpi_hot_add(SLOT);
    m.settle();
}

#[test]
fn hello_lists_each_subsystems_verbs_and_features_in_list_order() {
    let mut m = boot();
    let hello = m.ok("hello");
    let features = hello.lines().find_map(|l| l.strip_prefix("features ")).expect("a features line");
    assert_eq!(
        features,
        "snapshot stats settle open read write close hold unhold bind unbind selftest poweroff devref faults checkpoint \
         testdev pci pcihp pci-hotplug ide fakehba fakescsi-hotplug"
    );
}

#[test]
fn a_verb_goes_to_the_subsystem_that_declares_it_which_reads_the_command_line() {
    let mut m = boot();
    assert_eq!(m.call("fakehba knob"), Ok(String::from("7")));
    assert_eq!(m.call("fakehba nonsense"), Err(String::from("EINVAL")));
    assert_eq!(m.call("frobnicate"), Err(String::from("ENOSYS")));
    // The real subsystems' verbs are routed the same way.
    assert_eq!(m.call("testdev add t1"), Ok(String::from("root/testbus/t1")));
    assert_eq!(m.call("ide lock 1.0 on"), Err(String::from("ENOENT")), "no CD drive in this fake pc");
}

#[test]
fn settle_waits_for_a_subsystems_pending_work() {
    let mut m = boot();
    m.ok("fakehba work");
    let settle = m.send("settle");
    m.step(100);
    assert_eq!(m.answer(&settle), None, "settle returned with work pending");
    m.ok("fakehba done");
    assert_eq!(m.wait(&settle), Ok(String::new()));
}

/// The core's guarantee a bus relies on: removing a PCI function removes
/// everything below it first, depth first, whichever subsystem created it,
/// and PCI ejects only after that, reads in flight on the deepest object
/// included.
#[test]
fn a_pci_function_goes_after_its_driver_built_subtree_and_before_the_eject() {
    let mut m = boot();
    hot_add_hba(&mut m);
    let added: Vec<String> = m.uevents().into_iter().filter(|u| u.contains("/00:05.0")).collect();
    let events: Vec<(&str, &str)> = added.iter().filter_map(|u| u.split(' ').next().zip(u.split(' ').nth(1))).collect();
    assert_eq!(
        events,
        [("add", FUNCTION), ("add", HOST), ("add", TARGET), ("add", LUN), ("bind", FUNCTION)],
        "{added:?}"
    );

    let handle = m.ok(&format!("open {LUN}/value"));
    m.ok(&format!("hold {LUN}/value"));
    let read = m.send(&format!("read {handle}"));
    m.step(3);
    m.p.acpi_unplug_request(SLOT);
    m.step(30);
    assert_eq!(m.p.acpi_ejected(), [], "no eject while a read on the LUN is in flight");
    m.ok(&format!("unhold {LUN}/value"));
    assert_eq!(m.wait(&read), Ok(String::from("lun\n")));
    m.settle();
    assert_eq!(m.p.acpi_ejected(), [SLOT]);

    let messages = m.messages();
    let position = |wanted: &str| {
        messages
            .iter()
            .position(|msg| matches!(msg, Message::Async(t) if t.starts_with(wanted)))
            .unwrap_or_else(|| panic!("no `{wanted}` in {messages:?}"))
    };
    let order = [
        position(&format!("uevent remove {LUN} ")),
        position(&format!("uevent remove {TARGET} ")),
        position(&format!("uevent remove {HOST} ")),
        position(&format!("uevent unbind {FUNCTION} ")),
        position(&format!("uevent remove {FUNCTION} ")),
        position("hotplug eject 00:05"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "depth first, then the eject: {order:?}");
    assert!(!m.snapshot("root/pci0").contains("00:05.0"));
}

#[test]
#[should_panic(expected = "subsystems testbus and claims both declare the verb `testdev`")]
fn two_subsystems_cannot_declare_one_verb() {
    fn claims_testdev(_: &ServicesRef) -> Rc<dyn Subsystem> {
        Rc::new(Claims(&["testdev"]))
    }
    Machine::boot_with(FakePlatform::new(FakePci::pc()), "", &[testbus::register, claims_testdev]);
}

#[test]
#[should_panic(expected = "subsystem claims declares the driver core's verb `snapshot`")]
fn a_subsystem_cannot_declare_a_core_verb() {
    fn claims_snapshot(_: &ServicesRef) -> Rc<dyn Subsystem> {
        Rc::new(Claims(&["snapshot"]))
    }
    Machine::boot_with(FakePlatform::new(FakePci::pc()), "", &[claims_snapshot]);
}

#[test]
#[should_panic(expected = "bus `pci` is not registered: list its subsystem earlier in SUBSYSTEMS")]
fn a_driver_for_a_bus_listed_later_is_refused_at_boot() {
    Machine::boot_with(FakePlatform::new(FakePci::pc()), "", &[testbus::register, ide::register, pci::register]);
}
