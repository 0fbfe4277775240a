"""The dashboard in Chromium says when per-second numbers are not reaching the database (here:
another program holds the SQLite file locked) and stops saying it once they are stored."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("playwright.sync_api")

from moodlens.web.server import create_app  # noqa: E402
from test_web_api import jpeg, recognizer, uvicorn_server  # noqa: E402, F401
from test_web_browser import TOKEN, browser, camera_file, playwright, teacher_page, wait_for  # noqa: E402, F401


def test_the_dashboard_says_when_storage_is_behind(browser, recognizer, tmp_path):
    import httpx
    from websockets.sync.client import connect

    db = tmp_path / "outage.db"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with uvicorn_server(create_app(f"sqlite:///{db}?timeout=0.2", recognizer, TOKEN)) as (address, _, _):
        server = f"http://{address}"
        session = httpx.post(f"{server}/api/sessions", json={"title": "outage"}, headers=auth).json()["session"]
        token = httpx.post(f"{server}/api/join", json={"code": session["code"], "name": "Ana"}).json()["token"]
        stop = threading.Event()

        def stream() -> None:
            with connect(f"ws://{address}/ws/student?token={token}") as ws:
                while not stop.is_set():
                    ws.send(jpeg())
                    ws.recv(timeout=30)
                    time.sleep(0.3)

        student = threading.Thread(target=stream)
        student.start()
        page = teacher_page(browser, server)
        page.goto(f"{server}/sessions/{session['id']}")
        lock = sqlite3.connect(db, isolation_level=None)
        try:
            assert page.locator("#storage").is_hidden()
            lock.execute("BEGIN EXCLUSIVE")  # another program holds the database
            wait_for(page, "document.getElementById('storage').textContent.includes('Storage is behind')",
                     timeout=15_000)
            assert page.locator("#storage").is_visible()
            lock.execute("COMMIT")
            wait_for(page, "document.getElementById('storage').classList.contains('hidden')", timeout=15_000)
        finally:
            lock.close()
            stop.set()
            student.join(30)
            page.context.close()
