//! Native PCIe hot-plug on `q35` end to end: the fake root ports behave as
//! QEMU's with `ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off`
//! (docs/qemu-behaviour.md, "Native PCIe hot-plug on `q35`"), and the guest's slot poller
//! powers slots on, registers what appears, and on an attention button
//! takes the device out of the model (draining reads in flight) before it
//! powers the slot off, which is what makes QEMU finish the unplug.

use alloc::format;
use alloc::string::String;

use super::machine::{Machine, baseline, generation};
use crate::fake_platform::FakePlatform;
use crate::pci::config::{Bdf, ConfigSpace, reg};
use crate::pci::fake::{FakeBar, FakeFunction, FakePci, Segment, SlotEvents, slot};

/// The first root port, 00:10.0; its secondary bus is 1.
const PORT: (Segment, u8, u8) = (Segment::ROOT, 0x10, 0);
const DEV: &str = "root/pci0/00:10.0/01:00.0";

/// SLTCTL once the guest has powered the slot: power and indicator on.
const POWERED: u16 = 0x01c0;

fn e1000e() -> FakeFunction {
    FakeFunction::endpoint(0x8086, 0x10d3, 0x02_00_00)
        .bar(0, FakeBar::Mem32 { size: 0x2_0000, prefetchable: false })
        .pin(1)
}

fn virtio_net() -> FakeFunction {
    FakeFunction::endpoint(0x1af4, 0x1041, 0x02_00_00)
        .bar(4, FakeBar::Mem64 { size: 0x4000, prefetchable: true })
        .pin(1)
}

fn boot() -> Machine {
    let mut m = Machine::boot(FakePlatform::new(FakePci::q35()));
    m.settle();
    m
}

fn behind_port(m: &Machine) -> Option<FakeFunction> {
    let segment = m.p.pci.child_segment(PORT.0, PORT.1, PORT.2).expect("a root port");
    m.p.pci.function(segment, 0, 0)
}

fn add(m: &mut Machine, function: FakeFunction) {
    m.p.pci.pcie_hot_add(PORT, function);
    m.settle();
}

fn unplug(m: &mut Machine) {
    m.p.pci.pcie_unplug_request(PORT).expect("a device to unplug");
    m.settle();
}

#[test]
fn a_hot_added_device_is_powered_on_registered_and_its_events_acknowledged() {
    let mut m = boot();
    assert_eq!(m.p.pci.slot_registers(PORT), (slot::CTL_EMPTY, 0), "the guest leaves an empty slot off");
    let before = m.uevents().len();
    m.p.pci.pcie_hot_add(PORT, e1000e());
    assert_eq!(m.p.pci.read16(Bdf::new(1, 0, 0), reg::VENDOR), 0xffff, "invisible in a slot without power");
    m.settle();
    assert_eq!(
        m.uevents()[before..],
        [format!("add {DEV} SUBSYSTEM=pci PCI_CLASS=20000 PCI_ID=8086:10D3 PCI_SLOT_NAME=01:00.0 SEQNUM=7")]
    );
    assert_eq!(m.p.pci.read16(Bdf::new(1, 0, 0), reg::VENDOR), 0x8086);
    assert_eq!(m.p.pci.slot_registers(PORT), (POWERED, slot::PDS), "powered, and every event bit acknowledged");
    let snapshot = m.snapshot(DEV);
    assert!(snapshot.contains(&format!("f {DEV}/vendor 0x8086\n")), "{snapshot}");
    assert!(snapshot.contains(&format!("f {DEV}/resource bar0 mem32 0xc0100000-0xc011ffff\n")), "{snapshot}");
    assert!(
        m.snapshot("bus/pci/devices").contains("l bus/pci/devices/01:00.0 -> ../../../root/pci0/00:10.0/01:00.0\n")
    );
}

#[test]
fn an_unplug_request_powers_the_slot_off_only_after_reads_in_flight_drained() {
    let mut m = boot();
    add(&mut m, e1000e());
    let handle = m.ok(&format!("open {DEV}/vendor"));
    m.ok(&format!("hold {DEV}/vendor"));
    let read = m.send(&format!("read {handle}"));
    m.step(3);
    let before = m.uevents().len();
    m.p.pci.pcie_unplug_request(PORT).unwrap();
    assert_eq!(m.p.pci.slot_registers(PORT).1, slot::PDS | slot::ABP, "device_del only presses the button");
    m.step(30);
    assert!(m.uevents()[before..].iter().any(|u| u.starts_with(&format!("remove {DEV} "))), "removal has started");
    assert_eq!(m.answer(&read), None, "the read is still held");
    assert_eq!(m.call(&format!("open {DEV}/vendor")), Err(String::from("ENOENT")));
    assert_eq!(m.p.pci.slot_registers(PORT), (POWERED, slot::PDS), "the slot stays on while a read is in flight");
    assert!(behind_port(&m).is_some());
    assert_eq!(m.p.pci.pcie_unplug_request(PORT), Err("Device is already in the process of unplug"));

    m.ok(&format!("unhold {DEV}/vendor"));
    assert_eq!(m.wait(&read), Ok(String::from("0x8086\n")), "the read in flight completes");
    m.settle();
    assert!(behind_port(&m).is_none(), "QEMU finished the unplug");
    assert_eq!(m.p.pci.slot_events(PORT), SlotEvents { unplug_pending: false, unplugs: 1 });
    assert_eq!(m.p.pci.slot_registers(PORT), (slot::CTL_EMPTY, 0), "off, indicator off, PDC and CC acknowledged");
    assert!(!m.snapshot("bus/pci/devices").contains("01:00.0"));
    assert_eq!(m.call(&format!("read {handle}")), Err(String::from("ENODEV")));
    let stats = m.stats();
    assert!(stats.contains("leaked 0\nbugs 0\nhandles 1\nactive 0\n"), "{stats}");
}

/// QEMU voids a SLTSTA write that sets a bit which is not set (docs/qemu-behaviour.md,
/// "Native PCIe hot-plug"), so a guest that acknowledged more than it read would leave PDC
/// standing, and a later attention button behind it would be taken for
/// part of the add. The guest writes back exactly what it read, so every
/// phase ends with only PDS left, and unplugs keep working.
#[test]
fn the_guest_acknowledges_exactly_the_status_bits_it_read() {
    let mut m = boot();
    add(&mut m, e1000e());
    assert_eq!(m.p.pci.slot_registers(PORT).1, slot::PDS);
    // What an over-eager acknowledgement does on this slot: nothing.
    let port = Bdf::new(0, 0x10, 0);
    m.p.pci.write16(port, crate::pci::fake::PCIE_CAP + slot::SLTSTA, slot::W1C);
    m.p.pci.pcie_unplug_request(PORT).unwrap();
    m.p.pci.write16(port, crate::pci::fake::PCIE_CAP + slot::SLTSTA, slot::W1C);
    assert_eq!(m.p.pci.slot_registers(PORT).1, slot::PDS | slot::ABP, "the stray bits voided the write");
    m.settle();
    assert!(behind_port(&m).is_none(), "the guest saw the button and let the device go");
    assert_eq!(m.p.pci.slot_registers(PORT).1, 0);
    add(&mut m, virtio_net());
    assert_eq!(m.p.pci.slot_registers(PORT).1, slot::PDS);
}

#[test]
fn a_slot_is_reused_by_a_new_object_and_old_handles_stay_dead() {
    let mut m = boot();
    add(&mut m, e1000e());
    let old_generation = generation(&m.stats(), DEV);
    let handle = m.ok(&format!("open {DEV}/vendor"));
    unplug(&mut m);
    let before = m.uevents().len();
    add(&mut m, virtio_net());
    assert_eq!(
        m.uevents()[before..],
        [format!("add {DEV} SUBSYSTEM=pci PCI_CLASS=20000 PCI_ID=1AF4:1041 PCI_SLOT_NAME=01:00.0 SEQNUM=9")]
    );
    assert!(generation(&m.stats(), DEV) > old_generation);
    assert_eq!(m.call(&format!("read {handle}")), Err(String::from("ENODEV")), "never the new device's vendor");
    assert_eq!(m.read(&format!("{DEV}/vendor")), Ok(String::from("0x1af4\n")));
    let snapshot = m.snapshot(DEV);
    assert!(snapshot.contains(&format!("f {DEV}/resource bar4 mem64-pref 0x")), "{snapshot}");
    assert_eq!(m.p.pci.slot_registers(PORT), (POWERED, slot::PDS));
}

#[test]
fn twenty_plug_cycles_leave_the_stats_at_the_boot_baseline() {
    let mut m = boot();
    let boot_stats = m.stats();
    for i in 0..20 {
        add(&mut m, if i % 2 == 0 { e1000e() } else { virtio_net() });
        let expected = if i % 2 == 0 { "0x8086\n" } else { "0x1af4\n" };
        assert_eq!(m.read(&format!("{DEV}/vendor")), Ok(String::from(expected)), "cycle {i}");
        unplug(&mut m);
        assert!(behind_port(&m).is_none(), "cycle {i}");
    }
    let stats = m.stats();
    assert_eq!(baseline(&stats), baseline(&boot_stats));
    assert!(stats.contains("released 20\nleaked 0\nbugs 0\n"), "{stats}");
    assert_eq!(m.p.pci.slot_events(PORT).unplugs, 20);
    assert_eq!(m.p.pci.slot_registers(PORT), (slot::CTL_EMPTY, 0));
}

/// A device cold-plugged behind a root port (on QEMU's command line) is
/// present from reset with no presence-detect change to announce it: the
/// guest registers it at boot all the same.
#[test]
fn a_cold_plugged_device_behind_a_root_port_is_registered_at_boot() {
    let pci = FakePci::q35();
    let segment = pci.child_segment(PORT.0, PORT.1, PORT.2).expect("a root port");
    pci.insert(segment, 0, 0, e1000e());
    let mut m = Machine::boot(FakePlatform::new(pci));
    m.settle();
    let snapshot = m.snapshot("root/pci0/00:10.0");
    assert!(snapshot.contains(&format!("d {DEV}\n")), "{snapshot}");
}
