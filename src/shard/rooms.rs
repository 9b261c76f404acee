//! Channels (rooms) of one shard: channel name → the local connections
//! subscribed to it. A publish reaches every shard once and each shard writes
//! to its own members, so membership never crosses shards.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Local channel membership, by connection slot.
#[derive(Default, Debug)]
pub struct Rooms {
    map: HashMap<Arc<str>, HashSet<u32>>,
}

impl Rooms {
    /// Adds slot `idx` to `channel`; returns the interned name if it was not a member.
    pub fn join(&mut self, channel: &str, idx: u32) -> Option<Arc<str>> {
        if let Some(set) = self.map.get_mut(channel) {
            if !set.insert(idx) {
                return None;
            }
            return self
                .map
                .get_key_value(channel)
                .map(|(name, _)| name.clone());
        }
        let name: Arc<str> = Arc::from(channel);
        self.map.insert(name.clone(), HashSet::from([idx]));
        Some(name)
    }

    /// Removes slot `idx` from `channel`; returns whether it was a member.
    pub fn leave(&mut self, channel: &str, idx: u32) -> bool {
        let Some(set) = self.map.get_mut(channel) else {
            return false;
        };
        let was = set.remove(&idx);
        if set.is_empty() {
            self.map.remove(channel);
        }
        was
    }

    /// The local members of `channel`.
    pub fn members(&self, channel: &str) -> impl Iterator<Item = u32> + '_ {
        self.map
            .get(channel)
            .into_iter()
            .flat_map(|s| s.iter().copied())
    }

    /// Channels with at least one local member.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_leave_members() {
        let mut r = Rooms::default();
        assert!(r.join("room:a", 1).is_some());
        assert!(r.join("room:a", 1).is_none(), "joining twice is a no-op");
        r.join("room:a", 2);
        r.join("room:b", 2);
        let mut m: Vec<_> = r.members("room:a").collect();
        m.sort();
        assert_eq!(m, vec![1, 2]);
        assert!(r.leave("room:a", 1));
        assert!(!r.leave("room:a", 1));
        assert!(r.leave("room:a", 2));
        assert_eq!(r.members("room:a").count(), 0);
        assert_eq!(r.len(), 1, "an empty channel is dropped");
    }
}
