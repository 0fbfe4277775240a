"""A simulated class through the real server: do the "may need attention" flags go to the right
students, soon, and without blinking?

    python scripts/class_sim.py                        # 20 students, 2 frames/s, 90 s
    python scripts/class_sim.py --seed 2 --students 30 --changers 5

Starts ``moodlens serve`` on a free loopback port with a fresh SQLite database (as
``scripts/load_test.py`` does), opens a session and joins the students over the HTTP API. Each
student streams 320x240 JPEG webcam frames of one FER2013 **PublicTest** face (never PrivateTest)
over the student WebSocket: the calm students a face most FER+ annotators called neutral, all
lesson; the changers such a face for ``--change-at`` seconds, then a face most annotators called
sad, fear or angry. The dashboard is polled every second. Faces are drawn at random (``--seed``)
among those the detector finds in a webcam frame; the emotion model's own reading of them is
never looked at.

Bars (exit 1 when one fails):
- at most ``--max-calm-flagged`` students ever flagged while calm, live or in the stored review;
- at least ``--min-caught`` changers flagged within ``--within`` seconds of their change;
- no flag that goes off and comes back while its cause lasts (live), and one flag per change in
  the review.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import free_port, start_server, wait_until_up  # noqa: E402

from moodlens.aggregate import NEGATIVE  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fer2013"


@dataclass
class Student:
    name: str
    calm: list[bytes]
    changed: list[bytes] | None = None  # None: calm all lesson
    token: str = ""
    participant_id: int = 0
    change_second: float | None = None  # session time of the change
    stop_second: float | None = None  # session time of the last frame
    polls: list[tuple[float, bool, list]] = field(default_factory=list)  # (session time, flagged, flags)
    errors: list[str] = field(default_factory=list)


def webcam(face: np.ndarray, rng: np.random.Generator, variants: int = 4, size: int = 150) -> list[bytes]:
    """A 48x48 grey face as 320x240 webcam JPEGs: the face ``size`` px tall on a plain wall,
    moved a few pixels and lit a little differently frame to frame."""
    wall = int(rng.integers(60, 200))
    frames = []
    for _ in range(variants):
        frame = np.full((240, 320), wall, np.uint8)
        dx, dy = rng.integers(-4, 5, 2)
        x, y = (320 - size) // 2 + dx, (240 - size) // 2 + dy
        frame[y:y + size, x:x + size] = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
        frame = np.clip(frame.astype(np.float32) * rng.uniform(0.92, 1.08), 0, 255).astype(np.uint8)
        frames.append(cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])[1]
                      .tobytes())
    return frames


def agreed(faces, votes: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks of a FER+-labelled :class:`~moodlens.training.data.FaceSet`: the faces at least ``votes`` of
    the annotators called neutral (calm), and those at least ``votes`` called sad, fear or angry
    in any mix (negative)."""
    col = {c: i for i, c in enumerate(faces.classes)}
    return faces.soft[:, col["neutral"]] >= votes, sum(faces.soft[:, col[c]] for c in NEGATIVE) >= votes


def choose_faces(calm_n: int, negative_n: int, seed: int, votes: float) -> tuple[list, list]:
    """PublicTest faces by FER+ votes: ``calm_n`` where at least ``votes`` of the annotators said
    neutral, ``negative_n`` where at least ``votes`` said sad, fear or angry (any mix); only faces
    the detector finds in a webcam frame."""
    from moodlens.detect import create_detector
    from moodlens.training.data import load_fer2013

    faces = load_fer2013(SHARED / "fer2013.csv.gz", "PublicTest", ferplus=SHARED / "fer2013new.csv")
    calm, negative = agreed(faces, votes)
    rng = np.random.default_rng(seed)
    detector = create_detector()

    def pick(pool: np.ndarray, n: int) -> list[np.ndarray]:
        out = []
        for i in rng.permutation(pool):
            frame = np.full((240, 320, 3), 128, np.uint8)
            frame[45:195, 85:235] = cv2.cvtColor(cv2.resize(faces.images[i], (150, 150)), cv2.COLOR_GRAY2BGR)
            if detector.detect(frame):
                out.append(faces.images[i])
            if len(out) == n:
                return out
        raise SystemExit(f"only {len(out)} usable PublicTest faces for {n} students")

    return pick(np.where(calm)[0], calm_n), pick(np.where(negative)[0], negative_n)


async def stream(student: Student, address: str, started_at: float, fps: float, seconds: float, t0: float,
                 change_at: float) -> None:
    import websockets

    try:
        async with websockets.connect(f"ws://{address}/ws/student?token={student.token}", max_size=2**22) as ws:
            async def drain() -> None:
                async for message in ws:
                    reply = json.loads(message)
                    if "error" in reply:
                        student.errors.append(reply["error"])

            reader = asyncio.create_task(drain())
            for k in range(int(seconds * fps)):
                await asyncio.sleep(max(0.0, t0 + k / fps - time.time()))
                changed = student.changed is not None and k / fps >= change_at
                if changed and student.change_second is None:
                    student.change_second = time.time() - started_at
                frames = student.changed if changed else student.calm
                await ws.send(frames[k % len(frames)])
                student.stop_second = time.time() - started_at
            await asyncio.sleep(1.0)
            reader.cancel()
    except Exception as exc:  # a refused or broken connection is a failure of the run, not a crash
        student.errors.append(f"{type(exc).__name__}: {exc}")


async def poll(http, session: dict, students: list[Student], auth: dict, until: float) -> None:
    by_id = {s.participant_id: s for s in students}
    next_t = time.time()
    while next_t < until:
        snap = (await http.get(f"/api/sessions/{session['id']}", headers=auth)).json()
        for tile in snap["participants"]:
            s = by_id.get(tile["id"])
            if s is not None:
                s.polls.append((snap["now"], bool(tile["flags"]), tile["flags"]))
        next_t += 1.0
        await asyncio.sleep(max(0.0, next_t - time.time()))


def model_reading(export: dict, student: Student) -> dict:
    """What the model read for a changer: the mean share of sad + fear + angry in the stored
    seconds before and after the change (a miss where it barely moved is the model's, not the flags')."""
    mine = [r for r in export["seconds"] if r["participant_id"] == student.participant_id and r["emotion"]]
    change = int(student.change_second)

    def mean(rows: list) -> float | None:
        return round(float(np.mean([sum(r["scores"].get(c, 0.0) for c in NEGATIVE) for r in rows])), 2) if rows else None

    return {"negative_before": mean([r for r in mine if r["second"] < change]),
            "negative_after": mean([r for r in mine if r["second"] > change])}


def judge(students: list[Student], review: dict, export: dict, within: float) -> dict:
    """The bars' figures from the live polls and the stored review."""
    stored = {t["id"]: t["flags"] for t in review["participants"]}
    calm_flagged, caught, blinks, delays, extra_review = [], [], [], {}, []
    for s in students:
        change = s.change_second if s.changed is not None else None
        live_calm = any(flagged and (change is None or t < change) for t, flagged, _ in s.polls)
        review_calm = any(change is None or f["start"] < int(change) for f in stored.get(s.participant_id, []))
        if live_calm or review_calm:
            calm_flagged.append({"name": s.name, "live": live_calm, "review": review_calm,
                                 "flags": stored.get(s.participant_id, [])})
        if change is None:
            continue
        after = [(t, flagged) for t, flagged, _ in s.polls if t >= change]
        first = next((t for t, flagged in after if flagged), None)
        if first is not None:
            delays[s.name] = round(first - change, 1)
            if first - change <= within:
                caught.append(s.name)
            # while the cause lasts (the changed face is sent): off and on again is a blink
            states = [flagged for t, flagged in after if first <= t <= s.stop_second]
            if any(not a and b for a, b in zip(states, states[1:])):
                blinks.append(s.name)
        if len([f for f in stored.get(s.participant_id, []) if f["start"] >= int(change)]) > 1:
            extra_review.append(s.name)
    changers = {s.name: {"usual": next(t["usual"] for t in review["participants"] if t["id"] == s.participant_id),
                         "review_flags": [f["text"] for f in stored.get(s.participant_id, [])],
                         **model_reading(export, s)}
                for s in students if s.changed is not None}
    return {"calm_ever_flagged": calm_flagged, "changers_caught": caught, "delay_s": delays,
            "blinking": blinks, "split_in_review": extra_review, "changers": changers}


async def main_async(args) -> int:
    import httpx

    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="moodlens-class-"))
    token = secrets.token_urlsafe(16)
    print(f"choosing PublicTest faces (seed {args.seed})...", flush=True)
    calm_faces, sad_faces = choose_faces(args.students, args.changers, args.seed, args.votes)
    rng = np.random.default_rng(args.seed)
    students = [Student(f"Student {i + 1:02d}", webcam(calm_faces[i], rng)) for i in range(args.students)]
    for s, face in zip(rng.choice(students, args.changers, replace=False), sad_faces):
        s.changed = webcam(face, rng)
    server = start_server(port, str(workdir / "class.db"), token)
    address, auth = f"127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http:
            await wait_until_up(http, server)
            r = await http.post("/api/sessions", json={"title": "class simulation"}, headers=auth)
            session = r.json()["session"]
            for s in students:
                r = await http.post("/api/join", json={"code": session["code"], "name": s.name})
                r.raise_for_status()
                s.token, s.participant_id = r.json()["token"], r.json()["participant"]["id"]
                http.cookies.clear()
            print(f"{args.students} students ({args.changers} change after {args.change_at:g} s), "
                  f"{args.seconds:g} s at {args.fps:g} frames/s...", flush=True)
            t0 = time.time() + 0.5
            await asyncio.gather(
                *(stream(s, address, session["started_at"], args.fps, args.seconds, t0 + i / (args.fps * len(students)),
                         args.change_at) for i, s in enumerate(students)),
                poll(http, session, students, auth, t0 + args.seconds + 1))
            (await http.post(f"/api/sessions/{session['id']}/end", headers=auth)).raise_for_status()
            review = (await http.get(f"/api/sessions/{session['id']}", headers=auth)).json()
            export = (await http.get(f"/api/sessions/{session['id']}/export?format=json", headers=auth)).json()
    finally:
        server.terminate()
        server.wait(timeout=30)

    figures = judge(students, review, export, args.within)
    errors = [e for s in students for e in s.errors]
    bars = {
        f"calm ever flagged <= {args.max_calm_flagged}": len(figures["calm_ever_flagged"]) <= args.max_calm_flagged,
        f"changers flagged within {args.within:g} s >= {args.min_caught}":
            len(figures["changers_caught"]) >= args.min_caught,
        "no blinking flag (live), one flag per change (review)":
            not figures["blinking"] and not figures["split_in_review"],
        "no errors": not errors,
    }
    print(json.dumps({"students": args.students, "changers": args.changers, "seed": args.seed,
                      "calm_ever_flagged": len(figures["calm_ever_flagged"]),
                      "changers_caught": f"{len(figures['changers_caught'])} of {args.changers}", **figures,
                      "polls_per_student": min(len(s.polls) for s in students), "errors": errors[:5],
                      "bars": bars}, indent=1))
    ok = all(bars.values())
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--changers", type=int, default=5, help="students who turn negative")
    parser.add_argument("--change-at", type=float, default=40.0, help="seconds calm before the change")
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--votes", type=float, default=0.7, help="share of FER+ annotators that must agree")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--within", type=float, default=20.0)
    parser.add_argument("--max-calm-flagged", type=int, default=1)
    parser.add_argument("--min-caught", type=int, default=4)
    args = parser.parse_args()
    if not 0 <= args.changers <= args.students:
        parser.error("--changers must be between 0 and --students")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
