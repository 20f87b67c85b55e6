//! The images the hardware matrix uses, as recipes: what each holds is
//! declared here, so a test can compare what the guest read through the bus
//! with what was written.
//!
//! - `disk.img`: a raw disk with an MBR, a known disk signature and two
//!   partitions; every sector outside the MBR is zero.
//! - `cd-alpha.iso`, `cd-beta.iso`: minimal ISO 9660 images (a primary
//!   volume descriptor at block 16 and a terminator at block 17) with known
//!   volume identifiers and sizes.
//!
//! Images are written into `target/images` and only rewritten when their
//! bytes change, atomically (write, then rename), so parallel test processes
//! can all call [`ensure`].

use std::path::{Path, PathBuf};

/// One MBR partition of the disk recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionRecipe {
    pub number: u8,
    pub kind: u8,
    pub start: u32,
    pub sectors: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskRecipe {
    pub file: &'static str,
    pub sectors: u32,
    pub signature: u32,
    pub partitions: &'static [PartitionRecipe],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdRecipe {
    pub file: &'static str,
    pub volume: &'static str,
    /// 2048-byte blocks.
    pub blocks: u32,
}

impl CdRecipe {
    /// Size in 512-byte sectors, the unit the guest reports.
    pub fn sectors(&self) -> u64 {
        u64::from(self.blocks) * 4
    }
}

/// 4 MiB; the signature is the date of Viro's 2002 mail that started the
/// thread this project follows.
pub const DISK: DiskRecipe = DiskRecipe {
    file: "disk.img",
    sectors: 8192,
    signature: 0x2002_1007,
    partitions: &[
        PartitionRecipe { number: 1, kind: 0x83, start: 2048, sectors: 2048 },
        PartitionRecipe { number: 2, kind: 0x0c, start: 4096, sectors: 4096 },
    ],
};

pub const CD_ALPHA: CdRecipe = CdRecipe { file: "cd-alpha.iso", volume: "ALPHA", blocks: 96 };
pub const CD_BETA: CdRecipe = CdRecipe { file: "cd-beta.iso", volume: "BETA", blocks: 160 };

pub const CDS: [CdRecipe; 2] = [CD_ALPHA, CD_BETA];

/// Where images live: `<workspace>/target/images`.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("images/ sits in the workspace root")
        .join("target")
        .join("images")
}

pub fn path(file: &str) -> PathBuf {
    dir().join(file)
}

pub fn disk_bytes(recipe: &DiskRecipe) -> Vec<u8> {
    let mut disk = vec![0u8; recipe.sectors as usize * 512];
    disk[440..444].copy_from_slice(&recipe.signature.to_le_bytes());
    for p in recipe.partitions {
        let entry = 446 + 16 * (usize::from(p.number) - 1);
        disk[entry + 4] = p.kind;
        disk[entry + 8..entry + 12].copy_from_slice(&p.start.to_le_bytes());
        disk[entry + 12..entry + 16].copy_from_slice(&p.sectors.to_le_bytes());
    }
    disk[510] = 0x55;
    disk[511] = 0xaa;
    disk
}

/// ECMA-119 both-endian 32-bit field.
fn both_endian32(value: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&value.to_le_bytes());
    out[4..].copy_from_slice(&value.to_be_bytes());
    out
}

pub fn cd_bytes(recipe: &CdRecipe) -> Vec<u8> {
    const BLOCK: usize = 2048;
    let mut cd = vec![0u8; recipe.blocks as usize * BLOCK];
    let pvd = &mut cd[16 * BLOCK..17 * BLOCK];
    pvd[0] = 1; // primary volume descriptor
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pvd[8..72].fill(b' '); // system and volume identifiers, space-padded
    pvd[40..40 + recipe.volume.len()].copy_from_slice(recipe.volume.as_bytes());
    pvd[80..88].copy_from_slice(&both_endian32(recipe.blocks));
    pvd[128..130].copy_from_slice(&(BLOCK as u16).to_le_bytes());
    pvd[130..132].copy_from_slice(&(BLOCK as u16).to_be_bytes());
    let terminator = &mut cd[17 * BLOCK..18 * BLOCK];
    terminator[0] = 255;
    terminator[1..6].copy_from_slice(b"CD001");
    terminator[6] = 1;
    cd
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    // Unique per process and call: tests build images from parallel threads.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Build every image into [`dir`] (a no-op when they are current); returns
/// their paths.
pub fn ensure() -> std::io::Result<Vec<PathBuf>> {
    ensure_in(&dir())
}

/// Build every image into `dir` (a no-op when they are current); returns
/// their paths.
pub fn ensure_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut built = Vec::new();
    let disk = dir.join(DISK.file);
    write_if_changed(&disk, &disk_bytes(&DISK))?;
    built.push(disk);
    for cd in CDS {
        let p = dir.join(cd.file);
        write_if_changed(&p, &cd_bytes(&cd))?;
        built.push(p);
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_has_the_recipe_mbr() {
        let disk = disk_bytes(&DISK);
        assert_eq!(disk.len(), 8192 * 512);
        assert_eq!(&disk[510..512], &[0x55, 0xaa]);
        assert_eq!(u32::from_le_bytes(disk[440..444].try_into().unwrap()), 0x2002_1007);
        assert_eq!(disk[446 + 4], 0x83);
        assert_eq!(u32::from_le_bytes(disk[446 + 16 + 8..446 + 16 + 12].try_into().unwrap()), 4096);
        assert!(disk[512..].iter().all(|b| *b == 0));
    }

    #[test]
    fn cds_carry_their_volume_id_and_size() {
        for cd in CDS {
            let bytes = cd_bytes(&cd);
            assert_eq!(bytes.len(), cd.blocks as usize * 2048);
            let pvd = &bytes[16 * 2048..17 * 2048];
            assert_eq!(&pvd[1..6], b"CD001");
            assert_eq!(std::str::from_utf8(&pvd[40..72]).unwrap().trim_end(), cd.volume);
            assert_eq!(u32::from_le_bytes(pvd[80..84].try_into().unwrap()), cd.blocks);
        }
        assert_ne!(CD_ALPHA.blocks, CD_BETA.blocks, "the two CDs must be told apart by size too");
    }

    #[test]
    fn building_twice_is_a_no_op() {
        let first = ensure().unwrap();
        let modified: Vec<_> = first.iter().map(|p| std::fs::metadata(p).unwrap().modified().unwrap()).collect();
        let second = ensure().unwrap();
        assert_eq!(first, second);
        let again: Vec<_> = second.iter().map(|p| std::fs::metadata(p).unwrap().modified().unwrap()).collect();
        assert_eq!(modified, again);
    }
}
