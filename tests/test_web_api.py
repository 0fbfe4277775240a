"""The web app through its HTTP API and WebSockets (FastAPI's TestClient, no browser): access,
uploads and their limits, video jobs, live frames, class sessions with students and a shared
gallery, the dashboard, export and delete, and persistence across a restart."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import struct
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import sqlalchemy as sa

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from moodlens.gallery import make_gallery, shared_participants  # noqa: E402
from moodlens.recognizer import FaceStream, Recognizer  # noqa: E402
from moodlens.store import Store  # noqa: E402
from moodlens.web.server import create_app, default_recognizer  # noqa: E402
from moodlens.web.uploads import Limits, UploadError, image_size  # noqa: E402
from test_store import postgres_server  # noqa: E402, F401  (a fixture: a throwaway PostgreSQL server)

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
TOKEN = "teacher-secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STATUSES = {"ok", "too_small", "uncertain"}


class Clock:
    """Wall-clock time that tests move on by hand."""

    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return default_recognizer()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'web.db'}"


@pytest.fixture
def client(db, recognizer, clock):
    with TestClient(create_app(db, recognizer, TOKEN, clock=clock)) as c:
        yield c


def jpeg(name: str = "portrait.jpg", size: tuple[int, int] | None = (320, 240)) -> bytes:
    image = cv2.imread(str(MEDIA / name))
    assert image is not None, f"missing {MEDIA / name}"
    if size:
        image = cv2.resize(image, size)
    return cv2.imencode(".jpg", image)[1].tobytes()


def blank_jpeg(size=(320, 240)) -> bytes:
    return cv2.imencode(".jpg", np.full((size[1], size[0], 3), 90, np.uint8))[1].tobytes()


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def check_face(face: dict, classes) -> None:
    assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
    assert face["box"][2] > 0 and face["box"][3] > 0
    assert face["status"] in STATUSES
    assert face["emotion"] is None or face["emotion"] in classes
    if face["status"] == "ok":
        assert face["emotion"] in classes
    if face["scores"]:
        assert list(face["scores"]) == list(classes)
        assert sum(face["scores"].values()) == pytest.approx(1.0, abs=0.01)


def new_session(client, title: str = "Maths 3B") -> dict:
    r = client.post("/api/sessions", json={"title": title}, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()["session"]


def join(client, code: str, name: str) -> str:
    r = client.post("/api/join", json={"code": code, "name": name})
    assert r.status_code == 200, r.text
    client.cookies.clear()  # each student is a browser of their own; tests pass tokens explicitly
    return r.json()["token"]


# What would carry an emotion in an answer: the fields of faces, tiles, snapshots, reports and exports.
EMOTION_FIELDS = {"emotion", "scores", "mood", "mood_s", "classes", "judged", "shares", "usual", "deviation", "rising",
                  "spark", "shift", "drops", "mostly", "no_face_share", "away_s", "rules"}
EMOTION_WORDS = re.compile(r"(?<![a-z])(angry|disgust|fear|happy|sad|surprise|neutral|emotion|expression)s?(?![a-z])",
                           re.IGNORECASE)


def emotion_free(answer, where: str = "") -> None:
    """No emotion field anywhere in a JSON answer (at any depth) and no emotion named in it (a
    join code is letters and digits that may spell one)."""
    if isinstance(answer, dict):
        for key, value in answer.items():
            assert key not in EMOTION_FIELDS, f"{where}.{key}"
            if key != "code":
                emotion_free(value, f"{where}.{key}")
    elif isinstance(answer, list):
        for i, value in enumerate(answer):
            emotion_free(value, f"{where}[{i}]")
    elif isinstance(answer, str):
        assert not EMOTION_WORDS.search(answer), f"{where}: {answer}"


def send_frames(ws, clock: Clock, frames: list[bytes], step: float = 0.5) -> list[dict]:
    replies = []
    for data in frames:
        ws.send_bytes(data)
        replies.append(ws.receive_json())
        clock.t += step
    return replies


# --- access ----------------------------------------------------------------------------------

def test_healthz_needs_no_token(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["ok"] and r.json()["database"] == "ok"
    assert r.json()["storage"]["behind"] == 0


@pytest.mark.parametrize("method, path", [
    ("get", "/api/sessions"), ("post", "/api/sessions"), ("get", "/api/sessions/1"),
    ("delete", "/api/sessions/1"), ("get", "/api/sessions/1/export"), ("get", "/api/meta"),
    ("post", "/api/analyze"), ("post", "/api/videos"), ("get", "/api/videos/x"), ("patch", "/api/participants/1"),
])
def test_api_needs_the_teacher_token(client, method, path):
    r = getattr(client, method)(path)
    assert r.status_code == 401 and "error" in r.json()
    r = getattr(client, method)(path, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


@pytest.mark.parametrize("path", ["/", "/live", "/upload", "/sessions", "/sessions/1"])
def test_pages_send_strangers_to_login(client, path):
    r = client.get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_login_sets_a_cookie_that_opens_pages(client):
    for path in ("/login", "/join"):
        assert client.get(path).status_code == 200
    r = client.post("/login", data={"token": "wrong", "next": "/live"}, follow_redirects=False)
    assert r.headers["location"] == "/login?error=1&next=/live"  # a second try still opens /live
    r = client.post("/login", data={"token": TOKEN, "next": "/live"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/live"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    for path in ("/", "/live", "/upload", "/sessions"):
        page = client.get(path)
        assert page.status_code == 200 and "<html" in page.text
    assert client.get("/api/meta").json()["classes"] == ["angry", "disgust", "fear", "happy", "sad", "surprise",
                                                         "neutral"]


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/ok?x=//evil"])
def test_login_never_redirects_off_site(client, target):
    r = client.post("/login", data={"token": TOKEN, "next": target}, follow_redirects=False)
    assert r.headers["location"] == "/"


def test_serve_with_an_unusable_database_is_a_one_line_error(monkeypatch, capsys):
    import uvicorn

    from moodlens.cli import main

    def no_server(*args, **kwargs):
        raise AssertionError("a server was started")

    monkeypatch.setattr(uvicorn, "run", no_server)
    monkeypatch.setattr("moodlens.web.server.default_recognizer", no_server)  # the store must fail first
    assert main(["serve", "--db", "sqlite:////nonexistent/dir/x.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moodlens: error:") and err.count("\n") == 1, err


def test_generated_token_is_kept_in_the_database(db, recognizer, monkeypatch, capsys):
    monkeypatch.delenv("MOODLENS_TOKEN", raising=False)
    with TestClient(create_app(db, recognizer)):
        printed = capsys.readouterr().out
    token = printed.strip().split()[-1]
    assert "teacher token" in printed and len(token) >= 20
    store = Store(db)
    assert token not in str(store.get_setting("teacher_token_sha256"))  # only its hash is kept
    store.close()
    with TestClient(create_app(db, recognizer)) as c:
        assert capsys.readouterr().out == ""  # printed once, at the first start
        assert c.get("/api/sessions", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    monkeypatch.setenv("MOODLENS_TOKEN", "from-the-environment")
    with TestClient(create_app(db, recognizer)) as c:
        assert c.get("/api/sessions", headers={"Authorization": "Bearer from-the-environment"}).status_code == 200
        assert c.get("/api/sessions", headers={"Authorization": f"Bearer {token}"}).status_code == 401


# --- still images ----------------------------------------------------------------------------

def test_analyze_group_photo(client, recognizer):
    r = client.post("/api/analyze", files={"file": ("group.jpg", (MEDIA / "group.jpg").read_bytes(), "image/jpeg")},
                    headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["shape"] == [400, 600]
    assert len(body["faces"]) >= 7
    for face in body["faces"]:
        check_face(face, recognizer.classes)
        assert face["track_id"] is None


def test_an_uploaded_photo_is_read_with_each_face_averaged_with_its_mirror_image(client, recognizer):
    data = (MEDIA / "group.jpg").read_bytes()
    body = client.post("/api/analyze", files={"file": ("group.jpg", data, "image/jpeg")}, headers=AUTH).json()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    mirrored, single = recognizer.analyze_frame(image, tta=True), recognizer.analyze_frame(image)
    sent = np.array([list(f["scores"].values()) for f in body["faces"]])
    assert sent == pytest.approx(np.array([list(f.scores.values()) for f in mirrored.faces]), abs=1e-3)
    assert np.abs(sent - np.array([list(f.scores.values()) for f in single.faces])).max() > 0.01
    assert recognizer.tta is False  # the live paths still read single pass


@pytest.mark.parametrize("name, data, status", [
    ("notes.txt", b"just some text, not an image", 415),
    ("empty.jpg", b"", 400),
    ("cut.jpg", None, 400),  # a JPEG cut after its header
    ("bomb.png", png_header(60_000, 60_000) + b"\x00" * 100, 413),
    ("video.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100, 415),
    ("fake.png", png_header(100, 100) + b"garbage", 400),
])
def test_analyze_refuses_bad_images_with_json(client, name, data, status):
    if data is None:
        data = jpeg()[:200]
    session = new_session(client)
    r = client.post("/api/analyze", files={"file": (name, data, "image/jpeg")}, headers=AUTH)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json") and r.json()["error"]
    assert client.get(f"/api/sessions/{session['id']}", headers=AUTH).status_code == 200  # nothing lost


def test_analyze_decodes_on_a_worker_thread(client, monkeypatch):
    import moodlens.web.uploads as uploads

    threads = []
    real = uploads.read_upload_image

    def spy(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(uploads, "read_upload_image", spy)
    r = client.post("/api/analyze", files={"file": ("a.jpg", jpeg(), "image/jpeg")}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert len(threads) == 1 and threads[0].startswith("moodlens-recognize")
    r = client.post("/api/analyze", files={"file": ("a.png", png_header(10, 10), "image/png")}, headers=AUTH)
    assert r.status_code == 400 and "error" in r.json()  # refusals raised on the worker still answer JSON


def test_analyze_refuses_oversized_uploads(db, recognizer):
    limits = Limits(image_bytes=20_000)
    with TestClient(create_app(db, recognizer, TOKEN, limits=limits)) as c:
        padded = (MEDIA / "group.jpg").read_bytes() + b"\x00" * 100_000  # over the limit and its 64 KB of room
        r = c.post("/api/analyze", files={"file": ("group.jpg", padded, "image/jpeg")}, headers=AUTH)
        assert r.status_code == 413 and "error" in r.json()

        def chunks():  # no Content-Length: the limit is enforced while reading
            boundary = b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"
            yield boundary
            for _ in range(40):
                yield b"\xff" * 10_000
            yield b"\r\n--x--\r\n"

        r = c.post("/api/analyze", content=chunks(), headers={**AUTH, "content-type": "multipart/form-data; boundary=x"})
        assert r.status_code == 413 and "error" in r.json()
        r = c.post("/api/analyze", files={"picture": ("a.jpg", jpeg(), "image/jpeg")}, headers=AUTH)
        assert r.status_code == 422 and "file" in r.json()["error"]


def test_uploads_from_strangers_are_refused_before_reading(client):
    r = client.post("/api/analyze", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    assert r.status_code == 401


@pytest.mark.parametrize("name, size", [("portrait.jpg", (681, 445)), ("group.jpg", (600, 400))])
def test_image_size_from_headers(name, size):
    data = (MEDIA / name).read_bytes()
    assert image_size(data)[1:] == size
    image = cv2.imread(str(MEDIA / name))
    for ext in (".png", ".webp", ".bmp"):
        assert image_size(cv2.imencode(ext, image)[1].tobytes())[1:] == size
    with pytest.raises(UploadError):
        image_size(b"GIF89a....")


# --- videos ----------------------------------------------------------------------------------

def make_video(path: Path, seconds: float = 3.0, fps: int = 10) -> Path:
    frames = [cv2.resize(cv2.imread(str(MEDIA / n)), (320, 240)) for n in ("portrait.jpg", "angry.jpg")]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (320, 240))
    for i in range(int(seconds * fps)):
        writer.write(frames[int(i / fps) % 2])
    writer.release()
    return path


def test_video_upload_runs_in_the_background_with_progress(client, tmp_path, recognizer):
    video = make_video(tmp_path / "lesson.avi")
    r = client.post("/api/videos", files={"file": ("lesson.avi", video.read_bytes(), "video/x-msvideo")}, headers=AUTH)
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert job["status"] in ("queued", "running", "done") and 0 <= job["progress"] <= 1
    deadline = time.time() + 60
    while job["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.2)
        job = client.get(f"/api/videos/{job['id']}", headers=AUTH).json()["job"]
    assert job["status"] == "done", job
    assert job["progress"] == 1.0 and job["duration"] == pytest.approx(3.0, abs=0.3)
    assert len(job["frames"]) >= 10
    assert any(frame["faces"] for frame in job["frames"])
    for frame in job["frames"]:
        for face in frame["faces"]:
            assert face["track_id"] is not None
            check_face(face, recognizer.classes)
    review = client.get(f"/api/sessions/{job['session_id']}", headers=AUTH).json()
    assert review["session"]["kind"] == "video" and not review["live"]
    assert review["timeline"]["seconds"] == [0, 1, 2]
    assert all(len(shares) == 7 for shares in review["timeline"]["shares"])
    assert review["participants"] and review["participants"][0]["name"].startswith("Face #")
    rows = client.get(f"/api/sessions/{job['session_id']}/export?format=csv", headers=AUTH).text.splitlines()
    assert rows[0].startswith("second,time,participant_id,participant,emotion,frames,angry")
    assert len(rows) >= 4
    assert not list(tmp_path.glob("moodlens-*")), "the uploaded video must be deleted"


def test_stopping_the_server_deletes_videos_still_waiting(db, recognizer, tmp_path):
    video = make_video(tmp_path / "lesson.avi", seconds=1.0).read_bytes()
    with TestClient(create_app(db, recognizer, TOKEN)) as c:
        ml = c.app.state.moodlens
        ml.video_pool.submit(ml.videos._stop.wait, 30)  # keeps the one video worker busy until shutdown
        ids = []
        for _ in range(2):
            r = c.post("/api/videos", files={"file": ("lesson.avi", video, "video/x-msvideo")}, headers=AUTH)
            assert r.status_code == 202, r.text
            ids.append(r.json()["job"]["id"])
        jobs = [ml.videos.get(i) for i in ids]
        assert all(j.status == "queued" and j.path.exists() for j in jobs)
    for job in jobs:
        assert job.status == "error" and "stopped" in job.error
        assert not job.path.exists(), "a queued upload must be deleted when the server stops"


@pytest.mark.parametrize("name, data, status", [
    ("photo.jpg", None, 415),
    ("broken.avi", b"RIFF\x00\x00\x00\x00AVI LIST" + b"\x00" * 2000, 400),
])
def test_video_upload_refuses_what_is_not_a_video(client, name, data, status):
    r = client.post("/api/videos", files={"file": (name, data or jpeg(), "video/mp4")}, headers=AUTH)
    assert r.status_code == status and r.json()["error"]


def test_a_failing_video_job_reports_its_error(client, tmp_path, monkeypatch):
    ml = client.app.state.moodlens

    class Broken:
        classes = ml.recognizer.classes

        def stream(self, *args, **kwargs):
            yield from ()
            raise RuntimeError("decoder crashed")

    monkeypatch.setattr(ml.videos, "recognizer", Broken())
    video = make_video(tmp_path / "lesson.avi", seconds=1)
    job = client.post("/api/videos", files={"file": ("lesson.avi", video.read_bytes())}, headers=AUTH).json()["job"]
    deadline = time.time() + 30
    while job["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.1)
        job = client.get(f"/api/videos/{job['id']}", headers=AUTH).json()["job"]
    assert job["status"] == "error" and job["error"] == "decoder crashed"
    session = client.get(f"/api/sessions/{job['session_id']}", headers=AUTH).json()["session"]
    assert not session["open"]
    assert client.get("/healthz").status_code == 200


def test_unknown_video_job(client):
    assert client.get("/api/videos/nope", headers=AUTH).status_code == 404


# --- live frames -----------------------------------------------------------------------------

def test_live_socket_answers_each_frame(client, recognizer):
    with client.websocket_connect("/ws/live", headers=AUTH) as ws:
        replies = []
        for _ in range(4):
            ws.send_bytes(jpeg())
            replies.append(ws.receive_json())
        assert [r["seq"] for r in replies] == [1, 2, 3, 4]
        for reply in replies:
            assert reply["shape"] == [240, 320] and reply["ms"] >= 0
        assert any(reply["faces"] for reply in replies)
        for face in replies[-1]["faces"]:
            check_face(face, recognizer.classes)
        ws.send_bytes(b"not an image")
        assert ws.receive_json()["status"] == 415
        ws.send_bytes(b"\xff" * (Limits().frame_bytes + 1))
        assert ws.receive_json()["status"] == 413
        ws.send_bytes(jpeg())  # still connected after bad frames
        assert ws.receive_json()["seq"] == 7


@pytest.mark.parametrize("path", ["/ws/live", "/ws/sessions/1/dashboard", "/ws/sessions/1/gallery", "/ws/student"])
def test_sockets_need_a_token(client, path):
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect(path) as ws:
        ws.receive_json()
    assert info.value.code == 4401


def test_sockets_refuse_other_origins(client):
    with pytest.raises(WebSocketDisconnect), client.websocket_connect(
            "/ws/live", headers={**AUTH, "origin": "http://evil.example"}) as ws:
        ws.receive_json()


class SlowRecognizer(Recognizer):
    """The real recognizer, 80 ms slower per frame: a stand-in for a loaded machine."""

    def open_stream(self, detect_every: int = 3, smoothing_s: float = 0.5) -> FaceStream:
        stream = super().open_stream(detect_every, smoothing_s)
        push = stream.push

        def slow_push(*args, **kwargs):
            time.sleep(0.08)
            return push(*args, **kwargs)

        stream.push = slow_push
        return stream


def test_a_flooding_client_drops_its_own_stale_frames_and_stalls_no_one(db, recognizer):
    slow = SlowRecognizer(recognizer.model, recognizer.detector)
    with TestClient(create_app(db, slow, TOKEN, workers=2)) as c:
        with c.websocket_connect("/ws/live", headers=AUTH) as flood, c.websocket_connect("/ws/live", headers=AUTH) as calm:
            frame = jpeg()
            for _ in range(30):  # 30 frames at once: 2.4 s of work if all were processed
                flood.send_bytes(frame)
            time.sleep(0.05)
            start = time.perf_counter()
            calm.send_bytes(frame)
            assert calm.receive_json()["seq"] == 1
            assert time.perf_counter() - start < 1.0  # served beside the flood, not after it
            replies = [flood.receive_json()]
            while replies[-1]["seq"] < 30:
                replies.append(flood.receive_json())
            assert len(replies) < 30 and replies[-1]["dropped"] > 0  # only the newest frames were analysed


# --- class sessions --------------------------------------------------------------------------

def test_join_needs_a_right_code_and_a_name(client):
    session = new_session(client)
    assert client.post("/api/join", json={"code": "ZZZZZZ", "name": "Ana"}).status_code == 404
    assert client.post("/api/join", json={"code": session["code"], "name": "  "}).status_code == 400
    assert client.post("/api/join", content=b"not json", headers={"content-type": "application/json"}).status_code == 400
    r = client.post("/api/join", json={"code": session["code"].lower(), "name": "Ana"})
    assert r.status_code == 200 and r.json()["participant"]["name"] == "Ana"


def test_join_refuses_codes_of_video_and_ended_sessions_with_json(client):
    store = client.app.state.moodlens.store
    video = store.create_session("upload.mp4", ["happy"], kind="video")
    r = client.post("/api/join", json={"code": video.code, "name": "Ana"})
    assert r.status_code == 404 and "error" in r.json()
    assert store.participants(video.id) == []  # nothing stored for a refused join
    session = new_session(client)
    assert client.post(f"/api/sessions/{session['id']}/end", headers=AUTH).status_code == 200
    r = client.post("/api/join", json={"code": session["code"], "name": "Ana"})
    assert r.status_code == 404 and "error" in r.json()
    assert store.participants(session["id"]) == []


def test_guessing_codes_is_slowed_down(client):
    for _ in range(20):
        client.post("/api/join", json={"code": "AAAAAA", "name": "x"})
    assert client.post("/api/join", json={"code": "AAAAAA", "name": "x"}).status_code == 429


def test_students_can_only_send_frames(client):
    session = new_session(client)
    token = join(client, session["code"], "Ana")
    student = {"Authorization": f"Bearer {token}"}
    client.cookies.set("moodlens_student", token)
    assert client.get("/api/me").json()["participant"]["name"] == "Ana"
    assert client.get("/student").status_code == 200
    for method, path in [("get", "/api/sessions"), ("get", f"/api/sessions/{session['id']}"),
                         ("get", f"/api/sessions/{session['id']}/export"), ("delete", f"/api/sessions/{session['id']}")]:
        assert getattr(client, method)(path, headers=student).status_code == 401
    assert client.get("/live", follow_redirects=False).status_code == 303
    for path in ("/ws/live", f"/ws/sessions/{session['id']}/dashboard", f"/ws/sessions/{session['id']}/gallery"):
        with pytest.raises(WebSocketDisconnect), client.websocket_connect(f"{path}?token={token}") as ws:
            ws.receive_json()
    client.cookies.clear()


def test_a_class_session_from_join_to_review(client, clock, recognizer):
    session = new_session(client)
    sid = session["id"]
    ana, ben = join(client, session["code"], "Ana"), join(client, session["code"], "Ben")
    with client.websocket_connect(f"/ws/student?token={ana}") as ws_ana, \
            client.websocket_connect(f"/ws/student?token={ben}") as ws_ben:
        for i in range(10):  # 5 s at 2 frames/s each
            ws_ana.send_bytes(jpeg("portrait.jpg"))
            ws_ben.send_bytes(jpeg("crying.jpg"))
            for reply in (ws_ana.receive_json(), ws_ben.receive_json()):
                assert reply["seq"] == i + 1 and reply["faces"], reply
                check_face(reply["faces"][0], recognizer.classes)
            clock.t += 0.5
        with client.websocket_connect(f"/ws/sessions/{sid}/dashboard", headers=AUTH) as dash:
            snap = dash.receive_json()
        assert snap["live"] and snap["present"] == 2 and snap["now"] == pytest.approx(5.0)
        tiles = {t["name"]: t for t in snap["participants"]}
        assert set(tiles) == {"Ana", "Ben"}
        for tile in tiles.values():
            assert tile["connected"] and tile["status"] in STATUSES
            assert [s[0] for s in tile["spark"]] == [0, 1, 2, 3]  # second 4 is still open
            assert all(s[1] in recognizer.classes for s in tile["spark"])
        assert sum(snap["mood"].values()) == pytest.approx(1.0) or snap["judged"] == 0
        assert snap["timeline"]["seconds"] == [0, 1, 2, 3] and snap["timeline"]["judged"] == [2] * 4
        r = client.post(f"/api/sessions/{sid}/end", headers=AUTH)
        assert r.status_code == 200 and r.json()["session"]["open"] is False
        with pytest.raises(WebSocketDisconnect) as info:
            ws_ana.receive_json()
        assert info.value.code == 4000
    review = client.get(f"/api/sessions/{sid}", headers=AUTH).json()
    assert not review["live"] and review["now"] == pytest.approx(5.0)
    assert {t["name"]: t["seconds"] for t in review["participants"]} == {"Ana": 5, "Ben": 5}
    rows = client.get(f"/api/sessions/{sid}/export?format=csv", headers=AUTH).text.splitlines()
    assert len(rows) == 1 + 10
    data = client.get(f"/api/sessions/{sid}/export?format=json", headers=AUTH).json()
    assert sorted({s["second"] for s in data["seconds"]}) == [0, 1, 2, 3, 4]
    assert client.post("/api/join", json={"code": session["code"], "name": "Late"}).status_code == 404
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect(f"/ws/student?token={ana}") as ws:
        ws.receive_json()
    assert info.value.code == 4000


def test_an_attention_only_session_never_carries_an_emotion(client, clock):
    """Every answer of an attention-only session, from its creation to its exports, and the rows
    the database keeps: attention and head pose, and not one emotion field or name."""
    assert client.post("/api/sessions", json={"emotions": "no"}, headers=AUTH).status_code == 400
    created = client.post("/api/sessions", json={"title": "Maths 3B", "emotions": False}, headers=AUTH)
    assert created.status_code == 201 and created.json()["session"]["emotions"] is False
    session = created.json()["session"]
    sid, answers = session["id"], [created.json()]
    token = join(client, session["code"], "Ana")
    client.cookies.set("moodlens_student", token)
    me = client.get("/api/me").json()
    assert me["session"]["emotions"] is False and "no emotion is read" in me["notice"]
    client.cookies.clear()
    people = shared_participants(MEDIA)
    meeting = cv2.imencode(".jpg", make_gallery(people, 3, 3, (1280, 720), seed=1)[0])[1].tobytes()
    with client.websocket_connect(f"/ws/student?token={token}") as ws:
        replies = send_frames(ws, clock, [jpeg()] * 8 + [blank_jpeg()] * 4)
        with client.websocket_connect(f"/ws/sessions/{sid}/gallery", headers=AUTH) as gallery:
            replies += send_frames(gallery, clock, [meeting] * 4, step=0.25)
        with client.websocket_connect(f"/ws/sessions/{sid}/dashboard", headers=AUTH) as dash:
            snap = dash.receive_json()
        answers += [*replies, snap, client.get(f"/api/sessions/{sid}", headers=AUTH).json()]
    assert replies[0]["faces"][0]["pose"] and any(r["faces"] for r in replies[-4:])
    tiles = {t["name"]: t for t in snap["participants"]}
    assert tiles["Ana"]["attention"] == "facing" and snap["attending"]["on_camera"] >= 5
    assert all("confidence" not in t for t in snap["participants"])  # a tile's confidence is its emotion's
    client.post(f"/api/sessions/{sid}/end", headers=AUTH)
    answers += [client.get(f"/api/sessions/{sid}", headers=AUTH).json(), client.get("/api/sessions", headers=AUTH).json(),
                client.get(f"/api/sessions/{sid}/report", headers=AUTH).json(),
                client.get(f"/api/sessions/{sid}/export?format=json", headers=AUTH).json()]
    for kind in ("export?format=csv", "report?format=csv"):
        header, *rows = client.get(f"/api/sessions/{sid}/{kind}", headers=AUTH).text.splitlines()
        answers.append(header.split(","))
        assert rows
    assert answers[-1] and "attending_share" in answers[-1]
    for answer in answers:
        emotion_free(answer)
    stored = client.app.state.moodlens.store.seconds(sid)
    assert stored and all(r.emotion is None and r.scores == {} for r in stored)
    assert {r.attention for r in stored if r.track_id == tiles["Ana"]["id"]} == {"facing"}
    with client.app.state.moodlens.store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT emotion, scores FROM seconds WHERE session_id = :s"), {"s": sid}).all()
    assert rows and all(emotion is None and json.loads(scores) == {} for emotion, scores in rows)


def test_no_face_for_a_while_is_flagged_and_acknowledged_and_a_restart_keeps_both(db, recognizer, clock):
    with TestClient(create_app(db, recognizer, TOKEN, clock=clock)) as client:
        session, token = seen_flag(client, clock)
    with TestClient(create_app(db, recognizer, TOKEN, clock=clock)) as client:  # the server restarted
        with client.websocket_connect(f"/ws/student?token={token}") as ws:  # the student's page reconnects
            send_frames(ws, clock, [blank_jpeg()] * 4)
            [flag] = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()["participants"][0]["flags"]
        # the same flag, still seen: the live view was rebuilt from the stored seconds
        assert flag["reason"] == "no_face" and flag["start"] in (1, 2) and flag["acknowledged"]
        client.post(f"/api/sessions/{session['id']}/end", headers=AUTH)
        [flag] = client.get(f"/api/sessions/{session['id']}/report", headers=AUTH).json()["flags"]
        assert flag["reason"] == "no_face" and flag["seen"]
        stored = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()  # the ended session's review
        [flag] = stored["participants"][0]["flags"]
        assert flag["acknowledged"] and stored["flagged"] == 0


def seen_flag(client, clock) -> tuple[dict, str]:
    """A session whose one student showed an empty room for 13 s; the teacher saw the flag."""
    session = new_session(client)
    token = join(client, session["code"], "Away")
    with client.websocket_connect(f"/ws/student?token={token}") as ws:
        send_frames(ws, clock, [jpeg()] * 2 + [blank_jpeg()] * 26)  # 1 s seen, then 13 s of an empty room
        with client.websocket_connect(f"/ws/sessions/{session['id']}/dashboard", headers=AUTH) as dash:
            snap = dash.receive_json()
        tile = snap["participants"][0]
        assert tile["status"] == "no_face" and tile["emotion"] is None
        [flag] = tile["flags"]
        assert flag["reason"] == "no_face" and flag["start"] in (1, 2) and flag["ongoing"] and flag["seconds"] >= 10
        assert flag["text"].startswith("no readable face for") and snap["flagged"] == 1
        url = f"/api/sessions/{session['id']}/acknowledge"
        assert client.post(url, json={"participant": tile["id"], "start": 9}, headers=AUTH).status_code == 404
        assert client.post(url, json={"participant": "x"}, headers=AUTH).status_code == 400
        assert client.post(url, json={"participant": tile["id"], "start": flag["start"]},
                           headers=AUTH).status_code == 200
        snap = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()
        assert snap["participants"][0]["flags"][0]["acknowledged"] and snap["flagged"] == 0
    return session, token


def test_a_student_who_left_is_left_with_the_time_and_never_flagged(client, clock):
    session = new_session(client)
    token = join(client, session["code"], "Quiet")
    clock.t += 12
    tile = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()["participants"][0]
    assert tile["status"] == "offline" and tile["flags"] == []  # never started the camera
    with client.websocket_connect(f"/ws/student?token={token}") as ws:
        send_frames(ws, clock, [jpeg()] * 4)
        ws.close(1001)  # the browser closes a page's sockets with "going away"
    clock.t += 30
    tile = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()["participants"][0]
    assert tile["status"] == "left" and tile["left_at"] == 13 and tile["flags"] == []


def test_a_student_who_pauses_is_camera_off_not_left(client, clock):
    """Pause and Stop camera on the student page close the socket normally (1000) and the
    student stays on the page: the dashboard shows the camera off, not a student who left."""
    session = new_session(client)
    token = join(client, session["code"], "Resting")
    with client.websocket_connect(f"/ws/student?token={token}") as ws:
        send_frames(ws, clock, [jpeg()] * 4)
    clock.t += 30
    tile = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()["participants"][0]
    assert tile["status"] == "offline" and tile["left_at"] is None and tile["flags"] == []
    with client.websocket_connect(f"/ws/student?token={token}") as ws:  # Resume
        send_frames(ws, clock, [jpeg()] * 4)
        tile = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()["participants"][0]
        assert tile["connected"] and tile["status"] not in ("offline", "left")
        ws.close(1001)
    tile = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()["participants"][0]
    assert tile["status"] == "left"


def test_the_lesson_report_and_exports_carry_wall_clock_times_and_the_title(client, clock):
    session = new_session(client, "Maths 3B: fractions")
    token = join(client, session["code"], "Ana")
    with client.websocket_connect(f"/ws/student?token={token}") as ws:
        send_frames(ws, clock, [jpeg()] * 6 + [blank_jpeg()] * 24)
    client.post(f"/api/sessions/{session['id']}/end", headers=AUTH)
    assert client.post(f"/api/sessions/{session['id']}/acknowledge", json={"participant": 1, "start": 1},
                       headers=AUTH).status_code == 409  # nothing to acknowledge after class
    assert client.get(f"/sessions/{session['id']}/report", headers=AUTH).status_code == 200
    assert client.get(f"/sessions/{session['id']}/report", follow_redirects=False).status_code == 303
    assert client.get(f"/api/sessions/{session['id']}/report").status_code == 401
    report = client.get(f"/api/sessions/{session['id']}/report", headers=AUTH).json()
    [ana] = report["students"]
    assert ana["on_camera_s"] == 15 and ana["no_face_share"] == pytest.approx(12 / 15, abs=0.07)
    assert ana["joined"].startswith("20") and ana["left"] > ana["joined"]
    assert [f["reason"] for f in ana["flags"]] == ["no_face"] and ana["flags"][0]["start"] in (3, 4)
    assert ana["flags"][0]["from"] > ana["joined"]
    assert report["flags"][0]["name"] == "Ana" and len(report["mood"]["seconds"]) == len(report["mood"]["shares"])
    review = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()
    assert [{k: v for k, v in f.items() if k != "acknowledged"} for f in review["participants"][0]["flags"]] == \
        [{k: v for k, v in f.items() if k not in ("from", "to", "seen")} for f in ana["flags"]]  # they agree
    for fmt in ("csv", "json"):
        r = client.get(f"/api/sessions/{session['id']}/export?format={fmt}", headers=AUTH)
        assert 'filename="moodlens-Maths-3B-fractions-20' in r.headers["content-disposition"]
    rows = client.get(f"/api/sessions/{session['id']}/export?format=csv", headers=AUTH).text.splitlines()
    assert rows[0].startswith("second,time,") and rows[1].split(",")[1].startswith("20")
    table = client.get(f"/api/sessions/{session['id']}/report?format=csv", headers=AUTH)
    assert "report.csv" in table.headers["content-disposition"] and "no readable face" in table.text


def test_the_report_table_shows_a_formula_like_name_as_text(client, clock):
    session = new_session(client)
    token = join(client, session["code"], "=HYPERLINK(\"http://evil.example\")")
    with client.websocket_connect(f"/ws/student?token={token}") as ws:
        send_frames(ws, clock, [jpeg()] * 4)
    client.post(f"/api/sessions/{session['id']}/end", headers=AUTH)
    table = client.get(f"/api/sessions/{session['id']}/report?format=csv", headers=AUTH).text
    [row] = csv.DictReader(io.StringIO(table))
    assert row["name"] == "'=HYPERLINK(\"http://evil.example\")" and row["joined"].startswith("20")


def test_shared_gallery_tiles_become_participants(client, clock):
    session = new_session(client)
    people = shared_participants(MEDIA)
    frames = [cv2.imencode(".jpg", make_gallery(people, 3, 3, (1280, 720), seed=1)[0])[1].tobytes()]
    with client.websocket_connect(f"/ws/sessions/{session['id']}/gallery", headers=AUTH) as ws:
        replies = send_frames(ws, clock, frames * 8)
    ids = [{f["participant"] for f in r["faces"]} for r in replies]
    assert len(ids[0]) >= 7  # at least 7 of the 9 faces found
    assert all(i <= ids[0] | ids[1] for i in ids[2:])  # the same tiles, frame after frame
    snap = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()
    tiles = [p for p in snap["participants"] if p["source"] == "tile"]
    assert len(tiles) == len(ids[0] | ids[1]) and all(t["name"].startswith("Tile ") for t in tiles)
    assert len({t["name"] for t in tiles}) == len(tiles)
    assert all(not t["connected"] and t["status"] == "offline" and not t["flags"] for t in tiles)  # share ended
    r = client.patch(f"/api/participants/{tiles[0]['id']}", json={"name": "Chloe"}, headers=AUTH)
    assert r.status_code == 200
    names = {p["name"] for p in client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()["participants"]}
    assert "Chloe" in names


def test_renaming_a_participant_that_does_not_exist_is_404_and_students_see_their_new_name(client):
    r = client.patch("/api/participants/9999", json={"name": "Ghost"}, headers=AUTH)
    assert r.status_code == 404 and "error" in r.json()
    session = new_session(client)
    token = join(client, session["code"], "Ana")
    student = {"moodlens_student": token}
    client.cookies.update(student)
    me = client.get("/api/me").json()["participant"]  # caches the student's token
    client.cookies.clear()
    assert me["name"] == "Ana"
    assert client.patch(f"/api/participants/{me['id']}", json={"name": "Ana M."}, headers=AUTH).status_code == 200
    client.cookies.update(student)
    assert client.get("/api/me").json()["participant"]["name"] == "Ana M."
    client.cookies.clear()


def test_two_gallery_sockets_share_the_tiles_one_frame_at_a_time(db, recognizer, clock, monkeypatch):
    from moodlens.web.tiles import GalleryTiles

    active, most = [0], [0]
    lock = threading.Lock()
    assign = GalleryTiles.assign

    def watched(self, *args, **kwargs):  # how many frames are in the shared tiles at once
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.02)
        try:
            return assign(self, *args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(GalleryTiles, "assign", watched)
    frame = cv2.imencode(".jpg", make_gallery(shared_participants(MEDIA), 2, 2, (640, 360), seed=1)[0])[1].tobytes()
    with TestClient(create_app(db, recognizer, TOKEN, clock=clock, workers=2)) as c:
        session = new_session(c)
        url = f"/ws/sessions/{session['id']}/gallery"

        def tiles() -> list[dict]:
            snap = c.get(f"/api/sessions/{session['id']}", headers=AUTH).json()
            return [p for p in snap["participants"] if p["source"] == "tile"]

        with c.websocket_connect(url, headers=AUTH) as b:
            with c.websocket_connect(url, headers=AUTH) as a:  # two tabs: both connected before any tile
                errors = []

                def share(ws):
                    try:
                        for _ in range(6):
                            ws.send_bytes(frame)
                            assert "error" not in ws.receive_json()
                    except Exception as exc:  # noqa: BLE001  (reported below)
                        errors.append(exc)

                threads = [threading.Thread(target=share, args=(ws,)) for ws in (a, b)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                assert not errors, errors
            assert most[0] == 1  # never two frames in the shared stream and tiles at once
            assert tiles() and all(t["connected"] for t in tiles())  # the other tab still shares
        assert all(not t["connected"] and t["status"] == "offline" for t in tiles())


def test_sessions_list_export_and_delete(client):
    a, b = new_session(client, "first"), new_session(client, "second")
    listed = client.get("/api/sessions", headers=AUTH).json()["sessions"]
    assert [s["title"] for s in listed][:2] == ["second", "first"]
    assert client.get(f"/api/sessions/{a['id']}/export?format=xml", headers=AUTH).status_code == 400
    r = client.get(f"/api/sessions/{a['id']}/export?format=json", headers=AUTH)
    assert "attachment" in r.headers["content-disposition"] and r.json()["session"]["title"] == "first"
    assert client.delete(f"/api/sessions/{a['id']}", headers=AUTH).status_code == 200
    assert client.get(f"/api/sessions/{a['id']}", headers=AUTH).status_code == 404
    assert client.get(f"/api/sessions/{a['id']}/export", headers=AUTH).status_code == 404
    assert client.delete(f"/api/sessions/{a['id']}", headers=AUTH).status_code == 404
    assert [s["id"] for s in client.get("/api/sessions", headers=AUTH).json()["sessions"]] == [b["id"]]
    assert client.get("/api/sessions/abc", headers=AUTH).status_code == 422


@pytest.mark.parametrize("method, path", [
    ("get", "/api/sessions/99999999999999999999"), ("get", "/api/sessions/9223372036854775808"),
    ("post", "/api/sessions/99999999999999999999/end"), ("delete", "/api/sessions/99999999999999999999"),
    ("get", "/api/sessions/99999999999999999999/export"), ("get", "/api/sessions/-1"),
    ("patch", "/api/participants/99999999999999999999")])
def test_ids_beyond_the_database_integers_are_refused_with_json(client, method, path):
    r = client.request(method, path, headers=AUTH, json={"name": "x"} if method == "patch" else None)
    assert r.status_code in (404, 422) and "error" in r.json()


def test_the_largest_database_id_is_just_not_found(client):
    assert client.get(f"/api/sessions/{2**63 - 1}", headers=AUTH).status_code == 404
    assert client.patch(f"/api/participants/{2**63 - 1}", json={"name": "x"}, headers=AUTH).status_code == 404


# --- persistence -----------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, db) -> str:
    """The SQLite file, or the PostgreSQL server of test_store.py (skipped where it cannot start)."""
    if request.param == "sqlite":
        return db
    from test_store import _reset_postgres

    url = request.getfixturevalue("postgres_server")
    _reset_postgres(url)
    return url


def test_sessions_survive_a_restart(any_db, recognizer, clock):
    db = any_db
    with TestClient(create_app(db, recognizer, TOKEN, clock=clock)) as c:
        ended, still_open = new_session(c, "ended"), new_session(c, "still open")
        ana = join(c, ended["code"], "Ana")
        ben = join(c, still_open["code"], "Ben")
        for token in (ana, ben):
            with c.websocket_connect(f"/ws/student?token={token}") as ws:
                send_frames(ws, clock, [jpeg()] * 6)
        c.post(f"/api/sessions/{ended['id']}/end", headers=AUTH)
    # the server stopped with "still open" open and Ben's last second not yet closed by a later frame
    with TestClient(create_app(db, recognizer, TOKEN, clock=clock)) as c:
        listed = {s["title"]: s for s in c.get("/api/sessions", headers=AUTH).json()["sessions"]}
        assert listed["ended"]["seconds"] == 3 and not listed["ended"]["open"]
        assert listed["still open"]["seconds"] == 3 and listed["still open"]["open"]
        csv_rows = c.get(f"/api/sessions/{ended['id']}/export?format=csv", headers=AUTH).text.splitlines()
        assert len(csv_rows) == 4
        with c.websocket_connect(f"/ws/student?token={ben}") as ws:  # Ben's browser reconnects
            assert send_frames(ws, clock, [jpeg()] * 2)[0]["faces"]
        c.post(f"/api/sessions/{still_open['id']}/end", headers=AUTH)
        seconds = [s["second"] for s in c.get(f"/api/sessions/{still_open['id']}/export?format=json",
                                               headers=AUTH).json()["seconds"]]
        assert seconds == sorted(set(seconds)) and len(seconds) == 4


@contextmanager
def uvicorn_server(app):
    """The app on a real uvicorn server on a free loopback port, in a thread."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}", server, thread
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_stopping_the_server_mid_stream_keeps_what_was_recorded(db, recognizer):
    """uvicorn stops while a student is sending: every second seen is written before it exits."""
    from websockets.sync.client import connect

    with uvicorn_server(create_app(db, recognizer, TOKEN)) as (address, server, thread):
        import httpx

        base = f"http://{address}"
        session = httpx.post(f"{base}/api/sessions", json={"title": "stopped"}, headers=AUTH).json()["session"]
        token = httpx.post(f"{base}/api/join", json={"code": session["code"], "name": "Ana"}).json()["token"]
        with connect(f"ws://{address}/ws/student?token={token}") as ws:
            start = time.time()
            while time.time() - start < 2.6:
                last_sent = time.time()
                ws.send(jpeg())
                ws.recv(timeout=10)
                time.sleep(0.25)
            # the last frame's second: stamped by the server between its sending and now
            seen = int(last_sent - session["started_at"]), int(time.time() - session["started_at"])
            server.should_exit = True  # stop with the student still connected
            thread.join(timeout=30)
            assert not thread.is_alive()
    with TestClient(create_app(db, recognizer, TOKEN)) as c:
        seconds = [s["second"] for s in
                   c.get(f"/api/sessions/{session['id']}/export?format=json", headers=AUTH).json()["seconds"]]
    assert seconds == list(range(seconds[0], seconds[-1] + 1)) and seconds[0] <= 1
    assert seen[0] <= seconds[-1] <= seen[1]


def test_the_recorder_is_off_the_event_loop(client, clock):
    """A slow database write does not hold up frames (the recorder batches on its own thread)."""
    ml = client.app.state.moodlens
    original, calls = ml.store.add_seconds, []

    def slow_add(*args, **kwargs):
        calls.append(threading.current_thread().name)
        time.sleep(0.5)
        return original(*args, **kwargs)

    ml.store.add_seconds = slow_add
    session = new_session(client)
    token = join(client, session["code"], "Ana")
    with client.websocket_connect(f"/ws/student?token={token}") as ws:
        start = time.perf_counter()
        send_frames(ws, clock, [jpeg()] * 8)
        assert time.perf_counter() - start < 3.0
    ml.recorder.flush()
    assert calls and set(calls) == {"moodlens-recorder"}


def test_two_students_with_one_name_get_two_names(client):
    session = new_session(client)
    names = []
    for name in ("Alice", "alice", "Alice", "Bob"):
        r = client.post("/api/join", json={"code": session["code"], "name": name})
        client.cookies.clear()
        names.append(r.json()["participant"]["name"])
    assert names == ["Alice", "alice (2)", "Alice (3)", "Bob"]
    tiles = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()["participants"]
    assert sorted(t["name"] for t in tiles) == sorted(names)
