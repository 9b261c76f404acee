//! Newtypes shared by every layer: who a shard, a session and a user are.

use std::fmt;

/// Index of a shard (one per pinned core), `0..shards`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

/// A client session, unique within one gate process.
///
/// ```text
///  63        48 47                      20 19              0
/// +-----------+--------------------------+-----------------+
/// |  shard    |  generation of the slot  |  slot in shard  |
/// +-----------+--------------------------+-----------------+
/// ```
/// Anything addressed to a session reaches its shard without a lookup, and the
/// shard finds the connection by slot; the generation (bumped every time a
/// slot is reused) makes a message for an ended session miss instead of
/// reaching a newer connection in the same slot. A slot would have to be
/// reused 2^28 times for an id to repeat.
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

    /// Bits of the slot index (up to 2^20 connections per shard).
    pub const SLOT_BITS: u32 = 20;
    /// Largest slot index plus one.
    pub const MAX_SLOTS: u32 = 1 << Self::SLOT_BITS;
    /// Mask of the slot generation (28 bits).
    pub const GEN_MASK: u32 = (1 << (Self::COUNTER_BITS - Self::SLOT_BITS)) - 1;

    /// The id of the session in `slot` of `shard`, whose slot generation is `generation`.
    pub fn from_slot(shard: ShardId, generation: u32, slot: u32) -> Self {
        let counter = (u64::from(generation & Self::GEN_MASK) << Self::SLOT_BITS)
            | u64::from(slot & (Self::MAX_SLOTS - 1));
        Self::new(shard, counter)
    }

    /// The connection slot in the owning shard.
    pub fn slot(self) -> u32 {
        (self.0 & u64::from(Self::MAX_SLOTS - 1)) as u32
    }

    /// The slot generation.
    pub fn generation(self) -> u32 {
        ((self.0 >> Self::SLOT_BITS) as u32) & Self::GEN_MASK
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

impl UserId {
    /// The shard holding this user's entry in the gate's uid directory
    /// (partitioned across shards by a multiplicative hash of the uid).
    /// Nodes use it to send calls by uid on the link of that shard, saving a hop.
    pub fn home_shard(self, shards: u16) -> ShardId {
        let h = (self.0 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        ShardId((h % u64::from(shards.max(1))) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_shard_spreads_users() {
        let mut counts = [0u32; 4];
        for uid in 1..=4000 {
            counts[UserId(uid).home_shard(4).0 as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(UserId(42).home_shard(1), ShardId(0));
    }

    #[test]
    fn session_id_encodes_shard() {
        let id = SessionId::new(ShardId(3), 42);
        assert_eq!(id.shard(), ShardId(3));
        assert_eq!(id.0 & 0xffff_ffff_ffff, 42);
        assert_eq!(id.to_string(), "3:42");
        // The counter never spills into the shard bits.
        assert_eq!(SessionId::new(ShardId(1), u64::MAX).shard(), ShardId(1));
        let id = SessionId::from_slot(ShardId(2), 0xabc_def1, 12345);
        assert_eq!(
            (id.shard(), id.generation(), id.slot()),
            (ShardId(2), 0xabc_def1, 12345)
        );
    }
}
