"""Framing and the pure session table, against hand-written bytes and cases."""

import unittest

from ringgate_node.framing import (
    FrameDecoder,
    FrameTooLarge,
    MessageTooLarge,
    batch_entry,
    pack_frames,
    varint,
)
from ringgate_node.proto import pb
from ringgate_node.sessions import (
    BIND,
    CONNECT,
    DISCONNECT,
    UNBIND,
    Session,
    ShardSessions,
    home_shard,
)


class Framing(unittest.TestCase):
    def test_varint_golden(self):
        self.assertEqual(varint(0), b"\x00")
        self.assertEqual(varint(127), b"\x7f")
        self.assertEqual(varint(128), b"\x80\x01")
        self.assertEqual(varint(300), b"\xac\x02")

    def test_a_batch_is_its_entries_concatenated(self):
        # ToGate{pong{nonce 7}} = field 3 (0x1a) len 2 { field 1 varint 7 }
        pong = pb.ToGate(pong=pb.Pong(nonce=7)).SerializeToString()
        self.assertEqual(pong, b"\x1a\x02\x08\x07")
        frames = pack_frames([batch_entry(pong), batch_entry(pong)], 1 << 20)
        self.assertEqual(frames, [b"\x00\x00\x00\x0c" + b"\x0a\x04\x1a\x02\x08\x07" * 2])
        batch = pb.ToGateBatch.FromString(frames[0][4:])
        self.assertEqual([m.pong.nonce for m in batch.msgs], [7, 7])

    def test_frames_are_cut_at_the_limit(self):
        entries = [batch_entry(bytes(100)) for _ in range(10)]  # 102 bytes each
        frames = pack_frames(entries, 250)
        self.assertEqual([int.from_bytes(f[:4], "big") for f in frames], [204] * 5)
        self.assertEqual(b"".join(f[4:] for f in frames), b"".join(entries))
        with self.assertRaises(MessageTooLarge):
            pack_frames([batch_entry(bytes(300))], 250)

    def test_decoder_splits_and_joins(self):
        stream = b"\x00\x00\x00\x02ab" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x03xyz"
        d = FrameDecoder(16)
        got = []
        for i in range(len(stream)):  # byte by byte
            got += d.feed(stream[i : i + 1])
        self.assertEqual(got, [b"ab", b"", b"xyz"])
        self.assertEqual(FrameDecoder(16).feed(stream), [b"ab", b"", b"xyz"])

    def test_oversized_prefix_is_refused_before_the_body(self):
        d = FrameDecoder(16)
        self.assertEqual(d.feed(b"\x00\x00\x00\x10" + bytes(15)), [])  # 16 is allowed
        with self.assertRaises(FrameTooLarge):
            FrameDecoder(16).feed(b"\x00\x00\x00\x11")  # 17: refused from the prefix alone


class HomeShard(unittest.TestCase):
    def test_the_documented_examples(self):
        # docs/node-protocol.md §10: uid 42 -> shard 0, uid 1000 -> shard 1 of 2.
        self.assertEqual(((42 * 0x9E3779B97F4A7C15) % 2**64) >> 32, 0xF519F86E)
        self.assertEqual(home_shard(42, 2), 0)
        self.assertEqual(home_shard(1000, 2), 1)
        self.assertEqual(home_shard(-1, 1), 0)  # two's complement, any shard count


def t(table: ShardSessions, kind, sid, seq, uid=0):
    gap = table.check_seq(kind, seq)
    table.apply_event(kind, sid, uid)
    return gap


class SessionTable(unittest.TestCase):
    def test_consecutive_seqs_are_no_gap_and_a_jump_is(self):
        tb = ShardSessions("g", 0)
        self.assertFalse(t(tb, CONNECT, 1, 10))  # first of its kind: sets the counter
        self.assertFalse(t(tb, CONNECT, 2, 11))
        self.assertFalse(t(tb, BIND, 1, 3, uid=42))  # kinds count separately
        self.assertTrue(t(tb, CONNECT, 3, 13))  # 12 was lost
        self.assertFalse(t(tb, CONNECT, 4, 14))
        self.assertTrue(t(tb, CONNECT, 5, 14))  # a repeat is out of order too
        self.assertFalse(t(tb, DISCONNECT, 9, 0))  # seq 0: the gate does not number events
        self.assertEqual(tb.gaps, 2)

    def test_events_keep_the_table(self):
        tb = ShardSessions("g", 0)
        t(tb, CONNECT, 1, 1)
        t(tb, BIND, 1, 1, uid=42)
        self.assertEqual(tb.sessions[1].uid, 42)
        t(tb, UNBIND, 1, 1, uid=42)
        self.assertEqual(tb.sessions[1].uid, 0)
        t(tb, DISCONNECT, 1, 1)
        self.assertEqual(tb.sessions, {})

    def test_a_snapshot_replaces_table_and_counters(self):
        tb = ShardSessions("g", 0)
        t(tb, CONNECT, 1, 1)
        t(tb, CONNECT, 2, 2)
        tb.sessions[1].data["x"] = "kept"
        tb.begin_snapshot(7)
        self.assertIsNone(tb.add_page([Session("g", 1, 42)], False, [], 7))
        r = tb.add_page([Session("g", 3, 0)], True, [0, 5, 2, 0, 4], 7)
        self.assertEqual(sorted(r.sessions), [1, 3])
        self.assertEqual([s.session_id for s in r.added], [3])
        self.assertEqual([s.session_id for s in r.removed], [2])
        self.assertEqual(tb.sessions[1].uid, 42)
        self.assertEqual(tb.sessions[1].data, {"x": "kept"})
        self.assertIsNone(tb.snapshot_pending)
        # The next event of kind k has seq event_seqs[k] + 1.
        self.assertFalse(tb.check_seq(CONNECT, 6))
        self.assertFalse(tb.check_seq(BIND, 3))
        self.assertTrue(tb.check_seq(DISCONNECT, 6))  # 5 expected


if __name__ == "__main__":
    unittest.main()
