//! PCI enumeration on the emulated machines ([`FakePci::pc`],
//! [`FakePci::q35`]): names and attributes, resources inside the right
//! windows, depth-first bus numbers, INTx lines, hot-added functions, and
//! the rendered snapshot.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::base::{Core, DeviceId, DeviceState, device_unregister};
use crate::driverfs::snapshot;
use crate::executor::Executor;
use crate::pci::Pci;
use crate::pci::config::{Bdf, ConfigSpace, reg};
use crate::pci::device::PciFunction;
use crate::pci::fake::{FakeBar, FakeFunction, FakePci, Segment};
use crate::pci::resources::{Bar, BarKind};

use super::uevent_lines;

const ROOT_IO: (u64, u64) = (0x1000, 0xffff);
const ROOT_MEM: (u64, u64) = (0xc000_0000, 0xfebf_ffff);

fn boot(cfg: &FakePci) -> (Core, Pci) {
    let mut core = Core::new();
    let pci = Pci::init(&mut core, cfg);
    (core, pci)
}

fn function(core: &Core, pci: &Pci, bdf: Bdf) -> PciFunction {
    let dev = pci.function(bdf).unwrap_or_else(|| panic!("{bdf} is registered"));
    core.data::<PciFunction>(dev).expect("PCI function data").clone()
}

fn attr(core: &Core, path: &str) -> String {
    let node = core.fs.lookup(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let Some(crate::driverfs::NodeKind::Attr { dev, .. }) = core.fs.kind(node) else {
        panic!("{path} is an attribute")
    };
    let name = path.rsplit('/').next().unwrap();
    core.show_attr_ref(dev, name).expect("shows something")
}

fn inside(bar: &Bar, (start, end): (u64, u64)) -> bool {
    bar.base.is_some_and(|base| base >= start && base + bar.size - 1 <= end)
}

/// The BAR registers hold what `resource` reports, with decoding enabled.
fn assert_programmed(cfg: &FakePci, segment: Segment, f: &PciFunction) {
    let raw = cfg.function(segment, f.bdf.dev, f.bdf.func).expect("still plugged in");
    for bar in &f.bars {
        let base = bar.base.expect("assigned");
        let offset = reg::BAR0 + 4 * bar.index;
        let low = u64::from(raw.read(offset, 4));
        let programmed = match bar.kind {
            BarKind::Io => low & !0x3,
            BarKind::Mem64 => (u64::from(raw.read(offset + 4, 4)) << 32) | (low & !0xf),
            _ => low & !0xf,
        };
        assert_eq!(programmed, base, "{} BAR{}", f.bdf, bar.index);
        let enable = if bar.kind == BarKind::Io { reg::COMMAND_IO } else { reg::COMMAND_MEMORY };
        assert_ne!(raw.read(reg::COMMAND, 2) as u16 & enable, 0, "{} decodes BAR{}", f.bdf, bar.index);
    }
    assert_eq!(raw.read(reg::INTERRUPT_LINE, 1) as u8, f.irq_line, "{} INTERRUPT_LINE", f.bdf);
}

#[test]
fn pc_registers_each_function_with_its_attributes() {
    let cfg = FakePci::pc();
    let (core, pci) = boot(&cfg);
    let names: Vec<String> = core.bus_devices(pci.bus).into_iter().map(|d| core.device_path(d)).collect();
    assert_eq!(names, ["root/pci0/00:00.0", "root/pci0/00:01.0", "root/pci0/00:01.1", "root/pci0/00:01.3"]);
    assert_eq!(attr(&core, "root/pci0/00:01.1/name"), "PIIX3 IDE\n");
    assert_eq!(attr(&core, "root/pci0/00:01.1/class"), "0x010180\n");
    assert_eq!(attr(&core, "bus/pci/devices/00:01.3/device"), "0x7113\n");
    assert_eq!(attr(&core, "root/pci0/name"), "PCI Bus #00\n");

    let ide = function(&core, &pci, Bdf::new(0, 1, 1));
    assert_eq!(ide.bars.len(), 1);
    assert_eq!((ide.bars[0].index, ide.bars[0].kind, ide.bars[0].size), (4, BarKind::Io, 16));
    assert!(inside(&ide.bars[0], ROOT_IO), "{:?}", ide.bars[0]);
    assert_programmed(&cfg, Segment::ROOT, &ide);
}

#[test]
fn pc_and_q35_route_pirqs_and_compute_irq_lines() {
    let cfg = FakePci::pc();
    let (core, pci) = boot(&cfg);
    let isa = cfg.function(Segment::ROOT, 1, 0).unwrap();
    assert_eq!([0x60, 0x61, 0x62, 0x63].map(|r| isa.read(r, 1)), [10, 10, 11, 11], "PIRQ A-D");
    // PIIX4 ACPI raises the SCI on IRQ 9 whatever its pin; IDE in legacy
    // mode has no pin.
    assert_eq!(function(&core, &pci, Bdf::new(0, 1, 3)).irq_line, 9);
    assert_eq!(function(&core, &pci, Bdf::new(0, 1, 1)).irq_line, 0);
    assert_eq!(cfg.function(Segment::ROOT, 1, 3).unwrap().read(reg::INTERRUPT_LINE, 1), 9);

    let cfg = FakePci::q35();
    let (core, pci) = boot(&cfg);
    let lpc = cfg.function(Segment::ROOT, 0x1f, 0).unwrap();
    assert_eq!(
        [0x60, 0x61, 0x62, 0x63, 0x68, 0x69, 0x6a, 0x6b].map(|r| lpc.read(r, 1)),
        [10, 10, 11, 11, 10, 10, 11, 11]
    );
    // Slots 25-31 use the pin alone, on PIRQ A-D: INTA -> PIRQA -> 10
    // (AHCI and SMBus both have pin A, as under QEMU).
    assert_eq!(function(&core, &pci, Bdf::new(0, 0x1f, 2)).irq_line, 10);
    assert_eq!(function(&core, &pci, Bdf::new(0, 0x1f, 3)).irq_line, 10);
    // Slots 0-24 rotate over PIRQ E-H: root ports at 16 and 17,
    // (pin - 1 + slot) mod 4 -> PIRQE, PIRQF.
    assert_eq!(function(&core, &pci, Bdf::new(0, 0x10, 0)).irq_line, 10);
    assert_eq!(function(&core, &pci, Bdf::new(0, 0x11, 0)).irq_line, 10);
    // The host bridge has no pin.
    assert_eq!(function(&core, &pci, Bdf::new(0, 0, 0)).irq_line, 0, "no pin");
}

#[test]
fn q35_puts_bars_in_the_root_window_and_gives_root_ports_windows() {
    let cfg = FakePci::q35();
    let (core, pci) = boot(&cfg);
    for bdf in [Bdf::new(0, 0x1f, 2), Bdf::new(0, 0x1f, 3)] {
        let f = function(&core, &pci, bdf);
        for bar in &f.bars {
            let window = if bar.kind == BarKind::Io { ROOT_IO } else { ROOT_MEM };
            assert!(inside(bar, window), "{bdf} {bar:?}");
        }
        assert_programmed(&cfg, Segment::ROOT, &f);
    }
    let ahci = function(&core, &pci, Bdf::new(0, 0x1f, 2));
    assert_eq!(
        ahci.bars.iter().map(|b| (b.index, b.kind, b.size)).collect::<Vec<_>>(),
        [(4, BarKind::Io, 32), (5, BarKind::Mem32, 0x1000)]
    );

    let (a, b) = (function(&core, &pci, Bdf::new(0, 0x10, 0)), function(&core, &pci, Bdf::new(0, 0x11, 0)));
    let (wa, wb) = (a.windows.expect("bridge windows"), b.windows.expect("bridge windows"));
    for w in [wa, wb] {
        let (io, mem) = (w.io.expect("root ports forward I/O"), w.mem.expect("and memory"));
        assert!(io.0 >= ROOT_IO.0 && io.1 <= ROOT_IO.1 && mem.0 >= ROOT_MEM.0 && mem.1 <= ROOT_MEM.1);
    }
    assert!(wa.io.unwrap().1 < wb.io.unwrap().0 && wa.mem.unwrap().1 < wb.mem.unwrap().0, "windows overlap");
    // What the bridge was programmed with: I/O base/limit in 4 KiB units,
    // memory in 1 MiB units.
    let raw = cfg.function(Segment::ROOT, 0x11, 0).unwrap();
    let io = wb.io.unwrap();
    assert_eq!(
        (raw.read(reg::IO_BASE, 1) & 0xf0, raw.read(reg::IO_LIMIT, 1) & 0xf0),
        ((io.0 >> 8) as u32, (io.1 >> 8) as u32 & 0xf0)
    );
    let mem = wb.mem.unwrap();
    assert_eq!(
        (raw.read(reg::MEMORY_BASE, 2), raw.read(reg::MEMORY_LIMIT, 2)),
        ((mem.0 >> 16) as u32, (mem.1 >> 16) as u32 & 0xfff0)
    );
}

/// A PCI-PCI bridge behind the first root port: numbering goes down that
/// branch before the second root port gets a number.
#[test]
fn bus_numbers_are_assigned_depth_first() {
    let cfg = FakePci::q35();
    let first = cfg.child_segment(Segment::ROOT, 0x10, 0).unwrap();
    let second = cfg.child_segment(Segment::ROOT, 0x11, 0).unwrap();
    cfg.insert(first, 0, 0, FakeFunction::bridge(0x1b36, 0x0001));
    let nested = cfg.child_segment(first, 0, 0).unwrap();
    cfg.insert(nested, 3, 0, FakeFunction::endpoint(0x1234, 0x11e8, 0x00_ff_00).pin(1));
    cfg.insert(
        second,
        0,
        0,
        FakeFunction::endpoint(0x1af4, 0x1041, 0x02_00_00)
            .bar(1, FakeBar::Mem32 { size: 0x1000, prefetchable: false })
            .bar(4, FakeBar::Mem64 { size: 0x4000, prefetchable: true })
            .pin(1),
    );
    let (core, pci) = boot(&cfg);

    let buses = |segment, dev| {
        let f = cfg.function(segment, dev, 0).unwrap();
        [reg::PRIMARY_BUS, reg::SECONDARY_BUS, reg::SUBORDINATE_BUS].map(|r| f.read(r, 1))
    };
    // Root ports have hot-plug slots: their ranges keep HOTPLUG_BUS_RESERVE
    // numbers beyond what they hold at boot.
    assert_eq!(buses(Segment::ROOT, 0x10), [0, 1, 4]);
    assert_eq!(buses(first, 0), [1, 2, 2]);
    assert_eq!(buses(Segment::ROOT, 0x11), [0, 5, 8]);
    let paths: Vec<String> = core.bus_devices(pci.bus).into_iter().map(|d| core.device_path(d)).collect();
    assert!(paths.contains(&String::from("root/pci0/00:10.0/01:00.0/02:03.0")), "{paths:?}");
    assert!(paths.contains(&String::from("root/pci0/00:11.0/05:00.0")), "{paths:?}");
    assert_eq!(attr(&core, "bus/pci/devices/02:03.0/name"), "QEMU edu\n");
    // Swizzle: INTA of slot 3 behind slot 0 behind root slot 16:
    // (0 + 3 + 0 + 16) mod 4 = 3 -> PIRQD -> 11.
    assert_eq!(function(&core, &pci, Bdf::new(2, 3, 0)).irq_line, 11);
    assert_eq!(function(&core, &pci, Bdf::new(5, 0, 0)).irq_line, 10, "(0 + 0 + 17) mod 4 = 1 -> PIRQB");

    // Boot-time functions behind a root port live in its window.
    let window = function(&core, &pci, Bdf::new(0, 0x11, 0)).windows.unwrap().mem.unwrap();
    let net = function(&core, &pci, Bdf::new(5, 0, 0));
    assert_eq!(net.bars.len(), 2);
    assert!(net.bars.iter().all(|b| inside(b, window)), "{:x?} outside {window:x?}", net.bars);
    assert_programmed(&cfg, second, &net);
}

/// A function plugged in after boot and found by rescanning its slot gets
/// BARs inside its bridge's windows, an IRQ line, and registers (with its
/// `add` uevent) under the bridge.
#[test]
fn a_function_added_later_gets_resources_and_registers() {
    let cfg = FakePci::q35();
    let (mut core, mut pci) = boot(&cfg);
    core.take_events();
    let port = function(&core, &pci, Bdf::new(0, 0x11, 0));
    let (window, secondary) = (port.windows.unwrap(), port.secondary.unwrap());
    let behind = cfg.child_segment(Segment::ROOT, 0x11, 0).unwrap();
    cfg.insert(
        behind,
        0,
        0,
        FakeFunction::endpoint(0x1af4, 0x1000, 0x02_00_00)
            .multifunction()
            .bar(0, FakeBar::Io { size: 32 })
            .bar(1, FakeBar::Mem32 { size: 0x1000, prefetchable: false })
            .bar(4, FakeBar::Mem64 { size: 0x4000, prefetchable: true })
            .pin(1),
    );
    cfg.insert(
        behind,
        0,
        1,
        FakeFunction::endpoint(0x1af4, 0x1001, 0x01_00_00).bar(0, FakeBar::Io { size: 64 }).pin(2),
    );

    assert_eq!(pci.scan_slot(&mut core, &cfg, secondary, 0), 2);
    assert_eq!(pci.scan_slot(&mut core, &cfg, secondary, 0), 0, "already registered functions are skipped");
    for func in [0, 1] {
        let f = function(&core, &pci, Bdf::new(secondary, 0, func));
        for bar in &f.bars {
            let range = if bar.kind == BarKind::Io { window.io.unwrap() } else { window.mem.unwrap() };
            assert!(inside(bar, range), "{} {bar:?} outside {range:x?}", f.bdf);
        }
        assert_programmed(&cfg, behind, &f);
    }
    let net = function(&core, &pci, Bdf::new(secondary, 0, 0));
    assert_eq!(
        net.bars.iter().map(|b| (b.index, b.kind, b.prefetchable, b.size)).collect::<Vec<_>>(),
        [(0, BarKind::Io, false, 32), (1, BarKind::Mem32, false, 0x1000), (4, BarKind::Mem64, true, 0x4000)]
    );
    // Root slot 17: INTA -> (0 + 17) mod 4 = 1 -> 10; INTB -> 2 -> 11.
    assert_eq!(net.irq_line, 10);
    assert_eq!(function(&core, &pci, Bdf::new(secondary, 0, 1)).irq_line, 11);
    let events: Vec<String> = uevent_lines(core.take_events());
    assert_eq!(
        events,
        [
            "add root/pci0/00:11.0/05:00.0 SUBSYSTEM=pci PCI_CLASS=20000 PCI_ID=1AF4:1000 PCI_SLOT_NAME=05:00.0 SEQNUM=7",
            "add root/pci0/00:11.0/05:00.1 SUBSYSTEM=pci PCI_CLASS=10000 PCI_ID=1AF4:1001 PCI_SLOT_NAME=05:00.1 SEQNUM=8",
        ]
    );
}

/// Unplug and replug in the same slot 50 times: the resources come back
/// each time (the window is never exhausted) and each plug is a new object.
#[test]
fn repeated_hot_plug_in_one_slot_reuses_the_resources() {
    let cfg = FakePci::pc();
    let (core, mut pci) = boot(&cfg);
    let core = alloc::rc::Rc::new(core::cell::RefCell::new(core));
    let e1000 = || {
        FakeFunction::endpoint(0x8086, 0x100e, 0x02_00_00)
            .bar(0, FakeBar::Mem32 { size: 0x2_0000, prefetchable: false })
            .bar(1, FakeBar::Io { size: 64 })
            .pin(1)
    };
    let mut first: Option<(Vec<Bar>, DeviceId)> = None;
    for _ in 0..50 {
        cfg.insert(Segment::ROOT, 3, 0, e1000());
        assert_eq!(pci.scan_slot(&mut core.borrow_mut(), &cfg, 0, 3), 1);
        let f = function(&core.borrow(), &pci, Bdf::new(0, 3, 0));
        let dev = pci.function(f.bdf).unwrap();
        // i440fx: INTA of slot 3 -> (0 + 3 - 1) mod 4 = 2 -> PIRQC -> 11.
        assert_eq!(f.irq_line, 11);
        match &first {
            None => first = Some((f.bars.clone(), dev)),
            Some((bars, old)) => {
                assert_eq!(&f.bars, bars, "same addresses every cycle");
                assert_ne!(dev, *old, "a new object every cycle");
            }
        }
        let mut exec = Executor::new();
        let c = core.clone();
        exec.spawner().spawn(async move {
            device_unregister(&c, dev).await.expect("unregister");
        });
        exec.run_pass();
        assert!(exec.is_empty());
        assert_eq!(core.borrow().state(dev), DeviceState::Released);
        pci.forget(&f);
        cfg.remove(Segment::ROOT, 3, 0);
    }
    let (bars, _) = first.unwrap();
    assert_eq!(
        bars.iter().map(|b| (b.kind, b.base)).collect::<Vec<_>>(),
        [(BarKind::Mem32, Some(0xc000_0000)), (BarKind::Io, Some(0x1040)),]
    );
    assert_eq!(core.borrow().totals().leaked, 0);
}

/// A bridge without an I/O window: its window shows `none` and an I/O BAR
/// behind it stays unassigned (shown with its size), while memory works.
#[test]
fn a_bridge_without_an_io_window_leaves_io_bars_unassigned() {
    let cfg = FakePci::new();
    cfg.insert(Segment::ROOT, 0, 0, FakeFunction::endpoint(0x8086, 0x29c0, 0x06_00_00));
    cfg.insert(Segment::ROOT, 0x10, 0, FakeFunction::bridge(0x1b36, 0x000c).without_io_window().pin(1));
    let behind = cfg.child_segment(Segment::ROOT, 0x10, 0).unwrap();
    cfg.insert(
        behind,
        0,
        0,
        FakeFunction::endpoint(0x1af4, 0x1000, 0x02_00_00)
            .bar(0, FakeBar::Io { size: 32 })
            .bar(1, FakeBar::Mem32 { size: 0x1000, prefetchable: false }),
    );
    let (core, pci) = boot(&cfg);
    let port = function(&core, &pci, Bdf::new(0, 0x10, 0));
    assert_eq!(port.windows.unwrap().io, None);
    let port_mem = port.windows.unwrap().mem.unwrap();
    assert_eq!(
        attr(&core, "root/pci0/00:10.0/resource"),
        format!("buses 01-01\nwindow io none\nwindow mem {:#x}-{:#x}\n", port_mem.0, port_mem.1)
    );
    let dev = function(&core, &pci, Bdf::new(1, 0, 0));
    assert_eq!(dev.bars[0].base, None);
    assert!(inside(&dev.bars[1], port_mem));
    assert_eq!(
        attr(&core, "root/pci0/00:10.0/01:00.0/resource"),
        format!("bar0 io unassigned size=0x20\nbar1 mem32 {:#x}-{:#x}\n", port_mem.0, port_mem.0 + 0xfff)
    );
    let raw = cfg.function(behind, 0, 0).unwrap();
    assert_eq!(raw.read(reg::COMMAND, 2) as u16 & reg::COMMAND_IO, 0, "no I/O decoding without an address");
}

#[test]
fn the_pc_snapshot_is_as_expected() {
    let cfg = FakePci::pc();
    let (core, _pci) = boot(&cfg);
    let expected = "\
d bus
d bus/pci
d bus/pci/devices
l bus/pci/devices/00:00.0 -> ../../../root/pci0/00:00.0
l bus/pci/devices/00:01.0 -> ../../../root/pci0/00:01.0
l bus/pci/devices/00:01.1 -> ../../../root/pci0/00:01.1
l bus/pci/devices/00:01.3 -> ../../../root/pci0/00:01.3
d bus/pci/drivers
d root
d root/pci0
d root/pci0/00:00.0
f root/pci0/00:00.0/class 0x060000
f root/pci0/00:00.0/device 0x1237
f root/pci0/00:00.0/irq 0
f root/pci0/00:00.0/name i440FX Host Bridge
f root/pci0/00:00.0/power 0
f root/pci0/00:00.0/resource
f root/pci0/00:00.0/vendor 0x8086
d root/pci0/00:01.0
f root/pci0/00:01.0/class 0x060100
f root/pci0/00:01.0/device 0x7000
f root/pci0/00:01.0/irq 0
f root/pci0/00:01.0/name PIIX3 ISA Bridge
f root/pci0/00:01.0/power 0
f root/pci0/00:01.0/resource
f root/pci0/00:01.0/vendor 0x8086
d root/pci0/00:01.1
f root/pci0/00:01.1/class 0x010180
f root/pci0/00:01.1/device 0x7010
f root/pci0/00:01.1/irq 0
f root/pci0/00:01.1/name PIIX3 IDE
f root/pci0/00:01.1/power 0
f root/pci0/00:01.1/resource bar4 io 0x1000-0x100f
f root/pci0/00:01.1/vendor 0x8086
d root/pci0/00:01.3
f root/pci0/00:01.3/class 0x068000
f root/pci0/00:01.3/device 0x7113
f root/pci0/00:01.3/irq 9
f root/pci0/00:01.3/name PIIX4 ACPI
f root/pci0/00:01.3/power 0
f root/pci0/00:01.3/resource
f root/pci0/00:01.3/vendor 0x8086
f root/pci0/name PCI Bus #00
f root/pci0/power 0
";
    assert_eq!(snapshot::render(&core, None).unwrap(), expected);
    assert_eq!(
        snapshot::render(&core, Some("root/pci0/00:01.1")).unwrap(),
        "\
d root/pci0/00:01.1
f root/pci0/00:01.1/class 0x010180
f root/pci0/00:01.1/device 0x7010
f root/pci0/00:01.1/irq 0
f root/pci0/00:01.1/name PIIX3 IDE
f root/pci0/00:01.1/power 0
f root/pci0/00:01.1/resource bar4 io 0x1000-0x100f
f root/pci0/00:01.1/vendor 0x8086
"
    );
}

#[test]
fn the_q35_snapshot_shows_multi_line_resources_escaped() {
    let cfg = FakePci::q35();
    let (core, _pci) = boot(&cfg);
    let text = snapshot::render(&core, Some("root/pci0/00:1f.2")).unwrap();
    assert!(
        text.contains("f root/pci0/00:1f.2/resource bar4 io 0x3000-0x301f\\nbar5 mem32 0xc0002000-0xc0002fff\n"),
        "{text}"
    );
    let port = snapshot::render(&core, Some("root/pci0/00:10.0")).unwrap();
    assert!(
        port.contains(
            "f root/pci0/00:10.0/resource bar0 mem32 0xc0000000-0xc0000fff\\nbuses 01-04\\nwindow io 0x1000-0x1fff\\nwindow mem 0xc0100000-0xc04fffff\n"
        ),
        "{port}"
    );
}

/// Hot-removing a bridge takes everything below it out of the PCI
/// bookkeeping, however deep: a function two bridges down must not stay
/// findable by its old address once its device object is gone.
#[test]
fn forgetting_a_bridge_forgets_every_bus_below_it() {
    let cfg = FakePci::q35();
    let port = cfg.child_segment(Segment::ROOT, 0x10, 0).unwrap();
    cfg.insert(port, 0, 0, FakeFunction::bridge(0x1b36, 0x0001));
    let middle = cfg.child_segment(port, 0, 0).unwrap();
    cfg.insert(middle, 1, 0, FakeFunction::bridge(0x1b36, 0x0001));
    let deep = cfg.child_segment(middle, 1, 0).unwrap();
    cfg.insert(deep, 0, 0, FakeFunction::endpoint(0x1234, 0x11e8, 0x00_ff_00));
    let (core, mut pci) = boot(&cfg);
    let bridge = function(&core, &pci, Bdf::new(1, 0, 0));
    assert!(pci.function(Bdf::new(3, 0, 0)).is_some(), "01:00.0 -> 02:01.0 -> 03:00.0");

    let core = alloc::rc::Rc::new(core::cell::RefCell::new(core));
    let dev = pci.function(bridge.bdf).unwrap();
    let mut exec = Executor::new();
    let c = core.clone();
    exec.spawner().spawn(async move { device_unregister(&c, dev).await.expect("unregister") });
    exec.run_pass();
    assert!(exec.is_empty());
    pci.forget(&bridge);

    for bdf in [Bdf::new(1, 0, 0), Bdf::new(2, 1, 0), Bdf::new(3, 0, 0)] {
        assert_eq!(pci.function(bdf), None, "{bdf} is gone");
    }
    assert_eq!(pci.bridges(&core.borrow()), [(Bdf::new(0, 0x10, 0), 1), (Bdf::new(0, 0x11, 0), 5)]);
    assert_eq!(pci.scan_slot(&mut core.borrow_mut(), &cfg, 3, 0), 0, "bus 3 has no parent any more");
}

/// A bridge hot-added behind a root port gets its bus number from the
/// port's reserved range (so config cycles reach it), and gives it back
/// when it goes, so the slot can take a bridge again.
#[test]
fn a_hot_added_bridge_is_numbered_inside_its_root_ports_range() {
    let cfg = FakePci::q35();
    let (mut core, mut pci) = boot(&cfg);
    let port = cfg.child_segment(Segment::ROOT, 0x10, 0).unwrap();
    for round in 0..3 {
        cfg.insert(port, 0, 0, FakeFunction::bridge(0x1b36, 0x000e));
        assert_eq!(pci.scan_slot(&mut core, &cfg, 1, 0), 1, "round {round}");
        let bridge = function(&core, &pci, Bdf::new(1, 0, 0));
        assert_eq!((bridge.secondary, bridge.subordinate), (Some(2), Some(2)), "round {round}: inside 01-04");
        let f = cfg.function(port, 0, 0).unwrap();
        assert_eq!([reg::PRIMARY_BUS, reg::SECONDARY_BUS, reg::SUBORDINATE_BUS].map(|r| f.read(r, 1)), [1, 2, 2]);
        // Unplugged: out of the model and out of the PCI bookkeeping.
        let dev = pci.function(bridge.bdf).unwrap();
        let shared = alloc::rc::Rc::new(core::cell::RefCell::new(core));
        let mut exec = Executor::new();
        let c = shared.clone();
        exec.spawner().spawn(async move { device_unregister(&c, dev).await.expect("unregister") });
        exec.run_pass();
        pci.forget(&bridge);
        cfg.remove(port, 0, 0);
        drop(exec);
        core = alloc::rc::Rc::try_unwrap(shared).ok().expect("no other owner").into_inner();
    }
}

/// Firmware that numbered sibling bridges in reverse slot order (qboot):
/// renumbering them in slot order must not let a bridge that still holds
/// its old number claim the config cycles meant for a sibling, or the
/// device behind the third root port shows up under the first one too.
#[test]
fn stale_firmware_bus_numbers_do_not_make_phantom_functions() {
    let cfg = FakePci::q35();
    cfg.insert(Segment::ROOT, 0x12, 0, FakeFunction::bridge(0x1b36, 0x000c).pin(1).pcie_slot(3));
    let third = cfg.child_segment(Segment::ROOT, 0x12, 0).unwrap();
    cfg.insert(third, 0, 0, FakeFunction::endpoint(0x1234, 0x11e8, 0x00_ff_00).pin(1));
    // And a pci-bridge with a pci-testdev behind the first root port.
    let first = cfg.child_segment(Segment::ROOT, 0x10, 0).unwrap();
    cfg.insert(first, 0, 0, FakeFunction::bridge(0x1b36, 0x0001));
    let nested = cfg.child_segment(first, 0, 0).unwrap();
    cfg.insert(nested, 2, 0, FakeFunction::endpoint(0x1b36, 0x0005, 0x00_ff_00));
    // What qboot leaves: 00:12.0 -> bus 1, 00:11.0 -> 2, 00:10.0 -> 3.
    for (slot, bus) in [(0x12, 1), (0x11, 2), (0x10, 3)] {
        let bdf = Bdf::new(0, slot, 0);
        cfg.write8(bdf, reg::PRIMARY_BUS, 0);
        cfg.write8(bdf, reg::SECONDARY_BUS, bus);
        cfg.write8(bdf, reg::SUBORDINATE_BUS, bus);
    }
    let (core, pci) = boot(&cfg);
    let edus: Vec<String> = core
        .bus_devices(pci.bus)
        .into_iter()
        .map(|d| core.device_path(d))
        .filter(|p| attr(&core, &format!("{p}/device")) == "0x11e8\n")
        .collect();
    assert_eq!(edus, ["root/pci0/00:12.0/09:00.0"], "one edu, behind the third root port");
    let paths: Vec<String> = core.bus_devices(pci.bus).into_iter().map(|d| core.device_path(d)).collect();
    assert!(paths.contains(&String::from("root/pci0/00:10.0/01:00.0/02:02.0")), "{paths:?}");
    assert_eq!(paths.len(), 10, "host, 3 root ports, bridge, testdev, edu, LPC, AHCI, SMBus: {paths:?}");
    let buses = |slot| {
        let f = cfg.function(Segment::ROOT, slot, 0).unwrap();
        [reg::SECONDARY_BUS, reg::SUBORDINATE_BUS].map(|r| f.read(r, 1))
    };
    assert_eq!([buses(0x10), buses(0x11), buses(0x12)], [[1, 4], [5, 8], [9, 12]]);
}
