//! The shard's io_uring and everything the kernel may touch: the only place
//! in ringgate that submits operations, and the only owner of their memory
//! while they are in flight.
//!
//! ```text
//!  submit: Ring::send(fd, buf) ──▶ ops[i] = Pending::Send { buf } ──▶ SQE(user_data = i)
//!  reap:   CQE(user_data = i)  ──▶ ops[i] taken ──▶ Completion::Send { buf } back to the shard
//! ```
//!
//! Every buffer, address or counter an operation points at moves into the
//! in-flight table ([`Pending`]) when it is submitted and comes back in its
//! [`Completion`] when the kernel is done with it. Multishot accepts and
//! receives lend no memory of ours (receives fill provided buffers), so they
//! take no table entry — an idle connection costs none — and are only
//! counted until their last completion. Nothing the kernel may still write is ever
//! freed: dropping the [`Ring`] — on a clean stop, an error return or a
//! panic unwinding through the shard — cancels every operation and waits
//! for their completions first; if the kernel does not let go within
//! [`DROP_GRACE`], the memory is leaked rather than freed.
//!
//! Reads of client connections land in the provided-buffer ring
//! ([`super::bufring`]); a completion hands out a [`RecvBuf`] token, the
//! only way to read that buffer and, consumed by [`Ring::recycle`], the
//! only way to give it back, so no buffer id can be returned twice.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::bufring::BufRing;

/// How long dropping a ring waits for cancelled operations to complete.
pub const DROP_GRACE: Duration = Duration::from_secs(2);
/// `user_data` of cancel requests, whose own completions carry nothing we need.
const CANCEL_UD: u64 = u64::MAX;
/// `user_data` layout: the top two bits say what the low 32 bits index.
///
/// ```text
///  63 62 61            32 31                       0
/// +-----+----------------+--------------------------+
/// | tag |     unused     | table slot / client / listener |
/// +-----+----------------+--------------------------+
/// ```
const TAG_SHIFT: u32 = 62;
/// An entry of the in-flight table.
const TAG_TABLE: u64 = 0;
/// A client's multishot receive (index: the client's slot).
const TAG_RECV: u64 = 1;
/// A listener's multishot accept (index: the listener).
const TAG_ACCEPT: u64 = 2;

/// Who a send belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A client connection (its slot).
    Client(u32),
    /// A node link (its index).
    Link(usize),
}

/// An operation in flight that lends the kernel memory of ours. Multishot
/// accepts and receives lend none (receives fill provided buffers): they
/// are not in the table, only counted, so an idle connection costs no entry.
enum Pending {
    Send {
        owner: Owner,
        buf: BytesMut,
        off: usize,
    },
    Connect {
        link: usize,
        _addr: Box<socket2::SockAddr>,
    },
    LinkRecv {
        link: usize,
        buf: BytesMut,
    },
    Wake {
        buf: Box<u64>,
    },
}

/// A provided read buffer filled by a completed receive: read it with
/// [`Ring::recv_data`], give it back with [`Ring::recycle`].
#[must_use = "a RecvBuf not recycled is a read buffer lost to the ring"]
#[derive(Debug)]
pub struct RecvBuf {
    bid: u16,
    len: u32,
}

/// A finished (or, for multishot operations, progressing) operation.
#[derive(Debug)]
pub enum Completion {
    /// A connection accepted, or an accept error.
    Accept {
        /// Listener index.
        listener: usize,
        /// The new socket, or why accept failed.
        res: io::Result<OwnedFd>,
        /// The multishot accept is still armed.
        more: bool,
    },
    /// Bytes (in `buf`), end of stream (0) or -errno for a client.
    Recv {
        /// Client slot.
        client: u32,
        /// Bytes, 0 or -errno.
        res: i32,
        /// The multishot receive is still armed.
        more: bool,
        /// The buffer holding the bytes, when `res > 0`.
        buf: Option<RecvBuf>,
    },
    /// A send wrote `res` bytes of `buf[off..]` (or failed), and gives `buf` back.
    Send {
        /// Whose send.
        owner: Owner,
        /// Bytes written or -errno.
        res: i32,
        /// The buffer.
        buf: BytesMut,
        /// Where the send started in `buf`.
        off: usize,
    },
    /// A node link's connect finished.
    Connect {
        /// Link index.
        link: usize,
        /// 0 or -errno.
        res: i32,
    },
    /// A node link's read appended `res` bytes to `buf` (or failed).
    LinkRecv {
        /// Link index.
        link: usize,
        /// Bytes, 0 or -errno.
        res: i32,
        /// The read buffer, its length grown by what was read.
        buf: BytesMut,
    },
    /// The shard's eventfd was written (a wake-up): `count` writes since the last read.
    Wake {
        /// The eventfd counter that was read (0 if the read failed).
        count: u64,
    },
}

/// The in-flight table: slot `i` is the operation with `user_data == i`.
#[derive(Default)]
struct Table {
    slots: Vec<Option<Pending>>,
    free: Vec<u32>,
    len: usize,
}

impl Table {
    fn insert(&mut self, p: Pending) -> u64 {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = Some(p);
            return u64::from(i);
        }
        self.slots.push(Some(p));
        self.slots.len() as u64 - 1
    }

    fn remove(&mut self, i: usize) -> Option<Pending> {
        let p = self.slots.get_mut(i)?.take()?;
        self.free.push(i as u32);
        self.len -= 1;
        Some(p)
    }
}

/// A shard's io_uring, its provided read buffers and its in-flight table.
///
/// Field order matters for the leak path only; [`Drop`] waits for every
/// operation before any field is dropped.
pub struct Ring {
    ring: ManuallyDrop<IoUring>,
    bufs: ManuallyDrop<BufRing>,
    ops: ManuallyDrop<Table>,
    /// Multishot operations armed (they own no memory, but Drop waits for them too).
    multishot: usize,
    /// Completions copied out of the queue (reused every turn).
    cq: Vec<(u64, i32, u32)>,
    /// Submissions made since [`Ring::take_submitted`] last ran.
    submitted: u64,
    /// The kernel honours `min_wait_usec` (`IORING_FEAT_MIN_TIMEOUT`).
    min_wait: bool,
}

/// Completions that end a batching wait early (see [`Ring::wait`]).
const BATCH_EVENTS: usize = 64;

/// Builds a ring with the setup flags ringgate relies on.
fn build(entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(entries * 4)
        .build(entries)
}

impl Ring {
    /// A ring of `entries` submissions with `buf_count` provided read
    /// buffers of `buf_size` bytes. Call on the thread that will use it
    /// (the ring is single-issuer).
    pub fn new(entries: u32, buf_count: u16, buf_size: u32) -> io::Result<Ring> {
        let ring = build(entries)?;
        let bufs = BufRing::register(&ring, buf_count, buf_size)?;
        let min_wait = ring.params().is_feature_min_timeout();
        Ok(Ring {
            min_wait,
            ring: ManuallyDrop::new(ring),
            bufs: ManuallyDrop::new(bufs),
            ops: ManuallyDrop::new(Table::default()),
            multishot: 0,
            cq: Vec::with_capacity(1024),
            submitted: 0,
        })
    }

    /// The underlying ring (for feature probes).
    pub fn io_uring(&self) -> &IoUring {
        &self.ring
    }

    /// Operations in flight.
    pub fn in_flight(&self) -> usize {
        self.ops.len + self.multishot
    }

    /// Queues a submission whose memory the table owns, flushing the queue
    /// to the kernel if it is full.
    fn push(&mut self, e: squeue::Entry) {
        loop {
            // SAFETY: every pointer in `e` points into memory owned by an
            // entry of `self.ops` (or into the provided-buffer ring), which
            // stays allocated and untouched until its completion is reaped
            // in `completions`, or until `Drop` has waited for it.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            match self.ring.submit() {
                Ok(n) => self.submitted += n as u64,
                Err(err) if err.raw_os_error() != Some(libc::EBUSY) => {
                    tracing::error!(%err, "io_uring submit failed");
                }
                Err(_) => {}
            }
        }
    }

    /// Arms a multishot accept on listener `listener`'s socket.
    pub fn accept_multi(&mut self, fd: RawFd, listener: usize) {
        self.multishot += 1;
        let ud = TAG_ACCEPT << TAG_SHIFT | listener as u64;
        let e = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(ud);
        self.push(e);
    }

    /// Arms a multishot receive into the provided buffers for a client.
    pub fn recv_multi(&mut self, fd: RawFd, client: u32) {
        self.multishot += 1;
        let ud = TAG_RECV << TAG_SHIFT | u64::from(client);
        let e = opcode::RecvMulti::new(types::Fd(fd), super::bufring::CLIENT_BGID)
            .build()
            .user_data(ud);
        self.push(e);
    }

    /// Sends `buf[off..]`; the buffer comes back in [`Completion::Send`].
    pub fn send(&mut self, fd: RawFd, buf: BytesMut, off: usize, owner: Owner) {
        let (ptr, len) = (buf[off..].as_ptr(), (buf.len() - off) as u32);
        // The BytesMut's heap memory does not move when the struct moves into the table.
        let ud = self.ops.insert(Pending::Send { owner, buf, off });
        let e = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ud);
        self.push(e);
    }

    /// Connects a node link's socket to `addr` (TCP, or a Unix socket).
    pub fn connect(&mut self, fd: RawFd, addr: socket2::SockAddr, link: usize) {
        let addr = Box::new(addr);
        let (ptr, len) = (addr.as_ptr().cast(), addr.len());
        let ud = self.ops.insert(Pending::Connect { link, _addr: addr });
        self.push(
            opcode::Connect::new(types::Fd(fd), ptr, len)
                .build()
                .user_data(ud),
        );
    }

    /// Reads into the spare capacity of `buf` (reserve before calling); the
    /// buffer comes back, grown by what was read, in [`Completion::LinkRecv`].
    pub fn recv(&mut self, fd: RawFd, mut buf: BytesMut, link: usize) {
        let spare = buf.spare_capacity_mut();
        let (ptr, len) = (spare.as_mut_ptr().cast::<u8>(), spare.len() as u32);
        let ud = self.ops.insert(Pending::LinkRecv { link, buf });
        self.push(
            opcode::Recv::new(types::Fd(fd), ptr, len)
                .build()
                .user_data(ud),
        );
    }

    /// Arms a read of the shard's eventfd; it completes as [`Completion::Wake`].
    pub fn read_eventfd(&mut self, fd: RawFd) {
        let mut b = Box::new(0u64);
        let ptr = (&mut *b as *mut u64).cast::<u8>();
        let ud = self.ops.insert(Pending::Wake { buf: b });
        self.push(
            opcode::Read::new(types::Fd(fd), ptr, 8)
                .build()
                .user_data(ud),
        );
    }

    /// Cancels every operation on `fd`; each still completes (usually with
    /// `-ECANCELED`), and only then is its memory given back.
    pub fn cancel_fd(&mut self, fd: RawFd) {
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .user_data(CANCEL_UD);
        self.push(e);
    }

    /// Submits what is queued and waits up to `timeout` for one completion.
    /// With a `batch` delay (and a kernel that has `min_wait`, 6.12+), the
    /// kernel keeps gathering completions for up to `batch` from the start
    /// of the wait before waking the shard, unless [`BATCH_EVENTS`] arrive
    /// first; a completion arriving later than that wakes it at once.
    pub fn wait(&mut self, timeout: Duration, batch: Duration) -> io::Result<()> {
        let ts = types::Timespec::from(timeout);
        let mut args = types::SubmitArgs::new().timespec(&ts);
        let mut want = 1;
        if self.min_wait && !batch.is_zero() && !timeout.is_zero() {
            args = args.min_wait_usec(batch.as_micros().clamp(1, u32::MAX as u128) as u32);
            want = BATCH_EVENTS;
        }
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(n) => {
                self.submitted += n as u64;
                Ok(())
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Operations submitted to the kernel since the last call (for the
    /// `ring_submissions` counter).
    pub fn take_submitted(&mut self) -> u64 {
        std::mem::take(&mut self.submitted)
    }

    /// True when completions wait to be reaped.
    pub fn has_completions(&mut self) -> bool {
        !self.ring.completion().is_empty()
    }

    /// Moves every available completion into `out`, handing back the memory
    /// of operations that finished.
    pub fn completions(&mut self, out: &mut Vec<Completion>) {
        let mut cq = std::mem::take(&mut self.cq);
        cq.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &cq {
            if ud == CANCEL_UD {
                continue;
            }
            let more = cqueue::more(flags);
            let c = match ud >> TAG_SHIFT {
                TAG_RECV | TAG_ACCEPT if !more => {
                    self.multishot -= 1;
                    Some(multishot(ud, res, flags, more))
                }
                TAG_RECV | TAG_ACCEPT => Some(multishot(ud, res, flags, more)),
                TAG_TABLE => self.complete(ud as usize, res),
                _ => {
                    tracing::error!(user_data = ud, "completion with an unknown tag");
                    None
                }
            };
            out.extend(c);
        }
        cq.clear();
        self.cq = cq;
    }

    fn complete(&mut self, i: usize, res: i32) -> Option<Completion> {
        let Some(p) = self.ops.remove(i) else {
            tracing::error!(user_data = i, "completion for no operation in flight");
            return None;
        };
        Some(match p {
            Pending::Send { owner, buf, off } => Completion::Send {
                owner,
                res,
                buf,
                off,
            },
            Pending::Connect { link, .. } => Completion::Connect { link, res },
            Pending::LinkRecv { link, mut buf } => {
                if res > 0 {
                    // SAFETY: the kernel wrote `res` bytes into the spare
                    // capacity handed to it in `recv`, which started at `len`.
                    unsafe { buf.set_len(buf.len() + res as usize) };
                }
                Completion::LinkRecv { link, res, buf }
            }
            Pending::Wake { buf } => Completion::Wake {
                count: if res == 8 { *buf } else { 0 },
            },
        })
    }

    /// Cancels every operation in flight and reaps completions until none
    /// is left or `grace` has passed; returns how many are still in flight.
    /// Buffers handed back are dropped: their operations are over.
    pub fn cancel_all_and_wait(&mut self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        if self.in_flight() > 0 {
            let e = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(CANCEL_UD);
            self.push(e);
        }
        let mut out = Vec::new();
        while self.in_flight() > 0 && Instant::now() < deadline {
            let _ = self.wait(Duration::from_millis(50), Duration::ZERO);
            self.completions(&mut out);
            for c in out.drain(..) {
                if let Completion::Recv { buf: Some(b), .. } = c {
                    self.recycle(b);
                }
            }
        }
        self.in_flight()
    }

    /// The bytes a receive delivered.
    pub fn recv_data(&self, b: &RecvBuf) -> &[u8] {
        // SAFETY: a RecvBuf is made only in `complete`, from the kernel's
        // completion naming buffer `bid` with `len` bytes; the buffer is not
        // handed back (so not reused by the kernel) until `recycle` consumes
        // the token.
        unsafe { self.bufs.slice(b.bid, b.len as usize) }
    }

    /// Gives a read buffer back (visible to the kernel after [`Ring::publish`]).
    pub fn recycle(&mut self, b: RecvBuf) {
        // SAFETY: the token is consumed, so this buffer id is pushed once per
        // completion that handed it out.
        unsafe { self.bufs.push(b.bid) };
    }

    /// Publishes recycled read buffers to the kernel (one store per loop turn).
    pub fn publish(&mut self) {
        self.bufs.publish();
    }
}

/// The completion of a multishot accept or receive (`user_data` tagged, no table entry).
fn multishot(ud: u64, res: i32, flags: u32, more: bool) -> Completion {
    let idx = ud as u32;
    if ud >> TAG_SHIFT == TAG_ACCEPT {
        let res = if res >= 0 {
            // SAFETY: a successful accept completion's result is a new
            // descriptor the kernel just created for us; nothing else owns it.
            Ok(unsafe { OwnedFd::from_raw_fd(res) })
        } else {
            Err(io::Error::from_raw_os_error(-res))
        };
        return Completion::Accept {
            listener: idx as usize,
            res,
            more,
        };
    }
    let buf = (res > 0).then(|| RecvBuf {
        bid: cqueue::buffer_select(flags).expect("a receive with data names its buffer"),
        len: res as u32,
    });
    Completion::Recv {
        client: idx,
        res,
        more,
        buf,
    }
}

impl Drop for Ring {
    /// Cancels everything in flight and waits for the completions, so no
    /// memory the kernel may write is freed. Runs on every exit of the shard
    /// loop: clean stop, error and panic.
    fn drop(&mut self) {
        self.cancel_all_and_wait(DROP_GRACE);
        if self.in_flight() > 0 {
            tracing::error!(
                in_flight = self.in_flight(),
                "io_uring operations did not complete after cancel: leaking their memory"
            );
            return; // ring, buffers and table stay allocated (ManuallyDrop)
        }
        // SAFETY: nothing is in flight, so the kernel references none of this
        // memory; each field is dropped exactly once, the ring first so the
        // buffer group is unregistered before its memory is unmapped.
        unsafe {
            ManuallyDrop::drop(&mut self.ring);
            ManuallyDrop::drop(&mut self.bufs);
            ManuallyDrop::drop(&mut self.ops);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// A ring with every kind of operation that can stay pending armed on
    /// sockets nobody writes to: a multishot receive, a link read with its
    /// buffer, a large send into a full socket, and an eventfd read.
    fn busy_ring() -> (Ring, Vec<UnixStream>, crate::shard::Wakers) {
        let mut ring = Ring::new(64, 8, 512).expect("io_uring");
        let (a, _a_peer) = UnixStream::pair().unwrap();
        let (b, _b_peer) = UnixStream::pair().unwrap();
        let (c, c_peer) = UnixStream::pair().unwrap();
        c.set_nonblocking(true).unwrap();
        let mut filler = &c;
        while filler.write(&[0u8; 4096]).is_ok() {} // fill c's send buffer
        let wakers = crate::shard::Wakers::new(1).unwrap();
        ring.recv_multi(a.as_raw_fd(), 0);
        ring.recv(b.as_raw_fd(), BytesMut::with_capacity(4096), 0);
        ring.send(
            c.as_raw_fd(),
            BytesMut::from(&[7u8; 65536][..]),
            0,
            Owner::Link(0),
        );
        ring.read_eventfd(wakers.fd(0).as_raw_fd());
        ring.wait(Duration::from_millis(10), Duration::ZERO)
            .unwrap();
        (ring, vec![a, _a_peer, b, _b_peer, c, c_peer], wakers)
    }

    #[test]
    fn cancel_all_and_wait_leaves_nothing_in_flight() {
        let (mut ring, _socks, _wakers) = busy_ring();
        assert_eq!(ring.in_flight(), 4, "all four operations are pending");
        assert_eq!(ring.cancel_all_and_wait(DROP_GRACE), 0);
    }

    #[test]
    fn a_panic_with_operations_in_flight_cancels_them_before_unwinding_frees_memory() {
        // Dropping the ring during unwinding must return (not leak, not hang):
        // its Drop cancels and reaps every operation first.
        let started = Instant::now();
        let r = std::thread::spawn(|| {
            let (ring, socks, wakers) = busy_ring();
            let _keep = (ring, socks, wakers);
            panic!("shard failed with operations in flight");
        })
        .join();
        assert!(r.is_err(), "the thread panicked");
        assert!(started.elapsed() < DROP_GRACE, "cancelled, not waited out");
    }

    /// A batching wait gathers completions for `batch` before waking, but
    /// never waits for more than one when nothing else comes.
    #[test]
    fn a_batching_wait_gathers_then_wakes() {
        let mut ring = Ring::new(64, 8, 512).expect("io_uring");
        if !ring.min_wait {
            eprintln!("kernel without IORING_FEAT_MIN_TIMEOUT: batch_wait is a no-op here");
            return;
        }
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        ring.recv_multi(a.as_raw_fd(), 0);
        let batch = Duration::from_millis(40);
        // Data arrives at once, more 10 ms later: one wake-up with both.
        a_peer.write_all(b"x").unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            a_peer.write_all(b"y").unwrap();
            a_peer
        });
        let t = Instant::now();
        ring.wait(Duration::from_secs(5), batch).unwrap();
        let waited = t.elapsed();
        let mut done = Vec::new();
        ring.completions(&mut done);
        let _peer = writer.join().unwrap();
        assert!(waited >= Duration::from_millis(35), "gathered: {waited:?}");
        assert!(
            waited < Duration::from_secs(1),
            "not the whole timeout: {waited:?}"
        );
        assert_eq!(done.len(), 2, "both receives in one wake-up: {done:?}");
        // Without a batch the first completion wakes the wait.
        let (b, mut b_peer) = UnixStream::pair().unwrap();
        ring.recv_multi(b.as_raw_fd(), 1);
        b_peer.write_all(b"z").unwrap();
        let t = Instant::now();
        ring.wait(Duration::from_secs(5), Duration::ZERO).unwrap();
        assert!(t.elapsed() < Duration::from_millis(35), "{:?}", t.elapsed());
    }
}
