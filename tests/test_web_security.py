"""Hardening of the web app: other sites' requests (CSRF), login sessions, throttles, headers,
malformed input that must never be a 500, costly frames, crash leftovers, and a real
`moodlens serve` process (forwarded headers, WebSocket close codes, start-up message)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from moodlens.errors import MoodLensError  # noqa: E402
from moodlens.recognizer import FaceStream, Recognizer  # noqa: E402
from moodlens.store import Store  # noqa: E402
from moodlens.web.security import Throttle  # noqa: E402
from moodlens.web.server import create_app  # noqa: E402
from moodlens.web.uploads import Limits  # noqa: E402
from test_store import postgres_server  # noqa: E402, F401
from test_web_api import AUTH, TOKEN, any_db, client, clock, db, join, jpeg, new_session, recognizer  # noqa: E402, F401

HERE = "http://testserver"


# --- other sites ---------------------------------------------------------------------------

@pytest.mark.parametrize("origin", ["http://testserver:8001", "http://evil.example", "null"])
def test_writes_from_another_origin_are_refused(client, origin):
    """A page on another port of the same host is same-site, so SameSite cookies go with it."""
    session = new_session(client)
    cross = {**AUTH, "origin": origin}
    assert client.post("/api/sessions", json={"title": "x"}, headers=cross).status_code == 403
    assert client.post(f"/api/sessions/{session['id']}/end", headers=cross).status_code == 403
    assert client.delete(f"/api/sessions/{session['id']}", headers=cross).status_code == 403
    r = client.post("/api/join", json={"code": session["code"], "name": "Ana"}, headers={"origin": origin})
    assert r.status_code == 403 and "error" in r.json()
    assert client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()["live"]  # still open
    assert client.post("/api/sessions", json={"title": "x"}, headers={**AUTH, "origin": HERE}).status_code == 201
    assert client.post("/api/sessions", json={"title": "x"},
                       headers={**AUTH, "sec-fetch-site": "same-site"}).status_code == 403


@pytest.mark.parametrize("kind", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; b=x"])
def test_writes_take_only_json_bodies(client, kind):
    """What a cross-site form can send without asking first is refused."""
    r = client.post("/api/sessions", content=b'{"title": "x"}', headers={**AUTH, "content-type": kind})
    assert r.status_code == 415 and "JSON" in r.json()["error"]
    assert client.get("/api/sessions", headers=AUTH).json()["sessions"] == []


# --- the teacher's login -------------------------------------------------------------------

def login(client, token: str = TOKEN, **kwargs):
    return client.post("/login", data={"token": token, "next": "/sessions"}, follow_redirects=False, **kwargs)


def test_the_login_cookie_is_a_revocable_session_not_the_token(client):
    r = login(client)
    cookie = client.cookies.get("moodlens_login")
    assert r.status_code == 303 and cookie and TOKEN not in r.headers["set-cookie"]
    assert client.get("/api/sessions").status_code == 200
    client.get("/logout")
    client.cookies.set("moodlens_login", cookie)  # a copy of the cookie kept from before
    assert client.get("/api/sessions").status_code == 401
    assert client.get("/sessions", follow_redirects=False).status_code == 303


def test_resetting_the_token_ends_every_login(db, recognizer, monkeypatch, capsys):
    from moodlens.cli import main

    monkeypatch.delenv("MOODLENS_TOKEN", raising=False)
    with TestClient(create_app(db, recognizer)) as c:
        first = capsys.readouterr().out.split()[-1]
        assert login(c, first).status_code == 303 and c.get("/api/sessions").status_code == 200
        cookie = c.cookies.get("moodlens_login")
    assert main(["token", "--reset", "--db", db]) == 0
    new = capsys.readouterr().out.split()[-1]
    assert new != first
    with TestClient(create_app(db, recognizer)) as c:
        c.cookies.set("moodlens_login", cookie)
        assert c.get("/api/sessions").status_code == 401  # the login made with the old token has ended
        c.cookies.clear()
        assert c.get("/api/sessions", headers={"Authorization": f"Bearer {first}"}).status_code == 401
        assert c.get("/api/sessions", headers={"Authorization": f"Bearer {new}"}).status_code == 200


def test_cookies_are_secure_and_hsts_is_sent_over_https(db, recognizer):
    with TestClient(create_app(db, recognizer, TOKEN), base_url="https://testserver") as c:
        r = login(c, headers={"origin": "https://testserver"})
        assert "secure" in r.headers["set-cookie"].lower()
        assert c.get("/healthz").headers["strict-transport-security"].startswith("max-age=")
    with TestClient(create_app(db, recognizer, TOKEN)) as c:
        assert "secure" not in login(c).headers["set-cookie"].lower()
        assert "strict-transport-security" not in c.get("/healthz").headers


def test_wrong_tokens_are_throttled_and_logged(client, caplog):
    caplog.set_level(logging.WARNING, "moodlens.web")
    login(client)  # the teacher, logged in before someone at the same address starts guessing
    session_cookie = client.cookies.get("moodlens_login")
    client.cookies.clear()
    for _ in range(10):
        assert client.get("/api/sessions", headers={"Authorization": "Bearer guess-guess-guess"}).status_code == 401
    assert client.get("/api/sessions", headers={"Authorization": "Bearer guess-guess-guess"}).status_code == 429
    assert client.get("/api/sessions", headers=AUTH).status_code == 429  # even the right one, for a minute
    assert login(client).headers["location"] == "/login?error=wait&next=/sessions"
    assert sum("wrong teacher token from" in r.message for r in caplog.records) == 10
    client.cookies.set("moodlens_login", session_cookie)
    assert client.get("/api/sessions").status_code == 200  # a login session goes on


@pytest.mark.parametrize("given, ok", [("short-token", False), ("  a-token-of-20-chars  ", True)])
def test_the_token_from_the_environment_is_long_enough_and_stripped(db, recognizer, monkeypatch, given, ok):
    from moodlens.errors import MoodLensError

    monkeypatch.setenv("MOODLENS_TOKEN", given)
    if not ok:
        with pytest.raises(MoodLensError, match="at least 16"):
            create_app(db, recognizer)
        return
    with TestClient(create_app(db, recognizer)) as c:
        assert login(c, "a-token-of-20-chars").headers["location"] == "/sessions"  # typed without the spaces


# --- join codes and participants -----------------------------------------------------------

def test_a_guesser_behind_the_class_nat_does_not_lock_the_class_out(client):
    session = new_session(client)
    join(client, session["code"], "Ana")  # the class's code, used from this address
    other = new_session(client, "another class")
    for i in range(20):
        assert client.post("/api/join", json={"code": f"ZZZZ{i:02d}", "name": "x"}).status_code == 404
    assert client.post("/api/join", json={"code": "ZZZZZZ", "name": "x"}).status_code == 429
    assert client.post("/api/join", json={"code": other["code"], "name": "x"}).status_code == 429  # no more guesses
    join(client, session["code"], "Ben")  # the class keeps joining


def test_forwarded_addresses_count_only_from_a_trusted_proxy(db, recognizer):
    rotate = [{"x-forwarded-for": f"10.0.0.{i}"} for i in range(25)]
    with TestClient(create_app(db, recognizer, TOKEN)) as c:
        codes = [c.post("/api/join", json={"code": "ZZZZZZ", "name": "x"}, headers=h).status_code for h in rotate]
        assert codes[:20] == [404] * 20 and set(codes[20:]) == {429}  # all one address: the peer's
    with TestClient(create_app(db, recognizer, TOKEN, trusted_proxies="*")) as c:
        codes = [c.post("/api/join", json={"code": "ZZZZZZ", "name": "x"}, headers=h).status_code for h in rotate]
        assert set(codes) == {404}  # behind a proxy we trust, each student has an address of their own


def test_the_throttles_memory_is_bounded():
    now = [0.0]
    throttle = Throttle(3, keys=100, clock=lambda: now[0])
    for i in range(1000):
        throttle.hit(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100
    for _ in range(3):
        throttle.hit("1.2.3.4")
    assert throttle.blocked("1.2.3.4") and not throttle.blocked("5.6.7.8")
    now[0] = 61.0
    throttle.hit("5.6.7.8")
    assert len(throttle) == 1 and not throttle.blocked("1.2.3.4")  # a minute later all is forgotten


def test_a_session_takes_at_most_its_participant_cap(db, recognizer):
    with TestClient(create_app(db, recognizer, TOKEN, limits=Limits(participants=3))) as c:
        session = new_session(c)
        for name in ("A", "B", "C"):
            join(c, session["code"], name)
        r = c.post("/api/join", json={"code": session["code"], "name": "D"})
        assert r.status_code == 429 and "full" in r.json()["error"]
        assert len(c.get(f"/api/sessions/{session['id']}", headers=AUTH).json()["participants"]) == 3


# --- no 500s -------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [("get", "/nope"), ("get", "/api/nope"), ("post", "/api/nope"),
                                          ("put", "/api/sessions"), ("get", "/static/nope.js")])
def test_unknown_routes_and_methods_answer_json(client, method, path):
    r = client.request(method, path, headers=AUTH)
    assert r.status_code in (404, 405) and set(r.json()) == {"error"}


def test_deeply_nested_json_is_a_400(client):
    body = b"[" * 30_000 + b"]" * 30_000  # valid JSON, under the 64 KB body limit
    for path in ("/api/sessions", "/api/join"):
        r = client.post(path, content=body, headers={**AUTH, "content-type": "application/json"})
        assert r.status_code == 400 and "error" in r.json()


def test_any_text_in_names_and_titles_is_stored(any_db, recognizer):
    """NUL characters (PostgreSQL refuses them) and lone surrogates (UTF-8 cannot encode them)."""
    with TestClient(create_app(any_db, recognizer, TOKEN)) as c:
        r = c.post("/api/sessions", content=b'{"title": "Maths\\u0000 \\ud800"}',
                   headers={**AUTH, "content-type": "application/json"})
        assert r.status_code == 201 and r.json()["session"]["title"] == "Maths \ufffd"
        session = r.json()["session"]
        r = c.post("/api/join", content=json.dumps({"code": session["code"], "name": "An\x00a\udc00"},
                                                   ensure_ascii=True).encode(),
                   headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        pid = r.json()["participant"]["id"]
        r = c.patch(f"/api/participants/{pid}", content=b'{"name": "\\udfff\\u0000B"}',
                    headers={**AUTH, "content-type": "application/json"})
        assert r.status_code == 200 and r.json()["name"] == "\ufffd B"
        assert c.get("/api/sessions", headers=AUTH).status_code == 200


# --- headers -------------------------------------------------------------------------------

def test_pages_carry_security_headers_and_a_script_nonce(client):
    for path in ("/login", "/join"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        nonce = csp.split("'nonce-")[1].split("'")[0]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        assert r.text.count("<script") == r.text.count(f'<script nonce="{nonce}"') > 0
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
    assert client.get("/login").headers["content-security-policy"] != client.get("/login").headers[
        "content-security-policy"]  # a fresh nonce each time
    script = client.get("/static/moodlens.js")  # may run as a worker: its policy lets it load models
    assert "script-src 'self' 'wasm-unsafe-eval'" in script.headers["content-security-policy"]
    api = client.get("/api/sessions", headers=AUTH)
    assert api.headers["x-content-type-options"] == "nosniff" and "frame-ancestors" in api.headers[
        "content-security-policy"]


# --- costly frames -------------------------------------------------------------------------

def big_jpeg(width: int = 6000, height: int = 6000) -> bytes:
    """A small file declaring many pixels (one colour compresses to almost nothing)."""
    return cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 10])[1].tobytes()


def test_live_frames_declaring_too_many_pixels_are_refused_before_decoding(client, monkeypatch):
    data = big_jpeg()
    assert len(data) < Limits().frame_bytes
    decoded = []
    import moodlens.web.uploads as uploads

    monkeypatch.setattr(uploads, "decode_image", lambda d: decoded.append(1) or cv2.imdecode(
        np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR))
    session = new_session(client)
    token = join(client, session["code"], "Ana")
    with client.websocket_connect(f"/ws/student?token={token}") as ws:
        ws.send_bytes(data)
        reply = ws.receive_json()
        assert reply["status"] == 413 and "6000x6000" in reply["error"]
        ws.send_bytes(jpeg())
        assert "faces" in ws.receive_json()
    assert decoded == [1]  # only the good frame was decoded


class CostlyRecognizer(Recognizer):
    """The real recognizer, 80 ms of CPU more per frame: a participant whose frames are costly."""

    def open_stream(self, detect_every: int = 3, smoothing_s: float = 0.5) -> FaceStream:
        stream = super().open_stream(detect_every, smoothing_s)
        push = stream.push

        def costly_push(*args, **kwargs):
            end = time.thread_time() + 0.08
            while time.thread_time() < end:
                pass
            return push(*args, **kwargs)

        stream.push = costly_push
        return stream


def test_a_costly_sender_gets_a_fair_share_of_the_workers(db, recognizer):
    """After a frame that took t CPU seconds, the sender's next frame waits 3t: a participant
    whose frames are costly cannot hold a worker all the time."""
    costly = CostlyRecognizer(recognizer.model, recognizer.detector)
    with TestClient(create_app(db, costly, TOKEN, workers=2)) as c:
        with c.websocket_connect("/ws/live", headers=AUTH) as ws:
            frame, answered, start = jpeg(), 0, time.perf_counter()
            while time.perf_counter() - start < 2.0:  # sends as fast as answers come
                ws.send_bytes(frame)
                ws.receive_json()
                answered += 1
    assert answered <= 2.0 / (4 * 0.08) + 1  # at most a quarter of one worker's time, not 2 / 0.08 = 25


# --- crash leftovers -----------------------------------------------------------------------

def test_uploads_and_video_sessions_left_by_a_crash_are_cleaned_at_start(db, recognizer, tmp_path, monkeypatch):
    monkeypatch.setenv("MOODLENS_DATA", str(tmp_path / "data"))
    with TestClient(create_app(db, recognizer, TOKEN)) as c:
        uploads = c.app.state.moodlens.uploads
    store = Store(db)
    video = store.create_session("talk.mp4", ["happy"], kind="video")
    store.close()
    uploads.mkdir(parents=True, exist_ok=True)
    (uploads / "moodlens-abc.mp4").write_bytes(b"half an upload")
    with TestClient(create_app(db, recognizer, TOKEN)) as c:
        assert not any(uploads.iterdir())
        listed = {s["id"]: s for s in c.get("/api/sessions", headers=AUTH).json()["sessions"]}
        assert not listed[video.id]["open"] and listed[video.id]["title"] == "talk.mp4 (interrupted)"


def test_class_sessions_a_stopped_server_left_open_are_shown_as_such_and_can_be_ended(db, recognizer, clock):
    with TestClient(create_app(db, recognizer, TOKEN, clock=clock)) as c:
        session = new_session(c)
        assert c.get("/api/sessions", headers=AUTH).json()["sessions"][0]["left_open"] is False
    with TestClient(create_app(db, recognizer, TOKEN, clock=clock)) as c:  # the next start
        assert c.get("/api/sessions", headers=AUTH).json()["sessions"][0]["left_open"] is True
        token = join(c, session["code"], "Ana")
        with c.websocket_connect(f"/ws/student?token={token}") as ws:  # the class goes on
            ws.send_bytes(jpeg())
            ws.receive_json()
        assert c.get("/api/sessions", headers=AUTH).json()["sessions"][0]["left_open"] is False
    with TestClient(create_app(db, recognizer, TOKEN, clock=clock)) as c:
        assert c.post(f"/api/sessions/{session['id']}/end", headers=AUTH).status_code == 200
        listed = c.get("/api/sessions", headers=AUTH).json()["sessions"][0]
        assert not listed["open"] and listed["left_open"] is False


# --- start-up -------------------------------------------------------------------------------

def test_the_start_up_message_gives_students_the_network_address_and_says_https(monkeypatch):
    from moodlens.web import server

    monkeypatch.setattr(server, "lan_address", lambda: "192.168.1.20")
    lines = "\n".join(server.startup_message("0.0.0.0", 8000, https=False, token_known=True))
    assert "students on other computers: http://192.168.1.20:8000/join" in lines
    assert "only over https" in lines and "--self-signed" in lines and "moodlens token --reset" in lines
    lines = "\n".join(server.startup_message("0.0.0.0", 8443, https=True, token_known=False))
    assert "https://192.168.1.20:8443/join" in lines and "--self-signed" not in lines


def test_a_self_signed_certificate_covers_this_computer_and_is_kept(tmp_path):
    import ssl

    from cryptography import x509

    from moodlens.web.tls import self_signed_certificate

    cert, key = self_signed_certificate(tmp_path, "192.168.1.20")
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)  # a usable pair
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "192.168.1.20"}
    assert key.stat().st_mode & 0o077 == 0  # the key is the owner's alone
    made = cert.read_bytes()
    assert self_signed_certificate(tmp_path, "192.168.1.20")[0].read_bytes() == made  # kept
    assert self_signed_certificate(tmp_path, "10.0.0.5")[0].read_bytes() != made  # a new address: made again


# --- a real `moodlens serve` ---------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`moodlens serve` in a process of its own on a free port, with its start-up output."""
    home = tmp_path_factory.mktemp("serve")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MOODLENS_DATA": str(home), "MOODLENS_TOKEN": TOKEN,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "moodlens.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    while proc.poll() is None and not any("students" in line for line in lines):
        lines.append(proc.stdout.readline())
    import httpx

    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz")
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield port, "".join(lines), home
    proc.terminate()
    proc.wait(30)


def test_serve_says_where_students_go_and_how_to_get_https(served):
    port, output, home = served
    assert f"http://127.0.0.1:{port}/join" in output and "--self-signed" in output
    assert str(home / "moodlens.db") in output  # the database, in the per-user data folder


def test_serve_trusts_no_forwarded_header_by_default(served):
    """uvicorn believes X-Forwarded-For from loopback unless told not to: rotating it bypassed
    the join limit."""
    import httpx

    port, _, _ = served
    codes = [httpx.post(f"http://127.0.0.1:{port}/api/join", json={"code": "ZZZZZZ", "name": "x"},
                        headers={"x-forwarded-for": f"10.1.0.{i}"}).status_code for i in range(22)]
    assert codes[-1] == 429


@pytest.mark.parametrize("path, code", [("/ws/live", 4401), ("/ws/student", 4401),
                                        ("/ws/sessions/1/dashboard?token=" + TOKEN, 4404)])
def test_socket_refusals_close_with_the_documented_codes(served, path, code):
    """Refused before accepting, a browser sees only an HTTP 403 and no reason."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    port, _, _ = served
    with pytest.raises(ConnectionClosed) as info, connect(f"ws://127.0.0.1:{port}{path}") as ws:
        ws.recv(timeout=10)
    assert info.value.rcvd.code == code


@pytest.mark.parametrize("proxies", ["notanip", "10.0.0.5, proxy.local", "10.0.0.0/33"])
def test_a_trusted_proxy_that_is_no_address_is_refused(db, recognizer, proxies):
    with pytest.raises(MoodLensError, match="not an IP address or network"):
        create_app(db, recognizer, TOKEN, trusted_proxies=proxies)
    with TestClient(create_app(db, recognizer, TOKEN, trusted_proxies="10.0.0.5, 10.0.0.0/8, ::1,")) as c:
        assert c.get("/healthz").status_code == 200  # addresses, networks and a trailing comma are fine
