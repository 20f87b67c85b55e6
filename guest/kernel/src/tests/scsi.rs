//! virtio-scsi and the SCSI midlayer through the whole guest, on the fake
//! virtio-scsi device behind either transport (shared behaviour with QEMU
//! 7.2 is documented in `fake_platform/virtio_scsi.rs`).

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::machine::{Machine, baseline, generation};
use crate::fake_platform::{FakeMedia, FakePlatform, FakeVirtioScsi};
use crate::pci::fake::{FakePci, Segment};
use crate::scsi::cdb;
use crate::virtio::virtqueue::{self, Segment as VqSegment, Virtqueue};

const HBA: &str = "root/pci0/00:04.0";
const HOST: &str = "root/pci0/00:04.0/host0";
const LUN10: &str = "root/pci0/00:04.0/host0/target0:0:1/0:0:1:0";
const SIGNATURE: u32 = 0x2002_1007;

/// A disk of `sectors` 512-byte sectors with an MBR: signature and two
/// partitions.
fn disk(sectors: usize) -> FakeMedia {
    let mut data = vec![0u8; sectors * 512];
    data[440..444].copy_from_slice(&SIGNATURE.to_le_bytes());
    for (i, (kind, start, len)) in [(0x83u8, 64u32, 100u32), (0x0c, 164, 200)].into_iter().enumerate() {
        let e = 446 + 16 * i;
        data[e + 4] = kind;
        data[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
        data[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
    }
    data[510] = 0x55;
    data[511] = 0xaa;
    FakeMedia::Disk { data, block_size: 512 }
}

/// `pc` with a transitional virtio-scsi-pci in slot 4 (legacy transport).
fn pc_with(setup: impl FnOnce(&FakeVirtioScsi), cmdline: &str) -> (Machine, Rc<FakeVirtioScsi>) {
    let platform = FakePlatform::new(FakePci::pc());
    let hba = FakeVirtioScsi::new((Segment::ROOT, 4, 0), false, Rc::clone(&platform.memory));
    setup(&hba);
    platform.pci.insert(Segment::ROOT, 4, 0, hba.function());
    platform.attach_bar_device(hba.clone());
    let mut m = Machine::boot_with(platform, cmdline, crate::system::SUBSYSTEMS);
    m.settle();
    (m, hba)
}

fn pc_disk() -> (Machine, Rc<FakeVirtioScsi>) {
    pc_with(|h| h.attach(1, 0, disk(4096)), "")
}

fn read(m: &mut Machine, path: &str) -> String {
    m.read(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[test]
fn virtqueue_layout_and_chains_follow_the_legacy_rules() {
    assert_eq!(virtqueue::layout(256), (0x1000, 0x2000, 0x3000), "avail at +0x1000, used at +0x2000, 3 pages");
    let p = FakePlatform::new(FakePci::new()).leak();
    let mut q = Virtqueue::new(p, 2, 4).unwrap();
    assert_eq!(q.desc_addr() % 4096, 0);
    let seg = |phys, len, writable| VqSegment { phys, len, writable };
    let head = q.add(&[seg(0x1000, 51, false), seg(0x2000, 108, true), seg(0x3000, 512, true)]).unwrap();
    assert_eq!(q.free_descriptors(), 1);
    assert!(q.add(&[seg(0, 1, false), seg(0, 1, false)]).is_none(), "not enough descriptors");
    let mem = &p.memory;
    let d = q.desc_addr() + 16 * u64::from(head);
    assert_eq!((mem.u64(d), mem.u32(d + 8), mem.u16(d + 12)), (0x1000, 51, 1), "NEXT, device-readable");
    let next = mem.u16(d + 14);
    let d2 = q.desc_addr() + 16 * u64::from(next);
    assert_eq!((mem.u64(d2), mem.u16(d2 + 12)), (0x2000, 3), "NEXT | WRITE");
    assert_eq!(mem.u16(q.avail_addr() + 2), 1, "avail idx published");
    assert_eq!(mem.u16(q.avail_addr() + 4), head);
    assert_eq!(q.pop_used(), None);
    // The device gives it back.
    mem.store(q.used_addr() + 4, 4, u64::from(head));
    mem.store(q.used_addr() + 8, 4, 600);
    mem.store(q.used_addr() + 2, 2, 1);
    assert_eq!(q.pop_used(), Some(virtqueue::Used { head, len: 600 }));
    assert_eq!(q.free_descriptors(), 1, "the head stays taken until its waiter is done with it");
    q.recycle(head);
    assert_eq!(q.free_descriptors(), 4, "the whole chain is free again");
    assert_eq!(q.in_flight(), 0);
}

#[test]
fn cdbs_and_replies_are_big_endian_as_scsi_wants() {
    assert_eq!(cdb::read_10(0x0102_0304, 0x0506), [0x28, 0, 1, 2, 3, 4, 0, 5, 6, 0]);
    assert_eq!(cdb::report_luns(520)[6..10], [0, 0, 2, 8]);
    assert_eq!(cdb::read_capacity_16()[..2], [0x9e, 0x10]);
    assert_eq!(cdb::parse_capacity_10(&[0, 1, 0xff, 0xff, 0, 0, 2, 0]), Some((0x1ffff, 512)));
    let luns = [0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0x41, 0x2c, 0, 0, 0, 0, 0, 0];
    assert_eq!(cdb::parse_report_luns(&luns), [0, 5, 300], "peripheral and flat forms");
    let sense = cdb::Sense::parse(&[0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3f, 0x0e]).unwrap();
    assert!(sense.is_luns_changed() && !sense.is_power_on_reset());
    assert_eq!(format!("{sense}"), "6/3f/0e");
    assert_eq!(cdb::Sense::parse(&[0x72, 0, 6]), None, "descriptor format is not fixed format");
}

#[test]
fn legacy_transport_negotiates_hotplug_and_change_and_never_bad_feature() {
    let (mut m, hba) = pc_disk();
    assert_eq!(hba.driver_features(), 0x6, "F_HOTPLUG | F_CHANGE of 0x79000006; never b30");
    assert_eq!(hba.status(), 1 | 2 | 4, "ACKNOWLEDGE | DRIVER | DRIVER_OK (legacy has no FEATURES_OK)");
    assert_eq!(hba.queue_sizes(), [256, 256, 256]);
    assert_eq!(hba.free_event_buffers(), 8, "eight event buffers posted");
    assert_eq!(read(&mut m, &format!("{HBA}/device")), "0x1004\n");
    assert_eq!(read(&mut m, &format!("{HOST}/proc_name")), "virtio-scsi\n");
}

#[test]
fn a_disk_shows_identity_capacity_signature_and_partitions_read_through_the_bus() {
    let (mut m, hba) = pc_disk();
    let tree = m.snapshot(HBA);
    for line in [
        "f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/vendor QEMU",
        "f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/model QEMU HARDDISK",
        "f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/rev 2.5+",
        "f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/type 0",
        "f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/scsi_level 6",
        "f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/capacity 4096",
        "f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/block_size 512",
        "f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/signature 0x20021007",
        "f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/part1/start 64",
        "f root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/part2/size 200",
        "l root/pci0/00:04.0/host0/target0:0:1/0:0:1:0/driver -> ../../../../../../bus/scsi/drivers/sd",
    ] {
        assert!(tree.lines().any(|l| l == line), "missing {line:?} in\n{tree}");
    }
    let bus = m.snapshot("bus/scsi/devices");
    for name in ["host0", "target0:0:1", "0:0:1:0"] {
        assert!(bus.contains(&format!("bus/scsi/devices/{name} ->")), "{name} on bus scsi:\n{bus}");
    }
    // The scan: REPORT LUNS on every target, then INQUIRY, TEST UNIT READY
    // (past 6/29/00), READ CAPACITY(10), READ(10) of sector 0 on the disk.
    let disk_cmds: Vec<u8> = hba.command_log().iter().filter(|(t, _, _)| *t == 1).map(|(_, _, op)| *op).collect();
    assert_eq!(disk_cmds, [0xa0, 0x12, 0x00, 0x00, 0x25, 0x28], "the first TUR got 6/29/00 and was retried");
    let targets_probed = hba.command_log().iter().filter(|(_, _, op)| *op == 0xa0).count();
    assert_eq!(targets_probed, 256, "REPORT LUNS to targets 0..=255");
    let add = m.uevents().into_iter().find(|u| u.starts_with(&format!("add {LUN10} "))).expect("an add uevent");
    assert!(add.contains("SUBSYSTEM=scsi") && add.contains("SCSI_TYPE=0"), "{add}");
}

#[test]
fn the_boot_tree_is_the_same_every_run() {
    let (mut a, _) = pc_disk();
    let (mut b, _) = pc_disk();
    assert_eq!(a.snapshot("root"), b.snapshot("root"));
}

#[test]
fn modern_transport_behind_a_q35_root_port_finds_the_same_disk() {
    let platform = FakePlatform::new(FakePci::q35());
    let seg = platform.pci.child_segment(Segment::ROOT, 0x10, 0).expect("root port segment");
    let hba = FakeVirtioScsi::new((seg, 0, 0), true, Rc::clone(&platform.memory));
    hba.attach(1, 0, disk(4096));
    platform.pci.insert(seg, 0, 0, hba.function());
    platform.attach_bar_device(hba.clone());
    let mut m = Machine::boot(platform);
    m.settle();
    assert_eq!(hba.resets(), 1, "one reset, at initialization");
    assert_eq!(hba.driver_features(), (1 << 32) | 0x6, "VERSION_1 | F_HOTPLUG | F_CHANGE");
    assert_eq!(hba.status(), 1 | 2 | 8 | 4, "FEATURES_OK before DRIVER_OK");
    assert_eq!(hba.queue_sizes(), [256, 256, 256]);
    let lun = "root/pci0/00:10.0/01:00.0/host0/target0:0:1/0:0:1:0";
    assert_eq!(read(&mut m, &format!("{lun}/capacity")), "4096\n");
    assert_eq!(read(&mut m, &format!("{lun}/signature")), "0x20021007\n");
    assert_eq!(read(&mut m, &format!("{lun}/part2/start")), "164\n");
}

#[test]
fn hot_add_and_removal_events_register_and_unregister_in_order() {
    let (mut m, hba) = pc_disk();
    let before = baseline(&m.stats());
    hba.hot_add(2, 3, disk(2048));
    m.settle();
    let lun = "root/pci0/00:04.0/host0/target0:0:2/0:0:2:3";
    assert_eq!(read(&mut m, &format!("{lun}/capacity")), "2048\n");
    // The plug set 6/3F/0E on the bus: the next command of the old disk
    // gets it once and is retried.
    m.ok("scsi rescan 0:0:1:0");
    hba.unplug(2, 3);
    m.settle();
    assert!(m.read(&format!("{lun}/capacity")).is_err());
    let events: Vec<String> = m.uevents().into_iter().filter(|u| u.contains("target0:0:2")).collect();
    let order: Vec<String> =
        events.iter().map(|u| u.split(' ').take(2).collect::<Vec<_>>().join(" ").replace(HOST, "")).collect();
    assert_eq!(
        order,
        [
            "add /target0:0:2",
            "add /target0:0:2/0:0:2:3",
            "bind /target0:0:2/0:0:2:3",
            "unbind /target0:0:2/0:0:2:3",
            "remove /target0:0:2/0:0:2:3",
            "remove /target0:0:2",
        ]
    );
    assert_eq!(baseline(&m.stats()), before, "everything released, refcounts back");
    assert_eq!(read(&mut m, &format!("{LUN10}/capacity")), "4096\n", "the other disk is untouched");
}

#[test]
fn lun_zero_missing_leaves_no_ghost_and_report_luns_lists_it_anyway() {
    let (mut m, _hba) = pc_with(|h| h.attach(3, 5, disk(1024)), "");
    let tree = m.snapshot(HOST);
    assert!(tree.contains("target0:0:3/0:0:3:5/capacity 1024"), "{tree}");
    assert!(!tree.contains("0:0:3:0"), "INQUIRY of LUN 0 says PQ 1: no device there\n{tree}");
}

#[test]
fn events_missed_rescans_the_host_and_finds_removals_by_probing() {
    // One standing buffer: the first of two plugs is delivered, the second
    // is dropped and the re-posted buffer comes back with EVENTS_MISSED.
    let (mut m, hba) = pc_with(|h| h.attach(1, 0, disk(4096)), "scsi.event_buffers=1");
    assert_eq!(hba.free_event_buffers(), 1);
    hba.hot_add(2, 0, disk(1024));
    hba.hot_add(3, 0, disk(1024));
    hba.unplug(1, 0);
    m.settle();
    let tree = m.snapshot(HOST);
    assert!(tree.contains("target0:0:2/0:0:2:0/capacity"), "{tree}");
    assert!(tree.contains("target0:0:3/0:0:3:0/capacity"), "found by the rescan\n{tree}");
    assert!(!tree.contains("0:0:1:0"), "the lost REMOVED found by probing\n{tree}");
}

#[test]
fn with_no_event_buffers_every_change_is_found_through_events_missed() {
    let (mut m, hba) = pc_with(|h| h.attach(1, 0, disk(4096)), "scsi.event_buffers=0");
    assert_eq!(hba.free_event_buffers(), 0, "none posted");
    hba.hot_add(2, 0, disk(1024));
    hba.unplug(1, 0);
    // Let the poller post its probe buffer.
    m.step(200);
    m.settle();
    let tree = m.snapshot(HOST);
    assert!(tree.contains("target0:0:2/0:0:2:0/capacity 1024"), "{tree}");
    assert!(!tree.contains("target0:0:1"), "{tree}");
}

#[test]
fn surprise_removal_with_a_read_held_drains_then_releases() {
    let (mut m, hba) = pc_disk();
    let before = baseline(&m.stats());
    let held = m.ok(&format!("open {LUN10}/capacity"));
    let other = m.ok(&format!("open {LUN10}/model"));
    m.ok(&format!("hold {LUN10}/capacity"));
    let read_tag = m.send(&format!("read {held}"));
    m.step(5);
    assert!(m.answer(&read_tag).is_none(), "the read is inside show()");
    hba.unplug(1, 0);
    m.step(20);
    assert_eq!(m.call(&format!("open {LUN10}/vendor")), Err(String::from("ENOENT")), "dying: no new opens");
    assert_eq!(m.call(&format!("read {other}")), Err(String::from("ENODEV")), "old handles: ENODEV");
    assert!(m.uevents().iter().any(|u| u.starts_with(&format!("remove {LUN10} "))), "remove sent before the drain");
    assert!(m.stats().contains(&format!("device {LUN10} ")), "not released while the read runs");
    m.ok(&format!("unhold {LUN10}/capacity"));
    assert_eq!(m.wait(&read_tag), Ok(String::from("4096\n")), "the held read returns the old value");
    m.ok(&format!("close {held}"));
    m.ok(&format!("close {other}"));
    m.settle();
    let stats = m.stats();
    assert!(!stats.contains("target0:0:1"), "LUN and target released after the drain:\n{stats}");
    assert!(stats.contains(&format!("device {HOST} state=registered refcount=1 ")), "{stats}");
    let _ = before;
    assert!(!m.stats().contains(&format!("device {LUN10} ")), "released after the drain");
}

#[test]
fn a_readd_at_the_same_address_waits_for_the_old_objects_release() {
    let (mut m, hba) = pc_disk();
    let stats = m.stats();
    let old_generation = generation(&stats, LUN10);
    m.ok(&format!("devref get {LUN10}"));
    let stale = m.ok(&format!("open {LUN10}/capacity"));
    hba.unplug(1, 0);
    hba.hot_add(1, 0, disk(8192));
    m.step(50);
    assert!(m.notices().iter().any(|n| n == "hotplug busy 0:0:1:0"), "{:?}", m.notices());
    let settle = m.send("settle");
    m.step(50);
    assert!(m.answer(&settle).is_none(), "settle waits for the held release");
    assert_eq!(m.call(&format!("read {stale}")), Err(String::from("ENODEV")));
    m.ok(&format!("devref put {LUN10}"));
    m.wait(&settle).unwrap();
    assert_eq!(read(&mut m, &format!("{LUN10}/capacity")), "8192\n", "the new disk");
    assert_eq!(m.call(&format!("read {stale}")), Err(String::from("ENODEV")), "never the new object's data");
    assert!(generation(&m.stats(), LUN10) > old_generation, "a new object generation");
}

/// The old LUN's target still has another LUN: the re-add waits for the
/// old LUN's release only, not for the target, which stays (found by
/// `cargo xtask explore`: the new LUN waited forever).
#[test]
fn a_readd_beside_a_live_lun_waits_for_the_old_lun_alone() {
    let (mut m, hba) = pc_disk();
    hba.hot_add(1, 1, disk(2048));
    m.settle();
    m.ok(&format!("devref get {LUN10}"));
    hba.unplug(1, 0);
    hba.hot_add(1, 0, disk(8192));
    m.step(50);
    assert!(m.notices().iter().any(|n| n == "hotplug busy 0:0:1:0"), "{:?}", m.notices());
    m.ok(&format!("devref put {LUN10}"));
    let settle = m.send("settle");
    m.step(200);
    assert!(m.answer(&settle).is_some(), "the re-add still waits after the old LUN's release");
    assert_eq!(read(&mut m, &format!("{LUN10}/capacity")), "8192\n", "the new disk");
    assert_eq!(read(&mut m, "root/pci0/00:04.0/host0/target0:0:1/0:0:1:1/capacity"), "2048\n", "its neighbour");
}

#[test]
fn a_command_in_flight_at_removal_fails_with_enodev_and_nothing_hangs() {
    let (mut m, hba) = pc_disk();
    hba.hold_target(1);
    m.ok("checkpoint arm scsi-io");
    let rescan = m.send("scsi rescan 0:0:1:0");
    m.step(10);
    assert!(m.notices().iter().any(|n| n == "checkpoint scsi-io 0:0:1:0 0x12"), "{:?}", m.notices());
    assert_eq!(hba.in_flight(), 1, "the INQUIRY is in the device");
    hba.unplug(1, 0);
    m.ok("checkpoint release scsi-io");
    assert_eq!(m.wait(&rescan), Err(String::from("ENODEV")), "ABORTED becomes ENODEV");
    m.settle();
    assert!(!m.snapshot(HOST).contains("target0:0:1"));
}

#[test]
fn a_removal_during_the_scan_of_a_new_lun_registers_nothing() {
    let (mut m, hba) = pc_disk();
    m.ok("checkpoint arm scsi-scan");
    hba.hot_add(2, 0, disk(1024));
    m.step(10);
    assert!(m.notices().iter().any(|n| n == "checkpoint scsi-scan 0:0:2:0"), "{:?}", m.notices());
    hba.unplug(2, 0);
    m.ok("checkpoint release scsi-scan");
    m.settle();
    assert!(!m.snapshot(HOST).contains("target0:0:2"), "BAD_TARGET after release: nothing registered");
    assert!(!m.uevents().iter().any(|u| u.contains("0:0:2:0")));
}

#[test]
fn unplugging_the_adapter_removes_luns_targets_host_then_the_function_then_ejects() {
    let platform = FakePlatform::new(FakePci::pc());
    let mut m = Machine::boot(platform);
    let p = m.p;
    let hba = FakeVirtioScsi::new((Segment::ROOT, 5, 0), false, Rc::clone(&p.memory));
    hba.attach(1, 0, disk(1024));
    hba.attach(2, 0, disk(2048));
    p.pci.insert(Segment::ROOT, 5, 0, hba.function());
    p.attach_bar_device(hba.clone());
    let before = baseline(&m.stats());
    p.acpi_hot_add(5);
    m.settle();
    let host = "root/pci0/00:05.0/host0";
    assert_eq!(read(&mut m, &format!("{host}/target0:0:2/0:0:2:0/capacity")), "2048\n");
    p.acpi_unplug_request(5);
    m.settle();
    assert_eq!(p.acpi_ejected(), [5]);
    assert!(hba.resets() >= 1, "the device was reset before the function went");
    let removes: Vec<String> = m
        .messages()
        .into_iter()
        .filter_map(|msg| match msg {
            super::system::Message::Async(t) if t.starts_with("uevent remove ") => {
                Some(String::from(t.split(' ').nth(2).unwrap()))
            }
            super::system::Message::Async(t) if t.starts_with("hotplug eject") => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(
        removes,
        [
            "root/pci0/00:05.0/host0/target0:0:2/0:0:2:0",
            "root/pci0/00:05.0/host0/target0:0:2",
            "root/pci0/00:05.0/host0/target0:0:1/0:0:1:0",
            "root/pci0/00:05.0/host0/target0:0:1",
            "root/pci0/00:05.0/host0",
            "root/pci0/00:05.0",
            "hotplug eject 00:05",
        ]
    );
    assert_eq!(baseline(&m.stats()), before, "everything released");
    assert_eq!(p.memory.live_allocations(), 0, "queues and buffers freed");
}

#[test]
fn a_second_adapter_gets_the_next_host_number_and_numbers_are_never_reused() {
    let platform = FakePlatform::new(FakePci::pc());
    let mut m = Machine::boot(platform);
    let p = m.p;
    for round in 0..2u8 {
        let hba = FakeVirtioScsi::new((Segment::ROOT, 5, 0), false, Rc::clone(&p.memory));
        hba.attach(1, 0, disk(1024));
        p.pci.insert(Segment::ROOT, 5, 0, hba.function());
        p.attach_bar_device(hba.clone());
        p.acpi_hot_add(5);
        m.settle();
        let lun = format!("root/pci0/00:05.0/host{round}/target{round}:0:1/{round}:0:1:0/capacity");
        assert_eq!(read(&mut m, &lun), "1024\n");
        p.acpi_unplug_request(5);
        m.settle();
        p.detach_bar_device((Segment::ROOT, 5, 0));
    }
}

#[test]
fn a_cd_drive_binds_sr_and_shows_its_medium_as_a_child() {
    let (mut m, _hba) = pc_with(
        |h| {
            h.attach(2, 0, FakeMedia::Cd { medium: Some(1000) });
            h.attach(3, 0, FakeMedia::Cd { medium: None });
        },
        "",
    );
    let full = "root/pci0/00:04.0/host0/target0:0:2/0:0:2:0";
    let empty = "root/pci0/00:04.0/host0/target0:0:3/0:0:3:0";
    assert_eq!(read(&mut m, &format!("{full}/type")), "5\n");
    assert_eq!(read(&mut m, &format!("{full}/model")), "QEMU CD-ROM\n");
    assert_eq!(read(&mut m, &format!("{full}/media_present")), "1\n");
    assert_eq!(read(&mut m, &format!("{full}/disc/capacity")), "4000\n", "2 KiB blocks as 512-byte sectors");
    assert_eq!(read(&mut m, &format!("{empty}/media_present")), "0\n");
    assert!(m.read(&format!("{empty}/disc/capacity")).is_err(), "no medium, no disc");
    let tree = m.snapshot(full);
    assert!(tree.contains("driver -> ../../../../../../bus/scsi/drivers/sr"), "{tree}");
}

#[test]
fn a_command_held_in_the_device_completes_when_the_device_lets_it() {
    let (mut m, hba) = pc_disk();
    hba.hold_target(1);
    let rescan = m.send("scsi rescan 0:0:1:0");
    m.step(20);
    assert!(m.answer(&rescan).is_none(), "the guest polls; nothing hangs the channel meanwhile");
    assert!(!m.ok("stats").is_empty(), "the channel answers while the command is held");
    hba.release_target(1);
    assert_eq!(m.wait(&rescan), Ok(String::new()));
}

#[test]
fn a_cd_medium_change_replaces_the_disc_object_and_sends_change() {
    let (mut m, hba) = pc_with(|h| h.attach(2, 0, FakeMedia::Cd { medium: Some(1000) }), "");
    let lun = "root/pci0/00:04.0/host0/target0:0:2/0:0:2:0";
    let old = m.ok(&format!("open {lun}/disc/capacity"));
    hba.change_medium(2, 0, Some(2000));
    m.settle();
    assert_eq!(read(&mut m, &format!("{lun}/disc/capacity")), "8000\n", "the new medium");
    assert_eq!(m.call(&format!("read {old}")), Err(String::from("ENODEV")), "the old medium's handle");
    assert!(m.uevents().iter().any(|u| u.starts_with(&format!("change {lun} "))), "{:?}", m.uevents());
    hba.change_medium(2, 0, None);
    m.settle();
    assert_eq!(read(&mut m, &format!("{lun}/media_present")), "0\n");
    assert!(m.read(&format!("{lun}/disc/capacity")).is_err());
}
