"""The link protocol against an in-process fake gate (tests/fakegate.py)."""

import asyncio
import struct
import unittest

from fakegate import FakeLink, deliver, sid

from ringgate_node.proto import pb
from ringgate_node.services import echo


class NodeTest(unittest.IsolatedAsyncioTestCase):
    """Starts ``self.node`` (made by ``make_node``) on 127.0.0.1:0."""

    def make_node(self):
        return echo.make(node_id="echo-test", max_frame_bytes=64 * 1024)

    async def asyncSetUp(self):
        self.node = self.make_node()
        self.addr = await self.node.start("127.0.0.1", 0)
        self.links: list[FakeLink] = []

    async def asyncTearDown(self):
        for link in self.links:
            await link.close()
        await self.node.close()

    async def link(self, **kw) -> FakeLink:
        link = await FakeLink.open(self.addr, **kw)
        self.links.append(link)
        return link


class Handshake(NodeTest):
    async def test_node_hello_announces_the_contract(self):
        link = await self.link(shard=0, shards=2)
        h = link.node_hello
        self.assertEqual(h.version, 2)
        self.assertEqual(h.service, "echo")
        self.assertEqual(h.node_id, "echo-test")
        # Echo answers route 1: a reply route; `routes` lists notifications only.
        self.assertEqual([(r.route, r.timeout_ms) for r in h.reply_routes], [(1, 0)])
        self.assertEqual(list(h.routes), [])
        self.assertEqual(h.max_frame_bytes, 64 * 1024)
        self.assertEqual(sorted(h.events), [1, 2, 3, 4])
        self.assertTrue(h.snapshot)

    async def test_other_versions_are_refused_by_closing(self):
        for version in (0, 1, 3):
            with self.subTest(version=version), self.assertLogs("ringgate_node.link", "WARNING") as logs:
                link = await self.link(version=version)
                self.assertEqual(await link.closed_by_node(), b"")  # no NodeHello, just EOF
                self.assertIn(f"protocol version {version}", "\n".join(logs.output))

    async def test_nothing_but_a_hello_first(self):
        link = await self.link(hello=False)
        await link.send(pb.ToNode(ping=pb.Ping(nonce=1)))
        self.assertEqual(await link.closed_by_node(), b"")

    async def test_a_second_hello_closes(self):
        link = await self.link()
        await link.send(pb.ToNode(hello=pb.GateHello(gate_id="gate-a", version=2)))
        self.assertEqual(await link.closed_by_node(), b"")

    async def test_ping_is_answered_with_its_nonce(self):
        link = await self.link()
        await link.send(pb.ToNode(ping=pb.Ping(nonce=0xDEADBEEF12345)))
        self.assertEqual((await link.recv_kind("pong")).nonce, 0xDEADBEEF12345)


class Liveness(NodeTest):
    def make_node(self):
        return echo.make(ping_after=0.2, idle_timeout=0.8)

    async def test_the_node_pings_a_quiet_gate_and_drops_a_silent_one(self):
        link = await self.link()
        head = await asyncio.wait_for(link.reader.readexactly(4), 3)
        body = await link.reader.readexactly(struct.unpack(">I", head)[0])
        self.assertEqual(pb.ToGateBatch.FromString(body).msgs[0].WhichOneof("msg"), "ping")
        # Not answering it: the node closes the link after idle_timeout.
        await asyncio.wait_for(link.reader.read(), 3)


class BrokenFrames(NodeTest):
    async def test_an_oversized_frame_closes_that_link_only(self):
        a = await self.link(shard=0, shards=2)
        b = await self.link(shard=1, shards=2)
        with self.assertLogs("ringgate_node.link", "WARNING") as logs:
            await a.send_raw(struct.pack(">I", 64 * 1024 + 1))  # one byte above the node's limit
            self.assertEqual(await a.closed_by_node(), b"")
        self.assertIn("max_frame_bytes", "\n".join(logs.output))
        await b.send(deliver(sid(1, 1), 1, 5, b"still here", request_id=9))
        push = await b.recv_kind("push")
        self.assertEqual((push.payload, push.request_id), (b"still here", 9))

    async def test_a_frame_of_exactly_the_limit_is_read(self):
        link = await self.link()
        pad = 64 * 1024 - 20
        msg = deliver(sid(0, 1), 1, 1, bytes(pad), request_id=1)
        body = pb.ToNodeBatch(msgs=[msg]).SerializeToString()
        # Grow the payload until the batch is exactly the limit.
        msg.deliver.payload = bytes(pad + 64 * 1024 - len(body))
        body = pb.ToNodeBatch(msgs=[msg]).SerializeToString()
        self.assertEqual(len(body), 64 * 1024)
        await link.send_raw(struct.pack(">I", len(body)) + body)
        self.assertEqual((await link.recv_kind("push")).request_id, 1)

    async def test_a_message_with_no_field_set_closes_the_link(self):
        link = await self.link()
        await link.send(pb.ToNode())  # encodes as 0a 00: msgs[0] with nothing in it
        self.assertEqual(await link.closed_by_node(), b"")

    async def test_an_empty_batch_means_nothing(self):
        link = await self.link()
        await link.send_raw(b"\x00\x00\x00\x00")
        await link.send(pb.ToNode(ping=pb.Ping(nonce=3)))
        self.assertEqual((await link.recv_kind("pong")).nonce, 3)

    async def test_bad_protobuf_closes_the_link(self):
        link = await self.link()
        with self.assertLogs("ringgate_node.link", "WARNING") as logs:
            await link.send_raw(b"\x00\x00\x00\x03\x0a\xff\xff")  # field 1 with a truncated length
            self.assertEqual(await link.closed_by_node(), b"")
        self.assertIn("undecodable", "\n".join(logs.output))


class Batching(NodeTest):
    async def test_replies_to_one_read_leave_in_one_frame(self):
        link = await self.link()
        reqs = [deliver(sid(0, i % 7 + 1), 1, i, f"p{i}".encode(), request_id=1000 + i)
                for i in range(100)]
        await link.send(*reqs)
        msgs = await link.recv_frame()
        self.assertEqual(len(msgs), 100)  # one frame for the whole read
        for i, m in enumerate(msgs):
            p = m.push
            self.assertEqual((p.session_id, p.route, p.seq, p.payload, p.request_id, p.ext),
                             (sid(0, i % 7 + 1), 1, i, f"p{i}".encode(), 1000 + i, 0))

    async def test_a_tracked_request_for_an_unserved_route_is_answered_no_route(self):
        link = await self.link()
        with self.assertLogs("ringgate_node", "WARNING"):
            await link.send(deliver(sid(0, 1), 77, 3, b"?", request_id=12))
            push = await link.recv_kind("push")
        self.assertEqual((push.route, push.seq, push.ext, push.payload, push.request_id),
                         (77, 3, 1, b"", 12))

    async def test_frames_respect_the_gate_max_frame_bytes(self):
        link = await self.link(max_frame_bytes=4096)
        await link.send(*[deliver(sid(0, 1), 1, i, bytes([i]) * 1000, request_id=i + 1)
                          for i in range(20)])
        got = []
        while len(got) < 20:
            got += await link.recv_frame()
        self.assertGreater(len(link.frames), 1)
        self.assertTrue(all(n <= 4096 for n in link.frames), link.frames)
        self.assertEqual([m.push.request_id for m in got], list(range(1, 21)))
        self.assertEqual([m.push.payload for m in got], [bytes([i]) * 1000 for i in range(20)])

    async def test_a_reply_too_large_for_the_gate_becomes_too_large_and_the_link_stays(self):
        link = await self.link(max_frame_bytes=4096)
        with self.assertLogs("ringgate_node", "ERROR") as logs:
            await link.send(deliver(sid(0, 1), 1, 1, bytes(5000), request_id=1),
                            deliver(sid(0, 1), 1, 2, b"small", request_id=2))
            big, small = await link.recv_kind("push"), await link.recv_kind("push")
        # Instead of a reply the gate would refuse (closing the link), the
        # client gets an empty reply with TOO_LARGE (5) now, not TIMEOUT later.
        self.assertEqual((big.seq, big.request_id, big.ext, big.payload), (1, 1, 5, b""))
        self.assertEqual((small.seq, small.request_id, small.ext, small.payload), (2, 2, 0, b"small"))
        self.assertIn("does not fit the gate's max_frame_bytes 4096", "\n".join(logs.output))


if __name__ == "__main__":
    unittest.main()


class WorkedExample(NodeTest):
    """docs/node-protocol.md §12, byte by byte: the gate's hello and Deliver
    as written there, and the node's Push must be exactly the bytes shown."""

    GATE_HELLO = bytes.fromhex(
        "0000001c" "0a1a" "0a18" "0a026731" "1001" "1802" "2002" "28808004"
        "3080d095ffbc31" "388827")
    DELIVER = bytes.fromhex(
        "0000001d" "0a1b" "2219" "090500000300000100" "1801" "2007" "2a026869"
        "38aa8080808080 40".replace(" ", ""))
    PUSH = bytes.fromhex(
        "0000001d" "0a1b" "2219" "090500000300000100" "1001" "1807" "22026869"
        "30aa808080808040")

    def make_node(self):
        return echo.make(node_id="echo-1", max_frame_bytes=64 * 1024)

    async def test_the_documented_bytes(self):
        reader, writer = await asyncio.open_connection(*self.addr)
        try:
            writer.write(self.GATE_HELLO)
            head = await asyncio.wait_for(reader.readexactly(4), 5)
            hello = pb.ToGateBatch.FromString(
                await reader.readexactly(struct.unpack(">I", head)[0])).msgs[0].hello
            # The documented NodeHello has only these fields; ours adds events,
            # its frame limit and the snapshot request.
            self.assertEqual((hello.service, hello.node_id, hello.version,
                              [(r.route, r.timeout_ms) for r in hello.reply_routes]),
                             ("echo", "echo-1", 2, [(1, 0)]))
            writer.write(self.DELIVER)
            got = await asyncio.wait_for(reader.readexactly(len(self.PUSH)), 5)
            self.assertEqual(got.hex(), self.PUSH.hex())
        finally:
            writer.close()
