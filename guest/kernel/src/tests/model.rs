//! A property test: random sequences of test-bus operations (add, del, get,
//! put, open, read, close, hold, unhold, held read, bind, unbind), with a few executor
//! passes between them so held reads, draining removals and unbinds
//! interleave. Only legal sequences are generated (a put always returns a
//! reference the test took), so any BUG is the kernel's.
//!
//! Each add, open, get and bind must return what the objects' states say
//! at that moment (EEXIST for a registered name, EBUSY for one whose old
//! object is not yet released, ENOENT for a missing parent, EBUSY for a
//! bound device, else success): a kernel that wrongly refuses one fails.
//!
//! At quiescence (every hold released, every handle closed, every extra
//! reference put, no task left) the lifetime rules must hold: no leak, each
//! removed object released exactly once and after its children, no read
//! that started after its device's removal began returned data, no stale
//! handle saw another object's data, driverfs and the bus agree with the
//! device tree, and the uevent stream is a valid history. Removing what is
//! left must then give back the snapshot of a fresh boot.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use proptest::prelude::*;

use super::{Fixture, seqnum};
use crate::base::{DeviceId, DeviceState, KernelEvent, UeventAction, dd, device_unregister};
use crate::driverfs::{file, snapshot};
use crate::errno::Errno;
use crate::testbus::{DRIVER_NAME, TestDevice};

/// Few names, so that reuse, parents and collisions are frequent.
const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Op {
    /// `testdev add NAMES[name] [NAMES[parent]]`.
    Add {
        name: usize,
        parent: Option<usize>,
    },
    /// `testdev del`, as a task.
    Del {
        name: usize,
    },
    /// Take a reference through a bus lookup.
    Get {
        name: usize,
    },
    /// Take one more reference on an object already referenced (`which`
    /// modulo how many): legal whatever state the object is in, short of
    /// released.
    GetAgain {
        which: usize,
    },
    /// Put one of the references `Get` took (`which` modulo how many).
    Put {
        which: usize,
    },
    /// Open `bus/testbus/devices/<name>/value`.
    Open {
        name: usize,
    },
    /// Read an open handle, as a task.
    Read {
        which: usize,
    },
    Close {
        which: usize,
    },
    /// Arm a hold on `<name>/value`.
    Hold {
        name: usize,
    },
    /// Release one of the holds that exist.
    Unhold {
        which: usize,
    },
    /// Open, hold and read `<name>/value`: a read that stays in flight
    /// until an `Unhold` (the interleaving races are made of, in one step).
    HeldRead {
        name: usize,
    },
    Bind {
        name: usize,
    },
    /// `device_release_driver`, as a task.
    Unbind {
        name: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    let which = 0..8usize;
    prop_oneof![
        4 => (name.clone(), proptest::option::weighted(0.5, name.clone()))
            .prop_map(|(name, parent)| Op::Add { name, parent }),
        3 => name.clone().prop_map(|name| Op::Del { name }),
        1 => name.clone().prop_map(|name| Op::Get { name }),
        1 => which.clone().prop_map(|which| Op::GetAgain { which }),
        2 => which.clone().prop_map(|which| Op::Put { which }),
        2 => name.clone().prop_map(|name| Op::Open { name }),
        2 => which.clone().prop_map(|which| Op::Read { which }),
        1 => which.clone().prop_map(|which| Op::Close { which }),
        1 => name.clone().prop_map(|name| Op::Hold { name }),
        2 => which.prop_map(|which| Op::Unhold { which }),
        3 => name.clone().prop_map(|name| Op::HeldRead { name }),
        1 => name.clone().prop_map(|name| Op::Bind { name }),
        1 => name.prop_map(|name| Op::Unbind { name }),
    ]
}

/// An operation and the executor passes run after it.
fn step() -> impl Strategy<Value = (Op, u8)> {
    (op(), 0u8..3)
}

/// One finished read, with what was true when it started.
#[derive(Debug)]
struct ReadRecord {
    handle: u32,
    dev: DeviceId,
    handle_was_open: bool,
    device_was_registered: bool,
    result: Result<Vec<u8>, Errno>,
}

/// The value each object shows: unique per object, never per name.
fn value_of(dev: DeviceId) -> String {
    format!("v{}", dev.0)
}

struct Model {
    fx: Fixture,
    /// References `Get` took and `Put` has not returned yet.
    refs: Vec<DeviceId>,
    /// Open handles and the object each was opened on.
    handles: Vec<(u32, DeviceId)>,
    reads: Rc<RefCell<Vec<ReadRecord>>>,
    /// Removals that finished before one of their children's did.
    parents_done_early: Rc<RefCell<Vec<String>>>,
    /// Operations whose result differed from what the object states said
    /// it must be.
    wrong_results: Vec<String>,
}

impl Model {
    fn new() -> Self {
        Model {
            fx: Fixture::new(),
            refs: Vec::new(),
            handles: Vec::new(),
            reads: Rc::new(RefCell::new(Vec::new())),
            parents_done_early: Rc::new(RefCell::new(Vec::new())),
            wrong_results: Vec::new(),
        }
    }

    /// The test-bus objects called `name` in one of `states`, read from the
    /// objects themselves (not through the lookups the operations use).
    fn objects(&self, name: usize, states: &[DeviceState]) -> Vec<DeviceId> {
        let core = self.fx.core.borrow();
        core.device_ids()
            .filter(|d| core.device(*d).bus == Some(self.fx.tb.bus) && core.name(*d) == NAMES[name])
            .filter(|d| states.contains(&core.state(*d)))
            .collect()
    }

    /// The registered object called `name`: at most one.
    fn registered(&self, name: usize) -> Option<DeviceId> {
        let found = self.objects(name, &[DeviceState::Registered]);
        assert!(found.len() <= 1, "two registered objects called {}", NAMES[name]);
        found.first().copied()
    }

    /// What `op` must return, given the objects as they are now; `None`
    /// for operations whose result is not decided in this step.
    fn expected(&self, op: &Op) -> Option<Result<(), Errno>> {
        let draining = [DeviceState::Dying, DeviceState::Deleted];
        Some(match *op {
            Op::Add { name, parent } => {
                if parent.is_some_and(|p| self.registered(p).is_none()) {
                    Err(Errno::ENOENT)
                } else if self.registered(name).is_some() {
                    Err(Errno::EEXIST)
                } else if !self.objects(name, &draining).is_empty() {
                    // The 2003 rule: a name is busy until its old object is released.
                    Err(Errno::EBUSY)
                } else {
                    Ok(())
                }
            }
            Op::Open { name } | Op::Get { name } => self.registered(name).map(|_| ()).ok_or(Errno::ENOENT),
            Op::Bind { name } => {
                let dev = self.registered(name)?;
                if self.fx.core.borrow().driver(dev).is_some() { Err(Errno::EBUSY) } else { Ok(()) }
            }
            _ => return None,
        })
    }

    /// Apply `op` and record it if its result is not the expected one.
    fn apply_checked(&mut self, op: &Op) {
        let expected = self.expected(op);
        let outcome = self.apply(op);
        if let (Some(expected), Some(outcome)) = (expected, outcome)
            && expected != outcome
        {
            self.wrong_results.push(format!("{op:?}: expected {expected:?}, got {outcome:?}"));
        }
    }

    fn find(&self, name: usize) -> Option<DeviceId> {
        self.fx.core.borrow().bus_find_device(self.fx.tb.bus, NAMES[name])
    }

    /// Apply `op`; the result of the operations [`Model::expected`] knows.
    fn apply(&mut self, op: &Op) -> Option<Result<(), Errno>> {
        let fx = &self.fx;
        match *op {
            Op::Add { name, parent } => {
                let added = fx.tb.add(&mut fx.core.borrow_mut(), NAMES[name], parent.map(|p| NAMES[p]));
                if let Ok(dev) = added {
                    let value = value_of(dev);
                    fx.core.borrow_mut().with_data_mut(dev, |d| d.store("value", value.as_bytes()));
                }
                return Some(added.map(drop));
            }
            Op::Del { name } => {
                let (core, bus, early) = (fx.core.clone(), fx.tb.bus, self.parents_done_early.clone());
                fx.exec.spawner().spawn(async move {
                    // What `testdev del` does, keeping the device to check.
                    let Some(dev) = core.borrow().bus_find_device(bus, NAMES[name]) else { return };
                    if device_unregister(&core, dev).await.is_ok() {
                        // Children before parents: every child's removal has
                        // finished by the time the parent's does.
                        let c = core.borrow();
                        for child in c.device_ids().filter(|d| c.parent(*d) == Some(dev)) {
                            if matches!(c.state(child), DeviceState::Registered | DeviceState::Dying) {
                                let (parent, child) = (c.device_path(dev), c.device_path(child));
                                early.borrow_mut().push(format!("{parent} removed while {child} was still there"));
                            }
                        }
                    }
                });
            }
            Op::Get { name } => {
                let found = self.find(name);
                if let Some(dev) = found {
                    fx.core.borrow_mut().get(dev);
                    self.refs.push(dev);
                }
                return Some(found.map(drop).ok_or(Errno::ENOENT));
            }
            Op::GetAgain { which } => {
                if !self.refs.is_empty() {
                    let dev = self.refs[which % self.refs.len()];
                    fx.core.borrow_mut().get(dev);
                    self.refs.push(dev);
                }
            }
            Op::Put { which } => {
                if !self.refs.is_empty() {
                    let dev = self.refs.remove(which % self.refs.len());
                    fx.core.borrow_mut().put(dev);
                }
            }
            Op::Open { name } => {
                let opened = fx.open(&format!("bus/testbus/devices/{}/value", NAMES[name]));
                if let Ok(handle) = opened {
                    let core = fx.core.borrow();
                    let node = core.fs.handle_node(handle).expect("just opened");
                    let Some(crate::driverfs::NodeKind::Attr { dev, .. }) = core.fs.kind(node) else {
                        panic!("value is an attribute")
                    };
                    self.handles.push((handle, dev));
                }
                return Some(opened.map(drop));
            }
            Op::Read { which } => {
                if self.handles.is_empty() {
                    return None;
                }
                let (handle, dev) = self.handles[which % self.handles.len()];
                let (core, reads) = (fx.core.clone(), self.reads.clone());
                fx.exec.spawner().spawn(async move {
                    // file::read takes its active reference in this same
                    // poll, so this is exactly the state the read starts in.
                    let (handle_was_open, device_was_registered) = {
                        let c = core.borrow();
                        (c.fs.handle_node(handle).is_ok(), c.state(dev) == DeviceState::Registered)
                    };
                    let result = file::read(&core, handle).await;
                    reads.borrow_mut().push(ReadRecord { handle, dev, handle_was_open, device_was_registered, result });
                });
            }
            Op::Close { which } => {
                if !self.handles.is_empty() {
                    let (handle, _) = self.handles.remove(which % self.handles.len());
                    fx.core.borrow_mut().fs.close(handle).expect("an open handle closes");
                }
            }
            Op::Hold { name } => {
                let _ = fx.core.borrow_mut().fs.hold(&format!("bus/testbus/devices/{}/value", NAMES[name]));
            }
            Op::Unhold { which } => {
                let holds = fx.core.borrow().fs.holds();
                if !holds.is_empty() {
                    let _ = fx.core.borrow_mut().fs.unhold(&holds[which % holds.len()]);
                }
            }
            Op::HeldRead { name } => {
                let before = self.handles.len();
                self.apply_checked(&Op::Open { name });
                if self.handles.len() > before {
                    self.apply(&Op::Hold { name });
                    self.apply(&Op::Read { which: before });
                }
            }
            Op::Bind { name } => {
                let dev = self.find(name)?;
                let drv = fx.core.borrow().find_driver(fx.tb.bus, DRIVER_NAME).expect("testdrv");
                return Some(dd::bind(&mut fx.core.borrow_mut(), fx.tb.bus, dev, drv));
            }
            Op::Unbind { name } => {
                if let Some(dev) = self.find(name) {
                    let core = fx.core.clone();
                    fx.exec.spawner().spawn(async move {
                        let _ = dd::device_release_driver(&core, dev).await;
                    });
                }
            }
        }
        None
    }

    /// Release every hold, close every handle, put every reference, and run
    /// until no task is left.
    fn quiesce(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..super::MAX_PASSES {
            let holds = self.fx.core.borrow().fs.holds();
            for path in &holds {
                let _ = self.fx.core.borrow_mut().fs.unhold(path);
            }
            if self.fx.exec.is_empty() && holds.is_empty() {
                break;
            }
            self.fx.exec.run_pass();
        }
        prop_assert!(self.fx.exec.is_empty(), "{} tasks never finished", self.fx.exec.len());
        for (handle, _) in self.handles.drain(..) {
            self.fx.core.borrow_mut().fs.close(handle).expect("an open handle closes");
        }
        for dev in self.refs.drain(..) {
            self.fx.core.borrow_mut().put(dev);
        }
        Ok(())
    }

    fn check_objects(&self) -> Result<(), TestCaseError> {
        let core = self.fx.core.borrow();
        let totals = core.totals();
        prop_assert_eq!(totals.bugs, 0);
        prop_assert_eq!(totals.leaked, 0);
        prop_assert_eq!((totals.handles, totals.active), (0, 0));
        prop_assert_eq!(core.fs.unlinked_nodes(), 0, "driverfs nodes out of the tree but not freed");
        let mut released = 0;
        for dev in core.device_ids() {
            let state = core.state(dev);
            let path = core.device_path(dev);
            prop_assert!(
                matches!(state, DeviceState::Registered | DeviceState::Released),
                "{} is {} at quiescence",
                path,
                state.as_str()
            );
            let parent = core.parent(dev);
            if state == DeviceState::Released {
                released += 1;
                if let Some(p) = parent.and_then(|p| core.release_seq(p)) {
                    prop_assert!(p > core.release_seq(dev).unwrap(), "{} released after its parent", path);
                }
                continue;
            }
            if let Some(p) = parent {
                prop_assert_eq!(core.state(p), DeviceState::Registered, "{} has a removed parent", path);
            }
            let dir = core.fs.lookup(&path);
            prop_assert!(dir.is_ok(), "{} has no directory", path);
            if core.data::<TestDevice>(dev).is_some() {
                let link = core.fs.lookup(&format!("bus/testbus/devices/{}", core.name(dev)));
                prop_assert_eq!(link, dir, "bus link of {}", path);
                let bound = core.show_attr_ref(dev, "bound");
                let expected = if core.driver(dev).is_some() { "1\n" } else { "0\n" };
                prop_assert_eq!(bound.as_deref(), Some(expected), "bound of {}", path);
            }
        }
        prop_assert_eq!(totals.released, released, "released counter vs. released objects");
        let links = core.fs.lookup("bus/testbus/devices").map(|d| core.fs.active_children(d).len());
        prop_assert_eq!(links, Ok(core.bus_devices(self.fx.tb.bus).len()), "bus links vs. bus list");
        Ok(())
    }

    fn check_removal_order(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(&*self.parents_done_early.borrow(), &Vec::<String>::new());
        Ok(())
    }

    fn check_reads(&self) -> Result<(), TestCaseError> {
        for r in self.reads.borrow().iter() {
            let expected = if !r.handle_was_open {
                Err(Errno::EBADF)
            } else if r.device_was_registered {
                Ok(format!("{}\n", value_of(r.dev)).into_bytes())
            } else {
                // Removal had begun: no data, in particular not the data of
                // a newer object with the same name.
                Err(Errno::ENODEV)
            };
            prop_assert_eq!(&r.result, &expected, "read of handle {} on {:?}", r.handle, r.dev);
        }
        Ok(())
    }
}

/// The uevent stream as a history: per devpath, `add` (`bind` `unbind`)*
/// `remove`, bind and unbind alternating, SEQNUM going up by one from
/// `seq`. `present` is what exists before (devpath → bound) and is updated.
fn check_uevents(
    events: &[KernelEvent],
    mut seq: u64,
    present: &mut BTreeMap<String, bool>,
) -> Result<(), TestCaseError> {
    for event in events {
        let u = match event {
            KernelEvent::Uevent(u) => u,
            KernelEvent::Bug(text) => return Err(TestCaseError::fail(format!("BUG: {text}"))),
            // A held read announces that it is blocked inside show().
            KernelEvent::Notice(text) if text.starts_with("held ") => continue,
            KernelEvent::Notice(text) => return Err(TestCaseError::fail(format!("unexpected notice: {text}"))),
        };
        seq += 1;
        prop_assert_eq!(seqnum(u), seq, "SEQNUM of {}", u.to_line());
        let state = present.get(&u.devpath).copied();
        match (u.action, state) {
            (UeventAction::Add, None) | (UeventAction::Unbind, Some(true)) => {
                present.insert(u.devpath.clone(), false);
            }
            (UeventAction::Bind, Some(false)) => {
                present.insert(u.devpath.clone(), true);
            }
            (UeventAction::Remove, Some(false)) => {
                present.remove(&u.devpath);
            }
            (_, state) => {
                let state = match state {
                    None => "absent",
                    Some(false) => "present",
                    Some(true) => "bound",
                };
                return Err(TestCaseError::fail(format!("uevent {} while the device is {state}", u.to_line())));
            }
        }
    }
    Ok(())
}

fn run(steps: &[(Op, u8)]) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    let fresh = snapshot::render(&model.fx.core.borrow(), None).unwrap();
    for (op, passes) in steps {
        model.apply_checked(op);
        prop_assert!(model.wrong_results.is_empty(), "wrong results: {:?}", model.wrong_results);
        model.fx.run(usize::from(*passes));
    }
    model.quiesce()?;
    model.check_objects()?;
    model.check_removal_order()?;
    model.check_reads()?;

    let events: Vec<KernelEvent> = model.fx.core.borrow_mut().take_events().into_iter().collect();
    let mut present = BTreeMap::new();
    check_uevents(&events, 0, &mut present)?;
    {
        let core = model.fx.core.borrow();
        let registered: BTreeMap<String, bool> = core
            .bus_devices(model.fx.tb.bus)
            .into_iter()
            .map(|d| (core.device_path(d), core.driver(d).is_some()))
            .collect();
        prop_assert_eq!(&present, &registered, "uevent history vs. what is registered and bound");
    }

    // Remove what is left: the tree must be a fresh boot's again.
    let seq = model.fx.core.borrow().seqnum();
    let top_level = model.fx.core.borrow().children(model.fx.tb.root);
    for dev in top_level {
        let core = model.fx.core.clone();
        model.fx.exec.spawner().spawn(async move {
            let _ = device_unregister(&core, dev).await;
        });
    }
    model.fx.run_until_idle();
    model.check_objects()?;
    let events: Vec<KernelEvent> = model.fx.core.borrow_mut().take_events().into_iter().collect();
    check_uevents(&events, seq, &mut present)?;
    prop_assert!(present.is_empty(), "never removed: {:?}", present.keys().collect::<Vec<_>>());
    prop_assert_eq!(model.fx.core.borrow().totals().registered, 1, "only the test bus root is left");
    let last = snapshot::render(&model.fx.core.borrow(), None).unwrap();
    prop_assert_eq!(last, fresh);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn random_operation_sequences_keep_the_lifetime_rules(steps in proptest::collection::vec(step(), 1..48)) {
        run(&steps)?;
    }
}

/// Interleavings that broke the rules before the fixes, kept as plain
/// regression tests (shrunk by the property test).
///
/// `a` is draining a held read, and a new `a` is added under `b`: it got a
/// directory but no `bus/testbus/devices/a` link.
#[test]
fn regression_same_name_under_another_parent_while_the_old_one_drains() {
    let steps = [
        (Op::Add { name: 0, parent: None }, 0),
        (Op::Add { name: 1, parent: None }, 0),
        (Op::Open { name: 0 }, 0),
        (Op::Hold { name: 0 }, 0),
        (Op::Read { which: 0 }, 1),
        (Op::Del { name: 0 }, 2),
        (Op::Add { name: 0, parent: Some(1) }, 0),
    ];
    run(&steps).unwrap_or_else(|e| panic!("{e}"));
}

/// `b`'s removal has started (its parent `a` is being removed, waiting for
/// `c`'s held read) when a new `b` is added elsewhere: the name is busy
/// (EBUSY), not taken (EEXIST), although the old `b` is still on the bus.
#[test]
fn regression_a_name_whose_removal_started_is_busy_not_taken() {
    let steps = [
        (Op::Add { name: 0, parent: None }, 0),
        (Op::Add { name: 1, parent: Some(0) }, 0),
        (Op::Add { name: 2, parent: Some(1) }, 0),
        (Op::HeldRead { name: 2 }, 0),
        (Op::Del { name: 0 }, 1),
        (Op::Add { name: 1, parent: None }, 0),
    ];
    run(&steps).unwrap_or_else(|e| panic!("{e}"));
}

/// `a` (a child of `c`) is draining a held read under its own removal when
/// `c`'s removal starts: `c` finished first and took `a`'s directory with it.
#[test]
fn regression_parent_removal_overtaking_a_child_removal() {
    let steps = [
        (Op::Add { name: 2, parent: None }, 0),
        (Op::Add { name: 0, parent: Some(2) }, 0),
        (Op::HeldRead { name: 0 }, 0),
        (Op::Del { name: 0 }, 1),
        (Op::Del { name: 2 }, 0),
        (Op::Add { name: 0, parent: None }, 1),
    ];
    run(&steps).unwrap_or_else(|e| panic!("{e}"));
}
