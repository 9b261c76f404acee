//! Socket reads and writes shared by the clients and `serve-echo`: read big
//! chunks into a thread-wide buffer and decode everything in it, keep only a
//! partial frame per connection, write a whole batch at once.
//!
//! Sockets are non-blocking and registered edge-triggered (mio), so reads go
//! on until the kernel has nothing more: a read shorter than asked means the
//! receive queue was empty, which ends the loop without an extra syscall.

use std::io::{self, Write};
use std::os::fd::AsRawFd;

use bytes::BytesMut;
use ringgate::codec::{self, CodecError, Frame, PacketOptions};

/// Bytes asked of the kernel per read.
pub const READ_CHUNK: usize = 64 * 1024;

/// A leftover buffer larger than this is freed once emptied.
const KEEP_LEFTOVER: usize = 4096;

/// How a connection's read ended.
#[derive(Debug)]
pub enum ReadEnd {
    /// Everything available was read; the connection is still open.
    Drained,
    /// The peer closed (EOF or reset). Frames before it were delivered.
    Closed,
    /// A read error other than a reset.
    Io(io::Error),
    /// The peer sent bytes that do not decode.
    Codec(CodecError),
    /// The peer broke the WebSocket or TLS protocol (ws, wss).
    Protocol(String),
}

/// Reads everything available on `sock`, calling `on_frame` for each frame.
///
/// `rbuf` is the thread's read buffer (empty between calls); `leftover` is
/// the connection's partial frame, moved into `rbuf` first and refilled with
/// whatever partial frame remains at the end.
#[inline]
pub fn read_frames<S: AsRawFd>(
    sock: &S,
    rbuf: &mut BytesMut,
    leftover: &mut Vec<u8>,
    opts: &PacketOptions,
    mut on_frame: impl FnMut(Frame),
) -> ReadEnd {
    rbuf.clear();
    if !leftover.is_empty() {
        rbuf.extend_from_slice(leftover);
        leftover.clear();
        if leftover.capacity() > KEEP_LEFTOVER {
            *leftover = Vec::new();
        }
    }
    let end = loop {
        let (n, asked) = match recv_into(sock, rbuf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break ReadEnd::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_reset(&e) => break ReadEnd::Closed,
            Err(e) => break ReadEnd::Io(e),
        };
        if n == 0 {
            break ReadEnd::Closed;
        }
        loop {
            match codec::decode(rbuf, opts) {
                Ok(Some(frame)) => on_frame(frame),
                Ok(None) => break,
                Err(e) => {
                    rbuf.clear();
                    return ReadEnd::Codec(e);
                }
            }
        }
        if n < asked {
            break ReadEnd::Drained;
        }
    };
    if !rbuf.is_empty() && matches!(end, ReadEnd::Drained) {
        leftover.extend_from_slice(rbuf);
    }
    rbuf.clear();
    end
}

/// One `recv` into the spare capacity of `buf` (at least [`READ_CHUNK`]).
/// Returns the bytes read and the bytes asked for.
#[inline]
pub fn recv_into<S: AsRawFd>(sock: &S, buf: &mut BytesMut) -> io::Result<(usize, usize)> {
    buf.reserve(READ_CHUNK);
    let spare = buf.spare_capacity_mut();
    let asked = spare.len();
    // SAFETY: `spare` is writable memory of `asked` bytes owned by `buf`;
    // recv writes at most `asked` bytes into it and reports how many.
    let n = unsafe { libc::recv(sock.as_raw_fd(), spare.as_mut_ptr().cast(), asked, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: recv initialized the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok((n, asked))
}

/// Whether `e` means the peer went away.
#[inline]
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Writes as much of `data` as the socket takes without blocking; returns
/// the bytes written (less than `data.len()` when the send buffer is full).
#[inline]
pub fn write_some<W>(sock: &W, data: &[u8]) -> io::Result<usize>
where
    for<'a> &'a W: Write,
{
    let mut sock = sock;
    let mut done = 0;
    while done < data.len() {
        match sock.write(&data[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ringgate::codec::{encode_data, encode_heartbeat, Packet};
    use std::os::unix::net::UnixStream;

    fn opts() -> PacketOptions {
        PacketOptions::default()
    }

    #[test]
    fn frames_split_across_reads_are_kept_as_leftover() {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut wire = BytesMut::new();
        encode_data(0, 7, 1, b"hello", &opts(), &mut wire).unwrap();
        encode_heartbeat(None, &opts(), &mut wire);
        let (rbuf, leftover) = (&mut BytesMut::new(), &mut Vec::new());
        let mut got = Vec::new();

        (&a).write_all(&wire[..6]).unwrap();
        let end = read_frames(&b, rbuf, leftover, &opts(), |f| got.push(f));
        assert!(matches!(end, ReadEnd::Drained));
        assert!(got.is_empty());
        assert_eq!(leftover.len(), 6);

        (&a).write_all(&wire[6..]).unwrap();
        read_frames(&b, rbuf, leftover, &opts(), |f| got.push(f));
        assert!(leftover.is_empty());
        let hello = Frame::Data(Packet {
            ext: 0,
            route: 7,
            seq: 1,
            payload: Bytes::from_static(b"hello"),
        });
        assert_eq!(got, [hello, Frame::Heartbeat { time: None }]);

        drop(a);
        let end = read_frames(&b, rbuf, leftover, &opts(), |f| got.push(f));
        assert!(matches!(end, ReadEnd::Closed));
    }

    #[test]
    fn timed_heartbeats_decode_with_or_without_the_time_bit() {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut wire = BytesMut::new();
        encode_heartbeat(Some(7), &opts(), &mut wire);
        assert_eq!(wire[4], 0xc0, "due's form: heartbeat bit and time bit");
        // The same heartbeat as a sender that marks the time by size only.
        wire.extend_from_slice(&[0, 0, 0, 9, 0x80, 0, 0, 0, 0, 0, 0, 0, 8]);
        (&a).write_all(&wire).unwrap();
        let mut got = Vec::new();
        read_frames(&b, &mut BytesMut::new(), &mut Vec::new(), &opts(), |f| {
            got.push(f)
        });
        assert_eq!(
            got,
            [
                Frame::Heartbeat { time: Some(7) },
                Frame::Heartbeat { time: Some(8) }
            ]
        );
    }

    #[test]
    fn garbage_is_a_codec_error() {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        (&a).write_all(&[0xff; 16]).unwrap();
        let end = read_frames(&b, &mut BytesMut::new(), &mut Vec::new(), &opts(), |_| {});
        assert!(matches!(end, ReadEnd::Codec(_)), "{end:?}");
    }

    #[test]
    fn write_some_stops_when_the_buffer_is_full() {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let big = vec![0u8; 16 << 20];
        let n = write_some(&a, &big).unwrap();
        assert!(n > 0 && n < big.len());
        drop(b);
    }
}
