#!/usr/bin/env python3
"""Minimal, independent client for due's TCP packet format (as spoken by ringgate).

Written from the wire spec only (see README.md in this directory)::

    size    u32   bytes that follow (header + route + seq + payload), configured byte order
    header  u8    bit 7 = heartbeat flag, bits 6..0 = extension code (0 = ordinary packet);
                  in a heartbeat, bit 6 = an i64 time follows
    route   signed int of route_bytes (1|2|4)           -- absent in heartbeats
    seq     signed int of seq_bytes (0|1|2|4; 0=absent)  -- absent in heartbeats
    payload opaque, at most buffer_bytes

    heartbeat: size=1, header=0x80.  A server heartbeat may carry an i64 unix-nanos
    timestamp after the header: then size=9 and header=0xC0 (due's readers read the
    8 time bytes only when bit 6 is set, so a timed heartbeat without it is an error).

ringgate extension: a server data packet with a non-zero extension code is an error
reply for the request with the same route/seq (payload empty):
    ext 1 = no node serves the route, ext 2 = the route's node(s) are down.

Python 3.11 stdlib only.  Usable as a library (``DueClient``) or a tiny CLI::

    python3 due_client.py --addr 127.0.0.1:3553 request --route 1 --seq 1 --payload hello
    python3 due_client.py --addr 127.0.0.1:3553 heartbeat
    python3 due_client.py --addr 127.0.0.1:3553 raw 0000000180
"""

from __future__ import annotations

import argparse
import collections
import socket
import ssl
import struct
import sys
import time

__all__ = [
    "ConnectionClosed",
    "ProtocolError",
    "PacketFormat",
    "PacketDecoder",
    "DueClient",
    "EXT_NAMES",
    "add_packet_args",
    "format_kwargs",
    "parse_addr",
]

SIZE_BYTES = 4
HEARTBEAT_FLAG = 0x80
HEARTBEAT_TIME_FLAG = 0x40
EXT_MASK = 0x7F
HEARTBEAT_TIME_BYTES = 8

EXT_NAMES = {
    0: "ok",
    1: "no node serves the route",
    2: "the route's node(s) are down",
}

_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


class ConnectionClosed(Exception):
    """The peer closed the connection (EOF) or reset it."""


class ProtocolError(Exception):
    """The peer sent bytes that do not follow the packet format."""


def int_range(nbytes: int) -> tuple[int, int]:
    """Inclusive range of a signed integer of ``nbytes`` bytes."""
    bits = 8 * nbytes
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


class PacketFormat:
    """Encodes/decodes packet bodies for one set of packet options."""

    def __init__(self, byte_order: str = "big", route_bytes: int = 2, seq_bytes: int = 2,
                 buffer_bytes: int = 5000):
        if byte_order not in ("big", "little"):
            raise ValueError(f"byte_order must be 'big' or 'little', not {byte_order!r}")
        if route_bytes not in (1, 2, 4):
            raise ValueError(f"route_bytes must be 1, 2 or 4, not {route_bytes!r}")
        if seq_bytes not in (0, 1, 2, 4):
            raise ValueError(f"seq_bytes must be 0, 1, 2 or 4, not {seq_bytes!r}")
        if buffer_bytes < 0:
            raise ValueError("buffer_bytes must be >= 0")
        self.byte_order = byte_order
        self.route_bytes = route_bytes
        self.seq_bytes = seq_bytes
        self.buffer_bytes = buffer_bytes
        p = ">" if byte_order == "big" else "<"
        self._size = struct.Struct(p + "I")
        self._route = struct.Struct(p + _INT_CODES[route_bytes])
        self._seq = struct.Struct(p + _INT_CODES[seq_bytes]) if seq_bytes else None
        self._time = struct.Struct(p + "q")

    def __repr__(self) -> str:
        return (f"PacketFormat(byte_order={self.byte_order!r}, route_bytes={self.route_bytes}, "
                f"seq_bytes={self.seq_bytes}, buffer_bytes={self.buffer_bytes})")

    # -- sizes / ranges ---------------------------------------------------
    @property
    def data_overhead(self) -> int:
        """Bytes of header+route+seq in a data packet (what ``size`` counts besides payload)."""
        return 1 + self.route_bytes + self.seq_bytes

    @property
    def max_size(self) -> int:
        """Largest legal value of the size field."""
        return max(self.data_overhead + self.buffer_bytes, 1 + HEARTBEAT_TIME_BYTES)

    def route_range(self) -> tuple[int, int]:
        return int_range(self.route_bytes)

    def seq_range(self) -> tuple[int, int] | None:
        return int_range(self.seq_bytes) if self.seq_bytes else None

    def route_fits(self, route: int) -> bool:
        lo, hi = self.route_range()
        return lo <= route <= hi

    def seq_fits(self, seq: int) -> bool:
        if not self.seq_bytes:
            return True
        lo, hi = int_range(self.seq_bytes)
        return lo <= seq <= hi

    # -- encoding ---------------------------------------------------------
    def encode_size(self, size: int) -> bytes:
        return self._size.pack(size)

    def encode_data(self, route: int, seq: int | None, payload: bytes, ext: int = 0,
                    check_payload: bool = True) -> bytes:
        """Encode an ordinary (or, with ``ext``, extension) data packet.

        ``seq`` is ignored when seq_bytes == 0.  With ``check_payload=False`` a payload larger
        than buffer_bytes is encoded anyway (useful to provoke the peer).
        """
        if not 0 <= ext <= EXT_MASK:
            raise ValueError(f"ext must be in 0..127, not {ext}")
        if not self.route_fits(route):
            raise ValueError(f"route {route} does not fit in {self.route_bytes} signed byte(s)")
        payload = bytes(payload)
        if check_payload and len(payload) > self.buffer_bytes:
            raise ValueError(f"payload of {len(payload)} bytes exceeds buffer_bytes={self.buffer_bytes}")
        parts = [bytes((ext & EXT_MASK,)), self._route.pack(route)]
        if self._seq is not None:
            if seq is None:
                seq = 0
            if not self.seq_fits(seq):
                raise ValueError(f"seq {seq} does not fit in {self.seq_bytes} signed byte(s)")
            parts.append(self._seq.pack(seq))
        parts.append(payload)
        body = b"".join(parts)
        return self._size.pack(len(body)) + body

    def encode_heartbeat(self, time_ns: int | None = None) -> bytes:
        if time_ns is None:
            return self._size.pack(1) + bytes((HEARTBEAT_FLAG,))
        header = HEARTBEAT_FLAG | HEARTBEAT_TIME_FLAG
        return self._size.pack(1 + HEARTBEAT_TIME_BYTES) + bytes((header,)) + self._time.pack(time_ns)

    # -- decoding ---------------------------------------------------------
    def check_size(self, size: int) -> None:
        if size == 0:
            raise ProtocolError("packet with size 0 (no header byte)")
        if size > self.max_size:
            raise ProtocolError(f"packet size {size} exceeds maximum {self.max_size} "
                                f"(header+route+seq+buffer_bytes={self.buffer_bytes})")

    def decode_body(self, body: bytes):
        """Decode the bytes after the size field.

        Returns ``('heartbeat', time_ns_or_None)`` or ``('data', ext, route, seq, payload)``
        (``seq`` is None when seq_bytes == 0).
        """
        if not body:
            raise ProtocolError("empty packet body")
        header = body[0]
        if header & HEARTBEAT_FLAG:
            if header & EXT_MASK & ~HEARTBEAT_TIME_FLAG:
                raise ProtocolError(f"heartbeat with non-zero extension bits (header=0x{header:02x})")
            timed = bool(header & HEARTBEAT_TIME_FLAG)
            if len(body) == 1 and not timed:
                return ("heartbeat", None)
            if len(body) == 1 + HEARTBEAT_TIME_BYTES and timed:
                return ("heartbeat", self._time.unpack_from(body, 1)[0])
            if len(body) == 1 + HEARTBEAT_TIME_BYTES:
                raise ProtocolError("heartbeat carries a time (size 9) but header 0x80 lacks the "
                                    "time bit 0x40: due's readers would take the time as the "
                                    "next packet")
            if timed:
                raise ProtocolError(f"heartbeat with the time bit (header=0x{header:02x}) has size "
                                    f"{len(body)}, expected 9")
            raise ProtocolError(f"heartbeat with unexpected size {len(body)} (expected 1 or 9)")
        if len(body) < self.data_overhead:
            raise ProtocolError(f"data packet of size {len(body)} shorter than header+route+seq "
                                f"({self.data_overhead})")
        ext = header & EXT_MASK
        route = self._route.unpack_from(body, 1)[0]
        off = 1 + self.route_bytes
        seq = None
        if self._seq is not None:
            seq = self._seq.unpack_from(body, off)[0]
            off += self.seq_bytes
        payload = bytes(body[off:])
        if len(payload) > self.buffer_bytes:
            raise ProtocolError(f"payload of {len(payload)} bytes exceeds buffer_bytes={self.buffer_bytes}")
        return ("data", ext, route, seq, payload)


class PacketDecoder:
    """Incremental stream decoder: feed arbitrary chunks, get whole packets back."""

    def __init__(self, fmt: PacketFormat):
        self.format = fmt
        self._buf = bytearray()
        self.error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet forming a whole packet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list:
        """Append ``data``; return every packet completed by it.

        On malformed input the packets decoded before the bad one are still returned and the
        error is kept in ``self.error``; it is raised right away if nothing precedes it, and
        by every later call.
        """
        if self.error is not None:
            raise self.error
        self._buf += data
        out = []
        buf = self._buf
        pos = 0
        fmt = self.format
        try:
            while len(buf) - pos >= SIZE_BYTES:
                (size,) = fmt._size.unpack_from(buf, pos)
                fmt.check_size(size)  # validate before waiting for the body
                end = pos + SIZE_BYTES + size
                if len(buf) < end:
                    break
                out.append(fmt.decode_body(bytes(buf[pos + SIZE_BYTES:end])))
                pos = end
        except ProtocolError as e:
            self.error = e
            if not out:
                raise
        finally:
            del buf[:pos]
        return out


class DueClient:
    """One TCP connection to a due-format gate."""

    def __init__(self, host: str, port: int, byte_order: str = "big", route_bytes: int = 2,
                 seq_bytes: int = 2, buffer_bytes: int = 5000, timeout: float | None = 5.0,
                 ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None):
        """With ``ssl_context`` the packets travel over TLS: the handshake happens here
        (within ``timeout``), verifying the gate's certificate for ``server_hostname``
        (default ``host``) as the context says."""
        self.format = PacketFormat(byte_order, route_bytes, seq_bytes, buffer_bytes)
        self.timeout = timeout
        self._decoder = PacketDecoder(self.format)
        self._ready: collections.deque = collections.deque()
        self._eof: str | None = None
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if ssl_context is not None:
            try:
                sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock

    # -- context manager --------------------------------------------------
    def __enter__(self) -> "DueClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sending ----------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
                ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
            raise ConnectionClosed(f"connection closed while sending: {e}") from e

    def send(self, route: int, seq: int | None, payload: bytes, ext: int = 0) -> None:
        self.send_raw(self.format.encode_data(route, seq, payload, ext))

    def send_heartbeat(self) -> None:
        self.send_raw(self.format.encode_heartbeat())

    # -- receiving --------------------------------------------------------
    def recv(self, timeout: float | None = None):
        """Return the next packet.

        ``('heartbeat', time_ns_or_None)`` or ``('data', ext, route, seq, payload)``.
        Raises ConnectionClosed on EOF/reset, socket.timeout (== TimeoutError) if nothing
        complete arrives within ``timeout`` (default: the client's timeout), ProtocolError on
        malformed input.
        """
        if self._ready:
            return self._ready.popleft()
        if timeout is None:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            if self._decoder.error is not None:
                raise self._decoder.error
            if self._eof is not None:
                raise ConnectionClosed(self._eof)
            if deadline is None:
                self.sock.settimeout(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout(f"no complete packet within {timeout:.3f}s "
                                         f"({self._decoder.buffered} bytes buffered)")
                self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue  # loop re-checks the deadline and raises with a message
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as e:
                self._eof = f"connection reset by peer ({e})"
                raise ConnectionClosed(self._eof) from e
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
                # TLS: the peer closed the TCP connection (with or without close_notify).
                self._eof = f"TLS connection closed ({e})"
                raise ConnectionClosed(self._eof) from e
            if not data:
                pending = self._decoder.buffered
                self._eof = "EOF" + (f" mid-packet ({pending} bytes buffered)" if pending else "")
                raise ConnectionClosed(self._eof)
            self._ready.extend(self._decoder.feed(data))
        return self._ready.popleft()

    def recv_data(self, timeout: float | None = None):
        """Like recv() but skips heartbeats; the timeout covers the whole wait."""
        if timeout is None:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            pkt = self.recv(remaining if remaining is None or remaining > 0 else 1e-9)
            if pkt[0] == "data":
                return pkt

    def request(self, route: int, seq: int | None, payload: bytes, timeout: float | None = None):
        """Send a data packet, return the next data packet (heartbeats skipped)."""
        self.send(route, seq, payload)
        return self.recv_data(timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# -- CLI helpers (shared with check_gate.py) ----------------------------------

def add_packet_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("packet format (must match the gate's configuration)")
    g.add_argument("--byte-order", choices=("big", "little"), default="big")
    g.add_argument("--route-bytes", type=int, choices=(1, 2, 4), default=2)
    g.add_argument("--seq-bytes", type=int, choices=(0, 1, 2, 4), default=2)
    g.add_argument("--buffer-bytes", type=int, default=5000)


def format_kwargs(args: argparse.Namespace) -> dict:
    return dict(byte_order=args.byte_order, route_bytes=args.route_bytes,
                seq_bytes=args.seq_bytes, buffer_bytes=args.buffer_bytes)


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {addr!r}")
    return host.strip("[]"), int(port)


def describe(pkt) -> str:
    if pkt[0] == "heartbeat":
        return "heartbeat" + (f" time={pkt[1]}" if pkt[1] is not None else "")
    _, ext, route, seq, payload = pkt
    s = f"data route={route} seq={seq} ext={ext}"
    if ext:
        s += f" ({EXT_NAMES.get(ext, 'unknown extension')})"
    return s + f" payload={payload!r}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--addr", type=parse_addr, default=("127.0.0.1", 3553))
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--cafile", default=None,
                   help="connect over TLS, trusting the PEM certificate(s) in this file")
    add_packet_args(p)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("request", help="send one data packet and print the reply")
    r.add_argument("--route", type=int, default=1)
    r.add_argument("--seq", type=int, default=1)
    r.add_argument("--payload", default="hello")
    sub.add_parser("heartbeat", help="send a heartbeat and print the reply")
    raw = sub.add_parser("raw", help="send raw hex bytes and print whatever comes back")
    raw.add_argument("hex")
    args = p.parse_args(argv)
    host, port = args.addr
    try:
        tls = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
        with DueClient(host, port, timeout=args.timeout, ssl_context=tls,
                       **format_kwargs(args)) as c:
            if args.cmd == "request":
                print(describe(c.request(args.route, args.seq, args.payload.encode())))
            elif args.cmd == "heartbeat":
                c.send_heartbeat()
                print(describe(c.recv()))
            else:
                c.send_raw(bytes.fromhex(args.hex))
                try:
                    while True:
                        print(describe(c.recv()))
                except socket.timeout:
                    print(f"(nothing more within {args.timeout:g}s)")
    except ConnectionClosed as e:
        print(f"connection closed: {e}")
        return 0 if args.cmd == "raw" else 1
    except (socket.timeout, OSError, ProtocolError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
