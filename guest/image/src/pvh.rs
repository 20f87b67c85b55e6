//! `hvm_start_info`, the structure QEMU's PVH loader hands over in EBX
//! (Xen's public `arch-x86/hvm/start_info.h`): command line and memory map.

/// Magic value of `hvm_start_info.magic`.
const MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;

/// The parts of `hvm_start_info` the kernel uses, copied out of guest memory.
pub struct StartInfo {
    cmdline: &'static [u8],
    memmap: &'static [MemmapEntry],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RawStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

impl StartInfo {
    /// Read the structure at `paddr`. Panics (before any output is possible
    /// elsewhere) if the magic is wrong: the image was not booted via PVH.
    pub fn read(paddr: u32) -> StartInfo {
        // SAFETY: QEMU's PVH loader places `hvm_start_info` in RAM below
        // 4 GiB, which the boot stub identity-maps; it is never written
        // afterwards. Unaligned read: the ABI does not promise alignment.
        let raw = unsafe { (paddr as usize as *const RawStartInfo).read_unaligned() };
        assert_eq!(raw.magic, MAGIC, "not booted through PVH (hvm_start_info magic)");
        let cmdline: &'static [u8] = if raw.cmdline_paddr == 0 {
            &[]
        } else {
            let ptr = raw.cmdline_paddr as usize as *const u8;
            let mut len = 0;
            // SAFETY: the loader stores a NUL-terminated string in identity-
            // mapped RAM; the scan is bounded to 4 KiB.
            while len < 4096 && unsafe { ptr.add(len).read() } != 0 {
                len += 1;
            }
            // SAFETY: `len` bytes were just read from this range; the loader
            // never modifies it again.
            unsafe { core::slice::from_raw_parts(ptr, len) }
        };
        let memmap: &'static [MemmapEntry] = if raw.version >= 1 && raw.memmap_paddr != 0 {
            // SAFETY: version 1 adds the memory map; it lives in identity-
            // mapped RAM, is 8-byte aligned per the ABI and never modified.
            unsafe {
                core::slice::from_raw_parts(
                    raw.memmap_paddr as usize as *const MemmapEntry,
                    raw.memmap_entries as usize,
                )
            }
        } else {
            &[]
        };
        StartInfo { cmdline, memmap }
    }

    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(self.cmdline).unwrap_or("")
    }

    /// Is `[start, end)` entirely inside one RAM range? Without a memory map
    /// (old loaders) the caller's assumption is accepted.
    pub fn is_ram(&self, start: u64, end: u64) -> bool {
        self.memmap.is_empty()
            || self.memmap.iter().any(|e| e.kind == E820_RAM && e.addr <= start && end <= e.addr.saturating_add(e.size))
    }
}
