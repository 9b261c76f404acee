"""The node's picture of a gate shard's sessions, pure (no I/O).

One ``ShardSessions`` per (gate, shard): the live sessions as the shard's
events and snapshots tell them, and the next expected ``Event.seq`` per event
kind. The contract (proto/ringgate.proto, ``Event.seq`` and ``Snapshot``):

* the events of one kind raised by a shard are numbered from 1 at the gate's
  start; consecutive events of a kind on a link have consecutive numbers
  unless some were lost: a gap means "ask for a snapshot";
* a snapshot lists every session whose CONNECT was raised and whose
  DISCONNECT was not, in pages written back to back; its ``event_seqs[k]`` is
  the shard's counter of kind k at that instant, so the next event of kind k
  has seq ``event_seqs[k] + 1``; events after its last page happened after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# EventKind numbers (proto/ringgate.proto); kept here so this module needs no protobuf.
CONNECT, BIND, UNBIND, DISCONNECT = 1, 2, 3, 4
KINDS = (CONNECT, BIND, UNBIND, DISCONNECT)


def shard_of(session_id: int) -> int:
    """The gate shard owning a session (``session_id >> 48``)."""
    return session_id >> 48


def home_shard(uid: int, shards: int) -> int:
    """The shard holding a user id's entry (docs/node-protocol.md §10): calls
    by uid sent on its link save the gate one hop between shards."""
    x = ((uid & 0xFFFF_FFFF_FFFF_FFFF) * 0x9E37_79B9_7F4A_7C15) & 0xFFFF_FFFF_FFFF_FFFF
    return (x >> 32) % shards if shards else 0


@dataclass
class Session:
    """A live client session of one gate, as far as this node knows."""

    gate_id: str
    session_id: int
    uid: int = 0
    ip: str = ""
    port: int = 0
    network: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    # Free for the service's own per-session state. Kept across snapshots for
    # sessions that are still live; lost when the node restarts (keep what
    # must survive a restart in the gate's session settings: snapshots carry them).
    data: dict = field(default_factory=dict)

    @property
    def shard(self) -> int:
        return shard_of(self.session_id)


@dataclass
class SnapshotResult:
    """What a completed snapshot changed in a shard's table."""

    gate_id: str
    shard: int
    call_id: int  # 0: the snapshot asked for in the hello
    sessions: dict[int, Session]
    added: list[Session]  # live now, unknown before (their CONNECT was missed)
    removed: list[Session]  # known before, gone now (their DISCONNECT was missed)


class ShardSessions:
    """Sessions and event counters of one gate shard."""

    def __init__(self, gate_id: str, shard: int):
        self.gate_id = gate_id
        self.shard = shard
        self.sessions: dict[int, Session] = {}
        # kind -> the seq the next event of that kind must carry; a kind is
        # absent until a snapshot or a first event gives its counter.
        self.expected: dict[int, int] = {}
        # call_id of the snapshot being waited for (0 = the hello's), or None.
        self.snapshot_pending: int | None = None
        self._pages: list = []
        # Events were lost and no snapshot has replaced the table since.
        self.stale = False
        self.retry_delay = 0.0  # before asking again after a failed snapshot request
        self.gaps = 0  # gaps seen (for logs and tests)
        self.snapshots = 0  # snapshots applied

    # -- events -------------------------------------------------------------
    def check_seq(self, kind: int, seq: int) -> bool:
        """Records ``seq`` for ``kind``; True when it shows lost events.

        seq 0 means the gate does not number its events: never a gap. The
        first numbered event of a kind with no counter yet sets the counter.
        """
        if seq == 0:
            return False
        want = self.expected.get(kind)
        self.expected[kind] = seq + 1
        if want is None or seq == want:
            return False
        self.gaps += 1
        self.stale = True
        return True

    def apply_event(self, kind: int, session_id: int, uid: int = 0, ip: str = "",
                    port: int = 0, network: str = "") -> Session:
        """Applies one event to the table; returns the session concerned (for
        a disconnect, the entry just removed, or a stand-in if unknown)."""
        s = self.sessions.get(session_id)
        if kind == CONNECT:
            s = Session(self.gate_id, session_id, 0, ip, port, network)
            self.sessions[session_id] = s
        elif kind == DISCONNECT:
            s = self.sessions.pop(session_id, None) or Session(self.gate_id, session_id, uid)
        else:
            if s is None:  # its CONNECT was missed or not subscribed to
                s = self.sessions[session_id] = Session(self.gate_id, session_id)
            s.uid = uid if kind == BIND else 0
        return s

    # -- snapshots ----------------------------------------------------------
    def begin_snapshot(self, call_id: int) -> None:
        self.snapshot_pending = call_id
        self._pages = []

    def abandon_snapshot(self) -> None:
        """The snapshot asked for will not come (error, timeout, old gate)."""
        self.snapshot_pending = None
        self._pages = []

    def add_page(self, sessions: list[Session], last: bool, event_seqs: list[int],
                 call_id: int) -> SnapshotResult | None:
        """Collects one page; on the last one, replaces the table and the
        counters and returns what changed."""
        self._pages.extend(sessions)
        if not last:
            return None
        new: dict[int, Session] = {}
        added: list[Session] = []
        for s in self._pages:
            old = self.sessions.get(s.session_id)
            if old is None:
                added.append(s)
            else:
                s.data = old.data  # the service's state survives for a live session
            new[s.session_id] = s
        removed = [s for sid, s in self.sessions.items() if sid not in new]
        self.sessions = new
        self.expected = {k: event_seqs[k] + 1 for k in KINDS if k < len(event_seqs)}
        self._pages = []
        self.snapshot_pending = None
        self.stale = False
        self.retry_delay = 0.0
        self.snapshots += 1
        return SnapshotResult(self.gate_id, self.shard, call_id, new, added, removed)
