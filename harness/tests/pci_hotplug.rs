//! PCI hot-plug end to end on both machines: ACPI hot-plug on `pc`, native
//! PCIe on `q35`'s root ports. The bodies live in `harness::scenario::pci`.

mod common;

scenario_tests! {
    pci_add_remove_readd on [pc, q35],
    pci_held_read_eject on [pc, q35],
    pci_fifty_cycles on [pc, q35],
    pci_refusals on [pc, q35],
    pci_bridge_controller on [pc, q35],
    pci_readd_waits_release on [pc, q35],
}
