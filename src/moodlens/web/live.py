"""Live class sessions: frames in, per-second records out, and what the dashboard shows.

Each live connection (a student's camera, the teacher's shared meeting gallery, the teacher's
own camera) keeps only its newest frame in a :class:`Latest` slot and has at most one frame in
recognition at a time, on a shared worker pool: a slow or flooding client only ever waits for
itself. Recognition uses one shared :class:`~moodlens.recognizer.Recognizer` and one
:class:`~moodlens.recognizer.FaceStream` per connection.

Every participant has its own :class:`~moodlens.aggregate.Timeline`; the seconds it closes go to
the :class:`Recorder`, which writes them to the store in batches on its own thread, and to the
:class:`LiveSession`, whose :class:`~moodlens.attention.ClassWatch` raises the flags the dashboard
shows (the same the stored review shows) and whose recent seconds give the class mood and the
share of the class facing the screen (a session that reads no emotion has no mood).
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from moodlens.aggregate import SecondRecord, Timeline, attending
from moodlens.attention import NO_FACE, ClassWatch, Rules, Watch
from moodlens.faces import Face, Frame
from moodlens.focus import CAMERA_OFF
from moodlens.journal import Journal
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
        self.camera_off = False  # paused or stopped on their page, not gone
        self.lock = threading.Lock()

    @property
    def id(self) -> int:
        return self.info.id

    def observe(self, face: Face | None, t: float) -> list[SecondRecord]:
        """Add this participant's face (None: no face) in a frame at session time ``t``;
        returns the seconds this closed."""
        seen = Face(face.box, scores=dict(face.scores), emotion=face.emotion, status=face.status,
                    pose=face.pose) if face else Face((0, 0, 0, 0), status=NO_FACE)
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

    def view(self, now: int, watch: Watch | None, classes: tuple[str, ...], acknowledged: set[int],
             attended: Mapping[str | None, int] | None = None, emotions: bool = True, spark_s: int = 60) -> dict:
        """The dashboard tile at ``now`` (the current session second): connection status, the
        attention state now (``attention``: a :mod:`moodlens.focus` state, None while unknown),
        the share of the lesson so far spent facing the screen (``attending``, from ``attended``,
        this participant's face-seconds by state), a line of the last ``spark_s`` seconds'
        states (``focus``) and the flags up now; with ``emotions``, also the current emotion, a
        sparkline of them and the usual expression.

        ``status``: ``left`` (sent before, gone now; ``left_at`` says when), ``offline`` (not
        sending: a camera not started, paused or stopped, a gallery tile whose share ended), ``unknown`` (connected but
        no frame for 3 s), ``no_face``, or the face's status."""
        with self.lock:
            recent = [r for r in self.recent if r.second > now - spark_s]
            face, last_frame = self.face, self.last_frame
        connected = self.connections > 0
        stale = last_frame is None or now - last_frame > 3
        last_sent = last_frame if last_frame is not None else watch.last_seen if watch else None
        if not connected:
            gone = last_sent is not None and self.info.source == "student" and not self.camera_off
            status = "left" if gone else OFFLINE
        else:
            status = "unknown" if stale else NO_FACE if face is None else face.status
        flags = watch.flags() if watch else []
        # a participant who left is "left", not flagged; a tile whose share ended is watched by no one
        up = [f for f in flags if f.end is None] if connected else []
        tile = {**self.info.to_dict(), "connected": connected, "status": status,
                "left_at": int(last_sent) if status == "left" else None,
                "attention": CAMERA_OFF if not connected else None if stale or not recent else recent[-1].attention,
                "attending": attending(attended or {})["share"], "focus": focus_line(recent),
                "flags": [{**f.to_dict(now - 1), "acknowledged": f.start in acknowledged} for f in up],
                "past": [f.to_dict() for f in flags if f.end is not None]}
        if emotions:
            showing = connected and not stale and face is not None
            tile.update({
                "emotion": face.emotion if showing else None,
                "confidence": round(face.confidence, 3) if showing else 0.0,
                "usual": watch.usual_emotion(classes) if watch else None,
                "deviation": round(watch.last_deviation, 3) if watch and watch.baseline is not None else None,
                # more negative than usual just now, not (yet) for long enough to flag: a lighter tint
                "rising": bool(connected and not up and watch and watch.baseline is not None and watch.last_vote > 0),
                "spark": spark(recent)})
        return tile


class LiveSession:
    """An open class session: its participants, their recent seconds and the class's
    :class:`~moodlens.attention.ClassWatch`, stepped a little behind the clock.

    Args:
        settle_s: seconds the watch stays behind now at least. A participant's second closes when
            their next frame has been analysed; until then it is unknown. The watch takes a second
            only once everyone connected has closed it (or it is ``lag_s`` old: a stalled camera),
            so a busy server delays the live flags instead of making them differ from the review.
        lag_s: the most the watch waits for a connected participant's seconds.
        mood_s: the class mood is taken over this many closed seconds.
    """

    def __init__(self, info: Session, clock: Callable[[], float], keep_s: int = 900, settle_s: int = 2,
                 lag_s: int = 10, mood_s: int = 30, rules: Rules | None = None):
        self.info, self.clock, self.keep_s, self.mood_s = info, clock, keep_s, mood_s
        self.settle_s, self.lag_s = settle_s, lag_s
        self.participants: dict[int, LiveParticipant] = {}
        self.seconds: dict[int, dict[int, SecondRecord]] = {}  # second -> participant id -> record
        self.closed: dict[int, int] = {}  # participant id -> newest second closed
        self.watch = ClassWatch(info.classes, rules, emotions=info.emotions)
        self.attended: dict[int, Counter] = {}  # participant id -> face-seconds by attention state, as stepped
        self.acknowledged: dict[int, set[int]] = {}  # participant id -> starts of acknowledged flags
        self.lock = threading.Lock()
        self.gallery = None  # the shared gallery's tiles (web.tiles.GalleryTiles) once shared
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
                self.seconds.setdefault(r.second, {})[r.track_id] = r
                self.closed[r.track_id] = max(r.second, self.closed.get(r.track_id, r.second))
            if len(self.seconds) > self.keep_s:
                for second in sorted(self.seconds)[: len(self.seconds) - self.keep_s]:
                    del self.seconds[second]

    def replay(self, records: Iterable[SecondRecord]) -> None:
        """Count stored seconds and step the watch through them, a window at a time: a session
        revived after a restart then has the flags, baselines and lesson attention of the whole
        lesson, not only of the ``keep_s`` seconds it keeps."""
        by_second: dict[int, list[SecondRecord]] = {}
        for r in records:
            by_second.setdefault(r.second, []).append(r)
        seconds = sorted(by_second)
        step = max(1, self.keep_s // 2)  # counting a window never drops a second the watch has not taken
        for i in range(0, len(seconds), step):
            window = seconds[i:i + step]
            self.count([r for second in window for r in by_second[second]])
            with self.lock:
                self.advance(window[-1])

    def acknowledge(self, participant_id: int, start: int) -> bool:
        """Mark the flag of a participant that started at ``start`` as seen by the teacher."""
        with self.lock:
            w = self.watch.watches.get(participant_id)
            if w is None or not any(f.start == start for f in w.flags()):
                return False
            self.acknowledged.setdefault(participant_id, set()).add(start)
            return True

    def advance(self, until: int) -> None:
        """Step the watch through the seconds up to ``until``, counting each participant's
        face-seconds by attention state as it goes (call with ``lock`` held)."""
        start = self.watch.second + 1 if self.watch.second is not None else min(self.seconds, default=until + 1)
        for second in range(start, until + 1):
            records = self.seconds.get(second, {})
            self.watch.step(second, records)
            for pid, r in records.items():
                self.attended.setdefault(pid, Counter())[r.attention] += 1

    def snapshot(self, timeline_s: int = 300) -> dict:
        """What the dashboard shows now (the same shape as :func:`moodlens.web.dashboard.review`):
        the tiles, the share of the class facing the screen in the newest second the watch has
        taken (``attending_now``) and over the lesson so far (``attending``), the class timeline
        and, unless the session reads no emotion, the class mood."""
        now = self.now()
        second = int(math.floor(now))
        classes, emotions = self.info.classes, self.info.emotions
        with self.lock:
            people = list(self.participants.values())
            waiting = [self.closed[p.id] for p in people if p.connections > 0 and p.id in self.closed]
            self.advance(max(second - self.lag_s, min([second - self.settle_s, *waiting])))
            tiles = [p.view(second, self.watch.watches.get(p.id), classes, self.acknowledged.get(p.id, set()),
                            self.attended.get(p.id), emotions) for p in people]
            settled = self.watch.second if self.watch.second is not None else -1
            window = {s: dict(rs) for s, rs in self.seconds.items() if s > second - timeline_s}
            lesson = sum(self.attended.values(), Counter())
        tiles.sort(key=attention_order)
        # the seconds the watch has taken: a second one student has closed and the others not yet
        # would show that one student's reading as the whole class's
        seconds = sorted(s for s in window if s <= settled)
        states = [Counter(r.attention for r in window[s].values()) for s in seconds]
        view = {"session": self.info.to_dict(), "live": not self.ended, "now": round(now, 2),
                "present": sum(t["connected"] for t in tiles), "participants": tiles,
                "attending_now": attending(states[-1] if states else Counter()), "attending": attending(lesson),
                "timeline": {"seconds": seconds, **attention_series(states)},
                "flagged": sum(any(not f["acknowledged"] for f in t["flags"]) for t in tiles)}
        if emotions:
            latest = seconds[-1] if seconds else second - 1
            mood, faces = window_mood([r for s in seconds if s > latest - self.mood_s for r in window[s].values()],
                                      classes)
            view.update(classes=list(classes), mood=mood, judged=faces, mood_s=self.mood_s)
            view["timeline"].update(shares=[_shares(window[s].values(), classes) for s in seconds],
                                    judged=[sum(1 for r in window[s].values() if r.emotion) for s in seconds])
        return view


def attention_series(states: Sequence[Counter]) -> dict:
    """A timeline's attention, point by point from each point's face-seconds by state: the share
    facing the screen (``attending``, None where no camera was on) and the face-seconds with the
    camera on (``on_camera``)."""
    points = [attending(c) for c in states]
    return {"attending": [p["share"] for p in points], "on_camera": [p["on_camera"] for p in points]}


def attention_order(tile: dict) -> tuple:
    """Flagged participants first (not yet acknowledged before acknowledged), then by name."""
    open_flags = [f for f in tile["flags"] if not f.get("acknowledged")]
    return (0 if open_flags else 1 if tile["flags"] else 2, tile["name"].lower(), tile["id"])


def window_mood(records: Sequence[SecondRecord], classes: Sequence[str]) -> tuple[dict[str, float], int]:
    """The class mood over some seconds: the share of each emotion among the face-seconds read,
    and how many participants those seconds come from."""
    shares = dict(zip(classes, _shares(records, classes)))
    return shares, len({r.track_id for r in records if r.emotion})


def _shares(records: Iterable[SecondRecord], classes: Sequence[str]) -> list[float]:
    counts = Counter(r.emotion for r in records if r.emotion)
    judged = sum(counts.values())
    return [round(counts[c] / judged, 4) if judged else 0.0 for c in classes]


def _binned(records: Sequence[SecondRecord], bins: int, start: int | None) -> dict[int, list[SecondRecord]]:
    """Records by fixed stretches of time from ``start`` (default: the first record), each as
    long as makes at most ``bins`` of them up to the last record; seconds without a record stay
    gaps."""
    if not records:
        return {}
    start = records[0].second if start is None else start
    size = max(1, math.ceil((records[-1].second - start + 1) / bins))
    chunks: dict[int, list[SecondRecord]] = {}
    for r in records:
        chunks.setdefault(start + (r.second - start) // size * size, []).append(r)
    return chunks


def spark(records: Sequence[SecondRecord], bins: int = 120, start: int | None = None) -> list[list]:
    """A participant's sparkline: ``[second, emotion or None, confidence]`` per second, or per bin
    of seconds (most frequent emotion, its mean probability) when they span more than ``bins``
    seconds from ``start`` (default: the first record)."""
    out = []
    for second, chunk in _binned(records, bins, start).items():
        emotions = Counter(r.emotion for r in chunk if r.emotion)
        if not emotions:
            out.append([second, None, 0.0])
            continue
        top = emotions.most_common(1)[0][0]
        conf = sum(r.scores.get(top, 0.0) for r in chunk if r.emotion == top) / emotions[top]
        out.append([second, top, round(conf, 3)])
    return out


def focus_line(records: Sequence[SecondRecord], bins: int = 120, start: int | None = None) -> list[list]:
    """A participant's attention over time, binned as :func:`spark`: ``[second, state]`` (the
    most frequent :mod:`moodlens.focus` state of the bin; None where it was not known)."""
    return [[second, Counter(r.attention for r in chunk).most_common(1)[0][0]]
            for second, chunk in _binned(records, bins, start).items()]
