//! What an io_uring completion belongs to: the operation kind and the index
//! of its connection or link, packed into the 64-bit `user_data`.
//!
//! ```text
//!  63      56 55                 32 31                      0
//! +----------+---------------------+-------------------------+
//! |  op      |  unused             |  connection / link index |
//! +----------+---------------------+-------------------------+
//! ```
//! A slot is freed only after every operation on it has completed, so an
//! index in a completion always names the connection that submitted it.

/// Kinds of operation a shard submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Multishot accept on the shard's listener.
    Accept = 1,
    /// Multishot receive of a client connection.
    Recv = 2,
    /// Send of a client connection's queued bytes.
    Send = 3,
    /// Connect of a node link.
    LinkConnect = 4,
    /// Receive on a node link.
    LinkRecv = 5,
    /// Send on a node link.
    LinkSend = 6,
    /// Read of the shard's eventfd (a wake-up from another thread).
    Wake = 7,
    /// An async cancel request (its own completion carries nothing we need).
    Cancel = 8,
}

impl Op {
    fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            1 => Op::Accept,
            2 => Op::Recv,
            3 => Op::Send,
            4 => Op::LinkConnect,
            5 => Op::LinkRecv,
            6 => Op::LinkSend,
            7 => Op::Wake,
            8 => Op::Cancel,
            _ => return None,
        })
    }
}

/// Packs an op and an index into `user_data`.
#[inline]
pub fn pack(op: Op, idx: u32) -> u64 {
    (op as u64) << 56 | u64::from(idx)
}

/// Unpacks `user_data`; `None` for values this shard never submits.
#[inline]
pub fn unpack(ud: u64) -> Option<(Op, u32)> {
    Op::from_u8((ud >> 56) as u8).map(|op| (op, ud as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for op in [
            Op::Accept,
            Op::Recv,
            Op::Send,
            Op::LinkConnect,
            Op::LinkRecv,
            Op::LinkSend,
            Op::Wake,
            Op::Cancel,
        ] {
            assert_eq!(unpack(pack(op, 0xdead_beef)), Some((op, 0xdead_beef)));
        }
        assert_eq!(unpack(0), None);
    }
}
