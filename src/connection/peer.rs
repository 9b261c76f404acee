//! A client's address in 20 bytes instead of `SocketAddr`'s 32: it sits in
//! every client slot, and idle memory per connection is mostly that slot.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An IPv4 or IPv6 address and port. An IPv6 address's flow label and scope
/// id are not kept: the gate only names clients by address (logs, connect
/// events) and counts them per address (`limits.max_connections_per_ip`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr {
    ip: [u8; 16],
    port: u16,
    v4: bool,
}

impl PeerAddr {
    /// The address as a `SocketAddr`.
    pub fn get(self) -> SocketAddr {
        SocketAddr::new(self.ip(), self.port)
    }

    /// The IP address.
    pub fn ip(self) -> IpAddr {
        if self.v4 {
            let [a, b, c, d, ..] = self.ip;
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        }
    }

    /// Replaces the IP address, keeping the port.
    pub fn set_ip(&mut self, ip: IpAddr) {
        *self = PeerAddr::from(SocketAddr::new(ip, self.port));
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> Self {
        let mut ip = [0; 16];
        let v4 = match a.ip() {
            IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                true
            }
            IpAddr::V6(v6) => {
                ip = v6.octets();
                false
            }
        };
        PeerAddr {
            ip,
            port: a.port(),
            v4,
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

impl fmt::Debug for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_families_in_20_bytes() {
        assert!(std::mem::size_of::<PeerAddr>() <= 20);
        for s in [
            "127.0.0.1:3553",
            "[::1]:80",
            "[2001:db8::7]:65535",
            "0.0.0.0:0",
            "[::ffff:1.2.3.4]:9",
        ] {
            let a: SocketAddr = s.parse().unwrap();
            let p = PeerAddr::from(a);
            assert_eq!(p.get(), a, "{s}");
            assert_eq!(p.to_string(), a.to_string(), "{s}");
        }
        let mut p = PeerAddr::from("[::1]:4000".parse::<SocketAddr>().unwrap());
        p.set_ip("10.1.2.3".parse().unwrap());
        assert_eq!(p.get(), "10.1.2.3:4000".parse::<SocketAddr>().unwrap());
    }
}
