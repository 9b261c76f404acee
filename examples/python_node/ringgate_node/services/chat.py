"""chat: the protocol of docs/chat.md (routes 1-4), plus ``who`` and ``logout``.

All payloads are UTF-8 text; every request is answered (reply routes).

| route | name    | request         | reply                                                    |
|-------|---------|-----------------|----------------------------------------------------------|
| 1     | login   | `42`            | `ok 42` / `error <reason>` (Call.bind)                   |
| 2     | join    | `lobby`         | `joined lobby` (Call.subscribe "room:lobby")             |
| 3     | say     | `hi all`        | route 100 `42@lobby: hi all` to each room (Call.publish), then `sent` |
| 4     | whisper | `7 psst`        | route 101 `42: psst` to user 7 (Call.push by uid), then `delivered` / `error offline` |
| 5     | who     | anything        | `online 7,42; sessions 3`: bound users and sessions of this gate, from the node's session table |
| 6     | logout  | anything        | `bye 42`: leaves its rooms (Call.unsubscribe), Call.unbind |

The rooms a session joined are kept in the gate's session settings
(``chat.rooms``), not only in this process: snapshots carry settings, so a
restarted chat node knows its users' rooms again from the first snapshot,
with no new login or join.
"""

from __future__ import annotations

import logging

from ..node import CallError, CallTimeout, Context, EventContext, Gate, GateUnavailable, Node
from ..proto import pb
from ..sessions import SnapshotResult

log = logging.getLogger("ringgate_node.chat")

LOGIN, JOIN, SAY, WHISPER, WHO, LOGOUT = 1, 2, 3, 4, 5, 6
ROOM_ROUTE = 100  # room messages, seq 0
WHISPER_ROUTE = 101  # whispers, seq 0
ROOMS_KEY = "chat.rooms"  # session setting: the joined rooms, comma-separated


def rooms_of(settings: dict[str, str]) -> list[str]:
    return sorted(r for r in settings.get(ROOMS_KEY, "").split(",") if r)


def parse_uid(text: str) -> int:
    """A positive 63-bit user id in decimal, else 0."""
    if not (text.isascii() and text.isdigit()):
        return 0
    uid = int(text)
    return uid if 0 < uid < 1 << 63 else 0


def describe(e: Exception) -> str:
    """The `<reason>` of an `error <reason>` reply."""
    if isinstance(e, CallError):
        if e.code == pb.CODE_ALREADY_BOUND:
            return "the user is already bound to another session"
        return e.result.message or e.code_name.replace("_", " ")
    if isinstance(e, CallTimeout):
        return "the gate did not answer in time"
    if isinstance(e, GateUnavailable):
        return "the gate is unreachable"
    return "internal error"


def make(**node_options) -> Node:
    node = Node("chat", **node_options)

    def logged_in(ctx: Context) -> int:
        return ctx.uid or ctx.session.uid

    @node.route(LOGIN)
    async def login(ctx: Context) -> None:
        text = ctx.text().strip()
        uid = parse_uid(text)
        if not uid:
            ctx.reply(f"error the user id must be a positive number, not {text!r}")
            return
        try:
            await ctx.bind(uid)  # the gate kicks an older session of the user (rebind = "kick")
        except (CallError, CallTimeout, GateUnavailable) as e:
            ctx.reply(f"error {describe(e)}")
            return
        ctx.reply(f"ok {uid}")

    @node.route(JOIN)
    async def join(ctx: Context) -> None:
        if not logged_in(ctx):
            ctx.reply("error not logged in")
            return
        room = ctx.text().strip()
        if not room:
            ctx.reply("error empty room name")
            return
        if "," in room:
            ctx.reply("error a room name cannot contain ','")
            return
        rooms = set(rooms_of(ctx.session.settings)) | {room}
        try:
            await ctx.subscribe(f"room:{room}")
            await ctx.set_settings({ROOMS_KEY: ",".join(sorted(rooms))})
        except (CallError, CallTimeout, GateUnavailable) as e:
            ctx.reply(f"error {describe(e)}")
            return
        ctx.reply(f"joined {room}")

    @node.route(SAY)
    async def say(ctx: Context) -> None:
        uid = logged_in(ctx)
        if not uid:
            ctx.reply("error not logged in")
            return
        rooms = rooms_of(ctx.session.settings)
        if not rooms:
            ctx.reply("error not in a room")
            return
        try:
            for room in rooms:
                # Waits for the gate: the sender, a member, gets the room
                # message before the `sent` reply.
                await ctx.gate.publish(f"room:{room}", f"{uid}@{room}: {ctx.text()}", route=ROOM_ROUTE)
        except (CallError, CallTimeout, GateUnavailable) as e:
            ctx.reply(f"error {describe(e)}")
            return
        ctx.reply("sent")

    @node.route(WHISPER)
    async def whisper(ctx: Context) -> None:
        uid = logged_in(ctx)
        if not uid:
            ctx.reply("error not logged in")
            return
        to, _, text = ctx.text().partition(" ")
        to_uid = parse_uid(to)
        if not to_uid:
            ctx.reply("error usage: <to_uid> <text>")
            return
        try:
            await ctx.gate.push(f"{uid}: {text}", uid=to_uid, route=WHISPER_ROUTE)
        except CallError as e:
            ctx.reply("error offline" if e.code == pb.CODE_NOT_FOUND else f"error {describe(e)}")
            return
        except (CallTimeout, GateUnavailable) as e:
            ctx.reply(f"error {describe(e)}")
            return
        ctx.reply("delivered")

    @node.route(WHO)
    def who(ctx: Context) -> None:
        sessions = list(ctx.gate.sessions())
        uids = sorted({s.uid for s in sessions if s.uid})
        ctx.reply(f"online {','.join(map(str, uids)) or '-'}; sessions {len(sessions)}")

    @node.route(LOGOUT)
    async def logout(ctx: Context) -> None:
        uid = logged_in(ctx)
        if not uid:
            ctx.reply("error not logged in")
            return
        try:
            for room in rooms_of(ctx.session.settings):
                await ctx.unsubscribe(f"room:{room}")
            await ctx.set_settings(remove=[ROOMS_KEY])
            await ctx.unbind()
        except (CallError, CallTimeout, GateUnavailable) as e:
            ctx.reply(f"error {describe(e)}")
            return
        ctx.reply(f"bye {uid}")

    @node.on_event("connect", "bind", "unbind", "disconnect")
    def on_event(ev: EventContext) -> None:
        if ev.kind == pb.EVENT_CONNECT:
            log.info("chat: connect session=%#x from %s:%d (%s)", ev.session_id, ev.ip, ev.port,
                     ev.network)
        elif ev.kind == pb.EVENT_DISCONNECT:
            log.info("chat: disconnect session=%#x uid=%d reason=%s", ev.session_id, ev.uid,
                     ev.reason_name)
        else:
            log.info("chat: %s session=%#x uid=%d", ev.kind_name, ev.session_id, ev.uid)

    @node.on_snapshot
    def on_snapshot(gate: Gate, snap: SnapshotResult) -> None:
        with_rooms = sum(1 for s in snap.sessions.values() if rooms_of(s.settings))
        log.info("chat: gate %s shard %d: %d sessions (%d in rooms) after the snapshot",
                 gate.gate_id, snap.shard, len(snap.sessions), with_rooms)

    return node
