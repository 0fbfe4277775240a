"""Browser mode through the API (TestClient, no browser): the configuration the page runs, the
model files, the score socket, that scores and head poses from a browser are tracked, smoothed,
labelled and stored as the server's own analysis of the same faces would be, and attention-only
sessions, whose pages send no scores."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


from moodlens.aggregate import Timeline  # noqa: E402
from moodlens.faces import Face, Frame, Pose  # noqa: E402
from moodlens.pose import POSE_CONSTANTS, estimate_pose  # noqa: E402
from moodlens.recognizer import Recognizer  # noqa: E402
from moodlens.web.browser import ScoreError, ScoreStream, browser_config, parse_scores  # noqa: E402
from test_web_api import AUTH, TOKEN, client, clock, db, recognizer  # noqa: E402, F401  (fixtures)

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def join(client, name="Ana", emotions: bool = True) -> tuple[dict, str]:  # noqa: F811
    session = client.post("/api/sessions", json={"title": "maths", "emotions": emotions}, headers=AUTH).json()["session"]
    r = client.post("/api/join", json={"code": session["code"], "name": name})
    client.cookies.clear()
    return session, r.json()["token"]


def scores(top: str, p: float = 0.7) -> dict:
    rest = (1 - p) / (len(CLASSES) - 1)
    return {c: (p if c == top else rest) for c in CLASSES}


def pose(yaw: float = 10.0, pitch: float = -5.0, roll: float = 2.0, confidence: float = 0.9) -> dict:
    return {"yaw": yaw, "pitch": pitch, "roll": roll, "confidence": confidence}


def test_the_browser_config_is_read_from_the_servers_pipeline_and_model_metadata(client, recognizer):  # noqa: F811
    assert client.get("/api/browser").status_code == 401
    config = client.get("/api/browser", headers=AUTH).json()
    assert config["available"] is True
    model = recognizer.model
    meta = json.loads(model.session.get_modelmeta().custom_metadata_map["moodlens.spec"])
    assert config["model"]["spec"] == meta  # straight from the ONNX file's metadata
    det = recognizer.detector
    assert config["detector"]["name"] == det.name
    assert config["detector"]["score_threshold"] == det.score_threshold
    assert config["crop"] == {"scale": recognizer.crop_scale, "shift": recognizer.crop_shift}
    assert (config["min_face"], config["uncertain_below"]) == (recognizer.min_face, recognizer.uncertain_below)
    assert config["pose"] == json.loads(json.dumps(POSE_CONSTANTS))  # the generic face and limits of moodlens.pose
    # the files the page runs are the very files the server runs
    assert client.get("/models/emotion.onnx", headers=AUTH).content == model.path.read_bytes()
    assert client.get("/models/detector.onnx", headers=AUTH).content == Path(det.path).read_bytes()
    assert client.get("/models/emotion.onnx", follow_redirects=False).status_code == 303  # to the login page
    assert client.get("/models/other.onnx", headers=AUTH).status_code == 404


def test_a_detector_without_a_browser_version_keeps_students_on_the_server(recognizer):  # noqa: F811
    haar = Recognizer(model=recognizer.model, detector="haar")
    assert browser_config(haar) is None
    aligned = Recognizer(model=recognizer.model, detector=recognizer.detector, align=True)
    assert browser_config(aligned) is None


def test_the_student_page_is_cross_origin_isolated_for_threads(client):  # noqa: F811
    r = client.get("/static/vendor/onnxruntime-web/ort-wasm-simd-threaded.mjs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cross-origin-embedder-policy"] == "require-corp"
    wasm = client.get("/static/vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm")
    assert wasm.headers["content-type"] == "application/wasm"
    _, token = join(client)
    client.cookies.set("moodlens_student", token)
    page = client.get("/student")
    assert page.status_code == 200
    assert page.headers["cross-origin-opener-policy"] == "same-origin"
    assert "cross-origin-opener-policy" not in client.get("/login").headers


@pytest.mark.parametrize("text, error", [
    ("not json", "JSON"),
    ("[]", "face"),
    ('{"face": 3}', "object or null"),
    ('{"face": {"box": [1, 2, 3], "scores": {}}}', "box"),
    ('{"face": {"box": [1, 2, 3, -4], "scores": {}}}', "box"),
    ('{"face": {"box": [1, 2, 30, 40], "scores": {"happy": 1.0}}}', "each of"),
    (json.dumps({"face": {"box": [1, 2, 30, 40], "scores": {**scores("happy"), "happy": 1.5}}}), "probabilities"),
    (json.dumps({"face": {"box": [1, 2, 30, 40], "scores": {**scores("happy"), "sad": "x"}}}), "probabilities"),
    (json.dumps({"face": None, "pad": "x" * 3000}), "at most"),
    (json.dumps({"face": {"box": [1, 2, 30, 40], "pose": [10, 0, 0, 1]}}), "pose"),
    (json.dumps({"face": {"box": [1, 2, 30, 40], "pose": {"yaw": 10.0}}}), "pose"),
    (json.dumps({"face": {"box": [1, 2, 30, 40], "pose": {**pose(), "gaze": 1}}}), "pose"),
    (json.dumps({"face": {"box": [1, 2, 30, 40], "pose": pose(yaw=200.0)}}), "pose"),
    (json.dumps({"face": {"box": [1, 2, 30, 40], "pose": pose(pitch=-91.0)}}), "pose"),
    (json.dumps({"face": {"box": [1, 2, 30, 40], "pose": pose(confidence=1.5)}}), "pose"),
    (json.dumps({"face": {"box": [1, 2, 30, 40], "pose": pose(roll="x")}}), "pose"),
    (json.dumps({"face": {"box": [1, 2, 30, 40], "pose": pose(yaw=True)}}), "pose"),
    ('{"face": {"box": [1, 2, 30, 40], "pose": {"yaw": NaN, "pitch": 0, "roll": 0, "confidence": 1}}}', "pose"),
])
def test_bad_score_messages_are_refused(text, error):
    with pytest.raises(ScoreError, match=error):
        parse_scores(text, CLASSES)


def test_score_messages_become_stored_seconds(client, clock):  # noqa: F811
    session, token = join(client)
    with client.websocket_connect(f"/ws/student/scores?token={token}") as ws:
        for i in range(6):  # 3 s at 2 messages a second: happy, then no face, then too small
            clock.t = session["started_at"] + 0.25 + i * 0.5
            face = {"box": [100, 80, 120, 140], "scores": scores("happy")} if i < 2 else \
                None if i < 4 else {"box": [5, 5, 8, 9], "scores": {}}
            ws.send_text(json.dumps({"face": face}))
            reply = ws.receive_json()
            assert reply["seq"] == i + 1
            if i < 2:
                assert reply["face"]["emotion"] == "happy" and reply["face"]["status"] == "ok"
            elif i < 4:
                assert reply["face"] is None
            else:
                assert reply["face"]["status"] == "too_small" and reply["face"]["emotion"] is None
        ws.send_bytes(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
        assert ws.receive_json()["status"] == 415  # no pictures on this socket
        ws.send_text("{}")
        assert ws.receive_json()["status"] == 422
        live = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()
        assert live["participants"][0]["connected"]
    client.post(f"/api/sessions/{session['id']}/end", headers=AUTH)
    rows = client.get(f"/api/sessions/{session['id']}/export?format=json", headers=AUTH).json()["seconds"]
    assert [(r["second"], r["emotion"], r["frames"]) for r in rows] == [(0, "happy", 2), (1, None, 2), (2, None, 2)]
    assert rows[0]["scores"]["happy"] == pytest.approx(0.7, abs=1e-4)


def test_browser_scores_are_smoothed_and_labelled_as_the_servers_own(recognizer):  # noqa: F811
    """The same faces through a server-side FaceStream (detecting every frame) and, as raw
    per-frame scores from a 'browser', through ScoreStream: the same smoothed scores, labels and
    stored seconds."""
    image = cv2.imread(str(MEDIA / "portrait.jpg"))
    frames = [np.roll(image, 6 * i, axis=1) for i in range(6)]
    times = [0.2 + 0.45 * i for i in range(6)]
    server = recognizer.open_stream(detect_every=1)
    browser = ScoreStream(recognizer)
    on_server, in_browser = Timeline(recognizer.classes), Timeline(recognizer.classes)
    for frame, t in zip(frames, times):
        served = server.push(frame, t).faces[0]
        # the unsmoothed scores and pose of that face, as the page computes them (parity:
        # scripts/browser_check.py)
        raw = recognizer.classify(frame, [Face(served.box)])[0]
        raw_pose = estimate_pose(served.landmarks, frame.shape[1])
        message = {"box": list(raw.box), "scores": raw.scores, "pose": asdict(raw_pose)}
        got = browser.push(parse_scores(json.dumps({"face": message}), recognizer.classes), t)
        assert got.scores == pytest.approx(served.scores, abs=1e-6)
        assert (got.emotion, got.status) == (served.emotion, served.status)
        assert asdict(got.pose) == pytest.approx(asdict(served.pose), abs=1e-9)
        on_server.add(Frame([Face(served.box, scores=served.scores, emotion=served.emotion, track_id=1, pose=served.pose)],
                            time=t))
        in_browser.add(Frame([Face(got.box, scores=got.scores, emotion=got.emotion, track_id=1, pose=got.pose)], time=t))
    a, b = on_server.flush() and on_server.records, in_browser.flush() and in_browser.records
    assert [(r.second, r.emotion, r.frames, r.attention, r.yaw, r.pitch, r.roll) for r in a] == \
        [(r.second, r.emotion, r.frames, r.attention, r.yaw, r.pitch, r.roll) for r in b]
    assert all(r.yaw is not None for r in b)


def test_the_pose_a_browser_sends_reaches_the_per_second_records(client, clock):  # noqa: F811
    session, token = join(client)
    live = client.app.state.moodlens.live_session(session["id"])
    with client.websocket_connect(f"/ws/student/scores?token={token}") as ws:
        # second 0 facing the camera, second 1 turned 50 degrees away, second 2 a face without a pose
        for i, sent in enumerate([pose(0.0), pose(0.0), pose(50.0), pose(50.0), None, None]):
            clock.t = session["started_at"] + 0.25 + i * 0.5
            ws.send_text(json.dumps({"face": {"box": [100, 80, 120, 140], "scores": scores("happy"), "pose": sent}}))
            reply = ws.receive_json()
            assert (reply["face"]["pose"] is None) == (sent is None)
        assert reply["face"]["status"] == "ok"
    (me,) = live.participants.values()
    records = list(me.recent)
    assert [r.second for r in records] == [0, 1, 2]
    keep = np.exp(-1.0)  # the tracker's smoothing over half a second (time constant 0.5 s)
    first, second = 50.0 * (1 - keep), 50.0 * (1 - keep * keep)
    assert (records[0].yaw, records[0].pitch, records[0].roll) == (0.0, -5.0, 2.0)
    assert records[1].yaw == pytest.approx((first + second) / 2, abs=0.05)
    assert records[2].yaw is None and records[2].emotion == "happy"
    assert records[0].attention == "facing"


def test_an_attention_only_session_takes_faces_and_poses_but_no_scores(client, clock):  # noqa: F811
    session, token = join(client, emotions=False)
    client.cookies.set("moodlens_student", token)
    assert client.get("/api/me").json()["session"]["emotions"] is False  # what tells the page to load no emotion model
    with client.websocket_connect(f"/ws/student/scores?token={token}") as ws:
        clock.t = session["started_at"] + 0.25
        ws.send_text(json.dumps({"face": {"box": [100, 80, 120, 140], "pose": pose(20.0)}}))
        face = ws.receive_json()["face"]
        assert face["status"] == "ok" and "emotion" not in face and "scores" not in face
        assert face["pose"]["yaw"] == 20.0
        ws.send_text(json.dumps({"face": {"box": [100, 80, 120, 140], "pose": pose(), "scores": scores("sad")}}))
        refused = ws.receive_json()
        assert refused["status"] == 422 and "attention only" in refused["error"]
        clock.t += 1.0
        ws.send_text(json.dumps({"face": None}))
        assert ws.receive_json()["face"] is None
    (me,) = client.app.state.moodlens.live_session(session["id"]).participants.values()
    (record, _) = me.recent
    assert (record.yaw, record.emotion, record.scores) == (20.0, None, {})
    with pytest.raises(ScoreError, match="attention only"):
        parse_scores(json.dumps({"face": {"box": [1, 2, 30, 40], "scores": {}}}), CLASSES, emotions=False)
    assert parse_scores(json.dumps({"face": {"box": [1, 2, 30, 40]}}), CLASSES).status == "too_small"
    assert parse_scores(json.dumps({"face": {"box": [1, 2, 30, 40]}}), CLASSES, emotions=False).status == "ok"
    assert isinstance(parse_scores(json.dumps({"face": {"box": [1, 2, 30, 40], "pose": pose()}}), CLASSES).pose, Pose)
