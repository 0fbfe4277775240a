"""Browser mode in headless Chromium: the student page analyses its (fake) camera with
onnxruntime-web and sends nothing but small JSON score messages, which the server stores; and
the browser pipeline gives the same faces and scores as Python on the same frames.

Skipped without Playwright or Chromium, like tests/test_web_browser.py, whose fixtures it uses.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("playwright.sync_api")

from conftest import MEDIA  # noqa: E402
from moodlens.web.parity import browser_analyze, compare, parity_frames  # noqa: E402
from moodlens.web.server import default_recognizer  # noqa: E402
from test_web_browser import TOKEN, browser, camera_file, playwright, served, server, wait_for  # noqa: E402, F401  (fixtures)


def test_in_browser_mode_the_student_page_sends_only_small_json(browser, server):  # noqa: F811
    import httpx

    auth = {"Authorization": f"Bearer {TOKEN}"}
    session = httpx.post(f"{server}/api/sessions", json={"title": "private"}, headers=auth).json()["session"]
    page = browser.new_context().new_page()
    sent: list = []  # every message the page sends on any WebSocket
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append((ws.url, payload))))
    page.goto(f"{server}/join?code={session['code']}")
    page.fill("#name", "Bea")
    page.click("#join-button")
    page.wait_for_url(f"{server}/student")
    page.goto(f"{server}/student?mode=browser")  # this busy test machine may be slower than the page wants
    wait_for(page, "document.body.dataset.mode", timeout=60_000)
    assert page.evaluate("document.body.dataset.mode") == "browser", page.inner_text("#mode-why")
    assert "No picture of you leaves this computer" in page.inner_text("#consent")
    page.check("#agree")
    page.click("#start")
    wait_for(page, "Number(document.body.dataset.answers || 0) >= 6", timeout=60_000)
    assert "{" in page.inner_text("#sent")  # the student sees what was sent
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
            assert set(message["face"]) == {"box", "scores"} and len(message["face"]["box"]) == 4
    faces = [json.loads(p)["face"] for _, p in sent]
    assert any(f and f["scores"] for f in faces), "the fake camera's face was never read"
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
    for frame, result in zip(frames, answer["results"]):
        got = compare(recognizer.analyze_frame(frame).faces, result["faces"])
        assert got["unmatched"] == 0
        assert got["min_iou"] >= 0.9
        assert got["max_score_diff"] <= 0.02
    assert answer["fps"] > 0
