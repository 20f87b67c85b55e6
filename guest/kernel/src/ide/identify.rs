//! IDENTIFY DEVICE / IDENTIFY PACKET DEVICE data (ATA/ATAPI-6, §8.15–8.16):
//! 256 little-endian words.

use alloc::string::String;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identify {
    /// Words 27–46, bytes swapped within each word, trailing spaces removed.
    pub model: String,
    /// User-addressable sectors: words 100–103 when the 48-bit feature set
    /// is supported (word 83 bit 10), else words 60–61. 0 for ATAPI.
    pub sectors: u64,
}

fn word(data: &[u8; 512], n: usize) -> u16 {
    u16::from_le_bytes([data[2 * n], data[2 * n + 1]])
}

/// ATA strings put the first character in the high byte of each word.
fn ata_string(data: &[u8; 512], first: usize, last: usize) -> String {
    let mut s = String::new();
    for n in first..=last {
        let [lo, hi] = word(data, n).to_le_bytes();
        for b in [hi, lo] {
            s.push(if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' });
        }
    }
    String::from(s.trim_end())
}

pub fn parse(data: &[u8; 512], packet: bool) -> Identify {
    let model = ata_string(data, 27, 46);
    let sectors = if packet {
        0
    } else if word(data, 83) & (1 << 10) != 0 {
        (0..4).fold(0u64, |acc, i| acc | (u64::from(word(data, 100 + i)) << (16 * i)))
    } else {
        u64::from(word(data, 60)) | (u64::from(word(data, 61)) << 16)
    };
    Identify { model, sectors }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_string(data: &mut [u8; 512], first: usize, text: &str) {
        let mut bytes = text.as_bytes().to_vec();
        bytes.resize(40, b' ');
        for (i, pair) in bytes.chunks(2).enumerate() {
            data[2 * (first + i)] = pair[1];
            data[2 * (first + i) + 1] = pair[0];
        }
    }

    #[test]
    fn model_is_byte_swapped_and_trimmed_capacity_prefers_lba48() {
        let mut data = [0u8; 512];
        put_string(&mut data, 27, "QEMU HARDDISK");
        data[120..124].copy_from_slice(&8192u32.to_le_bytes()); // words 60-61
        assert_eq!(parse(&data, false), Identify { model: "QEMU HARDDISK".into(), sectors: 8192 });
        data[166..168].copy_from_slice(&(1u16 << 10).to_le_bytes()); // word 83: LBA48
        data[200..208].copy_from_slice(&0x1_0000_0000u64.to_le_bytes()); // words 100-103
        assert_eq!(parse(&data, false).sectors, 0x1_0000_0000);
        assert_eq!(parse(&data, true).sectors, 0, "packet devices report no sector count");
    }
}
