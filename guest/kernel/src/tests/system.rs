//! The whole guest on a [`FakePlatform`]: requests go into COM2, replies and
//! asynchronous lines come out of it, and [`System::step`] is the main loop.
//! Checks the framing of the control protocol (docs/control-protocol.md) on the wire, the order replies come in
//! when requests wait, and how the guest leaves.

use alloc::string::String;
use alloc::vec::Vec;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::cmdline::Cmdline;
use crate::fake_platform::FakePlatform;
use crate::hw::ExitCode;
use crate::pci::fake::{FakeBar, FakeFunction, FakePci, Segment};
use crate::system::System;

/// One message on COM2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Message {
    Ok {
        tag: String,
        payload: String,
    },
    Err {
        tag: String,
        errno: String,
    },
    /// A `* ...` line, without the `* ` and the newline.
    Async(String),
}

/// Split COM2 output into messages, strictly: every byte belongs to a
/// header line, a payload of exactly the announced length, or a `*` line.
/// An asynchronous line inside a payload would show up as a wrong payload
/// and a broken header after it.
pub(super) fn parse(out: &[u8]) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        let end = rest.iter().position(|b| *b == b'\n').expect("every header ends with a newline");
        let line = core::str::from_utf8(&rest[..end]).expect("header lines are UTF-8");
        rest = &rest[end + 1..];
        if let Some(text) = line.strip_prefix("* ") {
            messages.push(Message::Async(String::from(text)));
            continue;
        }
        let mut words = line.splitn(4, ' ');
        let (tag, status) = (words.next().unwrap(), words.next().unwrap_or_default());
        match status {
            "ok" => {
                let words: Vec<&str> = words.collect();
                assert_eq!(words.len(), 1, "`<tag> ok <n>` has nothing after n: {line:?}");
                let n: usize = words[0].parse().unwrap_or_else(|_| panic!("bad length in {line:?}"));
                assert!(rest.len() >= n, "payload of {tag} truncated");
                let payload = String::from_utf8(rest[..n].to_vec()).expect("payloads here are text");
                rest = &rest[n..];
                messages.push(Message::Ok { tag: String::from(tag), payload });
            }
            "err" => {
                let errno = words.next().expect("an errno");
                assert!(errno.starts_with('E'), "{line:?}");
                messages.push(Message::Err { tag: String::from(tag), errno: String::from(errno) });
            }
            _ => panic!("not a reply or an asynchronous line: {line:?}"),
        }
    }
    messages
}

fn boot(pci: FakePci) -> (&'static FakePlatform, System) {
    let platform = FakePlatform::new(pci).leak();
    let system = System::boot(platform, &Cmdline::new("console=ttyS0"));
    (platform, system)
}

fn steps(system: &mut System, n: usize) {
    for _ in 0..n {
        system.step();
    }
}

fn reply_tags(messages: &[Message]) -> Vec<&str> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Ok { tag, .. } | Message::Err { tag, .. } => Some(tag.as_str()),
            Message::Async(_) => None,
        })
        .collect()
}

fn payload<'a>(messages: &'a [Message], tag: &str) -> &'a str {
    messages
        .iter()
        .find_map(|m| match m {
            Message::Ok { tag: t, payload } if t == tag => Some(payload.as_str()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ok reply for {tag}: {messages:?}"))
}

fn uevents(messages: &[Message]) -> Vec<&str> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Async(text) => text.strip_prefix("uevent "),
            _ => None,
        })
        .collect()
}

#[test]
fn boot_announces_the_pci_devices_and_says_hello() {
    let (platform, mut system) = boot(FakePci::pc());
    platform.push_control("1 hello\n");
    steps(&mut system, 3);
    let messages = parse(&platform.control_output());
    assert!(platform.console_output().contains("booting, cmdline \"console=ttyS0\""));
    let events: Vec<&str> = uevents(&messages).into_iter().map(|u| u.rsplit_once(" SUBSYSTEM=").unwrap().0).collect();
    assert_eq!(
        events,
        [
            "add root/pci0/00:00.0",
            "add root/pci0/00:01.0",
            "add root/pci0/00:01.1",
            "add root/pci0/00:01.3",
            "bind root/pci0/00:01.1",
        ],
        "one add per function, then the IDE driver binds 00:01.1"
    );
    assert_eq!(
        uevents(&messages)[4],
        "bind root/pci0/00:01.1 SUBSYSTEM=pci DRIVER=piix-ide PCI_CLASS=10180 PCI_ID=8086:7010 PCI_SLOT_NAME=00:01.1 SEQNUM=5"
    );
    let hello = payload(&messages, "1");
    assert!(hello.starts_with("protocol 1\nguest driverfs-guest "), "{hello}");
    assert!(hello.lines().any(|l| l.starts_with("features ") && l.contains(" hold ")), "{hello}");
}

/// A read held inside show() and a removal draining it do not stop the
/// channel: later requests are answered first, the read answers after
/// `unhold` with the old value, and the removal after the read.
#[test]
fn held_read_and_draining_removal_reply_in_order_without_blocking_the_channel() {
    let (platform, mut system) = boot(FakePci::pc());
    for line in [
        "1 hello\n",
        "2 testdev add t1\n",
        "3 open root/testbus/t1/value\n",
        "4 hold root/testbus/t1/value\n",
        "5 read 1\n",
        "6 testdev del t1\n",
        "7 stats\n",
        "8 open root/testbus/t1/value\n",
    ] {
        platform.push_control(line);
        steps(&mut system, 2);
    }
    steps(&mut system, 5);
    let before_unhold = parse(&platform.control_output());
    assert_eq!(reply_tags(&before_unhold), ["1", "2", "3", "4", "7", "8"], "5 and 6 wait, nothing else does");

    platform.push_control("9 unhold root/testbus/t1/value\n");
    steps(&mut system, 5);
    let messages = parse(&platform.control_output());
    assert_eq!(reply_tags(&messages), ["1", "2", "3", "4", "7", "8", "9", "5", "6"]);
    assert_eq!(payload(&messages, "2"), "root/testbus/t1");
    assert_eq!(payload(&messages, "3"), "1", "the first handle");
    assert_eq!(payload(&messages, "5"), "t1\n", "the held read returns the old value");
    assert_eq!(payload(&messages, "6"), "");
    assert!(messages.contains(&Message::Err { tag: String::from("8"), errno: String::from("ENOENT") }));
    let stats = payload(&messages, "7");
    // pci0, its four functions, testbus and the two IDE channels of
    // piix-ide (no drives on this machine), plus t1 while it drains.
    assert!(stats.contains("live 9\nregistered 8\nreleased 0\nleaked 0\nbugs 0\nhandles 1\nactive 1\n"), "{stats}");
    assert!(
        stats.contains("device root/pci0/00:01.1/ide1 state=registered refcount=1 active=0 generation=8\n"),
        "{stats}"
    );
    assert!(stats.contains("device root/testbus/t1 state=dying refcount=1 active=1 generation=9\n"), "{stats}");
    for m in &messages {
        if let Message::Ok { payload, .. } = m {
            assert!(!payload.contains("* "), "an asynchronous line inside a payload: {payload:?}");
        }
    }
    assert_eq!(
        uevents(&messages)[5..],
        [
            "add root/testbus/t1 SUBSYSTEM=testbus TESTDEV=t1 SEQNUM=6",
            "bind root/testbus/t1 SUBSYSTEM=testbus DRIVER=testdrv TESTDEV=t1 SEQNUM=7",
            "unbind root/testbus/t1 SUBSYSTEM=testbus DRIVER=testdrv TESTDEV=t1 SEQNUM=8",
            "remove root/testbus/t1 SUBSYSTEM=testbus TESTDEV=t1 SEQNUM=9",
        ]
    );
    // The cause comes before the effect: `add` before the reply to 2,
    // `remove` before the reply to 6.
    let position = |wanted: &Message| messages.iter().position(|m| m == wanted).unwrap();
    let add = Message::Async(String::from("uevent add root/testbus/t1 SUBSYSTEM=testbus TESTDEV=t1 SEQNUM=6"));
    let remove = Message::Async(String::from("uevent remove root/testbus/t1 SUBSYSTEM=testbus TESTDEV=t1 SEQNUM=9"));
    assert!(
        position(&add) < position(&Message::Ok { tag: String::from("2"), payload: String::from("root/testbus/t1") })
    );
    assert!(position(&remove) < position(&Message::Ok { tag: String::from("6"), payload: String::new() }));
}

/// Bad input gets an error reply and the stream goes on. Lines that cannot
/// be parsed are answered at once, served requests when their task runs:
/// replies are matched by tag, not by order.
#[test]
fn malformed_requests_are_answered_with_errors() {
    let (platform, mut system) = boot(FakePci::pc());
    platform.push_control("1 frobnicate\n2 read x\n3\n4 open root/nowhere\n5 read 99\n6 hello\n");
    steps(&mut system, 3);
    let messages = parse(&platform.control_output());
    let mut errors: Vec<(&str, &str)> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Err { tag, errno } => Some((tag.as_str(), errno.as_str())),
            _ => None,
        })
        .collect();
    errors.sort();
    assert_eq!(errors, [("1", "ENOSYS"), ("2", "EINVAL"), ("3", "EINVAL"), ("4", "ENOENT"), ("5", "EBADF")]);
    assert!(payload(&messages, "6").starts_with("protocol 1\n"));
}

/// `poweroff` leaves through exit(PowerOff), and only once its reply is on
/// the wire.
#[test]
fn poweroff_exits_after_its_reply_was_written() {
    let (platform, mut system) = boot(FakePci::pc());
    platform.push_control("1 hello\n2 poweroff\n");
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..10 {
            system.step();
        }
    }));
    let payload = outcome.expect_err("poweroff must exit");
    assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("guest exit: PowerOff"));
    let (code, written) = platform.exited().expect("exit was called");
    assert_eq!(code, ExitCode::PowerOff);
    let out = platform.control_output();
    assert_eq!(written, out.len(), "nothing is written after exit");
    assert!(out.ends_with(b"2 ok 0\n"), "{}", String::from_utf8_lossy(&out));
}

/// A broken rule is reported on the channel (`* bug`), then the guest exits
/// with the BUG code.
#[test]
fn a_bug_is_reported_then_exits_with_the_bug_code() {
    let (platform, mut system) = boot(FakePci::pc());
    platform.push_control("1 testdev add t1\n2 selftest put t1\n");
    let outcome = catch_unwind(AssertUnwindSafe(|| steps(&mut system, 10)));
    assert!(outcome.is_err(), "a BUG exits");
    assert_eq!(platform.exited().map(|(code, _)| code), Some(ExitCode::Bug));
    let messages = parse(&platform.control_output());
    assert!(
        messages.contains(&Message::Async(String::from("bug BUG: release of root/testbus/t1 while still registered")))
    );
    assert_eq!(reply_tags(&messages), ["1", "2"]);
    assert!(
        platform.console_output().contains("BUG: release of root/testbus/t1 while still registered"),
        "the console names the BUG too: {}",
        platform.console_output()
    );
}

/// ACPI hot-plug on `pc` end to end: a hot-added function registers and is
/// announced; an unplug request with a read held on the function's file
/// removes it from the model at once but ejects the slot only after the
/// read has drained.
#[test]
fn acpi_hot_unplug_ejects_only_after_reads_in_flight_drained() {
    let (platform, mut system) = boot(FakePci::pc());
    let e1000 = FakeFunction::endpoint(0x8086, 0x100e, 0x02_00_00)
        .bar(0, FakeBar::Mem32 { size: 0x2_0000, prefetchable: false })
        .bar(1, FakeBar::Io { size: 64 })
        .pin(1);
    platform.pci.insert(Segment::ROOT, 3, 0, e1000);
    platform.acpi_hot_add(3);
    platform.push_control("1 settle\n");
    // `settle` lets every poller run (20 passes) and waits for bus work.
    steps(&mut system, 25);
    platform.push_control("2 open root/pci0/00:03.0/vendor\n3 hold root/pci0/00:03.0/vendor\n4 read 1\n");
    steps(&mut system, 3);
    platform.acpi_unplug_request(3);
    steps(&mut system, 10);
    let messages = parse(&platform.control_output());
    assert!(
        uevents(&messages).contains(
            &"add root/pci0/00:03.0 SUBSYSTEM=pci PCI_CLASS=20000 PCI_ID=8086:100E PCI_SLOT_NAME=00:03.0 SEQNUM=6"
        ),
        "{messages:?}"
    );
    assert!(uevents(&messages).iter().any(|u| u.starts_with("remove root/pci0/00:03.0 ")), "removal has started");
    assert_eq!(reply_tags(&messages), ["1", "2", "3"], "the read is still held");
    assert_eq!(platform.acpi_ejected(), [], "no eject while a read is in flight");
    assert!(!messages.contains(&Message::Async("hotplug eject 00:03".into())), "no eject notice yet");
    assert!(platform.pci.function(Segment::ROOT, 3, 0).is_some());

    platform.push_control("5 unhold root/pci0/00:03.0/vendor\n6 settle\n");
    steps(&mut system, 25);
    platform.push_control("7 snapshot bus/pci/devices\n");
    steps(&mut system, 2);
    let messages = parse(&platform.control_output());
    assert_eq!(reply_tags(&messages), ["1", "2", "3", "5", "4", "6", "7"]);
    assert_eq!(payload(&messages, "4"), "0x8086\n");
    assert_eq!(platform.acpi_ejected(), [3]);
    // The eject is announced on the channel after `remove`: the order the
    // harness checks against real QEMU.
    let position = |wanted: &dyn Fn(&Message) -> bool| messages.iter().position(wanted);
    let removed = position(&|m| matches!(m, Message::Async(t) if t.starts_with("uevent remove root/pci0/00:03.0 ")));
    let ejected = position(&|m| *m == Message::Async("hotplug eject 00:03".into()));
    assert!(removed.is_some() && removed < ejected, "remove {removed:?} must precede the eject notice {ejected:?}");
    assert!(platform.pci.function(Segment::ROOT, 3, 0).is_none(), "QEMU finished the unplug");
    assert!(!payload(&messages, "7").contains("00:03.0"), "{}", payload(&messages, "7"));
}

/// `q35` boots the same way: root ports get their windows and numbers, and
/// the snapshot verb shows the tree. (Their empty hot-plug slots stay
/// powered off; tests/pciehp.rs plugs devices into them.)
#[test]
fn q35_boots_and_answers_a_snapshot() {
    let (platform, mut system) = boot(FakePci::q35());
    platform.push_control("1 snapshot bus/pci/devices\n2 snapshot root/pci0/00:11.0\n");
    steps(&mut system, 3);
    let messages = parse(&platform.control_output());
    assert_eq!(
        payload(&messages, "1"),
        "\
d bus/pci/devices
l bus/pci/devices/00:00.0 -> ../../../root/pci0/00:00.0
l bus/pci/devices/00:10.0 -> ../../../root/pci0/00:10.0
l bus/pci/devices/00:11.0 -> ../../../root/pci0/00:11.0
l bus/pci/devices/00:1f.0 -> ../../../root/pci0/00:1f.0
l bus/pci/devices/00:1f.2 -> ../../../root/pci0/00:1f.2
l bus/pci/devices/00:1f.3 -> ../../../root/pci0/00:1f.3
"
    );
    assert!(
        payload(&messages, "2").contains(
            "f root/pci0/00:11.0/resource bar0 mem32 0xc0001000-0xc0001fff\\nbuses 05-08\\nwindow io 0x2000-0x2fff\\nwindow mem 0xc0500000-0xc08fffff\n"
        ),
        "{messages:?}"
    );
    assert_eq!(uevents(&messages).len(), 6, "one add per function");
}

/// A console nobody reads (COM1's THR never empties) costs the guest a
/// bounded wait once, then its lines are dropped and counted: hot-plug and
/// the control channel carry on, and the console resumes when the host
/// reads again.
#[test]
fn a_stalled_console_drops_and_counts_its_output_and_the_guest_carries_on() {
    let (platform, mut system) = boot(FakePci::pc());
    platform.stall_console(true);
    let edu = FakeFunction::endpoint(0x1234, 0x11e8, 0x00_ff_00)
        .bar(0, FakeBar::Mem32 { size: 0x10_0000, prefetchable: false });
    platform.pci.insert(Segment::ROOT, 5, 0, edu);
    platform.acpi_hot_add(5);
    platform.push_control("1 settle\n");
    steps(&mut system, 25);
    platform.acpi_unplug_request(5);
    platform.push_control("2 settle\n");
    steps(&mut system, 25);
    platform.push_control("3 stats\n");
    steps(&mut system, 2);
    let messages = parse(&platform.control_output());
    assert_eq!(reply_tags(&messages), ["1", "2", "3"]);
    assert_eq!(platform.acpi_ejected(), [5], "the unplug completed with the console stalled");
    let console = platform.console_output();
    assert!(!console.contains("hot-add on 00:05"), "nothing got through a stalled console: {console}");
    let dropped = |stats: &str| -> u64 {
        let line = stats.lines().find_map(|l| l.strip_prefix("console_dropped ")).expect("stats count console drops");
        line.parse().unwrap()
    };
    // The counter is process-wide (the panic path needs it without a
    // kernel), so only this test may stall a console.
    let before = dropped(payload(&messages, "3"));
    assert!(before >= "pci: hot-add on 00:05: 1 function(s)\r\n".len() as u64, "dropped {before}");

    platform.stall_console(false);
    platform.acpi_hot_add(5);
    platform.pci.insert(Segment::ROOT, 5, 0, FakeFunction::endpoint(0x1234, 0x11e8, 0x00_ff_00));
    platform.push_control("4 settle\n5 stats\n");
    steps(&mut system, 25);
    assert!(platform.console_output().contains("pci: hot-add on 00:05"), "the console resumed");
    let messages = parse(&platform.control_output());
    assert_eq!(dropped(payload(&messages, "5")), before, "nothing dropped once the host reads again");
}

/// A control reader that stops reading holds the guest's output in its
/// queue, never drops a byte, and never stops bus work: a hot-unplug
/// completes meanwhile, and everything arrives in order when it reads again.
#[test]
fn a_stalled_control_reader_loses_nothing_and_stops_no_bus_work() {
    let (platform, mut system) = boot(FakePci::pc());
    platform.push_control("1 hello\n");
    steps(&mut system, 2);
    let written = platform.control_output().len();
    platform.stall_control(true);
    let edu = FakeFunction::endpoint(0x1234, 0x11e8, 0x00_ff_00)
        .bar(0, FakeBar::Mem32 { size: 0x10_0000, prefetchable: false });
    platform.pci.insert(Segment::ROOT, 6, 0, edu);
    platform.acpi_hot_add(6);
    platform.push_control("2 settle\n3 snapshot\n");
    steps(&mut system, 25);
    platform.acpi_unplug_request(6);
    platform.push_control("4 settle\n");
    steps(&mut system, 25);
    assert_eq!(platform.acpi_ejected(), [6], "the eject did not wait for the reader");
    assert_eq!(platform.control_output().len(), written, "nothing sent while the reader is stalled");

    platform.stall_control(false);
    steps(&mut system, 2);
    let messages = parse(&platform.control_output());
    assert_eq!(reply_tags(&messages), ["1", "3", "2", "4"], "every reply, in the order they were made");
    let events = uevents(&messages);
    assert!(events.iter().any(|u| u.starts_with("add root/pci0/00:06.0 ")), "{events:?}");
    assert!(events.iter().any(|u| u.starts_with("remove root/pci0/00:06.0 ")), "{events:?}");
    assert!(messages.contains(&Message::Async("hotplug eject 00:06".into())));
    assert!(payload(&messages, "3").contains("d root/pci0/00:06.0\n"));
}
