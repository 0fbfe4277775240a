"""Browser mode in headless Chromium: the student page analyses its (fake) camera with
onnxruntime-web and sends nothing but small JSON messages of numbers, which the server stores;
an attention-only session's page never loads the emotion model; and the browser pipeline gives
the same faces, scores and head poses as Python on the same frames.

Skipped without Playwright or Chromium, like tests/test_web_browser.py, whose fixtures it uses.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("playwright.sync_api")

from conftest import MEDIA  # noqa: E402
from moodlens.pose import POSE_CONSTANTS, estimate_pose, project  # noqa: E402
from moodlens.web.parity import browser_analyze, compare, parity_frames  # noqa: E402
from moodlens.web.server import default_recognizer  # noqa: E402
from test_pose import mirror  # noqa: E402
from test_web_browser import TOKEN, browser, camera_file, playwright, served, server, wait_for  # noqa: E402, F401  (fixtures)


def _consent_and_stream(page, server: str, consent: str, answers: int) -> None:
    """Open a joined student's page in browser mode, check its consent card says ``consent``,
    agree and start, and wait until the server has answered ``answers`` score messages."""
    page.goto(f"{server}/student?mode=browser")  # this busy test machine may be slower than the page wants
    wait_for(page, "document.body.dataset.mode", timeout=60_000)
    assert page.evaluate("document.body.dataset.mode") == "browser", page.inner_text("#mode-why")
    assert consent in page.inner_text("#consent")
    page.check("#agree")
    page.click("#start")
    wait_for(page, f"Number(document.body.dataset.answers || 0) >= {answers}", timeout=60_000)


def test_in_browser_mode_the_student_page_sends_only_small_json(browser, served):  # noqa: F811
    import httpx

    server, app = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    session = httpx.post(f"{server}/api/sessions", json={"title": "private"}, headers=auth).json()["session"]
    page = browser.new_context().new_page()
    sent: list = []  # every message the page sends on any WebSocket
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append((ws.url, payload))))
    page.goto(f"{server}/join?code={session['code']}")
    page.fill("#name", "Bea")
    page.click("#join-button")
    page.wait_for_url(f"{server}/student")
    _consent_and_stream(page, server, "No picture of you leaves this computer", answers=6)
    assert "{" in page.inner_text("#sent")  # the student sees what was sent
    (me,) = app.state.moodlens.live_session(session["id"]).participants.values()
    assert any(r.yaw is not None for r in me.recent), "the page's head poses did not reach the per-second records"
    page.click("#pause")
    count = len(sent)
    page.wait_for_timeout(1500)
    assert len(sent) == count, "a paused page went on sending"
    page.context.close()
    httpx.post(f"{server}/api/sessions/{session['id']}/end", headers=auth)

    assert len(sent) >= 6
    for url, payload in sent:
        assert url.endswith("/ws/student/scores")
        assert isinstance(payload, str), "a binary message (a picture?) left the page"
        assert len(payload) < 400
        message = json.loads(payload)
        assert set(message) == {"face"}
        if message["face"] is not None:
            assert set(message["face"]) == {"box", "pose", "scores"} and len(message["face"]["box"]) == 4
    faces = [json.loads(p)["face"] for _, p in sent]
    assert any(f and f["scores"] for f in faces), "the fake camera's face was never read"
    assert any(f and f["pose"] and set(f["pose"]) == {"yaw", "pitch", "roll", "confidence"} for f in faces)
    rows = httpx.get(f"{server}/api/sessions/{session['id']}/export?format=json", headers=auth).json()["seconds"]
    assert rows and any(r["emotion"] for r in rows)


def test_server_mode_is_the_fallback_and_sends_pictures(browser, server):  # noqa: F811
    import httpx

    session = httpx.post(f"{server}/api/sessions", json={"title": "fallback"},
                         headers={"Authorization": f"Bearer {TOKEN}"}).json()["session"]
    page = browser.new_context().new_page()
    sent: list = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append((ws.url, payload))))
    page.goto(f"{server}/join")
    page.request.post(f"{server}/api/join", data={"code": session["code"], "name": "Cai"})
    page.goto(f"{server}/student?mode=server")
    wait_for(page, "document.body.dataset.mode === 'server'", timeout=60_000)
    assert "picture from your camera" in page.inner_text("#consent")
    page.check("#agree")
    page.click("#start")
    wait_for(page, "Number(document.body.dataset.answers || 0) >= 2", timeout=60_000)
    page.context.close()
    assert sent and all(url.endswith("/ws/student") and isinstance(p, bytes) for url, p in sent)


def test_the_browser_pipeline_matches_python_on_the_same_frames(browser, server):  # noqa: F811
    import httpx

    code = httpx.post(f"{server}/api/sessions", json={"title": "parity"},
                      headers={"Authorization": f"Bearer {TOKEN}"}).json()["session"]["code"]
    page = browser.new_context().new_page()
    page.goto(f"{server}/join")
    page.request.post(f"{server}/api/join", data={"code": code, "name": "Parity"})
    page.goto(f"{server}/student")
    frames = parity_frames(MEDIA)
    answer = browser_analyze(page, frames, repeat=3)
    page.context.close()
    recognizer = default_recognizer()
    assert sum(len(r["faces"]) for r in answer["results"]) >= len(frames)  # the group photo has several
    posed = 0
    for frame, result in zip(frames, answer["results"]):
        got = compare(recognizer.analyze_frame(frame).faces, result["faces"])
        assert got["unmatched"] == 0
        assert got["min_iou"] >= 0.9
        assert got["max_score_diff"] <= 0.02
        # Both sides fit the same five points by the same steps (the same points give the same
        # pose to 1e-5 degrees: the next test), so what differs is the landmarks, which the two
        # runtimes compute to float precision from pixels resized alike.
        assert got["pose_mismatch"] == 0
        if got["max_pose_diff"] is not None:
            posed += 1
            assert got["max_pose_diff"] <= 0.1 and got["max_pose_confidence_diff"] <= 1e-3, got
    assert posed == len(frames)
    assert answer["fps"] > 0


ESTIMATE_JS = """
async ({ cases, constants }) => {
  if (!window.Recognize) {
    await new Promise((ok, bad) => { const s = document.createElement("script"); s.src = "/static/recognize.js";
      s.onload = ok; s.onerror = bad; document.head.append(s); });
  }
  return cases.map(([marks, width]) => Recognize.estimatePose(marks, width, constants));
}
"""


def test_the_browser_pose_is_pythons_on_the_same_landmarks(browser, server):  # noqa: F811
    """recognize.js's pose fit against moodlens.pose.estimate_pose on the landmarks Python's
    detector finds in the shared photos (the group's small faces too), those mirrored, synthetic
    poses with noise, and points that support no pose; and mirroring flips yaw and roll in JS."""
    recognizer = default_recognizer()
    rng = np.random.default_rng(0)
    cases = []
    for frame in parity_frames(MEDIA):
        for face in recognizer.detect(frame):
            cases += [(face.landmarks, frame.shape[1]), (mirror(face.landmarks, frame.shape[1]), frame.shape[1])]
    for yaw, pitch, roll in rng.uniform([-60, -30, -30], [60, 30, 30], (40, 3)):
        cases.append((project(yaw, pitch, roll, (320.0, 240.0), 640) + rng.normal(0, 1.0, (5, 2)), 640))
    cases += [(np.zeros((5, 2)), 640), (np.array([[100, 100], [103, 100], [110, 130], [98, 160], [101, 160]], float), 640)]
    page = browser.new_context().new_page()
    page.goto(f"{server}/join")  # any page of the app: its Content-Security-Policy lets it load the script
    got = page.evaluate(ESTIMATE_JS, {"cases": [(np.asarray(m, float).tolist(), w) for m, w in cases],
                                      "constants": POSE_CONSTANTS})
    page.context.close()
    faces = len(cases) - 42
    worst = 0.0
    for (marks, width), js in zip(cases, got):
        py = estimate_pose(marks, width)
        assert (js is None) == (py is None)
        if py is not None:
            worst = max(worst, *(abs(js[k] - getattr(py, k)) for k in ("yaw", "pitch", "roll")))
            assert js["confidence"] == pytest.approx(py.confidence, abs=1e-6)
    assert worst < 1e-3, worst
    assert got[-1] is None and got[-2] is None
    pairs = [(a, b) for a, b in zip(got[:faces:2], got[1:faces:2]) if a is not None]  # a face, its mirror image
    assert len(pairs) >= 10
    for a, b in pairs:
        assert b["yaw"] == pytest.approx(-a["yaw"], abs=1e-3) and b["roll"] == pytest.approx(-a["roll"], abs=1e-3)
        assert b["pitch"] == pytest.approx(a["pitch"], abs=1e-3)
    assert max(abs(a["yaw"]) for a, _ in pairs) > 5


def test_an_attention_only_page_never_loads_the_emotion_model_and_sends_no_scores(browser, served):  # noqa: F811
    import httpx

    server, app = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    session = httpx.post(f"{server}/api/sessions", json={"title": "attention only", "emotions": False},
                         headers=auth).json()["session"]
    page = browser.new_context().new_page()
    requested: list[str] = []
    sent: list = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append((ws.url, payload))))
    page.goto(f"{server}/join")
    page.request.post(f"{server}/api/join", data={"code": session["code"], "name": "Dee"})
    _consent_and_stream(page, server, "expression is not read", answers=4)
    (me,) = app.state.moodlens.live_session(session["id"]).participants.values()
    records = list(me.recent)
    page.context.close()
    httpx.post(f"{server}/api/sessions/{session['id']}/end", headers=auth)

    assert any(url.endswith("/models/detector.onnx") for url in requested)
    assert not [url for url in requested if "emotion" in url], "the emotion model was fetched"
    assert len(sent) >= 4
    faces = []
    for url, payload in sent:
        assert url.endswith("/ws/student/scores") and isinstance(payload, str)
        face = json.loads(payload)["face"]
        assert face is None or set(face) == {"box", "pose"}, face
        faces.append(face)
    assert any(f and f["pose"] for f in faces), "the fake camera's face got no pose"
    assert records and all(not r.scores and r.emotion is None for r in records)
    assert any(r.yaw is not None for r in records)
