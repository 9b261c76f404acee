"""An in-process fake gate for the node's tests: dials the node like a gate
shard does and speaks the link protocol frame by frame, so that a test can
send exactly what it wants (also what a real gate would never send: another
version, an oversized frame, bad protobuf, an event after a gap) and see
exactly what the node writes back, frame by frame.

Frames are cut and measured here with ``struct``, not with the node's framing
module, so one bug cannot hide itself on both sides.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct

from ringgate_node.proto import pb

TIMEOUT = 5.0

# The node's logs: silent in tests (assertLogs still sees them), on stderr
# with RINGGATE_NODE_TEST_LOG=debug|info|warning.
if os.environ.get("RINGGATE_NODE_TEST_LOG"):
    logging.basicConfig(level=os.environ["RINGGATE_NODE_TEST_LOG"].upper())
else:
    logging.getLogger("ringgate_node").addHandler(logging.NullHandler())


def sid(shard: int, n: int) -> int:
    """A session id owned by ``shard``."""
    return (shard << 48) | n


def deliver(session_id: int, route: int, seq: int, payload: bytes, *, uid: int = 0,
            request_id: int = 0) -> pb.ToNode:
    return pb.ToNode(deliver=pb.Deliver(session_id=session_id, uid=uid, route=route, seq=seq,
                                        payload=payload, request_id=request_id))


def event(kind: int, session_id: int, seq: int, *, uid: int = 0, reason: int = 0,
          ip: str = "", port: int = 0, network: str = "") -> pb.ToNode:
    return pb.ToNode(event=pb.Event(kind=kind, session_id=session_id, seq=seq, uid=uid,
                                    reason=reason, ip=ip, port=port, network=network))


def info(session_id: int, uid: int = 0, settings: dict | None = None) -> pb.SessionInfo:
    return pb.SessionInfo(session_id=session_id, uid=uid, ip="127.0.0.1", port=40000,
                          network="tcp", settings=settings or {})


def page(sessions, *, last: bool, event_seqs=(), call_id: int = 0) -> pb.ToNode:
    return pb.ToNode(snapshot=pb.Snapshot(sessions=sessions, last=last,
                                          event_seqs=list(event_seqs), call_id=call_id))


def result(call_id: int, code: int = pb.CODE_OK, **fields) -> pb.ToNode:
    return pb.ToNode(result=pb.CallResult(call_id=call_id, code=code, **fields))


class FakeLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.node_hello: pb.NodeHello | None = None
        self.frames: list[int] = []  # sizes of the frames received, in order
        self._queue: list[pb.ToGate] = []

    @classmethod
    async def open(cls, addr, *, gate_id: str = "gate-a", shard: int = 0, shards: int = 1,
                   version: int = 2, max_frame_bytes: int = 1 << 20, epoch_ms: int = 1000,
                   request_timeout_ms: int = 3000, hello: bool = True) -> "FakeLink":
        reader, writer = await asyncio.open_connection(*addr)
        link = cls(reader, writer)
        if hello:
            await link.send(pb.ToNode(hello=pb.GateHello(
                gate_id=gate_id, shard=shard, shards=shards, version=version,
                max_frame_bytes=max_frame_bytes, epoch_ms=epoch_ms,
                request_timeout_ms=request_timeout_ms)))
            if version == 2:
                m = await link.recv()
                assert m.WhichOneof("msg") == "hello", m
                link.node_hello = m.hello
        return link

    async def send(self, *msgs: pb.ToNode) -> None:
        """All ``msgs`` in one frame (one batch)."""
        body = pb.ToNodeBatch(msgs=list(msgs)).SerializeToString()
        await self.send_raw(struct.pack(">I", len(body)) + body)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv_frame(self, timeout: float = TIMEOUT) -> list[pb.ToGate]:
        """The next frame's messages (pings from the node are answered and skipped)."""
        while True:
            head = await asyncio.wait_for(self.reader.readexactly(4), timeout)
            (n,) = struct.unpack(">I", head)
            body = await asyncio.wait_for(self.reader.readexactly(n), timeout)
            self.frames.append(n)
            msgs = [m for m in pb.ToGateBatch.FromString(body).msgs]
            out = []
            for m in msgs:
                if m.WhichOneof("msg") == "ping":
                    await self.send(pb.ToNode(pong=pb.Pong(nonce=m.ping.nonce)))
                else:
                    out.append(m)
            if out:
                return out

    async def recv(self, timeout: float = TIMEOUT) -> pb.ToGate:
        if not self._queue:
            self._queue.extend(await self.recv_frame(timeout))
        return self._queue.pop(0)

    async def recv_kind(self, kind: str, timeout: float = TIMEOUT):
        """The next message, which must be of ``kind``; returns its payload message."""
        m = await self.recv(timeout)
        assert m.WhichOneof("msg") == kind, f"expected a {kind}, got {m}"
        return getattr(m, kind)

    async def closed_by_node(self, timeout: float = TIMEOUT) -> bytes:
        """Waits for EOF; returns whatever the node wrote before it."""
        data = await asyncio.wait_for(self.reader.read(), timeout)
        return data

    async def nothing_within(self, seconds: float) -> bool:
        try:
            m = await self.recv(seconds)
        except (asyncio.TimeoutError, TimeoutError):
            return True
        raise AssertionError(f"expected nothing, got {m}")

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
