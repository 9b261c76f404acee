//! Listening sockets: one `SO_REUSEPORT` listener per shard and protocol,
//! and what each serves ([`ListenerSpec`]).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use crate::connection::Network;
use crate::session::Millis;

/// What a listener serves, shared by its connections.
#[derive(Clone)]
pub struct ListenerSpec {
    /// The protocol stack.
    pub network: Network,
    /// TLS server config (tls, wss).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Transport handshake deadline in ms after accept (TLS and/or WebSocket).
    pub handshake_ms: Millis,
}

/// One listening socket of a shard.
pub(super) struct Listener {
    /// The socket.
    pub sock: TcpListener,
    /// What it serves.
    pub spec: ListenerSpec,
    /// Its multishot accept is in flight.
    pub armed: bool,
}

impl Listener {
    pub(super) fn new((sock, spec): (TcpListener, ListenerSpec)) -> Listener {
        Listener {
            sock,
            spec,
            armed: false,
        }
    }
}

/// A close-on-exec TCP socket for `addr`'s family with `SO_REUSEADDR`.
pub(super) fn tcp_socket(addr: SocketAddr) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    Ok(s)
}

/// Creates the listening socket of one shard: `SO_REUSEPORT`, so every shard
/// binds its own listener on the same port and the kernel spreads connections.
/// `TCP_NODELAY` is set here once: Linux copies it to every accepted socket,
/// which saves a `setsockopt` per accept in a connection storm.
pub fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let s = tcp_socket(addr)?;
    s.set_reuse_port(true)?;
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(s.into())
}

/// Fails with `AddrInUse` if any socket already listens on `addr`, including
/// another process's `SO_REUSEPORT` listeners, which would otherwise silently
/// share the port (and its clients) with this gate.
pub fn ensure_port_free(addr: SocketAddr) -> io::Result<()> {
    let s = tcp_socket(addr)?;
    s.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                "address already in use (is another gate running?)",
            )
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    /// The shard no longer sets `TCP_NODELAY` per accepted socket: it must
    /// come from the listener, or every reply waits on Nagle's algorithm.
    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let l = super::listen("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        assert!(a.nodelay().unwrap());
    }
}
