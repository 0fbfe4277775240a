"""Load test of a class session: simulated students send camera frames to a MoodLens server on
this machine, and every second of every student must end up stored.

    python scripts/load_test.py                       # 25 students, 320x240, 2 frames/s, 60 s
    python scripts/load_test.py --students 50 --seconds 30
    python scripts/load_test.py --mode scores --students 1000   # browser-mode students: scores only

It starts ``moodlens.web.server.serve`` in a subprocess on a free loopback port with a fresh
SQLite database (or uses ``--url``/``--token`` of a server already running on loopback), opens a
session, joins the students over the HTTP API, and streams from each over its own WebSocket:
faces cut from the shared photos, one per student, moved a few pixels frame to frame. It reports
errors, round-trip latency (frame sent -> answer received) p50/p95/max, the server's own time per
frame, the server process's CPU use, and checks the stored per-second records: every whole second
that a student sent frames in must be in the export. Exits 1 if any check fails.

``--mode scores`` simulates students whose browsers analyse their cameras themselves (browser
mode): each sends small JSON score messages (a face box and seven probabilities, as
static/scores.js does) to ``/ws/student/scores`` instead of pictures.

Traffic goes only to 127.0.0.1/localhost/::1, bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Student:
    name: str
    frames: list[bytes]
    token: str = ""
    participant_id: int = 0
    sent: dict[int, float] = field(default_factory=dict)
    sent_seconds: set[int] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    frames_sent: int = 0
    with_face: int = 0
    answers: int = 0
    dropped: int = 0


def webcam_frames(size: tuple[int, int], count: int, variants: int = 4) -> list[list[bytes]]:
    """``count`` students' frames: a face from the shared photos per student (cycled), framed
    like a webcam (face about 45 % of the height), ``variants`` frames shifted a few pixels."""
    from moodlens.gallery import shared_participants

    width, height = size
    people = shared_participants()
    out = []
    for i in range(count):
        image, (x, y, w, h) = people[i % len(people)]
        crop_h = h / 0.45
        crop_w = crop_h * width / height
        cx, cy = x + w / 2, y + h / 2 + 0.05 * crop_h
        frames = []
        for v in range(variants):
            dx, dy = 3 * np.sin(v + i), 3 * np.cos(v + i)
            m = np.array([[width / crop_w, 0, width / 2 - (cx + dx) * width / crop_w],
                          [0, height / crop_h, height / 2 - (cy + dy) * height / crop_h]])
            frame = cv2.warpAffine(image, m, (width, height), borderMode=cv2.BORDER_REPLICATE)
            frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 75])[1].tobytes())
        out.append(frames)
    return out


def score_messages(count: int, variants: int = 4, seed: int = 0) -> list[list[str]]:
    """``count`` browser-mode students' messages: what the student page sends for a face at
    320x240, the box moving a little and the probabilities changing, one message in ten without
    a face."""
    from moodlens.classes import FER2013_CLASSES

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        messages = []
        for v in range(variants * 10):
            if v % 10 == 9:
                messages.append(json.dumps({"face": None}))
                continue
            p = rng.dirichlet(np.ones(len(FER2013_CLASSES)))
            x, y = int(100 + rng.integers(-4, 5)), int(50 + rng.integers(-4, 5))
            messages.append(json.dumps({"face": {"box": [x, y, 110, 128],
                                                 "scores": {c: round(float(q), 4) for c, q in zip(FER2013_CLASSES, p)}}}))
        out.append(messages)
    return out


def start_server(port: int, db: str, token: str, participants: int = 200) -> subprocess.Popen:
    """``participants``: the session's cap (the server's default is 200; a load test may need more)."""
    code = ("from moodlens.web.server import serve; from moodlens.web.uploads import Limits; "
            f"serve('127.0.0.1', {port}, {db!r}, limits=Limits(participants={participants}))")
    env = {**os.environ, "MOODLENS_TOKEN": token, "MOODLENS_DATA": str(Path(db).parent)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def wait_until_up(http, server: subprocess.Popen | None, tries: int = 300) -> None:
    """Wait for ``/healthz`` to answer (a minute at most); a server that exits first ends the run."""
    import httpx

    for _ in range(tries):
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server is not None and server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stdout.read().decode()[-2000:]}")
        await asyncio.sleep(0.2)
    raise SystemExit("the server did not answer /healthz within a minute")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_student(student: Student, address: str, started_at: float, fps: float, seconds: float,
                      t0: float, path: str = "/ws/student") -> None:
    import websockets

    try:
        async with websockets.connect(f"ws://{address}{path}?token={student.token}", max_size=2**22,
                                      open_timeout=60) as ws:
            async def receive() -> None:
                async for message in ws:
                    now = time.time()
                    reply = json.loads(message)
                    if "error" in reply:
                        student.errors.append(reply["error"])
                        continue
                    student.answers += 1
                    student.with_face += bool(reply.get("faces") or reply.get("face"))
                    student.dropped = reply.get("dropped", 0)
                    student.server_ms.append(reply.get("ms", 0.0))
                    sent = student.sent.pop(reply["seq"], None)
                    if sent is not None:
                        student.latencies.append(now - sent)
                    for seq in [s for s in student.sent if s < reply["seq"]]:
                        student.sent.pop(seq)

            receiver = asyncio.create_task(receive())
            n = int(seconds * fps)
            for k in range(n):
                await asyncio.sleep(max(0.0, t0 + k / fps - time.time()))
                now = time.time()
                student.sent[k + 1] = now
                student.sent_seconds.add(int(now - started_at))
                await ws.send(student.frames[k % len(student.frames)])
                student.frames_sent += 1
            await asyncio.sleep(2.0)  # the last answers
            receiver.cancel()
    except Exception as exc:  # a refused or broken connection is an error of the run, not a crash
        student.errors.append(f"{type(exc).__name__}: {exc}")


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


async def main_async(args) -> int:
    import httpx

    own_server = args.url is None
    if own_server:
        port = free_port()
        workdir = Path(tempfile.mkdtemp(prefix="moodlens-load-"))
        token = secrets.token_urlsafe(16)
        server = start_server(port, str(workdir / "load.db"), token, participants=max(200, args.students))
        address = f"127.0.0.1:{port}"
    else:
        parts = urlsplit(args.url)
        if parts.hostname not in LOOPBACK:
            raise SystemExit("load tests go to this machine only: use a 127.0.0.1/localhost URL")
        address, token, server = parts.netloc, args.token, None
    base = f"http://{address}"
    auth = {"Authorization": f"Bearer {token}"}
    if args.mode == "scores":
        print(f"preparing {args.students} browser-mode students' score messages...", flush=True)
        frames, path = score_messages(args.students), "/ws/student/scores"
    else:
        print(f"preparing {args.students} students' frames ({args.width}x{args.height})...", flush=True)
        frames, path = webcam_frames((args.width, args.height), args.students), "/ws/student"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await wait_until_up(http, server)
            r = await http.post("/api/sessions", json={"title": f"load test {args.students} students"}, headers=auth)
            r.raise_for_status()
            session = r.json()["session"]
            students = [Student(f"Student {i + 1:02d}", frames[i]) for i in range(args.students)]
            for s in students:
                r = await http.post("/api/join", json={"code": session["code"], "name": s.name})
                r.raise_for_status()
                s.token, s.participant_id = r.json()["token"], r.json()["participant"]["id"]
                http.cookies.clear()
            cpu0 = cpu_seconds(server.pid) if server else None
            load0, client0 = os.getloadavg(), time.process_time()
            print(f"streaming for {args.seconds:.0f} s at {args.fps:g} frames/s...", flush=True)
            t0 = time.time() + 0.5 + len(students) / 100  # time to open every socket first
            begin = time.perf_counter()
            # students start spread over one frame interval, like real people
            await asyncio.gather(*(run_student(s, address, session["started_at"], args.fps, args.seconds,
                                               t0 + i / (args.fps * len(students)), path)
                                   for i, s in enumerate(students)))
            wall = time.perf_counter() - begin
            cpu = cpu_seconds(server.pid) - cpu0 if server else None
            client_cpu = time.process_time() - client0
            load1 = os.getloadavg()
            r = await http.post(f"/api/sessions/{session['id']}/end", headers=auth)
            r.raise_for_status()
            export = (await http.get(f"/api/sessions/{session['id']}/export?format=json", headers=auth)).json()
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

    stored: dict[int, set[int]] = {}
    for row in export["seconds"]:
        stored.setdefault(row["participant_id"], set()).add(row["second"])
    missing = {}
    for s in students:
        # every whole second inside the stream (the first and last may hold a partial frame pair)
        expected = set(range(min(s.sent_seconds) + 1, max(s.sent_seconds))) if s.sent_seconds else set()
        gap = sorted(expected - stored.get(s.participant_id, set()))
        if gap:
            missing[s.name] = gap
    latencies = [v * 1e3 for s in students for v in s.latencies]
    server_ms = [v for s in students for v in s.server_ms]
    errors = [e for s in students for e in s.errors]
    sent = sum(s.frames_sent for s in students)
    answers = sum(s.answers for s in students)
    report = {
        "mode": args.mode, "students": args.students,
        "frame_size": f"{args.width}x{args.height}" if args.mode == "frames" else None,
        "messages_per_second_per_student": args.fps,
        "seconds": args.seconds, "wall_s": round(wall, 1), "frames_sent": sent, "answers": answers,
        "answers_with_a_face": sum(s.with_face for s in students),
        "dropped_stale_frames": sum(s.dropped for s in students), "errors": len(errors),
        "latency_ms": {"p50": round(percentile(latencies, 50), 1), "p95": round(percentile(latencies, 95), 1),
                       "max": round(max(latencies, default=float("nan")), 1)},
        "server_ms_per_frame": {"p50": round(percentile(server_ms, 50), 1),
                                "p95": round(percentile(server_ms, 95), 1)},
        "server_cpu_s": None if cpu is None else round(cpu, 1),
        "server_cpu_cores_used": None if cpu is None else round(cpu / wall, 2),
        "client_cpu_cores_used": round(client_cpu / wall, 2),
        "load_average_before_after": [round(load0[0], 2), round(load1[0], 2)],
        "stored_rows": len(export["seconds"]),
        "students_with_missing_seconds": len(missing),
    }
    print(json.dumps(report, indent=1))
    for name, gap in list(missing.items())[:5]:
        print(f"  {name}: missing seconds {gap[:10]}{' ...' if len(gap) > 10 else ''}")
    for error in errors[:5]:
        print(f"  error: {error}")
    ok = not errors and not missing and answers > 0
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["frames", "scores"], default="frames",
                        help="students send camera frames (server-side analysis) or scores (browser mode)")
    parser.add_argument("--students", type=int, default=25)
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second per student")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--url", help="a running server on loopback (default: start one)")
    parser.add_argument("--token", help="the teacher token of --url")
    args = parser.parse_args()
    if args.url and not args.token:
        parser.error("--url needs --token")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
