//! IDE end to end on the fake PIIX channels: what the drives show, and
//! media changes on the CD drive, which is all QEMU can change on IDE at run
//! time (docs/qemu-behaviour.md, "CD media changes"). Every medium is its own `disc`
//! object, and the drive positions are static slots reused only after
//! release (driver-model.md §6b).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::machine::{Machine, baseline, generation, stats_line};
use super::system::Message;
use crate::fake_platform::{CD_BLOCK, FakeDrive, FakePlatform, MediaError, SECTOR};
use crate::pci::fake::FakePci;

const IDE: &str = "root/pci0/00:01.1";
const DISK: &str = "root/pci0/00:01.1/ide0/0.0";
const CD: &str = "root/pci0/00:01.1/ide1/1.0";
const DISC: &str = "root/pci0/00:01.1/ide1/1.0/disc";

const SIGNATURE: u32 = 0x2002_1007;
const DISK_SECTORS: usize = 2048;

/// A disk whose sector 0 holds an MBR: signature and two partitions.
fn disk_image() -> Vec<u8> {
    let mut disk = vec![0u8; DISK_SECTORS * SECTOR];
    disk[440..444].copy_from_slice(&SIGNATURE.to_le_bytes());
    for (i, (kind, start, len)) in [(0x83u8, 63u32, 1000u32), (0x0c, 1063, 985)].into_iter().enumerate() {
        let e = 446 + 16 * i;
        disk[e + 4] = kind;
        disk[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
        disk[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
    }
    disk[510] = 0x55;
    disk[511] = 0xaa;
    disk
}

/// A CD of `blocks` 2048-byte blocks with an ISO 9660 primary volume
/// descriptor at block 16.
fn iso(blocks: usize, volume: &str) -> Vec<u8> {
    let mut image = vec![0u8; blocks * CD_BLOCK];
    let pvd = &mut image[16 * CD_BLOCK..17 * CD_BLOCK];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pvd[40..72].fill(b' ');
    pvd[40..40 + volume.len()].copy_from_slice(volume.as_bytes());
    image
}

/// `pc` with the disk as primary master and an empty CD drive as secondary
/// master, the `-device ide-hd,bus=ide.0 -device ide-cd,bus=ide.1` profile.
fn boot() -> Machine {
    let platform = FakePlatform::new(FakePci::pc()).with_drive(0, 0, FakeDrive::Disk(disk_image())).with_drive(
        1,
        0,
        FakeDrive::Cdrom(None),
    );
    let mut m = Machine::boot(platform);
    m.settle();
    m
}

/// Insert a medium (tray closed again) and let the guest notice.
fn insert(m: &mut Machine, image: Vec<u8>) {
    m.p.ide.change_medium(1, 0, image, false).expect("the tray is not locked");
    m.settle();
}

fn uevents_from(m: &Machine, from: usize) -> Vec<String> {
    m.uevents()[from..].to_vec()
}

fn attr(m: &mut Machine, path: &str) -> String {
    let value = m.read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    String::from(value.trim_end())
}

#[test]
fn boot_shows_the_disk_with_partitions_and_the_empty_cd_drive() {
    let mut m = boot();
    assert_eq!(
        m.snapshot(IDE),
        "\
d root/pci0/00:01.1
f root/pci0/00:01.1/class 0x010180
f root/pci0/00:01.1/device 0x7010
l root/pci0/00:01.1/driver -> ../../../bus/pci/drivers/piix-ide
d root/pci0/00:01.1/ide0
d root/pci0/00:01.1/ide0/0.0
f root/pci0/00:01.1/ide0/0.0/capacity 2048
f root/pci0/00:01.1/ide0/0.0/media disk
f root/pci0/00:01.1/ide0/0.0/model QEMU HARDDISK
f root/pci0/00:01.1/ide0/0.0/name QEMU HARDDISK
d root/pci0/00:01.1/ide0/0.0/part1
f root/pci0/00:01.1/ide0/0.0/part1/name Partition 1
f root/pci0/00:01.1/ide0/0.0/part1/power 0
f root/pci0/00:01.1/ide0/0.0/part1/size 1000
f root/pci0/00:01.1/ide0/0.0/part1/start 63
f root/pci0/00:01.1/ide0/0.0/part1/type 0x83
d root/pci0/00:01.1/ide0/0.0/part2
f root/pci0/00:01.1/ide0/0.0/part2/name Partition 2
f root/pci0/00:01.1/ide0/0.0/part2/power 0
f root/pci0/00:01.1/ide0/0.0/part2/size 985
f root/pci0/00:01.1/ide0/0.0/part2/start 1063
f root/pci0/00:01.1/ide0/0.0/part2/type 0x0c
f root/pci0/00:01.1/ide0/0.0/power 0
f root/pci0/00:01.1/ide0/0.0/signature 0x20021007
f root/pci0/00:01.1/ide0/name IDE channel 0
f root/pci0/00:01.1/ide0/power 0
d root/pci0/00:01.1/ide1
d root/pci0/00:01.1/ide1/1.0
f root/pci0/00:01.1/ide1/1.0/locked 0
f root/pci0/00:01.1/ide1/1.0/media cdrom
f root/pci0/00:01.1/ide1/1.0/media_present 0
f root/pci0/00:01.1/ide1/1.0/model QEMU DVD-ROM
f root/pci0/00:01.1/ide1/1.0/name QEMU DVD-ROM
f root/pci0/00:01.1/ide1/1.0/power 0
f root/pci0/00:01.1/ide1/1.0/tray_open 0
f root/pci0/00:01.1/ide1/name IDE channel 1
f root/pci0/00:01.1/ide1/power 0
f root/pci0/00:01.1/irq 0
f root/pci0/00:01.1/name PIIX3 IDE
f root/pci0/00:01.1/power 0
f root/pci0/00:01.1/resource bar4 io 0x1000-0x100f
f root/pci0/00:01.1/vendor 0x8086
"
    );
    assert_eq!(
        m.snapshot("bus/ide"),
        "\
d bus/ide
d bus/ide/devices
l bus/ide/devices/0.0 -> ../../../root/pci0/00:01.1/ide0/0.0
l bus/ide/devices/1.0 -> ../../../root/pci0/00:01.1/ide1/1.0
d bus/ide/drivers
"
    );
    assert_eq!(
        m.uevents()[4..],
        [
            // The drives register inside piix-ide's probe, so their `add`
            // comes before the controller's `bind`, as in Linux.
            "add root/pci0/00:01.1/ide0/0.0 SUBSYSTEM=ide MEDIA=disk SEQNUM=5",
            "add root/pci0/00:01.1/ide1/1.0 SUBSYSTEM=ide MEDIA=cdrom MEDIA_PRESENT=0 SEQNUM=6",
            "bind root/pci0/00:01.1 SUBSYSTEM=pci DRIVER=piix-ide PCI_CLASS=10180 PCI_ID=8086:7010 PCI_SLOT_NAME=00:01.1 SEQNUM=7",
        ]
    );
    assert_eq!(
        m.p.ide.commands(0),
        [(0, 0xec), (0, 0x20)],
        "IDENTIFY and the MBR read; the absent slave reads status 0"
    );
}

fn change_uevent(present: u8, seqnum: u64) -> String {
    format!("change {CD} SUBSYSTEM=ide MEDIA=cdrom MEDIA_PRESENT={present} SEQNUM={seqnum}")
}

/// The media change as the drive saw it: the poll's GESN (NewMedia), then
/// the re-read: MODE SENSE for the lock state, answered NOT READY, then UNIT
/// ATTENTION (each read out with REQUEST SENSE), then good; the GESN of the
/// re-read, a good TEST UNIT READY, READ CAPACITY and the READ(10) of block
/// 16.
const MEDIA_READ: [u8; 10] = [0x4a, 0x5a, 0x03, 0x5a, 0x03, 0x5a, 0x4a, 0x00, 0x25, 0x28];

#[test]
fn an_inserted_medium_becomes_a_disc_with_capacity_and_volume() {
    let mut m = boot();
    let before = m.uevents().len();
    m.p.ide.change_medium(1, 0, iso(300, "ALPHA"), false).unwrap();
    let mut passes = 0;
    while m.uevents().len() == before {
        assert!(passes < 20, "the drive is polled every few passes, yet nothing after {passes}");
        m.step(1);
        passes += 1;
    }
    assert_eq!(uevents_from(&m, before), [change_uevent(1, 8)]);
    assert_eq!(
        m.snapshot(CD),
        format!(
            "\
d {CD}
d {CD}/disc
f {CD}/disc/capacity 1200
f {CD}/disc/name CD-ROM medium
f {CD}/disc/power 0
f {CD}/disc/volume ALPHA
f {CD}/locked 0
f {CD}/media cdrom
f {CD}/media_present 1
f {CD}/model QEMU DVD-ROM
f {CD}/name QEMU DVD-ROM
f {CD}/power 0
f {CD}/tray_open 0
"
        )
    );
    let packets = m.p.ide.packets(1, 0);
    let tur = packets.iter().position(|op| *op == 0x00).expect("a TEST UNIT READY");
    assert!(tur >= 7, "{packets:x?}");
    assert_eq!(packets[tur - 7..tur + 3], MEDIA_READ, "{packets:x?}");
    assert!(packets[tur + 3..].iter().all(|op| *op == 0x4a), "then only polls: {packets:x?}");
}

/// The guest may lock an open tray; the host can still insert a medium and
/// close it, and QEMU keeps the lock. The drive's lock state must be read
/// past the NOT READY / UNIT ATTENTION that the new medium brings, or the
/// attribute says unlocked while the tray is locked.
#[test]
fn a_tray_locked_while_open_is_still_locked_once_a_medium_is_in() {
    let mut m = boot();
    m.p.ide.open_tray(1, 0, false).unwrap();
    m.settle();
    assert_eq!(attr(&mut m, &format!("{CD}/tray_open")), "1");
    m.ok("ide lock 1.0 on");
    m.p.ide.insert_medium(1, 0, iso(300, "ALPHA")).unwrap();
    m.p.ide.close_tray(1, 0).unwrap();
    m.settle();
    assert_eq!(m.p.ide.tray(1, 0), Some((false, true, true)), "QEMU: closed, locked, medium in");
    let snapshot = m.snapshot(CD);
    for line in ["locked 1", "media_present 1", "tray_open 0", "disc/volume ALPHA"] {
        assert!(snapshot.contains(&format!("f {CD}/{line}\n")), "{line}:\n{snapshot}");
    }
}

/// `ide lock` right after a media change, before the guest has looked at
/// the drive: PREVENT MEDIUM REMOVAL meets the change's NOT READY first, and
/// must not fail for it.
#[test]
fn locking_right_after_a_media_change_succeeds() {
    let mut m = boot();
    insert(&mut m, iso(300, "ALPHA"));
    m.p.ide.change_medium(1, 0, iso(500, "BRAVO"), false).unwrap();
    assert_eq!(m.call("ide lock 1.0 on"), Ok(String::new()));
    assert_eq!(m.p.ide.tray(1, 0), Some((false, true, true)));
    m.settle();
    let snapshot = m.snapshot(CD);
    for line in ["locked 1", "disc/volume BRAVO"] {
        assert!(snapshot.contains(&format!("f {CD}/{line}\n")), "{line}:\n{snapshot}");
    }
}

#[test]
fn a_new_medium_is_a_new_disc_and_stale_handles_never_see_it() {
    let mut m = boot();
    insert(&mut m, iso(300, "ALPHA"));
    let old_generation = generation(&m.stats(), DISC);
    let stale = m.ok(&format!("open {DISC}/capacity"));
    let held = m.ok(&format!("open {DISC}/capacity"));
    m.ok(&format!("hold {DISC}/capacity"));
    let read = m.send(&format!("read {held}"));
    m.step(3);
    assert_eq!(m.answer(&read), None, "the read is held inside show()");

    let before = m.uevents().len();
    m.p.ide.change_medium(1, 0, iso(500, "BRAVO"), false).unwrap();
    m.step(40);
    // The old disc is on its way out: stale handles and new opens fail at
    // once, but its removal waits for the read in flight, and the new disc
    // waits for the old one.
    assert_eq!(m.call(&format!("read {stale}")), Err(String::from("ENODEV")));
    assert_eq!(m.call(&format!("open {DISC}/capacity")), Err(String::from("ENOENT")));
    assert!(!m.snapshot(CD).contains("/disc"), "{}", m.snapshot(CD));
    assert!(stats_line(&m.stats(), DISC).unwrap().contains(" state=dying refcount=1 active=1 "));
    assert_eq!(uevents_from(&m, before), Vec::<String>::new(), "nothing announced while the old disc drains");
    assert_eq!(m.answer(&read), None);

    m.ok(&format!("unhold {DISC}/capacity"));
    assert_eq!(m.wait(&read), Ok(String::from("1200\n")), "the held read ends with the old medium's value");
    m.settle();
    assert_eq!(uevents_from(&m, before), [change_uevent(1, 9)]);
    let read_at = m.position(|msg| matches!(msg, Message::Ok { tag, .. } if *tag == read)).unwrap();
    let change = format!("uevent {}", change_uevent(1, 9));
    let change_at = m.position(|msg| *msg == Message::Async(change.clone())).unwrap();
    assert!(read_at < change_at, "the new disc appears only after the old one drained");

    let stats = m.stats();
    assert!(generation(&stats, DISC) > old_generation, "{stats}");
    assert_eq!(attr(&mut m, &format!("{DISC}/capacity")), "2000");
    assert_eq!(attr(&mut m, &format!("{DISC}/volume")), "BRAVO");
    assert_eq!(m.call(&format!("read {stale}")), Err(String::from("ENODEV")), "never the new medium's data");
    m.ok(&format!("close {stale}"));
    m.ok(&format!("close {held}"));
    let stats = m.stats();
    assert!(stats.contains("leaked 0\nbugs 0\nhandles 0\nactive 0\n"), "{stats}");
}

/// The 2003 IDE fix (933df151de): re-registration waits for `release()`.
/// A reference someone still holds on the old disc delays the new one.
#[test]
fn a_reference_on_the_old_disc_delays_the_new_one_until_it_is_put() {
    let mut m = boot();
    insert(&mut m, iso(300, "ALPHA"));
    let old_generation = generation(&m.stats(), DISC);
    m.ok(&format!("devref get {DISC}"));
    let before = m.uevents().len();
    m.p.ide.change_medium(1, 0, iso(500, "BRAVO"), false).unwrap();
    let settle = m.send("settle");
    m.step(60);
    let stats = m.stats();
    assert_eq!(
        stats_line(&stats, DISC),
        Some(format!("device {DISC} state=deleted refcount=1 active=0 generation={old_generation}").as_str()),
        "{stats}"
    );
    assert!(stats.contains("leaked 1\n"), "{stats}");
    assert!(!m.snapshot(CD).contains("/disc"), "no new disc while the old one is referenced");
    assert_eq!(uevents_from(&m, before), Vec::<String>::new());
    assert_eq!(m.answer(&settle), None, "settle waits for the media change");

    m.ok(&format!("devref put {DISC}"));
    assert_eq!(m.wait(&settle), Ok(String::new()));
    assert_eq!(uevents_from(&m, before), [change_uevent(1, 9)]);
    let stats = m.stats();
    assert!(generation(&stats, DISC) > old_generation, "{stats}");
    assert!(stats.contains("leaked 0\nbugs 0\n"), "{stats}");
    assert_eq!(attr(&mut m, &format!("{DISC}/volume")), "BRAVO");
}

#[test]
fn eject_empties_the_drive_and_a_locked_tray_refuses_all_but_a_forced_eject() {
    let mut m = boot();
    insert(&mut m, iso(300, "ALPHA"));
    let before = m.uevents().len();
    m.p.ide.eject(1, 0, false).unwrap();
    m.settle();
    assert_eq!(uevents_from(&m, before), [change_uevent(0, 9)]);
    let snapshot = m.snapshot(CD);
    assert!(!snapshot.contains("/disc"), "{snapshot}");
    assert!(snapshot.contains(&format!("f {CD}/media_present 0\n")), "{snapshot}");
    assert!(snapshot.contains(&format!("f {CD}/tray_open 1\n")), "{snapshot}");

    insert(&mut m, iso(300, "ALPHA"));
    assert_eq!(m.call("ide lock 0.0 on"), Err(String::from("EINVAL")), "a disk has no tray");
    assert_eq!(m.call("ide lock 2.0 on"), Err(String::from("ENOENT")));
    m.ok("ide lock 1.0 on");
    assert_eq!(m.p.ide.tray(1, 0), Some((false, true, true)), "PREVENT MEDIUM REMOVAL reached the drive");
    let locked = m.snapshot(CD);
    assert!(locked.contains(&format!("f {CD}/locked 1\n")), "{locked}");
    assert!(locked.contains(&format!("f {CD}/disc/volume ALPHA\n")), "{locked}");

    let before = m.uevents().len();
    assert_eq!(m.p.ide.eject(1, 0, false), Err(MediaError::Locked));
    assert!(m.p.ide.eject_request_pending(1, 0));
    m.settle();
    assert!(!m.p.ide.eject_request_pending(1, 0), "the guest's GESN was told of the eject request");
    assert_eq!(m.snapshot(CD), locked, "a refused eject changes nothing");
    assert_eq!(uevents_from(&m, before), Vec::<String>::new());
    assert_eq!(m.p.ide.tray(1, 0), Some((false, true, true)));

    m.p.ide.eject(1, 0, true).unwrap();
    m.settle();
    assert_eq!(uevents_from(&m, before), [change_uevent(0, 11)]);
    let snapshot = m.snapshot(CD);
    assert!(!snapshot.contains("/disc"), "{snapshot}");
    assert!(snapshot.contains(&format!("f {CD}/media_present 0\n")), "{snapshot}");
    assert!(snapshot.contains(&format!("f {CD}/tray_open 1\n")), "{snapshot}");
    // QEMU unlocks a tray it forces open; the attribute must not say locked.
    assert!(snapshot.contains(&format!("f {CD}/locked 0\n")), "{snapshot}");
}

/// Drive positions are static slots, as 2002's `ide_hwifs[]`: rebinding the
/// controller while an old drive object is still referenced must not reuse
/// any position (EBUSY, and nothing half-registered: the free primary
/// channel must not come up alone); once the object is released the drives
/// come back as new objects.
#[test]
fn drive_positions_are_reused_only_after_the_old_objects_are_released() {
    let mut m = boot();
    insert(&mut m, iso(300, "ALPHA"));
    let stats = m.stats();
    let (disk_generation, cd_generation) = (generation(&stats, DISK), generation(&stats, CD));
    m.ok(&format!("devref get {CD}"));
    let before = m.uevents().len();
    m.ok("unbind pci 00:01.1 piix-ide");
    let actions: Vec<String> =
        uevents_from(&m, before).iter().map(|u| String::from(u.split(" SUBSYSTEM=").next().unwrap())).collect();
    assert_eq!(actions, [format!("remove {CD}"), format!("remove {DISK}"), format!("unbind {IDE}")]);
    let unbound = m.snapshot(IDE);
    assert!(!unbound.contains("/ide0") && !unbound.contains("/ide1") && !unbound.contains("/driver "), "{unbound}");
    assert_eq!(m.snapshot("bus/ide/devices"), "d bus/ide/devices\n");
    let stats = m.stats();
    assert!(stats_line(&stats, CD).unwrap().contains(" state=deleted refcount=1 "), "{stats}");
    assert!(stats_line(&stats, DISK).is_none(), "the disk was released: {stats}");

    let before = m.uevents().len();
    assert_eq!(m.call("bind pci 00:01.1 piix-ide"), Err(String::from("EBUSY")));
    assert_eq!(m.snapshot(IDE), unbound);
    assert_eq!(uevents_from(&m, before), Vec::<String>::new());

    m.ok(&format!("devref put {CD}"));
    m.ok("bind pci 00:01.1 piix-ide");
    m.settle();
    let stats = m.stats();
    assert!(generation(&stats, DISK) > disk_generation && generation(&stats, CD) > cd_generation, "{stats}");
    assert!(stats.contains("leaked 0\nbugs 0\n"), "{stats}");
    assert_eq!(attr(&mut m, &format!("{DISK}/signature")), "0x20021007");
    assert_eq!(attr(&mut m, &format!("{DISC}/volume")), "ALPHA", "the medium is still in the drive");
    let actions: Vec<String> =
        uevents_from(&m, before).iter().map(|u| String::from(u.split(" SUBSYSTEM=").next().unwrap())).collect();
    assert_eq!(actions, [format!("add {DISK}"), format!("add {CD}"), format!("bind {IDE}")]);
}

#[test]
fn fifty_media_changes_leave_the_stats_at_the_boot_baseline() {
    let mut m = boot();
    let boot_stats = m.stats();
    for i in 0..50 {
        if i % 10 == 9 {
            m.p.ide.eject(1, 0, false).unwrap();
            m.settle();
            assert_eq!(attr(&mut m, &format!("{CD}/media_present")), "0");
        }
        let volume = format!("VOL{i:02}");
        m.p.ide.change_medium(1, 0, iso(20 + i, &volume), false).unwrap();
        m.settle();
        assert_eq!(attr(&mut m, &format!("{DISC}/volume")), volume);
        assert_eq!(attr(&mut m, &format!("{DISC}/capacity")), format!("{}", (20 + i) * 4));
    }
    m.p.ide.eject(1, 0, false).unwrap();
    m.p.ide.close_tray(1, 0).unwrap();
    m.settle();
    let stats = m.stats();
    assert_eq!(baseline(&stats), baseline(&boot_stats));
    assert!(boot_stats.contains("released 0\n") && stats.contains("released 50\n"), "{stats}");
    assert!(stats.contains("bugs 0\n"), "{stats}");
    assert_eq!(m.snapshot(IDE), boot().snapshot(IDE), "the tree is as it was at boot");
}

#[test]
fn settle_waits_for_a_media_change_in_flight() {
    let mut m = boot();
    insert(&mut m, iso(300, "ALPHA"));
    let handle = m.ok(&format!("open {DISC}/volume"));
    m.ok(&format!("hold {DISC}/volume"));
    let read = m.send(&format!("read {handle}"));
    m.step(2);
    m.p.ide.change_medium(1, 0, iso(500, "BRAVO"), false).unwrap();
    let settle = m.send("settle");
    m.step(80);
    assert_eq!(m.answer(&settle), None, "the change is still in flight");
    m.ok(&format!("unhold {DISC}/volume"));
    assert_eq!(m.wait(&settle), Ok(String::new()));
    assert_eq!(m.answer(&read), Some(Ok(String::from("ALPHA\n"))));
    let change = format!("uevent {}", change_uevent(1, 9));
    let change_at = m.position(|msg| *msg == Message::Async(change.clone())).expect("the change was announced");
    let settle_at = m.position(|msg| matches!(msg, Message::Ok { tag, .. } if *tag == settle)).unwrap();
    assert!(change_at < settle_at, "settle answers after the change");
    assert_eq!(attr(&mut m, &format!("{DISC}/volume")), "BRAVO");
}
