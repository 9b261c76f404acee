"""Link framing, pure (no sockets, no protobuf): ``len u32 BE | batch``.

A batch (``ToNodeBatch`` / ``ToGateBatch``) is field 1 repeated, so a batch is
the concatenation of ``0x0a varint(len(msg)) msg`` for each encoded message:
the writer encodes messages one by one and cuts frames wherever the peer's
``max_frame_bytes`` says, without encoding a batch object.
"""

from __future__ import annotations

import struct

LEN = struct.Struct(">I")
BATCH_FIELD_TAG = b"\x0a"  # field 1, wire type 2 (length-delimited)
MAX_U32 = 0xFFFF_FFFF


class ProtocolError(Exception):
    """The peer broke the link protocol; the link is closed."""


class FrameTooLarge(ProtocolError):
    """A frame's length prefix is above the reader's limit."""


class MessageTooLarge(ValueError):
    """One message cannot fit in a frame the peer accepts: it is not sent."""


def varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def batch_entry(message: bytes) -> bytes:
    """One encoded message as it appears inside a batch (field 1)."""
    return BATCH_FIELD_TAG + varint(len(message)) + message


def pack_frames(entries: list[bytes], limit: int) -> list[bytes]:
    """Frames (length prefix included) holding ``entries`` in order, each
    batch at most ``limit`` bytes. Every entry must fit alone (the caller
    checks before queueing: see ``MessageTooLarge``)."""
    frames: list[bytes] = []
    cur: list[bytes] = []
    size = 0
    for e in entries:
        if len(e) > limit:
            raise MessageTooLarge(f"batch entry of {len(e)} bytes above the frame limit {limit}")
        if cur and size + len(e) > limit:
            frames.append(LEN.pack(size) + b"".join(cur))
            cur, size = [], 0
        cur.append(e)
        size += len(e)
    if cur:
        frames.append(LEN.pack(size) + b"".join(cur))
    return frames


class FrameDecoder:
    """Incremental: feed bytes as they are read, get whole batches back.

    A length prefix above ``max_frame_bytes`` raises ``FrameTooLarge`` as soon
    as the 4 prefix bytes are there, before any of the body is buffered.
    """

    def __init__(self, max_frame_bytes: int):
        if not 0 < max_frame_bytes <= MAX_U32:
            raise ValueError("max_frame_bytes must be in 1..2^32-1")
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        buf = self._buf
        out: list[bytes] = []
        pos = 0
        try:
            while len(buf) - pos >= LEN.size:
                (n,) = LEN.unpack_from(buf, pos)
                if n > self.max_frame_bytes:
                    raise FrameTooLarge(
                        f"frame of {n} bytes announced, above this node's max_frame_bytes "
                        f"{self.max_frame_bytes}"
                    )
                end = pos + LEN.size + n
                if len(buf) < end:
                    break
                out.append(bytes(buf[pos + LEN.size : end]))
                pos = end
        finally:
            del buf[:pos]
        return out
