"""One link: a TCP connection a gate shard dialled to this node.

It reads frames, hands each decoded message to the node, and writes what the
node queues on it, batched: everything queued while one read is processed
leaves in one write (cut into frames no larger than the gate announced), and
what async handlers queue later leaves at the end of that event-loop turn.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError

from .framing import FrameDecoder, MessageTooLarge, ProtocolError, batch_entry, pack_frames
from .proto import PROTOCOL_VERSION, pb

if TYPE_CHECKING:  # pragma: no cover
    from .node import Gate, Node
    from .sessions import ShardSessions

log = logging.getLogger("ringgate_node.link")

READ_CHUNK = 256 * 1024
# The gate's frame limit when its hello does not announce one (max_frame_bytes
# 0 is "read as 16 MiB", docs/node-protocol.md §1).
UNANNOUNCED_PEER_MAX = 16 << 20
# Bytes the node may have written that the gate has not read yet before the
# link counts as stuck and is closed (the gate reads continuously; a gate that
# stops reading this long is better redialled than buffered without bound).
MAX_UNSENT_BYTES = 64 << 20


class Link:
    def __init__(self, node: "Node", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.node = node
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.decoder = FrameDecoder(node.max_frame_bytes)
        self.loop = asyncio.get_running_loop()
        self.opened_at = self.loop.time()
        self.last_rx = self.opened_at
        self.last_ping = 0.0
        # Set by the GateHello.
        self.hello: pb.GateHello | None = None
        self.gate: "Gate | None" = None
        self.shard = -1
        self.table: "ShardSessions | None" = None
        self.peer_max = UNANNOUNCED_PEER_MAX
        # Outgoing batch entries not yet written, and whether a flush is scheduled.
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.closed = False
        self.close_reason = ""
        self.frames_out = 0  # frames written (tests look at batching through it)

    def __repr__(self) -> str:
        gate = self.hello.gate_id if self.hello else "?"
        return f"<link {self.peer} gate={gate} shard={self.shard}>"

    @property
    def ready(self) -> bool:
        """Hellos exchanged and still open: messages may be sent."""
        return self.hello is not None and not self.closed

    # -- reading --------------------------------------------------------------
    async def run(self) -> None:
        reason = "EOF from the gate"
        try:
            while not self.closed:
                data = await self.reader.read(READ_CHUNK)
                if not data:
                    break
                self.last_rx = self.loop.time()
                for frame in self.decoder.feed(data):
                    try:
                        batch = pb.ToNodeBatch.FromString(frame)
                    except DecodeError as e:
                        raise ProtocolError(f"undecodable ToNodeBatch of {len(frame)} bytes: {e}") from None
                    for msg in batch.msgs:
                        self._on_message(msg)
                        if self.closed:
                            return
                # Everything the messages of this read produced leaves in one write.
                self.flush()
                await self.writer.drain()
        except ProtocolError as e:
            reason = f"protocol error: {e}"
            log.warning("%r: %s: closing the link", self, reason)
        except (ConnectionError, OSError) as e:
            reason = f"{type(e).__name__}: {e}"
        except asyncio.CancelledError:
            reason = "node stopping"
            raise
        except Exception:
            reason = "internal error"
            log.exception("%r: internal error: closing the link", self)
        finally:
            self.close(reason)

    def _on_message(self, msg: pb.ToNode) -> None:
        kind = msg.WhichOneof("msg")
        if self.hello is None:
            if kind != "hello":
                raise ProtocolError(f"{kind or 'an empty message'} before the GateHello")
            self._on_hello(msg.hello)
            return
        if kind == "ping":
            self.send(pb.ToGate(pong=pb.Pong(nonce=msg.ping.nonce)))
        elif kind == "pong":
            pass  # last_rx is all a pong is for
        elif kind == "deliver":
            self.node._on_deliver(self, msg.deliver)
        elif kind == "event":
            self.node._on_event(self, msg.event)
        elif kind == "result":
            self.node._on_result(self, msg.result)
        elif kind == "snapshot":
            self.node._on_snapshot_page(self, msg.snapshot)
        elif kind == "hello":
            raise ProtocolError("a second GateHello")
        else:
            raise ProtocolError("a ToNode with no field set")

    def _on_hello(self, hello: pb.GateHello) -> None:
        if hello.version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"gate {hello.gate_id!r} speaks protocol version {hello.version}, "
                f"this node speaks {PROTOCOL_VERSION}"
            )
        self.hello = hello
        self.shard = hello.shard
        if hello.max_frame_bytes:
            self.peer_max = hello.max_frame_bytes
        self.node._attach(self, hello)
        self.send(pb.ToGate(hello=self.node.node_hello()))
        self.flush()

    # -- writing --------------------------------------------------------------
    def send(self, msg: pb.ToGate) -> bool:
        """Queues one message; it leaves at the end of this read or loop turn.

        Returns False (and drops it) when the link is closed. Raises
        MessageTooLarge when the message cannot fit in a frame the gate accepts.
        """
        if self.closed:
            return False
        if self.hello is None and msg.WhichOneof("msg") != "hello":
            raise RuntimeError("nothing but the NodeHello may be sent before the GateHello")
        entry = batch_entry(msg.SerializeToString())
        if len(entry) > self.peer_max:
            raise MessageTooLarge(
                f"a {msg.WhichOneof('msg')} of {len(entry)} bytes does not fit the gate's "
                f"max_frame_bytes {self.peer_max}"
            )
        self._out.append(entry)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)
        return True

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._out or self.closed:
            return
        frames = pack_frames(self._out, self.peer_max)
        self._out = []
        self.writer.writelines(frames)
        self.frames_out += len(frames)
        if self.writer.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
            self.close(f"the gate has not read {MAX_UNSENT_BYTES} bytes written to it")

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._out = []
        try:
            self.writer.close()
        except Exception:  # pragma: no cover - closing a broken transport
            pass
        self.node._detach(self, reason)
