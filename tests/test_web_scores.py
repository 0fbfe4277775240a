"""Browser mode through the API (TestClient, no browser): the configuration the page runs, the
model files, the score socket, and that scores from a browser are tracked, smoothed, labelled and
stored as the server's own analysis of the same faces would be."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


from moodlens.aggregate import Timeline  # noqa: E402
from moodlens.faces import Face, Frame  # noqa: E402
from moodlens.recognizer import Recognizer  # noqa: E402
from moodlens.web.browser import ScoreError, ScoreStream, browser_config, parse_scores  # noqa: E402
from test_web_api import AUTH, TOKEN, client, clock, db, recognizer  # noqa: E402, F401  (fixtures)

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def join(client, name="Ana") -> tuple[dict, str]:  # noqa: F811
    session = client.post("/api/sessions", json={"title": "maths"}, headers=AUTH).json()["session"]
    r = client.post("/api/join", json={"code": session["code"], "name": name})
    client.cookies.clear()
    return session, r.json()["token"]


def scores(top: str, p: float = 0.7) -> dict:
    rest = (1 - p) / (len(CLASSES) - 1)
    return {c: (p if c == top else rest) for c in CLASSES}


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
        # the unsmoothed scores of that face, as the page computes them (parity: scripts/browser_check.py)
        raw = recognizer.classify(frame, [Face(served.box)])[0]
        sent = parse_scores(json.dumps({"face": {"box": list(raw.box), "scores": raw.scores}}), recognizer.classes)
        got = browser.push(sent, t)
        assert got.scores == pytest.approx(served.scores, abs=1e-6)
        assert (got.emotion, got.status) == (served.emotion, served.status)
        on_server.add(Frame([Face(served.box, scores=served.scores, emotion=served.emotion, track_id=1)], time=t))
        in_browser.add(Frame([Face(got.box, scores=got.scores, emotion=got.emotion, track_id=1)], time=t))
    a, b = on_server.flush() and on_server.records, in_browser.flush() and in_browser.records
    assert [(r.second, r.emotion, r.frames) for r in a] == [(r.second, r.emotion, r.frames) for r in b]
