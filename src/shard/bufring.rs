//! The shard's provided-buffer ring (`IORING_REGISTER_PBUF_RING`).
//!
//! Multishot receives of every connection of a shard pick a free buffer from
//! this ring only when data arrives, so an idle connection owns no read
//! buffer. The shard copies what it needs out of a buffer (leftover partial
//! packets) and returns it in the same loop turn.
//!
//! ```text
//!  ring (page aligned, entries × 16 B)        buffers (count × size)
//!  +------+------+-----+------+               +--------+--------+-----+
//!  | addr | addr | ... | addr |  --points-->  | buf 0  | buf 1  | ... |
//!  +------+------+-----+------+               +--------+--------+-----+
//!  tail (u16, in entry 0's resv) is advanced by us; head by the kernel.
//! ```

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// Buffer group id of the shard's client read buffers.
pub const CLIENT_BGID: u16 = 0;

/// A registered provided-buffer ring and the memory behind it.
pub struct BufRing {
    ring: *mut BufRingEntry,
    ring_bytes: usize,
    bufs: *mut u8,
    bufs_bytes: usize,
    count: u16,
    size: u32,
    /// Our local tail: entries published up to here on [`BufRing::publish`].
    tail: u16,
}

fn mmap_anon(len: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping with no address hint has no
    // preconditions; the result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl BufRing {
    /// Allocates `count` buffers of `size` bytes and registers them with `ring`
    /// under [`CLIENT_BGID`]. `count` must be a power of two ≤ 32768.
    pub fn register(ring: &IoUring, count: u16, size: u32) -> io::Result<BufRing> {
        assert!(
            count.is_power_of_two(),
            "buffer_count must be a power of two"
        );
        let ring_bytes = count as usize * std::mem::size_of::<BufRingEntry>();
        let bufs_bytes = count as usize * size as usize;
        // mmap gives page-aligned, zeroed memory (the tail starts at 0).
        let ring_mem = mmap_anon(ring_bytes)?.cast::<BufRingEntry>();
        let bufs = match mmap_anon(bufs_bytes) {
            Ok(b) => b,
            Err(e) => {
                // SAFETY: ring_mem was mapped above with ring_bytes and is not registered yet.
                unsafe { libc::munmap(ring_mem.cast(), ring_bytes) };
                return Err(e);
            }
        };
        let mut br = BufRing {
            ring: ring_mem,
            ring_bytes,
            bufs,
            bufs_bytes,
            count,
            size,
            tail: 0,
        };
        // SAFETY: the ring memory is page aligned, holds `count` entries and
        // stays mapped until `Drop`, which `Ring` runs only after its io_uring
        // has been dropped (and never while an operation is in flight).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ring_mem as u64, count, CLIENT_BGID, 0)?
        };
        for bid in 0..count {
            // SAFETY: at registration no buffer is on the ring yet; each id once.
            unsafe { br.push(bid) };
        }
        br.publish();
        Ok(br)
    }

    /// The first `len` bytes of buffer `bid`, as filled by a completed receive.
    ///
    /// # Safety
    /// The kernel must have handed buffer `bid` out in a completion that
    /// reported `len` bytes, and the buffer must not have been pushed back
    /// since (the kernel may be writing into a buffer on the ring).
    pub unsafe fn slice(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.count && len <= self.size as usize);
        // SAFETY: bid < count, so the buffer lies inside the mapping; by the
        // caller's contract the kernel wrote `len` bytes into it and does not
        // own it until it is pushed back, which takes `&mut self`.
        unsafe { std::slice::from_raw_parts(self.bufs.add(bid as usize * self.size as usize), len) }
    }

    /// Hands buffer `bid` back (visible to the kernel after [`BufRing::publish`]).
    ///
    /// # Safety
    /// `bid` must be a buffer the kernel handed out and that was not pushed
    /// back since: pushing an id twice lets the kernel fill one buffer for
    /// two receives.
    pub unsafe fn push(&mut self, bid: u16) {
        let mask = self.count - 1;
        // SAFETY: the index is masked into 0..count, inside the ring mapping;
        // the kernel reads entries only between its head and the published
        // tail, and this slot is past the published tail.
        let entry = unsafe { &mut *self.ring.add((self.tail & mask) as usize) };
        entry.set_addr(self.bufs as u64 + bid as u64 * self.size as u64);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes every pushed buffer to the kernel (one release store).
    pub fn publish(&mut self) {
        // SAFETY: `self.ring` is the base of the registered ring, whose first
        // entry's `resv` field is the shared tail; it is a naturally aligned
        // u16 that the kernel only reads.
        let tail = unsafe { &*(BufRingEntry::tail(self.ring).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped in `register` with these lengths.
        // `Ring` drops its IoUring before its BufRing, so the kernel no longer
        // references them. (On a failed `register` the ring was never
        // registered.)
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_bytes);
            libc::munmap(self.bufs.cast(), self.bufs_bytes);
        }
    }
}
