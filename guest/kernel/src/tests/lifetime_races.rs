//! The lifetime races of docs/driver-model.md ("Races the tests provoke"), one test per
//! scenario (a)–(e), driven through the core, driverfs handles and the
//! executor the way the control channel drives them.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::{Fixture, Log, ProbeDriver};
use crate::base::{DeviceState, KernelEvent, dd};
use crate::driverfs::file;
use crate::errno::Errno;

fn new_log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

/// (a) A handle opened before `device_unregister` reads ENODEV after it, an
/// open after it is ENOENT, the open never pinned the device, and show() is
/// not called. The device may be released while the handle is still open.
#[test]
fn a_handle_opened_before_unregister_reads_enodev_and_never_pins_the_device() {
    let mut fx = Fixture::new();
    let log = new_log();
    let dev = fx.add_probe("p1", None, &log);
    let refcount_before = fx.core.borrow().refcount(dev);
    let handle = fx.open("root/testbus/p1/value").expect("open while registered");
    assert_eq!(fx.core.borrow().refcount(dev), refcount_before, "open takes no device reference");

    fx.unregister(dev);

    assert_eq!(fx.core.borrow().state(dev), DeviceState::Released, "released although a handle is open");
    assert_eq!(fx.read(handle), Err(Errno::ENODEV));
    assert!(log.borrow().is_empty(), "show() ran for a removed device: {:?}", log.borrow());
    assert_eq!(fx.open("root/testbus/p1/value"), Err(Errno::ENOENT));
    assert_eq!(fx.open("bus/testbus/devices/p1/value"), Err(Errno::ENOENT));
    assert_eq!(fx.core.borrow_mut().fs.close(handle), Ok(()));
    let totals = fx.core.borrow().totals();
    assert_eq!((totals.handles, totals.active, totals.leaked, totals.bugs), (0, 0, 0, 0));
}

/// (a), with the object kept alive by a reference: the refcount is exactly
/// that reference (the handle added nothing), and closing the handle does
/// not drop anything (the v2.5.42 imbalance).
#[test]
fn a_closing_a_stale_handle_leaves_the_refcount_alone() {
    let mut fx = Fixture::new();
    let dev = fx.add("t1", None);
    let handle = fx.open("root/testbus/t1/value").unwrap();
    fx.core.borrow_mut().get(dev);
    fx.unregister(dev);
    assert_eq!(fx.core.borrow().state(dev), DeviceState::Deleted);
    assert_eq!(fx.core.borrow().refcount(dev), 1, "only our reference is left");
    assert_eq!(fx.read(handle), Err(Errno::ENODEV));
    fx.core.borrow_mut().fs.close(handle).unwrap();
    assert_eq!(fx.core.borrow().refcount(dev), 1, "close must not put the device");
    fx.core.borrow_mut().put(dev);
    assert_eq!(fx.core.borrow().state(dev), DeviceState::Released);
    assert_eq!(fx.core.borrow().bug_count(), 0);
}

/// (b) The slot is reused while an old reference is held: `device_add`
/// answers EBUSY until the old object is released, and a stale handle never
/// shows the new object's value.
#[test]
fn b_a_reused_name_waits_for_release_and_stale_handles_never_see_the_new_device() {
    let mut fx = Fixture::new();
    let old = fx.add("t1", None);
    let writer = fx.open("root/testbus/t1/value").unwrap();
    let core = fx.core.clone();
    let wrote = fx.spawn(async move { file::write(&core, writer, b"old data\n").await });
    fx.run_until_idle();
    assert_eq!(wrote.take(), Some(Ok(())));
    let stale = fx.open("root/testbus/t1/value").unwrap();
    assert_eq!(fx.read(stale), Ok(b"old data\n".to_vec()));

    fx.core.borrow_mut().get(old); // the reference IDE's hwif slot forgot about
    fx.unregister(old);
    let again = fx.tb.add(&mut fx.core.borrow_mut(), "t1", None);
    assert_eq!(again, Err(Errno::EBUSY), "re-registration must wait for release()");
    assert_eq!(fx.read(stale), Err(Errno::ENODEV));

    fx.core.borrow_mut().put(old);
    assert_eq!(fx.core.borrow().state(old), DeviceState::Released);
    let new = fx.add("t1", None);
    assert_ne!(new, old, "a new object, never the old slot");
    assert!(fx.core.borrow().generation(new) > fx.core.borrow().generation(old));

    assert_eq!(fx.read(stale), Err(Errno::ENODEV), "the stale handle must not reach the new device");
    assert_eq!(fx.read(writer), Err(Errno::ENODEV));
    let fresh = fx.open("root/testbus/t1/value").unwrap();
    assert_eq!(fx.read(fresh), Ok(b"t1\n".to_vec()), "the new device shows its own value");
    assert_eq!(fx.core.borrow().bug_count(), 0);
}

/// (b) on the bus level: `bus/testbus/devices/<name>` is one namespace for
/// all parents, so a name whose old link has not yet drained is busy there
/// too. Before the fix the new device registered without its bus link.
#[test]
fn b_a_name_still_draining_elsewhere_on_the_bus_is_busy() {
    let mut fx = Fixture::new();
    fx.add("a", None);
    fx.add("b", None);
    let old = fx.core.borrow().bus_find_device(fx.tb.bus, "a").unwrap();
    let handle = fx.open("root/testbus/a/value").unwrap();
    fx.core.borrow_mut().fs.hold("root/testbus/a/value").unwrap();
    let read = fx.spawn_read(handle);
    let del = fx.spawn_unregister(old);
    fx.run(3);
    assert_eq!(fx.core.borrow().state(old), DeviceState::Dying, "draining the held read");

    let elsewhere = fx.tb.add(&mut fx.core.borrow_mut(), "a", Some("b"));
    assert_eq!(elsewhere, Err(Errno::EBUSY));

    fx.core.borrow_mut().fs.unhold("root/testbus/a/value").unwrap();
    fx.run_until_idle();
    assert_eq!((read.take(), del.take()), (Some(Ok(b"a\n".to_vec())), Some(Ok(()))));
    let new = fx.add("a", Some("b"));
    let link = fx.core.borrow().fs.lookup("bus/testbus/devices/a").unwrap();
    let dir = fx.core.borrow().fs.lookup("root/testbus/b/a").unwrap();
    assert_eq!(link, dir, "the bus link names the new device");
    assert_eq!(fx.core.borrow().state(new), DeviceState::Registered);
}

/// (c) Removal while a read is in progress: the read finishes with the old
/// data, removal waits for it, and nothing new starts in between.
/// Order: show_enter, del_start, show_exit, del_end.
#[test]
fn c_removal_waits_for_a_read_in_progress_and_refuses_new_ones() {
    let mut fx = Fixture::new();
    let log = new_log();
    let dev = fx.add_probe("p1", None, &log);
    let path = "root/testbus/p1/value";
    let handle = fx.open(path).unwrap();
    let other = fx.open(path).unwrap();
    let node = fx.core.borrow().fs.lookup(path).unwrap();
    fx.core.borrow_mut().fs.hold(path).unwrap();

    let (core, read_log) = (fx.core.clone(), log.clone());
    let read = fx.spawn(async move {
        read_log.borrow_mut().push(String::from("show_enter"));
        let result = file::read(&core, handle).await;
        read_log.borrow_mut().push(String::from("show_exit"));
        result
    });
    fx.run(1);
    assert_eq!(fx.core.borrow().fs.active(node), 1, "the read is inside its active reference");

    let (core, del_log) = (fx.core.clone(), log.clone());
    let del = fx.spawn(async move {
        del_log.borrow_mut().push(String::from("del_start"));
        let result = crate::base::device_unregister(&core, dev).await;
        del_log.borrow_mut().push(String::from("del_end"));
        result
    });
    fx.run(5);
    assert_eq!(fx.core.borrow().state(dev), DeviceState::Dying);
    assert_eq!(del.borrow().as_ref(), None, "removal waits for the read");

    // The window: no new open, no new read.
    assert_eq!(fx.open(path), Err(Errno::ENOENT));
    let late = fx.spawn_read(other);
    fx.run(1);
    assert_eq!(late.take(), Some(Err(Errno::ENODEV)));
    assert_eq!(fx.core.borrow().fs.active(node), 1, "the failed read took no active reference");

    fx.core.borrow_mut().fs.unhold(path).unwrap();
    fx.run_until_idle();
    assert_eq!(read.take(), Some(Ok(b"p1\n".to_vec())), "the read in flight returns the old data");
    assert_eq!(del.take(), Some(Ok(())));
    assert_eq!(*log.borrow(), ["show_enter", "del_start", "show p1 value", "show_exit", "del_end"]);
    assert_eq!(fx.core.borrow().state(dev), DeviceState::Released);
    assert_eq!(fx.core.borrow().totals().active, 0);
}

/// (d) `release()` runs exactly once, after the last put, and a child is
/// released before its parent even when the parent's last external
/// reference goes first.
#[test]
fn d_release_runs_once_and_children_go_before_parents() {
    let mut fx = Fixture::new();
    let a = fx.add("a", None);
    let b = fx.add("b", Some("a"));
    let c = fx.add("c", Some("b"));
    let released_before = fx.core.borrow().totals().released;
    fx.core.borrow_mut().get(a);
    fx.core.borrow_mut().get(b);

    fx.unregister(a);
    assert_eq!(fx.core.borrow().state(c), DeviceState::Released, "nobody else held c");
    assert_eq!([a, b].map(|d| fx.core.borrow().state(d)), [DeviceState::Deleted; 2]);
    assert_eq!(fx.core.borrow().totals().leaked, 2, "deleted but referenced");

    fx.core.borrow_mut().put(a);
    assert_eq!(fx.core.borrow().state(a), DeviceState::Deleted, "b's reference keeps its parent");
    fx.core.borrow_mut().put(b);
    let seq = [c, b, a].map(|d| fx.core.borrow().release_seq(d).expect("released"));
    assert!(seq[0] < seq[1] && seq[1] < seq[2], "release order c, b, a: {seq:?}");
    let totals = fx.core.borrow().totals();
    assert_eq!(totals.released - released_before, 3, "each object released exactly once");
    assert_eq!((totals.leaked, totals.bugs), (0, 0));
}

/// (d) Breaking the rules is a BUG with a clear text, never a second
/// release: a put after release (underflow), and a get on a released object.
#[test]
fn d_put_or_get_after_release_is_a_bug() {
    let mut fx = Fixture::new();
    let a = fx.add("a", None);
    fx.unregister(a);
    fx.events();
    let released = fx.core.borrow().totals().released;

    fx.core.borrow_mut().put(a);
    assert_eq!(fx.core.borrow().bug_count(), 1);
    assert_eq!(
        fx.events(),
        [KernelEvent::Bug(String::from("put_device after release (refcount underflow) on root/testbus/a"))]
    );
    fx.core.borrow_mut().get(a);
    assert_eq!(fx.core.borrow().bug_count(), 2);
    assert_eq!(fx.events(), [KernelEvent::Bug(String::from("get_device on released device root/testbus/a"))]);
    assert_eq!(fx.core.borrow().totals().released, released, "no second release");
}

/// (d) Dropping the last reference of a registered device would free an
/// object the system still uses: a BUG, and the object stays.
#[test]
fn d_release_while_registered_is_a_bug() {
    let fx = Fixture::new();
    let x = fx.add("x", None);
    fx.events();
    fx.core.borrow_mut().put(x); // the creator's reference, without device_del
    assert_eq!(fx.core.borrow().bug_count(), 1);
    assert_eq!(fx.events(), [KernelEvent::Bug(String::from("release of root/testbus/x while still registered"))]);
    assert_eq!(fx.core.borrow().state(x), DeviceState::Registered);
    assert_eq!(fx.core.borrow().release_seq(x), None);
}

/// (e) Once `device_del` has started, lookups refuse the device, opens give
/// ENOENT and binding skips it, even while it is still on the bus list
/// (here: waiting for a child whose read is held). A reference taken before
/// stays usable.
#[test]
fn e_after_del_starts_nothing_finds_or_binds_the_device() {
    let mut fx = Fixture::new();
    let log = new_log();
    let parent = fx.add_probe("p1", None, &log);
    let child = fx.add_probe("q", Some(parent), &log);
    fx.core.borrow_mut().get(parent); // an iterator sitting on the node
    let handle = fx.open("root/testbus/p1/q/value").unwrap();
    fx.core.borrow_mut().fs.hold("root/testbus/p1/q/value").unwrap();
    let read = fx.spawn_read(handle);
    let del = fx.spawn_unregister(parent);
    fx.run(3);
    assert_eq!([parent, child].map(|d| fx.core.borrow().state(d)), [DeviceState::Dying; 2]);
    assert!(fx.core.borrow().bus_devices(fx.tb.bus).contains(&parent), "still on the bus list, waiting for q");

    {
        let core = fx.core.borrow();
        assert_eq!(core.bus_find_device(fx.tb.bus, "p1"), None);
        assert_eq!(core.find_child(Some(fx.tb.root), "p1"), None);
        assert_eq!(core.find_child(Some(parent), "q"), None);
        assert!(!core.children(fx.tb.root).contains(&parent));
        assert_eq!(core.name(parent), "p1", "the pinned reference still works");
    }
    assert_eq!(fx.open("root/testbus/p1/value"), Err(Errno::ENOENT));
    assert_eq!(fx.open("bus/testbus/devices/p1/name"), Err(Errno::ENOENT));

    // driver_attach: a new driver is offered every unbound device on the bus.
    let drv =
        fx.core.borrow_mut().driver_register(fx.tb.bus, Rc::new(ProbeDriver { name: "probedrv", log: log.clone() }));
    assert_eq!(fx.core.borrow().driver(parent), None, "driver_attach must skip a dying device");
    let bind = dd::bind(&mut fx.core.borrow_mut(), fx.tb.bus, parent, drv);
    assert_eq!(bind, Err(Errno::ENODEV));
    assert!(!log.borrow().iter().any(|l| l.starts_with("probe")), "probe ran: {:?}", log.borrow());

    fx.core.borrow_mut().fs.unhold("root/testbus/p1/q/value").unwrap();
    fx.run_until_idle();
    assert_eq!((read.take(), del.take()), (Some(Ok(b"q\n".to_vec())), Some(Ok(()))));
    fx.core.borrow_mut().put(parent);
    assert_eq!([parent, child].map(|d| fx.core.borrow().state(d)), [DeviceState::Released; 2]);
    let totals = fx.core.borrow().totals();
    assert_eq!((totals.leaked, totals.bugs, totals.active), (0, 0, 0));
}

/// (c) across two removals: a child is already draining a held read under
/// its own removal when its parent's removal starts. The parent must wait
/// for that child to finish (children are removed before parents), and no
/// driverfs node may be left behind.
#[test]
fn c_a_parent_removal_waits_for_a_child_removal_already_draining() {
    let mut fx = Fixture::new();
    let parent = fx.add("a", None);
    let child = fx.add("b", Some("a"));
    let path = "root/testbus/a/b/value";
    let handle = fx.open(path).unwrap();
    fx.core.borrow_mut().fs.hold(path).unwrap();
    let read = fx.spawn_read(handle);
    let child_del = fx.spawn_unregister(child);
    fx.run(2);
    let parent_del = fx.spawn_unregister(parent);
    fx.run(5);
    assert_eq!(fx.core.borrow().state(child), DeviceState::Dying);
    assert_eq!(parent_del.borrow().as_ref(), None, "the parent's removal finished before its child's");
    assert_eq!(fx.core.borrow().state(parent), DeviceState::Dying);
    // Closing the handle leaves the read's active reference as the only
    // thing keeping the node: it must still be freed when the read ends.
    fx.core.borrow_mut().fs.close(handle).unwrap();

    fx.core.borrow_mut().fs.unhold(path).unwrap();
    fx.run_until_idle();
    assert_eq!(read.take(), Some(Ok(b"b\n".to_vec())));
    assert_eq!((child_del.take(), parent_del.take()), (Some(Ok(())), Some(Ok(()))));
    assert_eq!([parent, child].map(|d| fx.core.borrow().state(d)), [DeviceState::Released; 2]);
    assert_eq!(fx.core.borrow().fs.unlinked_nodes(), 0, "a driverfs node leaked");
}

/// A held read announces `* held <path>` once it is blocked inside show()
/// (not when the hold is armed), by its canonical path even when opened
/// through a link, so the harness can start a removal knowing the read is
/// in flight.
#[test]
fn a_held_read_says_when_it_blocks_inside_show() {
    let mut fx = Fixture::new();
    fx.add("a", None);
    fx.events();
    fx.core.borrow_mut().fs.hold("bus/testbus/devices/a/value").unwrap();
    fx.run_until_idle();
    assert_eq!(fx.events(), Vec::new(), "arming a hold says nothing");
    let handle = fx.open("bus/testbus/devices/a/value").unwrap();
    let read = fx.spawn_read(handle);
    fx.run(3);
    assert_eq!(fx.events(), vec![KernelEvent::Notice("held root/testbus/a/value".into())]);
    assert_eq!(read.take(), None, "still blocked");
    fx.core.borrow_mut().fs.unhold("root/testbus/a/value").unwrap();
    fx.run_until_idle();
    assert_eq!(read.take(), Some(Ok(b"a\n".to_vec())));
    assert_eq!(fx.events(), Vec::new(), "one notice per held read");
}
