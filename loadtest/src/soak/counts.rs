//! What the soak counts, client side and node side: atomics that every
//! thread bumps as things happen (a few thousand a second, so contention is
//! no concern) and the plain copies the report is made of.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Declares a struct of `AtomicU64` counters and its plain snapshot from
/// one list of documented fields.
macro_rules! atomic_counts {
    ($(#[doc = $sdoc:expr])* $name:ident => $snap:ident { $($(#[doc = $doc:expr])* $f:ident,)* }) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[doc = $doc])* pub $f: AtomicU64,)*
        }

        #[doc = concat!("A plain copy of [`", stringify!($name), "`].")]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct $snap {
            $($(#[doc = $doc])* pub $f: u64,)*
        }

        impl $name {
            /// A plain copy of every counter.
            pub fn snapshot(&self) -> $snap {
                $snap { $($f: self.$f.load(Relaxed),)* }
            }
        }
    };
}

/// Adds `n` to `c`.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

atomic_counts! {
    /// What the client threads count (all threads together).
    ClientCounts => ClientSnapshot {
        /// Connections started (initial ones and replacements).
        connects,
        /// Connections that failed before they were open: refused, reset,
        /// closed or timed out during the TCP connect or the upgrade.
        connect_failures,
        /// Connections open (connect and upgrade done).
        opened,
        /// Log-ins sent (a fresh uid each).
        logins,
        /// Log-ins answered `ok`: the node bound the uid.
        bound,
        /// Log-ins answered otherwise (an error reply, or a refusal).
        login_failures,
        /// Requests sent on the echo route.
        requests,
        /// Requests answered with their own payload.
        answered,
        /// Requests answered with a documented error (extension codes 1-11).
        error_replies,
        /// Packets that answer nothing sent: an unknown seq, a wrong
        /// payload, an undocumented extension code, an unexpected route.
        mismatches,
        /// Requests (and log-ins) never answered on a connection that
        /// stayed open: unanswered after `--lost-after`, or at the end of
        /// the drain.
        lost,
        /// Requests in flight when the client closed its own connection.
        abandoned,
        /// Requests in flight when the gate closed the connection (kick,
        /// overflow): the gate promises no reply then.
        cut,
        /// Packets the node pushed that arrived (floods included).
        pushes,
        /// Heartbeats sent.
        heartbeats_sent,
        /// Heartbeats answered.
        heartbeats_received,
        /// Connections the clients closed with a FIN (churn).
        closed_graceful,
        /// Connections the clients closed with a reset (`SO_LINGER` 0).
        closed_abrupt,
        /// Open connections the gate closed (EOF or reset).
        closed_by_gate,
        /// Open connections dropped on an I/O or decode error on our side.
        failed,
        /// Slow-reader episodes: a connection stopped reading.
        slow_episodes,
        /// Of those, the ones the node was asked to flood.
        floods_requested,
        /// Connections still open at the end, closed with a FIN then.
        closed_at_end,
    }
}

atomic_counts! {
    /// What the soak's node counts.
    NodeCounts => NodeSnapshot {
        /// `Connect` events.
        connects,
        /// `Disconnect` events of sessions that had connected.
        disconnects,
        /// `Connect` events for a session already connected.
        duplicate_connects,
        /// `Disconnect` events for no connected session (a second one, or
        /// one without a `Connect`).
        stray_disconnects,
        /// `Bind` events.
        binds,
        /// Log-ins the node refused: not a uid, or the bind failed (the
        /// session was gone, a timeout).
        bind_failures,
        /// Pushes sent to random bound users.
        pushes,
        /// Pushes and kicks the SDK refused (no link).
        call_errors,
        /// Kicks sent to random bound users.
        kicks,
        /// Slow readers flooded.
        floods,
        /// Flood pushes sent.
        flood_pushes,
        /// Floods that ended with the user offline: the gate closed it.
        floods_closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_copy_every_counter() {
        let c = ClientCounts::default();
        bump(&c.answered, 3);
        bump(&c.lost, 1);
        let s = c.snapshot();
        assert_eq!((s.answered, s.lost, s.requests), (3, 1, 0));
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(json["answered"], 3);
    }
}
