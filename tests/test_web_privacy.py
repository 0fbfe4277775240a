"""Privacy modes and retention through the API: a "class only" session shows no student on its
own, and the class only from 5 students on, live, in review and in its export; ended sessions
past the retention setting are deleted. Students here send scores (browser mode), which needs no
pictures, so the tests are quick."""

from __future__ import annotations

import json
from contextlib import ExitStack

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from moodlens.web.server import create_app  # noqa: E402
from test_web_api import AUTH, TOKEN, client, clock, db, recognizer  # noqa: E402, F401  (fixtures)

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
DAY = 86400


def happy() -> str:
    return json.dumps({"face": {"box": [100, 80, 120, 140], "scores": {c: 0.7 if c == "happy" else 0.05 for c in CLASSES}}})


def facing() -> str:  # an attention-only session's message: a face and its pose, no scores
    return json.dumps({"face": {"box": [100, 80, 120, 140], "pose": {"yaw": 5.0, "pitch": 0.0, "roll": 0.0,
                                                                    "confidence": 0.9}}})


def open_session(client, privacy: str, emotions: bool = True) -> dict:  # noqa: F811
    r = client.post("/api/sessions", json={"title": "class", "privacy": privacy, "emotions": emotions}, headers=AUTH)
    assert r.status_code == 201
    return r.json()["session"]


def students(client, session: dict, n: int) -> list[str]:  # noqa: F811
    tokens = []
    for i in range(n):
        tokens.append(client.post("/api/join", json={"code": session["code"], "name": f"S{i}"}).json()["token"])
        client.cookies.clear()
    return tokens


def stream(client, clock, session, tokens, seconds: int = 3, message=happy) -> dict:  # noqa: F811
    """Each student sends two ``message``s (happy faces) a second for ``seconds`` (all sockets
    open at once); the dashboard's view at the end."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(client.websocket_connect(f"/ws/student/scores?token={t}")) for t in tokens]
        for k in range(seconds * 2):
            clock.t = session["started_at"] + 0.25 + k * 0.5
            for ws in sockets:
                ws.send_text(message())
                ws.receive_json()
        view = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()
    return view


def test_an_unknown_privacy_mode_is_refused(client):  # noqa: F811
    r = client.post("/api/sessions", json={"title": "x", "privacy": "everyone"}, headers=AUTH)
    assert r.status_code == 400 and "class_only" in r.json()["error"]


def test_class_only_shows_no_student_and_the_class_only_from_five(client, clock):  # noqa: F811
    session = open_session(client, "class_only")
    tokens = students(client, session, 5)
    client.cookies.set("moodlens_student", tokens[0])
    me = client.get("/api/me").json()
    assert me["session"]["privacy"] == "class_only" and me["retention_days"] is None
    client.cookies.clear()

    few = stream(client, clock, session, tokens[:4])
    assert few["privacy"] == "class_only" and few["students"] == 4
    assert few["participants"] == [] and few["hidden"]
    assert set(few["mood"].values()) == {0.0} and few["timeline"]["seconds"] == []

    enough = stream(client, clock, session, tokens)
    assert enough["participants"] == [] and enough["hidden"] is None and enough["students"] == 5
    assert enough["mood"]["happy"] == 1.0
    assert enough["timeline"]["seconds"] and min(enough["timeline"]["judged"]) >= 5

    client.post(f"/api/sessions/{session['id']}/end", headers=AUTH)
    review = client.get(f"/api/sessions/{session['id']}", headers=AUTH).json()
    assert review["participants"] == [] and review["students"] == 5 and review["mood"]["happy"] == 1.0
    export = client.get(f"/api/sessions/{session['id']}/export?format=json", headers=AUTH).json()
    rows = export["seconds"]
    assert rows and all(set(row) == {"second", "on_camera", "attending", "judged", "shares"} for row in rows)
    assert all(row["judged"] >= 5 and row["on_camera"] >= 5 and row["attending"] == 1.0 for row in rows)
    csv = client.get(f"/api/sessions/{session['id']}/export?format=csv", headers=AUTH).text
    assert csv.splitlines()[0] == "second,on_camera,attending,judged," + ",".join(CLASSES)
    assert "S0" not in csv
    report = client.get(f"/api/sessions/{session['id']}/report", headers=AUTH).json()
    assert report["privacy"] == "class_only" and report["students"] == [] and report["flags"] == []
    assert report["students_count"] == 5 and any(report["mood"]["shares"])
    assert "S0" not in client.get(f"/api/sessions/{session['id']}/report?format=csv", headers=AUTH).text


def test_an_attention_only_class_only_session_shows_the_class_attending_from_five(client, clock):  # noqa: F811
    session = open_session(client, "class_only", emotions=False)
    tokens = students(client, session, 5)
    few = stream(client, clock, session, tokens[:4], message=facing)
    assert few["participants"] == [] and few["hidden"] and few["attending"] is None and few["attending_now"] is None
    assert few["timeline"]["seconds"] == [] and "mood" not in few
    enough = stream(client, clock, session, tokens, message=facing)
    assert enough["attending_now"] == {"facing": 5, "on_camera": 5, "share": 1.0} and "mood" not in enough
    assert enough["timeline"]["seconds"] and min(enough["timeline"]["on_camera"]) >= 5
    client.post(f"/api/sessions/{session['id']}/end", headers=AUTH)
    export = client.get(f"/api/sessions/{session['id']}/export?format=json", headers=AUTH).json()
    assert export["seconds"] and all(set(row) == {"second", "on_camera", "attending"} for row in export["seconds"])
    csv = client.get(f"/api/sessions/{session['id']}/export?format=csv", headers=AUTH).text
    assert csv.splitlines()[0] == "second,on_camera,attending"
    report = client.get(f"/api/sessions/{session['id']}/report", headers=AUTH).json()
    assert report["students"] == [] and "mood" not in report
    curve = report["attention"]["curve"]
    assert any(curve["attending"]) and all(a is None for a, n in zip(curve["attending"], curve["faces"]) if n < 5)


def test_per_student_sessions_show_every_student(client, clock):  # noqa: F811
    session = open_session(client, "per_student")
    view = stream(client, clock, session, students(client, session, 2))
    assert view["privacy"] == "per_student" and len(view["participants"]) == 2 and view["mood"]["happy"] == 1.0


def test_retention_deletes_ended_sessions_past_it(client, clock):  # noqa: F811
    assert client.get("/api/settings/retention", headers=AUTH).json() == {"retention_days": None}
    old = open_session(client, "per_student")
    stream(client, clock, old, students(client, old, 1))
    client.post(f"/api/sessions/{old['id']}/end", headers=AUTH)
    clock.t += 3 * DAY
    recent = open_session(client, "per_student")
    client.post(f"/api/sessions/{recent['id']}/end", headers=AUTH)
    still_open = open_session(client, "per_student")
    clock.t += 1 * DAY

    for bad in [0, -1, 1.5, "7", True, 5000]:
        r = client.put("/api/settings/retention", json={"retention_days": bad}, headers=AUTH)
        assert r.status_code == 400, bad
    assert client.put("/api/settings/retention", json={"retention_days": 2}).status_code == 401
    r = client.put("/api/settings/retention", json={"retention_days": 2}, headers=AUTH)
    assert r.json() == {"retention_days": 2, "deleted": [old["id"]]}
    left = {s["id"] for s in client.get("/api/sessions", headers=AUTH).json()["sessions"]}
    assert left == {recent["id"], still_open["id"]}
    assert client.get(f"/api/sessions/{old['id']}/export?format=json", headers=AUTH).status_code == 404

    clock.t += 100 * DAY  # the open session stays however old it is
    r = client.put("/api/settings/retention", json={"retention_days": 30}, headers=AUTH)
    assert r.json()["deleted"] == [recent["id"]]
    assert client.put("/api/settings/retention", json={"retention_days": None}, headers=AUTH).json()["deleted"] == []
    assert client.get("/api/settings/retention", headers=AUTH).json() == {"retention_days": None}


def test_the_server_applies_retention_when_it_starts(tmp_path, recognizer, clock):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'web.db'}"
    with TestClient(create_app(url, recognizer, TOKEN, clock=clock)) as c:
        old = open_session(c, "per_student")
        c.post(f"/api/sessions/{old['id']}/end", headers=AUTH)
        c.put("/api/settings/retention", json={"retention_days": 7}, headers=AUTH)
    clock.t += 8 * DAY
    with TestClient(create_app(url, recognizer, TOKEN, clock=clock)) as c:
        assert c.get("/api/sessions", headers=AUTH).json()["sessions"] == []
