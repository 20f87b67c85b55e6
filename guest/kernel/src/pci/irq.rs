//! Legacy INTx routing: which ISA IRQ a function's interrupt pin reaches.
//!
//! Both chipsets route PCI interrupt lines (PIRQs; four on PIIX3, eight on
//! ICH9) through registers in their ISA bridge. The guest programs those
//! registers itself (PIRQ A–D, and on ICH9 E–H too, to 10, 10, 11, 11, as
//! SeaBIOS does) and writes the result into each
//! function's INTERRUPT_LINE, so `irq` does not depend on the firmware and a
//! hot-added function gets a line too. The slot→PIRQ rotation is the one the
//! chipsets' ACPI tables describe (QEMU's i440fx and q35 DSDTs).

use super::config::{Bdf, ConfigSpace};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chipset {
    /// `-machine pc`: PIIX3 ISA bridge at 00:01.0.
    I440fx,
    /// `-machine q35`: ICH9 LPC at 00:1f.0.
    Q35,
    Unknown,
}

impl Chipset {
    pub fn detect(host_vendor: u16, host_device: u16) -> Chipset {
        match (host_vendor, host_device) {
            (0x8086, 0x1237) => Chipset::I440fx,
            (0x8086, 0x29c0) => Chipset::Q35,
            _ => Chipset::Unknown,
        }
    }

    /// I/O ranges at or above 0x1000 that the chipset's own fixed blocks
    /// decode, which no BAR or bridge window may take: on `pc`, the ACPI
    /// PCI hot-plug (0xae00), CPU hot-plug (0xaf00) and GPE0 (0xafe0)
    /// blocks. q35's ACPI blocks (0x600, 0xcc0) all sit below 0x1000.
    pub fn reserved_io(self) -> &'static [(u64, u64)] {
        match self {
            Chipset::I440fx => &[(0xae00, 0xafff)],
            Chipset::Q35 | Chipset::Unknown => &[],
        }
    }
}

const PIRQ_IRQS: [u8; 4] = [10, 10, 11, 11];

/// Program the chipset's PIRQ route control registers.
pub fn route_pirqs(cfg: &dyn ConfigSpace, chipset: Chipset) {
    match chipset {
        Chipset::I440fx => {
            let piix3 = Bdf::new(0, 1, 0);
            for (i, irq) in PIRQ_IRQS.iter().enumerate() {
                cfg.write8(piix3, 0x60 + i as u8, *irq);
            }
        }
        Chipset::Q35 => {
            let lpc = Bdf::new(0, 0x1f, 0);
            for (i, irq) in PIRQ_IRQS.iter().enumerate() {
                cfg.write8(lpc, 0x60 + i as u8, *irq); // PIRQ A–D
                cfg.write8(lpc, 0x68 + i as u8, *irq); // PIRQ E–H
            }
        }
        Chipset::Unknown => {}
    }
}

/// Where a function sits: the device number of its ancestor on bus 0, and
/// the sum of the device numbers below it (the bridge swizzle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqPath {
    pub root_slot: u8,
    pub addend: u8,
}

impl IrqPath {
    pub fn root(slot: u8) -> IrqPath {
        IrqPath { root_slot: slot, addend: 0 }
    }

    /// The path of a function at `slot` behind the bridge whose path is `self`.
    pub fn below(self, slot: u8) -> IrqPath {
        IrqPath { root_slot: self.root_slot, addend: self.addend.wrapping_add(slot) }
    }
}

/// Functions whose pin is wired to a fixed line rather than to a PIRQ: the
/// PIIX4 power-management function raises the ACPI SCI, which QEMU (like the
/// real southbridge) wires to ISA IRQ 9.
pub fn fixed_irq(vendor: u16, device: u16) -> Option<u8> {
    match (vendor, device) {
        (0x8086, 0x7113) => Some(9),
        _ => None,
    }
}

/// The IRQ for interrupt pin `pin` (1 = INTA) of a function at `path`.
pub fn irq_for(chipset: Chipset, path: IrqPath, pin: u8) -> Option<u8> {
    if !(1..=4).contains(&pin) {
        return None;
    }
    let pin0 = usize::from(pin - 1) + usize::from(path.addend);
    let slot = usize::from(path.root_slot);
    let index = match chipset {
        Chipset::I440fx => (pin0 + slot + 3) & 3, // slot - 1, mod 4
        // Slots 0-24 rotate over PIRQ E-H; 25-31 (the ICH9 functions at
        // 0x1f) take PIRQ A-D by pin alone. E-H and A-D are programmed
        // alike, so the index picks the line either way.
        Chipset::Q35 if slot <= 24 => (pin0 + slot) & 3,
        Chipset::Q35 => pin0 & 3,
        Chipset::Unknown => return None,
    };
    Some(PIRQ_IRQS[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i440fx_rotates_by_slot_minus_one() {
        // 00:01.1 INTA -> PIRQA (slot 1: 1 - 1 = 0) -> 10; slot 3 INTA -> PIRQC -> 11.
        assert_eq!(irq_for(Chipset::I440fx, IrqPath::root(1), 1), Some(10));
        assert_eq!(irq_for(Chipset::I440fx, IrqPath::root(3), 1), Some(11));
        assert_eq!(irq_for(Chipset::I440fx, IrqPath::root(4), 1), Some(11));
        assert_eq!(irq_for(Chipset::I440fx, IrqPath::root(5), 1), Some(10));
        assert_eq!(irq_for(Chipset::I440fx, IrqPath::root(1), 0), None, "no pin, no irq");
    }

    #[test]
    fn q35_rotates_low_slots_and_fixes_high_ones() {
        assert_eq!(irq_for(Chipset::Q35, IrqPath::root(2), 1), Some(11));
        assert_eq!(irq_for(Chipset::Q35, IrqPath::root(0x1f), 1), Some(10));
        assert_eq!(irq_for(Chipset::Q35, IrqPath::root(0x1f), 3), Some(11));
    }
}
