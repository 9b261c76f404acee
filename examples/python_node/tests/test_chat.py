"""Calls, events, gaps and snapshots, with the chat service behind a fake gate."""

import asyncio
import unittest

from fakegate import FakeLink, deliver, event, info, page, result, sid
from test_link import NodeTest

from ringgate_node.proto import pb
from ringgate_node.services import chat
from ringgate_node.sessions import BIND, CONNECT, DISCONNECT, UNBIND

LOBBY = {chat.ROOMS_KEY: "lobby"}


class ChatTest(NodeTest):
    def make_node(self):
        return chat.make(node_id="chat-test", call_timeout=0.5)

    async def gate(self, *, gate_id="gate-a", shards=2, epoch_ms=1000, sessions=None,
                   event_seqs=(0, 0, 0, 0, 0)) -> list[FakeLink]:
        """One link per shard, each answering the hello's snapshot request
        with ``sessions[shard]`` (one page, or two when there are several)."""
        links = []
        for shard in range(shards):
            link = await self.link(gate_id=gate_id, shard=shard, shards=shards, epoch_ms=epoch_ms)
            self.assertTrue(link.node_hello.snapshot)
            mine = (sessions or {}).get(shard, [])
            if len(mine) > 1:
                await link.send(page(mine[:1], last=False))
                await link.send(page(mine[1:], last=True, event_seqs=event_seqs))
            else:
                await link.send(page(mine, last=True, event_seqs=event_seqs))
            links.append(link)
        return links

    async def ask(self, link: FakeLink, session_id, route, payload, *, uid=0, rid=None) -> str:
        """A request that needs no call: its reply text."""
        rid = rid or route * 1000 + 1
        await link.send(deliver(session_id, route, 1, payload.encode(), uid=uid, request_id=rid))
        push = await link.recv_kind("push")
        self.assertEqual((push.session_id, push.route, push.request_id), (session_id, route, rid))
        return push.payload.decode()


class Calls(ChatTest):
    async def test_login_binds_through_a_call_and_replies_with_the_request_id(self):
        (a,) = await self.gate(shards=1)
        s = sid(0, 5)
        await a.send(deliver(s, chat.LOGIN, 3, b"42", request_id=77))
        call = await a.recv_kind("call")
        self.assertEqual(call.WhichOneof("op"), "bind")
        self.assertEqual((call.bind.session_id, call.bind.uid), (s, 42))
        self.assertNotEqual(call.call_id, 0)
        await a.send(result(call.call_id, session_id=s))
        push = await a.recv_kind("push")
        self.assertEqual((push.session_id, push.route, push.seq, push.payload, push.request_id),
                         (s, chat.LOGIN, 3, b"ok 42", 77))

    async def test_a_refused_bind_is_an_error_reply(self):
        (a,) = await self.gate(shards=1)
        await a.send(deliver(sid(0, 5), chat.LOGIN, 1, b"42", request_id=1))
        call = await a.recv_kind("call")
        await a.send(result(call.call_id, pb.CODE_ALREADY_BOUND))
        self.assertEqual((await a.recv_kind("push")).payload,
                         b"error the user is already bound to another session")
        self.assertEqual(await self.ask(a, sid(0, 6), chat.LOGIN, "x"),
                         "error the user id must be a positive number, not 'x'")

    async def test_the_result_may_come_on_another_link_of_the_gate(self):
        a, b = await self.gate(shards=2)
        await a.send(deliver(sid(0, 1), chat.WHISPER, 1, b"7 psst", uid=42, request_id=5))
        call = await a.recv_kind("call")
        self.assertEqual(call.WhichOneof("op"), "push")
        self.assertEqual((call.push.target.uid, call.push.route, call.push.payload),
                         (7, chat.WHISPER_ROUTE, b"42: psst"))
        await b.send(result(call.call_id, pb.CODE_NOT_FOUND))  # answered on shard 1's link
        self.assertEqual((await a.recv_kind("push")).payload, b"error offline")

    async def test_an_unanswered_call_times_out_into_an_error_reply(self):
        (a,) = await self.gate(shards=1)
        await a.send(event(CONNECT, sid(0, 1), 1),
                     deliver(sid(0, 1), chat.WHISPER, 1, b"7 psst", uid=42, request_id=5))
        call = await a.recv_kind("call")
        push = await a.recv_kind("push", timeout=3)  # call_timeout is 0.5 s
        self.assertEqual(push.payload, b"error the gate did not answer in time")
        await a.send(result(call.call_id))  # late: ignored
        self.assertEqual(await self.ask(a, sid(0, 1), chat.WHO, ""), "online -; sessions 1")

    async def test_one_sessions_requests_run_in_order(self):
        # login waits for its call; the `who` behind it in the same batch must
        # wait too (same session), so it sees the user bound.
        (a,) = await self.gate(shards=1)
        s = sid(0, 9)
        await a.send(event(CONNECT, s, 1),
                     deliver(s, chat.LOGIN, 1, b"42", request_id=1),
                     deliver(s, chat.WHO, 2, b"", request_id=2))
        call = await a.recv_kind("call")
        self.assertTrue(await a.nothing_within(0.2))
        await a.send(result(call.call_id))
        first, second = await a.recv_kind("push"), await a.recv_kind("push")
        self.assertEqual((first.request_id, first.payload), (1, b"ok 42"))
        self.assertEqual((second.request_id, second.payload), (2, b"online 42; sessions 1"))

    async def test_say_publishes_to_each_room_then_answers(self):
        (a,) = await self.gate(shards=1, sessions={0: [info(sid(0, 1), 42, {chat.ROOMS_KEY: "a,b"})]})
        await a.send(deliver(sid(0, 1), chat.SAY, 4, b"hi", uid=42, request_id=8))
        for room in ("a", "b"):
            call = await a.recv_kind("call")
            self.assertEqual((call.publish.channel, call.publish.route, call.publish.payload),
                             (f"room:{room}", chat.ROOM_ROUTE, f"42@{room}: hi".encode()))
            await a.send(result(call.call_id, delivered=1))
        self.assertEqual((await a.recv_kind("push")).payload, b"sent")

    async def test_join_subscribes_and_keeps_its_rooms_in_the_session_settings(self):
        (a,) = await self.gate(shards=1)
        s = sid(0, 3)
        await a.send(event(CONNECT, s, 1), event(BIND, s, 1, uid=42),
                     deliver(s, chat.JOIN, 1, b"lobby", uid=42, request_id=1))
        sub = await a.recv_kind("call")
        self.assertEqual((sub.subscribe.channel, [t.session_id for t in sub.subscribe.targets]),
                         ("room:lobby", [s]))
        await a.send(result(sub.call_id))
        st = await a.recv_kind("call")
        self.assertEqual((st.settings.target.session_id, dict(st.settings.set)),
                         (s, {chat.ROOMS_KEY: "lobby"}))
        await a.send(result(st.call_id))
        self.assertEqual((await a.recv_kind("push")).payload, b"joined lobby")


class Snapshots(ChatTest):
    async def test_the_hello_snapshot_fills_the_table_with_uids_and_rooms(self):
        a, b = await self.gate(shards=2, sessions={
            0: [info(sid(0, 1), 42, LOBBY), info(sid(0, 2))],
            1: [info(sid(1, 1), 7)],
        })
        self.assertEqual(await self.ask(b, sid(1, 1), chat.WHO, ""), "online 7,42; sessions 3")
        # Rooms came from the settings: say works with no join in this process.
        await a.send(deliver(sid(0, 1), chat.SAY, 1, b"back", uid=42, request_id=3))
        call = await a.recv_kind("call")
        self.assertEqual(call.publish.channel, "room:lobby")

    async def test_a_seq_gap_asks_for_a_snapshot_that_rebuilds_the_table(self):
        (a,) = await self.gate(shards=1, sessions={0: [info(sid(0, 1), 42), info(sid(0, 2), 7)]},
                               event_seqs=[0, 10, 4, 0, 6])
        # In sequence: no snapshot asked for.
        await a.send(event(CONNECT, sid(0, 3), 11), event(BIND, sid(0, 3), 5, uid=5),
                     event(UNBIND, sid(0, 3), 1, uid=5))
        self.assertEqual(await self.ask(a, sid(0, 1), chat.WHO, ""), "online 7,42; sessions 3")
        # DISCONNECT 7 was lost (the gate's queue overflowed): 8 shows the gap.
        await a.send(event(DISCONNECT, sid(0, 3), 8))
        call = await a.recv_kind("call")
        self.assertEqual(call.WhichOneof("op"), "snapshot")
        # The gate's answer: session 2 (uid 7) is gone, 4 appeared.
        await a.send(page([info(sid(0, 1), 42)], last=False, call_id=call.call_id),
                     page([info(sid(0, 4), 9)], last=True, event_seqs=[0, 12, 6, 1, 8],
                          call_id=call.call_id),
                     result(call.call_id, delivered=2))
        self.assertEqual(await self.ask(a, sid(0, 1), chat.WHO, ""), "online 9,42; sessions 2")
        # Counters follow the snapshot: 9 is the next DISCONNECT, no new request.
        await a.send(event(DISCONNECT, sid(0, 4), 9, uid=9))
        self.assertEqual(await self.ask(a, sid(0, 1), chat.WHO, ""), "online 42; sessions 1")
        table = self.node.gates["gate-a"].tables[0]
        self.assertEqual((table.gaps, table.snapshots), (1, 2))

    async def test_one_request_at_a_time_while_a_snapshot_is_pending(self):
        (a,) = await self.gate(shards=1, event_seqs=[0, 1, 0, 0, 0])
        await a.send(event(CONNECT, sid(0, 1), 5))  # gap: 2 expected
        call = await a.recv_kind("call")
        await a.send(event(CONNECT, sid(0, 2), 9))  # another gap, same snapshot covers it
        self.assertTrue(await a.nothing_within(0.2))
        await a.send(page([], last=True, event_seqs=[0, 9, 0, 0, 0], call_id=call.call_id),
                     result(call.call_id))
        self.assertEqual(await self.ask(a, sid(0, 1), chat.WHO, ""), "online -; sessions 0")

    async def test_a_gate_that_sends_no_snapshot_still_gets_events_tracked(self):
        a = await self.link(gate_id="old", shard=0, shards=1)  # no snapshot pages follow
        await a.send(event(CONNECT, sid(0, 1), 0), event(BIND, sid(0, 1), 0, uid=3))
        self.assertEqual(await self.ask(a, sid(0, 1), chat.WHO, ""), "online 3; sessions 1")

    async def test_a_restarted_gate_is_forgotten(self):
        (a,) = await self.gate(shards=1, sessions={0: [info(sid(0, 1), 42)]})
        (b,) = await self.gate(shards=1, epoch_ms=2000)  # same id, new epoch
        self.assertEqual(await a.closed_by_node(), b"")  # the old process's link is retired
        self.assertEqual(await self.ask(b, sid(0, 1), chat.WHO, ""), "online -; sessions 0")

    async def test_two_gates_have_separate_sessions(self):
        (a,) = await self.gate(gate_id="gate-a", shards=1, sessions={0: [info(sid(0, 1), 42)]})
        (b,) = await self.gate(gate_id="gate-b", shards=1, sessions={0: [info(sid(0, 1), 7)]})
        self.assertEqual(await self.ask(a, sid(0, 1), chat.WHO, ""), "online 42; sessions 1")
        self.assertEqual(await self.ask(b, sid(0, 1), chat.WHO, ""), "online 7; sessions 1")
        # A call for gate b goes to gate b only.
        await b.send(deliver(sid(0, 1), chat.WHISPER, 1, b"42 hi", uid=7, request_id=4))
        call = await b.recv_kind("call")
        self.assertTrue(await a.nothing_within(0.2))
        await b.send(result(call.call_id, pb.CODE_NOT_FOUND))
        self.assertEqual((await b.recv_kind("push")).payload, b"error offline")

    async def test_a_new_link_for_a_shard_replaces_the_old_one(self):
        (a,) = await self.gate(shards=1, sessions={0: [info(sid(0, 1), 42)]})
        (a2,) = await self.gate(shards=1, sessions={0: [info(sid(0, 1), 42), info(sid(0, 2), 8)]})
        self.assertEqual(await a.closed_by_node(), b"")
        self.assertEqual(await self.ask(a2, sid(0, 1), chat.WHO, ""), "online 8,42; sessions 2")


class Limits(ChatTest):
    def make_node(self):
        return chat.make(call_timeout=0.5, max_inflight=2)

    async def test_requests_over_max_inflight_are_answered_busy(self):
        (a,) = await self.gate(shards=1)
        # Two logins wait for their bind results; the third request finds
        # max_inflight reached and is answered BUSY (4) at once.
        await a.send(deliver(sid(0, 1), chat.LOGIN, 1, b"1", request_id=1),
                     deliver(sid(0, 2), chat.LOGIN, 1, b"2", request_id=2),
                     deliver(sid(0, 3), chat.WHO, 1, b"", request_id=3))
        msgs = [await a.recv() for _ in range(3)]
        calls = [m.call for m in msgs if m.WhichOneof("msg") == "call"]
        busy = [m.push for m in msgs if m.WhichOneof("msg") == "push"]
        self.assertEqual(len(calls), 2)
        self.assertEqual([(p.request_id, p.ext, p.payload) for p in busy], [(3, 4, b"")])
        for c in calls:
            await a.send(result(c.call_id))
        replies = [(await a.recv_kind("push")).payload for _ in range(2)]
        self.assertEqual(sorted(replies), [b"ok 1", b"ok 2"])
        # Below the limit again: served.
        self.assertEqual(await self.ask(a, sid(0, 3), chat.WHO, ""), "online -; sessions 0")
        self.assertEqual(self.node.shed, 1)


class Routing(ChatTest):
    async def test_calls_by_uid_go_on_the_uids_home_shard(self):
        a, b = await self.gate(shards=2)
        # uid 1000's home shard is 1 (docs/node-protocol.md §10): the whisper's
        # push by uid leaves on shard 1's link although the request came on 0.
        await a.send(deliver(sid(0, 1), chat.WHISPER, 1, b"1000 hi", uid=42, request_id=1))
        call = await b.recv_kind("call")
        self.assertEqual(call.push.target.uid, 1000)
        await b.send(result(call.call_id))
        self.assertEqual((await a.recv_kind("push")).payload, b"delivered")  # reply on its link
        # uid 42's home shard is 0: a login as 42 from shard 1 binds on shard 0's link.
        await b.send(deliver(sid(1, 1), chat.LOGIN, 1, b"42", request_id=2))
        call = await a.recv_kind("call")
        self.assertEqual((call.bind.session_id, call.bind.uid), (sid(1, 1), 42))


class SnapshotRetry(ChatTest):
    async def test_a_busy_snapshot_request_is_asked_again(self):
        (a,) = await self.gate(shards=1, event_seqs=[0, 1, 0, 0, 0])
        await a.send(event(CONNECT, sid(0, 1), 3))  # gap
        first = await a.recv_kind("call")
        await a.send(result(first.call_id, pb.CODE_BUSY))
        second = await a.recv_kind("call", timeout=3)  # after ~0.2 s
        self.assertEqual(second.WhichOneof("op"), "snapshot")
        self.assertNotEqual(second.call_id, first.call_id)
        await a.send(page([info(sid(0, 1), 4)], last=True, event_seqs=[0, 3, 0, 0, 0],
                          call_id=second.call_id), result(second.call_id, delivered=1))
        self.assertEqual(await self.ask(a, sid(0, 1), chat.WHO, ""), "online 4; sessions 1")
        self.assertFalse(self.node.gates["gate-a"].tables[0].stale)


if __name__ == "__main__":
    unittest.main()
