//! Connections per client address across the gate
//! (`limits.max_connections_per_ip`).
//!
//! Every shard accepts on its own listener, so the count must be shared.
//! It is touched twice per connection (accept, free), never per packet, so
//! a table split into [`STRIPES`] mutex-guarded maps is cheap enough: two
//! shards contend only when they accept or close connections whose keys
//! hash to the same stripe at the same moment. A key's entry is removed
//! when its count falls to 0, so the table holds at most one entry per
//! live connection.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

/// Stripes of the table (a power of two).
pub const STRIPES: usize = 64;

/// What a client address is counted under: an IPv4 address (also when it
/// arrives IPv4-mapped on a dual-stack listener), or an IPv6 address's /64
/// prefix — one subscriber's LAN, where a client can pick any address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpKey {
    /// An IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl IpKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> IpKey {
        match ip.to_canonical() {
            IpAddr::V4(a) => IpKey::V4(u32::from(a)),
            IpAddr::V6(a) => IpKey::V6((u128::from(a) >> 64) as u64),
        }
    }

    /// A well-spread hash (splitmix64's finalizer), to pick a stripe.
    fn spread(self) -> u64 {
        let mut z = match self {
            IpKey::V4(a) => u64::from(a),
            IpKey::V6(p) => p ^ 0x9e37_79b9_7f4a_7c15,
        };
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl fmt::Display for IpKey {
    /// `192.0.2.7`, or `2001:db8:1:2::/64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpKey::V4(a) => write!(f, "{}", Ipv4Addr::from(a)),
            IpKey::V6(p) => write!(f, "{}/64", Ipv6Addr::from(u128::from(p) << 64)),
        }
    }
}

/// Open connections per [`IpKey`], gate-wide, against one maximum.
///
/// The maximum may change while the gate runs (a reload): connections
/// accepted while the limit was off were not counted and stay uncounted;
/// the counted ones are released whatever the maximum is by then.
#[derive(Debug)]
pub struct PerIpTable {
    max: AtomicU32,
    stripes: Box<[Mutex<HashMap<IpKey, u32>>]>,
}

impl PerIpTable {
    /// A table allowing `max` connections per key (0: off; nothing is
    /// counted and every [`PerIpTable::acquire`] succeeds).
    pub fn new(max: u32) -> PerIpTable {
        PerIpTable {
            max: AtomicU32::new(max),
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
        }
    }

    /// The limit is on.
    pub fn is_on(&self) -> bool {
        self.max() > 0
    }

    /// The maximum per key (0: off).
    pub fn max(&self) -> u32 {
        self.max.load(Relaxed)
    }

    /// Sets the maximum for connections accepted from now on.
    pub fn set_max(&self, max: u32) {
        self.max.store(max, Relaxed);
    }

    fn stripe(&self, key: IpKey) -> MutexGuard<'_, HashMap<IpKey, u32>> {
        let s = &self.stripes[key.spread() as usize & (STRIPES - 1)];
        // A panic elsewhere while holding the lock left a consistent map
        // (every change is one insert or remove): keep using it.
        s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one more connection for `key`, unless it has `max` already
    /// (then nothing is counted and the answer is false).
    pub fn acquire(&self, key: IpKey) -> bool {
        let max = self.max();
        if max == 0 {
            return true;
        }
        let mut m = self.stripe(key);
        let n = m.entry(key).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// Counts one connection of `key` less (one that [`PerIpTable::acquire`]
    /// counted while the limit was on).
    pub fn release(&self, key: IpKey) {
        let mut m = self.stripe(key);
        if let Some(n) = m.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&key);
            }
        }
    }

    /// Connections counted for `key` now.
    pub fn count(&self, key: IpKey) -> u32 {
        self.stripe(key).get(&key).copied().unwrap_or(0)
    }

    /// Keys with at least one connection.
    pub fn keys(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}
