//! The master boot record: the disk signature and four primary partitions.

use alloc::vec::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1–4, the entry's position (Linux's partition number).
    pub number: u8,
    pub kind: u8,
    /// First sector (LBA) and length in sectors.
    pub start: u32,
    pub sectors: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mbr {
    /// The 32-bit disk signature at offset 440.
    pub signature: u32,
    /// Non-empty entries (type != 0, length != 0).
    pub partitions: Vec<Partition>,
}

/// `None` unless sector 0 ends in the 0x55 0xaa boot signature.
pub fn parse(sector: &[u8; 512]) -> Option<Mbr> {
    if sector[510] != 0x55 || sector[511] != 0xaa {
        return None;
    }
    let le32 = |off: usize| u32::from_le_bytes([sector[off], sector[off + 1], sector[off + 2], sector[off + 3]]);
    let partitions = (0..4)
        .filter_map(|i| {
            let entry = 446 + 16 * i;
            let p = Partition {
                number: i as u8 + 1,
                kind: sector[entry + 4],
                start: le32(entry + 8),
                sectors: le32(entry + 12),
            };
            (p.kind != 0 && p.sectors != 0).then_some(p)
        })
        .collect();
    Some(Mbr { signature: le32(440), partitions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signature_and_non_empty_entries() {
        let mut s = [0u8; 512];
        s[440..444].copy_from_slice(&0x2002_1007u32.to_le_bytes());
        let mut entry = |i: usize, kind: u8, start: u32, len: u32| {
            let e = 446 + 16 * i;
            s[e + 4] = kind;
            s[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
            s[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
        };
        entry(0, 0x83, 2048, 2048);
        entry(2, 0x0c, 4096, 4096);
        s[510] = 0x55;
        s[511] = 0xaa;
        let mbr = parse(&s).unwrap();
        assert_eq!(mbr.signature, 0x2002_1007);
        assert_eq!(
            mbr.partitions,
            [
                Partition { number: 1, kind: 0x83, start: 2048, sectors: 2048 },
                Partition { number: 3, kind: 0x0c, start: 4096, sectors: 4096 }
            ]
        );
        s[511] = 0;
        assert_eq!(parse(&s), None, "no boot signature, no MBR");
    }
}
