"""Live class sessions: frames in, per-second records out, and what the dashboard shows.

Each live connection (a student's camera, the teacher's shared meeting gallery, the teacher's
own camera) keeps only its newest frame in a :class:`Latest` slot and has at most one frame in
recognition at a time, on a shared worker pool: a slow or flooding client only ever waits for
itself. Recognition uses one shared :class:`~moodlens.recognizer.Recognizer` and one
:class:`~moodlens.recognizer.FaceStream` per connection.

Every participant has its own :class:`~moodlens.aggregate.Timeline`; the seconds it closes go to
the :class:`Recorder`, which writes them to the store in batches on its own thread, and to the
session's live counts that the dashboard reads.
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence

from moodlens.aggregate import NO_FACE, SecondRecord, Timeline, attention_flags
from moodlens.faces import Face, Frame
from moodlens.journal import Journal
from moodlens.recognizer import FaceStream, Recognizer
from moodlens.store import Participant, Session

OFFLINE = "offline"  # a student with the camera off, or a gallery tile when the share has ended


class Latest:
    """A one-item slot between a connection's reader and its worker: ``put`` replaces an item
    not yet taken (counted in ``dropped``), ``get`` waits for one; ``None`` after ``close``."""

    def __init__(self):
        self.item = None
        self.dropped = 0
        self.closed = False
        self._event = asyncio.Event()

    def put(self, item) -> None:
        if self.item is not None:
            self.dropped += 1
        self.item = item
        self._event.set()

    def close(self) -> None:
        self.closed = True
        self._event.set()

    async def get(self):
        while self.item is None and not self.closed:
            await self._event.wait()
            self._event.clear()
        item, self.item = self.item, None
        return item


class Recorder:
    """Writes closed seconds on its own thread, in batches, so neither the event loop nor the
    recognition workers wait for the database; what the database cannot take yet waits in the
    :class:`~moodlens.journal.Journal` and is written as soon as it can be."""

    def __init__(self, journal: Journal, batch_s: float = 0.5, retry_s: float = 1.0):
        self.journal, self.batch_s, self.retry_s = journal, batch_s, retry_s
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="moodlens-recorder", daemon=True)
        self._thread.start()

    def put(self, session_id: int, records: Sequence[SecondRecord]) -> None:
        if records:
            self._queue.put((session_id, list(records)))

    def flush(self) -> None:
        """Wait until everything put so far is written, or kept in the journal."""
        self._queue.join()
        self.journal.replay()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while True:
            try:  # while seconds wait in the journal, wake up to retry them
                items = [self._queue.get(timeout=self.retry_s if self.journal.behind else None)]
            except queue.Empty:
                self.journal.replay()
                continue
            deadline = time.monotonic() + self.batch_s
            while items[-1] is not None and time.monotonic() < deadline:
                try:
                    items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            stop = items[-1] is None
            batches: dict[int, list[SecondRecord]] = {}
            for item in items:
                if item is not None:
                    batches.setdefault(item[0], []).extend(item[1])
            if self.journal.behind:
                self.journal.replay()
            for session_id, records in batches.items():
                self.journal.write(session_id, records)
            for _ in items:
                self._queue.task_done()
            if stop:
                return


class LiveParticipant:
    """One participant's live state: the newest face, the recent seconds, connection status.

    ``observe`` is called from a worker thread (one at a time per participant); the dashboard
    reads ``view`` from the event loop; ``lock`` keeps them apart.
    """

    def __init__(self, info: Participant, session: Session, keep_s: int = 900):
        self.info = info
        self.joined = max(0, int(info.joined_at - session.started_at))
        self.timeline = Timeline(session.classes)
        self.recent: deque[SecondRecord] = deque(maxlen=keep_s)
        self.face: Face | None = None
        self.last_frame: float | None = None
        self.connections = 0
        self.stream: FaceStream | None = None  # a student's own camera stream
        self.lock = threading.Lock()

    @property
    def id(self) -> int:
        return self.info.id

    def observe(self, face: Face | None, t: float) -> list[SecondRecord]:
        """Add this participant's face (None: no face) in a frame at session time ``t``;
        returns the seconds this closed."""
        seen = Face(face.box, scores=dict(face.scores), emotion=face.emotion, status=face.status) if face else \
            Face((0, 0, 0, 0), status=NO_FACE)
        seen.track_id = self.id
        with self.lock:
            closed = self.timeline.add(Frame([seen], time=t))
            self.timeline.records.clear()  # kept in ``recent`` and the store instead
            self.recent.extend(closed)
            self.face, self.last_frame = face, t
        return closed

    def flush(self) -> list[SecondRecord]:
        with self.lock:
            closed = self.timeline.flush()
            self.timeline.records.clear()
            self.recent.extend(closed)
            self.face = None
        return closed

    def view(self, now: int, spark_s: int = 60, **flag_args) -> dict:
        """The dashboard tile: current emotion, a sparkline of the last ``spark_s`` seconds and
        the attention flags still running at ``now`` (the current session second).

        A student whose camera is off counts as "no face seen"; a gallery tile whose share ended
        raises no flags (nobody is watching that screen any more)."""
        with self.lock:
            recent = list(self.recent)
            face, last_frame = self.face, self.last_frame
        connected = self.connections > 0
        stale = last_frame is None or now - last_frame > 3
        # look back over what is kept: since joining, or the oldest second still in ``recent``
        start = recent[0].second if recent and len(recent) == self.recent.maxlen else self.joined
        end = now - 1  # the current second is still open
        watched = connected or self.info.source == "student"
        flags = [f for f in attention_flags(recent, start=start, end=end, **flag_args) if f.end == end] \
            if watched and end >= start else []
        return {**self.info.to_dict(), "connected": connected,
                "emotion": None if stale or face is None or not connected else face.emotion,
                "confidence": 0.0 if stale or face is None or not connected else round(face.confidence, 3),
                "status": OFFLINE if not connected else NO_FACE if stale or face is None else face.status,
                "spark": spark([r for r in recent if r.second > now - spark_s]),
                "flags": [f.to_dict() for f in flags]}


class LiveSession:
    """An open class session: its participants and the class's per-second emotion counts."""

    def __init__(self, info: Session, clock: Callable[[], float], keep_s: int = 900):
        self.info, self.clock, self.keep_s = info, clock, keep_s
        self.participants: dict[int, LiveParticipant] = {}
        self.counts: dict[int, Counter] = {}  # second -> emotion counts ("" for none)
        self.lock = threading.Lock()
        self.gallery: GalleryTiles | None = None
        self.ended = False

    def now(self) -> float:
        """Seconds since the session started."""
        return self.clock() - self.info.started_at

    def add(self, info: Participant) -> LiveParticipant:
        with self.lock:
            p = self.participants.get(info.id)
            if p is None:
                p = self.participants[info.id] = LiveParticipant(info, self.info, self.keep_s)
            return p

    def count(self, records: Sequence[SecondRecord]) -> None:
        with self.lock:
            for r in records:
                self.counts.setdefault(r.second, Counter())[r.emotion or ""] += 1
            if len(self.counts) > self.keep_s:
                for second in sorted(self.counts)[: len(self.counts) - self.keep_s]:
                    del self.counts[second]

    def snapshot(self, timeline_s: int = 300, **flag_args) -> dict:
        """What the dashboard shows now (the same shape as :func:`moodlens.web.dashboard.review`)."""
        now = self.now()
        second = int(math.floor(now))
        classes = self.info.classes
        with self.lock:
            people = list(self.participants.values())
            counts = {s: c.copy() for s, c in self.counts.items() if s > second - timeline_s}
        tiles = [p.view(second, **flag_args) for p in people]
        seconds = sorted(counts)
        # the class mood now: the newest second that is closed for everyone sending (the
        # last point of the timeline), so the mood and the stored numbers agree
        latest = next((s for s in reversed(seconds) if s < second), None)
        current = counts.get(latest, Counter())
        judged = sum(v for k, v in current.items() if k)
        mood = {c: (current[c] / judged if judged else 0.0) for c in classes}
        timeline = {"seconds": seconds,
                    "shares": [_shares(counts[s], classes) for s in seconds],
                    "judged": [sum(v for k, v in counts[s].items() if k) for s in seconds]}
        return {"session": self.info.to_dict(), "classes": list(classes), "live": not self.ended,
                "now": round(now, 2), "mood": mood, "judged": judged,
                "present": sum(t["connected"] for t in tiles), "participants": tiles, "timeline": timeline,
                "flagged": sum(bool(t["flags"]) for t in tiles)}


def _shares(counts: Counter, classes: Sequence[str]) -> list[float]:
    judged = sum(v for k, v in counts.items() if k)
    return [round(counts[c] / judged, 4) if judged else 0.0 for c in classes]


def spark(records: Sequence[SecondRecord], bins: int = 120) -> list[list]:
    """A participant's sparkline: ``[second, emotion or None, confidence]`` per second, or per bin
    (most frequent emotion, its mean probability) when there are more than ``bins`` seconds."""
    if not records:
        return []
    size = max(1, math.ceil(len(records) / bins))
    out = []
    for i in range(0, len(records), size):
        chunk = records[i:i + size]
        emotions = Counter(r.emotion for r in chunk if r.emotion)
        if not emotions:
            out.append([chunk[0].second, None, 0.0])
            continue
        top = emotions.most_common(1)[0][0]
        conf = sum(r.scores.get(top, 0.0) for r in chunk if r.emotion == top) / emotions[top]
        out.append([chunk[0].second, top, round(conf, 3)])
    return out


class GalleryTiles:
    """Turns a shared meeting gallery into participants: each face goes to the tile it is in,
    found by position (centres in frame fractions), so a face that is lost and found again in
    the same tile stays the same participant; a face in a new place becomes a new participant.

    Args:
        create: makes the participant for a new tile (``create(n)`` for the n-th tile).
        reach: a face belongs to a known tile when its centre is within ``reach`` face sizes.
    """

    def __init__(self, recognizer: Recognizer, create: Callable[[int], LiveParticipant], reach: float = 0.75):
        self.stream = recognizer.open_stream(detect_every=2)
        self.create, self.reach = create, reach
        self.tiles: dict[int, tuple[float, float, float]] = {}  # participant id -> (cx, cy, size)
        self.by_track: dict[int, int] = {}  # tracker id -> participant id
        # Two sockets can share one gallery (two teacher tabs, a reconnect that overlaps the old
        # socket), each with frames on its own worker thread. ``lock`` is held around
        # ``stream.push`` + ``assign`` (one frame at a time); ``tiles_lock``, taken by ``assign``
        # and by whoever reads ``tiles`` or counts the tiles' connections, is held only briefly,
        # so the event loop may take it. ``sockets``: gallery sockets now connected.
        self.lock = threading.Lock()
        self.tiles_lock = threading.Lock()
        self.sockets = 0

    def assign(self, faces: list[Face], shape: tuple[int, int]) -> dict[int, Face | None]:
        """Participant id -> its face in this frame (None for known tiles without a face).
        ``create`` is called with ``tiles_lock`` held."""
        with self.tiles_lock:
            return self._assign(faces, shape)

    def _assign(self, faces: list[Face], shape: tuple[int, int]) -> dict[int, Face | None]:
        height, width = shape
        found: dict[int, Face | None] = {}
        unmatched = []
        for face in faces:
            pid = self.by_track.get(face.track_id)
            if pid is not None and pid not in found:
                found[pid] = face
            else:
                unmatched.append(face)
        for face in unmatched:
            x, y, w, h = face.box
            cx, cy, size = (x + w / 2) / width, (y + h / 2) / height, max(w / width, h / height)
            best, best_d = None, math.inf
            for pid, (tx, ty, ts) in self.tiles.items():
                d = math.hypot((cx - tx) * width / height, cy - ty) / max(ts, size)
                if pid not in found and d < best_d:
                    best, best_d = pid, d
            if best is None or best_d > self.reach:
                best = self.create(len(self.tiles) + 1).id
            self.by_track[face.track_id] = best
            found[best] = face
            self.tiles[best] = (cx, cy, size)
        for pid, face in found.items():
            x, y, w, h = face.box
            self.tiles[pid] = ((x + w / 2) / width, (y + h / 2) / height, max(w / width, h / height))
        live_tracks = {f.track_id for f in faces}
        self.by_track = {t: p for t, p in self.by_track.items() if t in live_tracks}
        return {pid: found.get(pid) for pid in self.tiles}
