//! The host fakes agree with QEMU. Every function of [`FakePci::pc`] and
//! [`FakePci::q35`] is compared with the real function's configuration
//! space as the guest read it under QEMU
//! (`harness/tests/snapshots/pci_config@<profile>.snap`, written by the
//! harness's `pci_config` end-to-end test with the same `pci config` verb
//! this test sends to a guest booted on the fake). Compared: IDs, revision
//! and class, header type, subsystem IDs, interrupt pin, the capability IDs
//! in list order, and the BAR sizes the guest's enumeration finds.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::machine::Machine;
use crate::fake_platform::FakePlatform;
use crate::pci::fake::FakePci;

const PC: &str = include_str!("../../../../harness/tests/snapshots/pci_config@pc.snap");
const Q35: &str = include_str!("../../../../harness/tests/snapshots/pci_config@q35.snap");

/// One function's dump: its 256 bytes and its `bar<N> size` lines.
#[derive(Debug, Default)]
struct Dump {
    bytes: Vec<u8>,
    sizes: Vec<String>,
}

fn parse_dump(text: &str) -> Dump {
    let mut dump = Dump::default();
    for line in text.lines() {
        if let Some((offset, bytes)) = line.split_once(": ")
            && offset.len() == 2
        {
            dump.bytes.extend(bytes.split(' ').map(|b| u8::from_str_radix(b, 16).expect("hex byte")));
        } else if line.starts_with("bar") || line.starts_with("rom") {
            dump.sizes.push(String::from(line));
        }
    }
    assert_eq!(dump.bytes.len(), 256, "a full dump: {text}");
    dump
}

/// The golden's functions, by `bb:ss.f` (the insta header skipped).
fn golden(text: &str) -> BTreeMap<String, Dump> {
    let body = text.splitn(3, "---\n").nth(2).expect("an insta snapshot");
    body.split("function ")
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (name, dump) = s.split_once('\n').expect("a name line");
            (String::from(name), parse_dump(dump))
        })
        .collect()
}

/// The registers a fake must reproduce, by name.
fn identity(d: &Dump) -> Vec<(&'static str, String)> {
    let b = &d.bytes;
    let hex = |range: core::ops::Range<usize>| b[range].iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut caps = Vec::new();
    if b[0x06] & 0x10 != 0 {
        let mut at = usize::from(b[0x34]);
        while at != 0 && caps.len() < 48 {
            caps.push(format!("{:#04x}@{at:#04x}", b[at]));
            at = usize::from(b[at + 1]);
        }
    }
    let mut fields = alloc::vec![
        ("vendor/device", hex(0..4)),
        ("revision/class", hex(8..12)),
        ("header type", hex(0x0e..0x0f)),
        ("interrupt pin", hex(0x3d..0x3e)),
        ("capabilities", caps.join(" ")),
        ("BAR sizes", d.sizes.join(", ")),
    ];
    if b[0x0e] & 0x7f == 0 {
        fields.push(("subsystem", hex(0x2c..0x30)));
    }
    fields
}

/// Boot the guest on `pci`, dump every function it found, and compare each
/// with the golden. Returns how many functions were compared.
fn compare(pci: FakePci, golden_text: &str) -> Result<usize, String> {
    let real = golden(golden_text);
    let mut m = Machine::boot(FakePlatform::new(pci));
    m.settle();
    let listing = m.snapshot("bus/pci/devices");
    let names: Vec<&str> =
        listing.lines().filter_map(|l| l.strip_prefix("l bus/pci/devices/")?.split(' ').next()).collect();
    assert!(!names.is_empty(), "the fake machine has no PCI function: {listing}");
    let mut problems = Vec::new();
    for name in &names {
        let Some(want) = real.get(*name) else {
            problems.push(format!("{name}: the fake has it, QEMU does not"));
            continue;
        };
        let have = parse_dump(&m.ok(&format!("pci config {name}")));
        for ((field, fake), (_, qemu)) in identity(&have).into_iter().zip(identity(want)) {
            if fake != qemu {
                problems.push(format!("{name} {field}: fake {fake:?}, QEMU {qemu:?}"));
            }
        }
    }
    if problems.is_empty() { Ok(names.len()) } else { Err(problems.join("\n")) }
}

#[test]
fn the_fake_pc_chipset_matches_qemu() {
    let compared = compare(FakePci::pc(), PC).unwrap_or_else(|e| panic!("the fake pc differs from QEMU:\n{e}"));
    assert_eq!(compared, 4);
}

#[test]
fn the_fake_q35_chipset_matches_qemu() {
    let compared = compare(FakePci::q35(), Q35).unwrap_or_else(|e| panic!("the fake q35 differs from QEMU:\n{e}"));
    assert!(compared >= 6, "{compared}");
}

#[test]
fn a_fake_that_differs_is_caught_with_the_field_named() {
    use crate::pci::fake::{FakeFunction, Segment};
    let pci = FakePci::pc();
    // PIIX4 ACPI without its interrupt pin.
    pci.insert(Segment::ROOT, 1, 3, FakeFunction::endpoint(0x8086, 0x7113, 0x06_80_00).revision(0x03));
    let err = compare(pci, PC).unwrap_err();
    assert!(err.contains("00:01.3 interrupt pin: fake \"00\", QEMU \"01\""), "{err}");
}
