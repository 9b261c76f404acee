//! A link's socket: TCP, or a Unix stream from a gate on the same host
//! (`NodeBuilder::listen_unix`, the gate's `[[nodes]] unix`).

use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// One link's socket, whichever the transport.
#[derive(Debug)]
pub(crate) enum LinkStream {
    /// A gate on another host, or one that dials the TCP address.
    Tcp(TcpStream),
    /// A gate on this host dialling the node's Unix socket.
    Unix(UnixStream),
}

impl LinkStream {
    /// A second handle to the same socket.
    pub(crate) fn try_clone(&self) -> io::Result<LinkStream> {
        Ok(match self {
            LinkStream::Tcp(s) => LinkStream::Tcp(s.try_clone()?),
            LinkStream::Unix(s) => LinkStream::Unix(s.try_clone()?),
        })
    }

    /// Shuts the socket down (wakes a reader blocked on it).
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            LinkStream::Tcp(s) => s.shutdown(how),
            LinkStream::Unix(s) => s.shutdown(how),
        }
    }

    /// Sends small frames at once (TCP only: a Unix stream has no Nagle).
    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        match self {
            LinkStream::Tcp(s) => s.set_nodelay(true),
            LinkStream::Unix(_) => Ok(()),
        }
    }

    /// See `TcpStream::set_read_timeout`.
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            LinkStream::Tcp(s) => s.set_read_timeout(t),
            LinkStream::Unix(s) => s.set_read_timeout(t),
        }
    }

    /// See `TcpStream::set_write_timeout`.
    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            LinkStream::Tcp(s) => s.set_write_timeout(t),
            LinkStream::Unix(s) => s.set_write_timeout(t),
        }
    }
}

impl AsRawFd for LinkStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            LinkStream::Tcp(s) => s.as_raw_fd(),
            LinkStream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Write for &LinkStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LinkStream::Tcp(s) => (&*s).write(buf),
            LinkStream::Unix(s) => (&*s).write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            LinkStream::Tcp(s) => (&*s).write_vectored(bufs),
            LinkStream::Unix(s) => (&*s).write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
