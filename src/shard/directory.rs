//! One shard's partition of a directory: user id → the session it is bound
//! to (and, for MQTT, client id → the session that connected with it).
//! Pure data; the shard routes binds, unbinds and lookups by key to the
//! partition that owns the key ([`UserId::home_shard`], [`client_id_home`]).
//!
//! Removal is conditional on the session (`unbind_if`), so a late "this
//! session ended" never removes a newer binding of the same user.

use std::collections::HashMap;
use std::hash::Hash;

use crate::config::Rebind;
use crate::ids::SessionId;
#[cfg(test)]
use crate::ids::UserId;

/// What a bind did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    /// The user was not bound here; now it is.
    Bound,
    /// The user was already bound to this very session.
    Unchanged,
    /// The user was bound to `old`, which must be closed (`rebind = "kick"`).
    Replaced {
        /// The session to kick.
        old: SessionId,
    },
    /// The user is bound to `other` and `rebind = "reject"`: nothing changed.
    Rejected {
        /// The session that keeps the user.
        other: SessionId,
    },
}

/// key → session for the keys this shard owns (uids as `i64`, MQTT client
/// ids as strings).
#[derive(Debug)]
pub struct Directory<K = i64> {
    map: HashMap<K, SessionId>,
}

impl<K> Default for Directory<K> {
    fn default() -> Self {
        Directory {
            map: HashMap::new(),
        }
    }
}

/// The shard that owns MQTT client id `id` in a gate of `shards` shards
/// (FNV-1a: stable across shards and runs, spread enough for a partition).
pub fn client_id_home(id: &str, shards: u16) -> usize {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % u64::from(shards.max(1))) as usize
}

impl<K: Hash + Eq + Clone> Directory<K> {
    /// Binds `key` to `sid` under `policy`.
    pub fn bind(&mut self, key: K, sid: SessionId, policy: Rebind) -> BindOutcome {
        match self.map.get(&key).copied() {
            None => {
                self.map.insert(key, sid);
                BindOutcome::Bound
            }
            Some(s) if s == sid => BindOutcome::Unchanged,
            Some(other) => match policy {
                Rebind::Kick => {
                    self.map.insert(key, sid);
                    BindOutcome::Replaced { old: other }
                }
                Rebind::Reject => BindOutcome::Rejected { other },
            },
        }
    }

    /// Removes `key` if (and only if) it is bound to `sid`. Returns whether it was.
    pub fn unbind_if(&mut self, key: &K, sid: SessionId) -> bool {
        if self.map.get(key) == Some(&sid) {
            self.map.remove(key);
            true
        } else {
            false
        }
    }

    /// The session `key` is bound to.
    pub fn lookup(&self, key: &K) -> Option<SessionId> {
        self.map.get(key).copied()
    }

    /// Nothing bound in this partition.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ShardId;

    fn s(n: u64) -> SessionId {
        SessionId::new(ShardId(0), n)
    }

    #[test]
    fn bind_rebind_kick_and_reject() {
        let mut d = Directory::default();
        let u = UserId(7).0;
        assert_eq!(d.bind(u, s(1), Rebind::Kick), BindOutcome::Bound);
        assert_eq!(d.bind(u, s(1), Rebind::Kick), BindOutcome::Unchanged);
        assert_eq!(
            d.bind(u, s(2), Rebind::Reject),
            BindOutcome::Rejected { other: s(1) }
        );
        assert_eq!(d.lookup(&u), Some(s(1)));
        assert_eq!(
            d.bind(u, s(2), Rebind::Kick),
            BindOutcome::Replaced { old: s(1) }
        );
        assert_eq!(d.lookup(&u), Some(s(2)));
    }

    #[test]
    fn late_unbind_of_an_old_session_keeps_the_new_binding() {
        let mut d = Directory::<std::sync::Arc<str>>::default();
        let id: std::sync::Arc<str> = "player-7".into();
        d.bind(id.clone(), s(1), Rebind::Kick);
        d.bind(id.clone(), s(2), Rebind::Kick);
        assert!(
            !d.unbind_if(&id, s(1)),
            "the kicked session's disconnect arrives late"
        );
        assert_eq!(d.lookup(&id), Some(s(2)));
        assert!(d.unbind_if(&id, s(2)));
        assert!(d.is_empty());
        assert!((0..4).contains(&client_id_home("player-7", 4)));
    }
}
