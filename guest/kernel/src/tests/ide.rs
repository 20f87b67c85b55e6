//! IDE end to end on the fake PIIX channels: what the drives show, and
//! media changes on the CD drive, which is all QEMU can change on IDE at run
//! time (shared/reference/qemu-hotplug.md §7). Every medium is its own `disc`
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
f root/pci0/00:01.1/resource bar4 io 0xc000-0xc00f
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
            "bind root/pci0/00:01.1 SUBSYSTEM=pci DRIVER=piix-ide PCI_CLASS=10180 PCI_ID=8086:7010 PCI_SLOT_NAME=00:01.1 SEQNUM=5",
            "add root/pci0/00:01.1/ide0/0.0 SUBSYSTEM=ide MEDIA=disk SEQNUM=6",
            "add root/pci0/00:01.1/ide1/1.0 SUBSYSTEM=ide MEDIA=cdrom MEDIA_PRESENT=0 SEQNUM=7",
        ]
    );
}
