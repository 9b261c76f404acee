//! A connection's outbound bytes: what is queued, what is in flight, and the
//! shard's pool of spare buffers that lets an idle connection hold none.
//!
//! ```text
//!  packet ─encode─▶ plain (TLS only) ─encrypt at poll_transmit─▶ wire ─poll_transmit─▶ the shard's send
//!                                                          (in_flight bytes counted until the send completes)
//! ```

use bytes::BytesMut;

use crate::tls::TlsConn;

/// Spare buffers kept per shard for connection writes.
const POOL_MAX: usize = 256;
/// Buffers larger than this are not pooled (a burst should not pin memory).
const POOL_BUF_MAX: usize = 64 * 1024;

/// The shard's spare write buffers, lent to connections while they have
/// bytes to send and given back when the send completes.
#[derive(Debug, Default)]
pub struct BufPool {
    spare: Vec<BytesMut>,
}

impl BufPool {
    /// An empty buffer, recycled if one is spare.
    pub fn take(&mut self) -> BytesMut {
        self.spare.pop().unwrap_or_default()
    }

    /// Gives a buffer back (kept if small and the pool is not full).
    pub fn give(&mut self, mut b: BytesMut) {
        if b.capacity() > 0 && b.capacity() <= POOL_BUF_MAX && self.spare.len() < POOL_MAX {
            b.clear();
            self.spare.push(b);
        }
    }
}

/// A byte buffer that costs one pointer in the connection while it is not
/// used: most connections hold no leftover input and no TLS plaintext, and
/// an inline `BytesMut` would be 32 bytes in every client slot.
#[derive(Debug, Default)]
pub struct SpareBuf(Option<Box<BytesMut>>);

impl SpareBuf {
    /// No bytes held.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_empty())
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |b| b.len())
    }

    /// Bytes the held buffer can take without growing (0: none held).
    pub fn capacity(&self) -> usize {
        self.0.as_ref().map_or(0, |b| b.capacity())
    }

    /// The buffer, allocated on first use.
    pub fn get_mut(&mut self) -> &mut BytesMut {
        self.0.get_or_insert_with(Default::default)
    }

    /// Takes the buffer out; nothing is held afterwards.
    pub fn take(&mut self) -> BytesMut {
        self.0.take().map(|b| *b).unwrap_or_default()
    }

    /// Holds `b` (replacing what was held).
    pub fn set(&mut self, b: BytesMut) {
        match &mut self.0 {
            Some(held) => **held = b,
            None => self.0 = Some(Box::new(b)),
        }
    }

    /// The held buffer's storage goes to `pool` if it is empty (the box
    /// stays, so a TLS connection does not allocate one per message).
    fn release(&mut self, pool: &mut BufPool) {
        if let Some(b) = self.0.as_deref_mut() {
            if b.is_empty() && b.capacity() > 0 {
                pool.give(std::mem::take(b));
            }
        }
    }
}

/// Queued and in-flight outbound bytes of one connection.
#[derive(Debug, Default)]
pub struct Outbound {
    /// Bytes ready for the socket (framed, and encrypted under TLS).
    wire: BytesMut,
    /// Plaintext waiting to be encrypted (TLS connections only).
    plain: SpareBuf,
    /// Bytes handed to the shard's send that has not completed yet.
    in_flight: usize,
}

impl Outbound {
    /// The buffer packets are framed into: `plain` under TLS, else `wire`
    /// (borrowing a pooled buffer when it holds none).
    pub fn framing_buf(&mut self, tls: bool, pool: &mut BufPool) -> &mut BytesMut {
        let b = if tls {
            self.plain.get_mut()
        } else {
            &mut self.wire
        };
        if b.capacity() == 0 {
            *b = pool.take();
        }
        b
    }

    /// Appends bytes that are already ready for the socket (TLS records).
    pub fn push_wire(&mut self, bytes: &[u8], pool: &mut BufPool) {
        self.framing_buf(false, pool).extend_from_slice(bytes);
    }

    /// Bytes queued or in flight: what counts against `max_outbound`.
    pub fn queued(&self) -> usize {
        self.wire.len() + self.plain.len() + self.in_flight
    }

    /// A send is in flight.
    pub fn is_sending(&self) -> bool {
        self.in_flight > 0
    }

    /// Something waits to be sent (under TLS, possibly a handshake record).
    pub fn has_pending(&self, tls: Option<&TlsConn>) -> bool {
        !self.wire.is_empty() || !self.plain.is_empty() || tls.is_some_and(TlsConn::wants_write)
    }

    /// The bytes to write next, if no send is in flight: TLS plaintext is
    /// encrypted first. The caller owns the buffer until its send completes
    /// and then calls [`Outbound::sent`].
    pub fn take(&mut self, tls: Option<&mut TlsConn>, pool: &mut BufPool) -> Option<BytesMut> {
        if self.in_flight > 0 {
            return None;
        }
        if let Some(tls) = tls {
            self.encrypt_plain(tls);
            if tls.wants_write() {
                tls.take_ciphertext(self.framing_buf(false, pool));
            }
        }
        if self.wire.is_empty() {
            self.release(pool);
            return None;
        }
        self.in_flight = self.wire.len();
        Some(std::mem::take(&mut self.wire))
    }

    /// Ends a TLS stream: the plaintext still queued is encrypted first,
    /// then the close_notify alert, so it is the last record sent.
    pub fn seal(&mut self, tls: &mut TlsConn) {
        self.encrypt_plain(tls);
        tls.close_notify();
    }

    fn encrypt_plain(&mut self, tls: &mut TlsConn) {
        if !self.plain.is_empty() {
            let plain = self.plain.get_mut();
            if let Err(e) = tls.write_plaintext(plain) {
                tracing::debug!(err = %e, "TLS write failed");
            }
            plain.clear();
        }
    }

    /// The send of the buffer from [`Outbound::take`] completed (all of it);
    /// the buffer goes back to the pool.
    pub fn sent(&mut self, buf: BytesMut, pool: &mut BufPool) {
        self.in_flight = 0;
        pool.give(buf);
        if self.wire.is_empty() && self.plain.is_empty() {
            self.release(pool);
        }
    }

    /// Hands empty buffers back, so an idle connection holds none.
    pub fn release(&mut self, pool: &mut BufPool) {
        if self.wire.is_empty() && self.wire.capacity() > 0 {
            pool.give(std::mem::take(&mut self.wire));
        }
        self.plain.release(pool);
    }
}
