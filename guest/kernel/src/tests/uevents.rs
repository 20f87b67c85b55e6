//! Uevent order, as Linux sends them: `add` then `bind` on registration,
//! `unbind` then `remove` on unregistration, children before parents, and a
//! SEQNUM that only grows.

use alloc::string::String;
use alloc::vec::Vec;

use super::{Fixture, seqnum, uevent_lines};
use crate::base::{Core, KernelEvent};
use crate::testbus::TestBus;

#[test]
fn registration_sends_add_then_bind_with_the_bus_and_driver() {
    let fx = Fixture::new();
    fx.add("t1", None);
    let lines: Vec<String> = uevent_lines(fx.events());
    assert_eq!(
        lines,
        [
            "add root/testbus/t1 SUBSYSTEM=testbus TESTDEV=t1 SEQNUM=1",
            "bind root/testbus/t1 SUBSYSTEM=testbus DRIVER=testdrv TESTDEV=t1 SEQNUM=2",
        ]
    );
}

#[test]
fn unregistration_sends_unbind_then_remove_children_first() {
    let mut fx = Fixture::new();
    let a = fx.add("a", None);
    fx.add("b", Some("a"));
    fx.add("c", Some("a"));
    fx.add("d", Some("b"));
    fx.events();
    fx.unregister(a);
    assert_eq!(
        fx.uevents(),
        [
            // Newest child first, each subtree depth first.
            "unbind root/testbus/a/c",
            "remove root/testbus/a/c",
            "unbind root/testbus/a/b/d",
            "remove root/testbus/a/b/d",
            "unbind root/testbus/a/b",
            "remove root/testbus/a/b",
            "unbind root/testbus/a",
            "remove root/testbus/a",
        ]
    );
}

#[test]
fn seqnum_increases_by_one_across_every_event() {
    let mut fx = Fixture::new();
    let a = fx.add("a", None);
    fx.add("b", Some("a"));
    fx.unregister(a);
    fx.add("a", None);
    let seqnums: Vec<u64> = fx
        .events()
        .iter()
        .map(|e| match e {
            KernelEvent::Uevent(u) => seqnum(u),
            KernelEvent::Bug(text) => panic!("BUG: {text}"),
            KernelEvent::Notice(text) => panic!("unexpected notice: {text}"),
        })
        .collect();
    assert_eq!(seqnums, (1..=10).collect::<Vec<u64>>());
    assert_eq!(fx.core.borrow().seqnum(), 10);
}

/// Like Linux's `dev_uevent_filter`: a device without a bus (the test bus
/// root, `pci0`) tells userspace nothing.
#[test]
fn devices_without_a_bus_send_no_uevents() {
    let mut core = Core::new();
    TestBus::init(&mut core);
    assert!(core.take_events().is_empty());
    assert_eq!(core.seqnum(), 0);
}
