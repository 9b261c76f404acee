//! One shard's partition of the uid directory: user id → the session it is
//! bound to. Pure data; the shard routes binds, unbinds and lookups by uid to
//! the partition that owns the uid ([`UserId::home_shard`]).
//!
//! Removal is conditional on the session (`unbind_if`), so a late "this
//! session ended" never removes a newer binding of the same user.

use std::collections::HashMap;

use crate::config::Rebind;
use crate::ids::{SessionId, UserId};

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

/// uid → session for the uids this shard owns.
#[derive(Default, Debug)]
pub struct Directory {
    map: HashMap<i64, SessionId>,
}

impl Directory {
    /// Binds `uid` to `sid` under `policy`.
    pub fn bind(&mut self, uid: UserId, sid: SessionId, policy: Rebind) -> BindOutcome {
        match self.map.get(&uid.0).copied() {
            None => {
                self.map.insert(uid.0, sid);
                BindOutcome::Bound
            }
            Some(s) if s == sid => BindOutcome::Unchanged,
            Some(other) => match policy {
                Rebind::Kick => {
                    self.map.insert(uid.0, sid);
                    BindOutcome::Replaced { old: other }
                }
                Rebind::Reject => BindOutcome::Rejected { other },
            },
        }
    }

    /// Removes `uid` if (and only if) it is bound to `sid`. Returns whether it was.
    pub fn unbind_if(&mut self, uid: UserId, sid: SessionId) -> bool {
        if self.map.get(&uid.0) == Some(&sid) {
            self.map.remove(&uid.0);
            true
        } else {
            false
        }
    }

    /// The session `uid` is bound to.
    pub fn lookup(&self, uid: UserId) -> Option<SessionId> {
        self.map.get(&uid.0).copied()
    }

    /// No user bound in this partition.
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
        assert_eq!(d.bind(UserId(7), s(1), Rebind::Kick), BindOutcome::Bound);
        assert_eq!(
            d.bind(UserId(7), s(1), Rebind::Kick),
            BindOutcome::Unchanged
        );
        assert_eq!(
            d.bind(UserId(7), s(2), Rebind::Reject),
            BindOutcome::Rejected { other: s(1) }
        );
        assert_eq!(d.lookup(UserId(7)), Some(s(1)));
        assert_eq!(
            d.bind(UserId(7), s(2), Rebind::Kick),
            BindOutcome::Replaced { old: s(1) }
        );
        assert_eq!(d.lookup(UserId(7)), Some(s(2)));
    }

    #[test]
    fn late_unbind_of_an_old_session_keeps_the_new_binding() {
        let mut d = Directory::default();
        d.bind(UserId(7), s(1), Rebind::Kick);
        d.bind(UserId(7), s(2), Rebind::Kick);
        assert!(
            !d.unbind_if(UserId(7), s(1)),
            "the kicked session's disconnect arrives late"
        );
        assert_eq!(d.lookup(UserId(7)), Some(s(2)));
        assert!(d.unbind_if(UserId(7), s(2)));
        assert!(d.is_empty());
    }
}
