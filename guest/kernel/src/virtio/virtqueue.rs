//! A split virtqueue in DMA memory, laid out as legacy virtio requires (and
//! modern accepts): descriptors, then the available ring, then the used ring
//! at the next 4 KiB boundary. For 256 entries that is three pages: avail at
//! +0x1000, used at +0x2000.
//!
//! The driver never enables interrupts: it publishes a chain (descriptors
//! first, a fence, then the available index), notifies, and later harvests
//! the used ring with [`Virtqueue::pop_used`].

use alloc::vec::Vec;

use crate::hw::{DmaBuffer, DmaExhausted, Platform};

/// Descriptor flags.
pub const DESC_NEXT: u16 = 1;
pub const DESC_WRITE: u16 = 2;

const DESC_SIZE: usize = 16;
const ALIGN: usize = 4096;

/// One buffer of a chain: a physical range the device reads (`writable`
/// false) or writes (`writable` true).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub phys: u64,
    pub len: u32,
    pub writable: bool,
}

/// A chain the device has finished with: its head descriptor and the byte
/// count the device reported (for virtio-scsi: bytes mapped, not moved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    pub head: u16,
    pub len: u32,
}

pub struct Virtqueue {
    index: u16,
    size: u16,
    mem: DmaBuffer,
    avail_offset: usize,
    used_offset: usize,
    /// Free descriptor indices.
    free: Vec<u16>,
    /// Length of the chain starting at each head (0 = not a live head).
    chain_len: Vec<u16>,
    next_avail: u16,
    last_used: u16,
}

/// The byte offsets of the rings in a queue of `size` entries.
pub fn layout(size: u16) -> (usize, usize, usize) {
    let n = usize::from(size);
    let avail = DESC_SIZE * n;
    let avail_end = avail + 6 + 2 * n;
    let used = avail_end.div_ceil(ALIGN) * ALIGN;
    let used_end = used + 6 + 8 * n;
    (avail, used, used_end.div_ceil(ALIGN) * ALIGN)
}

impl Virtqueue {
    /// A zeroed queue of `size` entries (a power of two) for queue `index`.
    pub fn new(platform: &'static dyn Platform, index: u16, size: u16) -> Result<Self, DmaExhausted> {
        assert!(size.is_power_of_two(), "virtqueue size {size}");
        let (avail_offset, used_offset, total) = layout(size);
        let mem = DmaBuffer::new(platform, total, ALIGN)?;
        Ok(Virtqueue {
            index,
            size,
            mem,
            avail_offset,
            used_offset,
            free: (0..size).rev().collect(),
            chain_len: alloc::vec![0; usize::from(size)],
            next_avail: 0,
            last_used: 0,
        })
    }

    pub fn index(&self) -> u16 {
        self.index
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    pub fn desc_addr(&self) -> u64 {
        self.mem.phys()
    }

    pub fn avail_addr(&self) -> u64 {
        self.mem.phys_at(self.avail_offset)
    }

    pub fn used_addr(&self) -> u64 {
        self.mem.phys_at(self.used_offset)
    }

    /// Descriptors not in any chain.
    pub fn free_descriptors(&self) -> usize {
        self.free.len()
    }

    /// Chains the device has not given back yet.
    pub fn in_flight(&self) -> usize {
        self.chain_len.iter().filter(|n| **n != 0).count()
    }

    /// Publish a chain; returns its head, or `None` when there are not
    /// enough free descriptors. The caller notifies the device.
    pub fn add(&mut self, segments: &[Segment]) -> Option<u16> {
        if segments.is_empty() || segments.len() > self.free.len() {
            return None;
        }
        let ids: Vec<u16> = (0..segments.len()).map(|_| self.free.pop().expect("counted")).collect();
        for (i, seg) in segments.iter().enumerate() {
            let at = usize::from(ids[i]) * DESC_SIZE;
            let mut flags = if seg.writable { DESC_WRITE } else { 0 };
            let next = ids.get(i + 1).copied().unwrap_or(0);
            if i + 1 < segments.len() {
                flags |= DESC_NEXT;
            }
            self.mem.write_u64(at, seg.phys);
            self.mem.write_u32(at + 8, seg.len);
            self.mem.write_u16(at + 12, flags);
            self.mem.write_u16(at + 14, next);
        }
        let head = ids[0];
        self.chain_len[usize::from(head)] = segments.len() as u16;
        let slot = usize::from(self.next_avail % self.size);
        self.mem.write_u16(self.avail_offset + 4 + 2 * slot, head);
        // The device must see the descriptors and the ring entry before the
        // index that hands them over.
        self.mem.fence();
        self.next_avail = self.next_avail.wrapping_add(1);
        self.mem.write_u16(self.avail_offset + 2, self.next_avail);
        self.mem.fence();
        Some(head)
    }

    /// The next chain the device gave back. Its descriptors stay allocated
    /// until [`Virtqueue::recycle`]: while the driver still owes someone the
    /// result, the head cannot be handed to a new chain (a head reused too
    /// early would make one waiter read another command's response).
    pub fn pop_used(&mut self) -> Option<Used> {
        let device_idx = self.mem.read_u16(self.used_offset + 2);
        if device_idx == self.last_used {
            return None;
        }
        // Read the element only after the index that published it.
        self.mem.fence();
        let slot = usize::from(self.last_used % self.size);
        let at = self.used_offset + 4 + 8 * slot;
        let head = self.mem.read_u32(at) as u16;
        let len = self.mem.read_u32(at + 4);
        self.last_used = self.last_used.wrapping_add(1);
        Some(Used { head, len })
    }

    /// Free the descriptors of a chain [`Virtqueue::pop_used`] returned.
    pub fn recycle(&mut self, head: u16) {
        let count = core::mem::replace(&mut self.chain_len[usize::from(head % self.size)], 0);
        let mut id = head;
        for _ in 0..count {
            self.free.push(id);
            let at = usize::from(id) * DESC_SIZE;
            if self.mem.read_u16(at + 12) & DESC_NEXT == 0 {
                break;
            }
            id = self.mem.read_u16(at + 14);
        }
    }
}
