//! Newtypes shared by every layer: who a shard, a session, a user and a route are.

use std::fmt;

/// Index of a shard (one per pinned core), `0..shards`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

/// A client session, unique within one gate process.
///
/// ```text
///  63        48 47                                   0
/// +-----------+--------------------------------------+
/// |  shard    |  per-shard counter (never reused)    |
/// +-----------+--------------------------------------+
/// ```
/// Anything addressed to a session reaches its shard without a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl SessionId {
    /// Bits of the per-shard counter.
    pub const COUNTER_BITS: u32 = 48;

    /// Builds the id of the `counter`-th session of `shard`.
    pub fn new(shard: ShardId, counter: u64) -> Self {
        SessionId(
            (u64::from(shard.0) << Self::COUNTER_BITS)
                | (counter & ((1 << Self::COUNTER_BITS) - 1)),
        )
    }

    /// The shard that owns this session.
    pub fn shard(self) -> ShardId {
        ShardId((self.0 >> Self::COUNTER_BITS) as u16)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.shard().0,
            self.0 & ((1 << Self::COUNTER_BITS) - 1)
        )
    }
}

/// A user id bound to a session by a node (due's `int64 uid`); 0 means unbound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct UserId(pub i64);

/// A client route: which node service handles a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route(pub i32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_encodes_shard() {
        let id = SessionId::new(ShardId(3), 42);
        assert_eq!(id.shard(), ShardId(3));
        assert_eq!(id.0 & 0xffff_ffff_ffff, 42);
        assert_eq!(id.to_string(), "3:42");
        // The counter never spills into the shard bits.
        assert_eq!(SessionId::new(ShardId(1), u64::MAX).shard(), ShardId(1));
    }
}
