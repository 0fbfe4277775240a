"""End to end in headless Chromium (Playwright) with a fake camera playing a video made from the
shared photos: the live page draws a box and a label over the camera; a student joins a session
and the teacher's dashboard updates; the upload page analyses a photo. Screenshots are saved
(to ``$MOODLENS_SCREENSHOTS`` when set, for a person to look at) and checked pixel by pixel.

Skipped when Playwright or Chromium (Debian's ``chromium`` at /usr/bin/chromium) is missing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
playwright_api = pytest.importorskip("playwright.sync_api")

from moodlens.gallery import make_gallery, shared_participants  # noqa: E402
from moodlens.web.privacy import ATTENTION_ONLY  # noqa: E402
from moodlens.web.server import create_app, default_recognizer  # noqa: E402
from test_web_api import emotion_free  # noqa: E402

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
CHROMIUM = os.environ.get("MOODLENS_CHROMIUM", "/usr/bin/chromium")
TOKEN = "browser-test-token"
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
LABEL_WORDS = (*CLASSES, "uncertain", "too small")
EMOTION_NAMES = re.compile(r"(?<![a-z])(" + "|".join(CLASSES) + r")(?![a-z])", re.IGNORECASE)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def write_y4m(path: Path, image: np.ndarray, frames: int = 10, fps: int = 10) -> Path:
    """A Y4M video (4:2:0) of ``image`` repeated: Chromium's fake camera plays it in a loop."""
    height, width = image.shape[:2]
    yuv = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + yuv)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int, recognizer=None):
    """The app on uvicorn on a loopback port, in a thread; returns (url, uvicorn server, thread, app)."""
    import uvicorn

    app = create_app(f"sqlite:///{db}", recognizer or default_recognizer(), TOKEN)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    return f"http://127.0.0.1:{port}", srv, thread, app


def stop_server(srv, thread) -> None:
    srv.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, app) of the app on a free loopback port, with a fresh SQLite database."""
    url, srv, thread, app = start_server(tmp_path_factory.mktemp("web") / "browser.db", _free_port())
    yield url, app
    stop_server(srv, thread)


@pytest.fixture(scope="module")
def server(served):
    return served[0]


@pytest.fixture(scope="module")
def camera_file(tmp_path_factory) -> Path:
    portrait = cv2.imread(str(MEDIA / "portrait.jpg"))
    assert portrait is not None
    frame = np.full((480, 640, 3), 40, np.uint8)  # the portrait, letterboxed into 640x480
    scaled = cv2.resize(portrait, (640, round(portrait.shape[0] * 640 / portrait.shape[1])))
    top = (480 - scaled.shape[0]) // 2
    frame[top:top + scaled.shape[0]] = scaled
    return write_y4m(tmp_path_factory.mktemp("camera") / "portrait.y4m", frame)


@pytest.fixture(scope="module")
def playwright():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        yield p


def _launch(playwright, args: list[str]):
    try:
        return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    except playwright_api.Error as exc:
        pytest.skip(f"Chromium does not start: {exc}")


@pytest.fixture(scope="module")
def browser(playwright, camera_file):
    """Chromium with a fake camera playing ``camera_file``."""
    b = _launch(playwright, [*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera_file}"])
    yield b
    b.close()


@pytest.fixture(scope="module")
def screen_browser(playwright):
    """Chromium whose screen-share picker picks the tab titled "Meeting gallery" by itself."""
    args = [a for a in CHROMIUM_ARGS if "fake" not in a]  # a fake UI would pick a fake screen
    b = _launch(playwright, [*args, "--auto-select-tab-capture-source-by-title=Meeting gallery"])
    yield b
    b.close()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    keep = os.environ.get("MOODLENS_SCREENSHOTS")
    out = Path(keep) if keep else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out


def teacher_page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server}/live")
    assert "/login" in page.url
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/live")
    return page


def wait_for(page, expression: str, arg=None, timeout: float = 30_000):
    """Wait until ``expression`` is truthy in ``page``. Playwright's own wait_for_function
    compiles its predicate with ``new Function``, which the pages' Content-Security-Policy
    forbids (as it should); an evaluation from the test is not page script and is allowed."""
    deadline = time.monotonic() + timeout / 1e3
    while not page.evaluate(expression, arg):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout / 1e3:.0f} s for {expression}")
        time.sleep(0.1)


def open_session(teacher, url: str, title: str) -> str:
    """Open a class session from the sessions page; returns its join code once shown."""
    teacher.goto(f"{url}/sessions")
    teacher.fill("#title", title)
    teacher.click("#open")
    teacher.wait_for_url(f"{url}/sessions/*")
    wait_for(teacher, "document.body.dataset.participants === '0'")
    return teacher.inner_text("#code").strip()


def hex_to_bgr(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (5, 3, 1)], float)


def test_live_page_draws_box_and_label(browser, server, screenshots):
    page = teacher_page(browser, server)
    page.click("#start")
    try:
        wait_for(page, "Number(document.body.dataset.answers || 0) >= 5", timeout=30_000)
        page.wait_for_selector("#faces li .label", timeout=10_000)
    except playwright_api.Error:
        page.screenshot(path=str(screenshots / "live-failed.png"))
        raise
    label = page.inner_text("#faces li .label")
    assert any(label.startswith(word) for word in LABEL_WORDS), label
    assert float(page.inner_text("#fps")) > 0 and float(page.inner_text("#latency")) > 0
    # Hold the faces still: an answer arriving between reading them and the screenshot would move
    # the drawn box (seen on a busy machine). Two animation frames later the canvas shows them.
    page.evaluate("overlay.update = () => {}")
    page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    face = json.loads(page.evaluate("JSON.stringify(overlay.faces[0])"))
    color = page.evaluate("(e) => ML.color(e)", face["emotion"])
    canvas = page.locator("#view")
    width = page.evaluate("document.getElementById('view').width")
    path = screenshots / "live.png"
    canvas.screenshot(path=str(path))
    page.screenshot(path=str(screenshots / "live-page.png"))
    page.context.close()

    shot = cv2.imread(str(path))
    assert shot is not None and shot.std() > 20, "the view is blank"
    scale = shot.shape[1] / width
    x, y, w, h = (round(v * scale) for v in face["box"])
    # the box's edges are drawn in the emotion's colour
    edge = np.concatenate([shot[y, x + 3:x + w - 3], shot[y + h, x + 3:x + w - 3],
                           shot[y + 3:y + h - 3, x], shot[y + 3:y + h - 3, x + w]])
    share = (np.abs(edge - hex_to_bgr(color)).max(axis=1) < 40).mean()
    assert share > 0.9, f"only {share:.0%} of the box outline has the label colour {color}"
    # the label sits on a filled strip of that colour just above (or below) the box
    above = shot[max(0, y - round(18 * scale)):y - 2, x:x + round(60 * scale)]
    below = shot[y + h + 2:y + h + round(18 * scale), x:x + round(60 * scale)]
    strip = max(((np.abs(r.reshape(-1, 3) - hex_to_bgr(color)).max(axis=1) < 40).mean() if r.size else 0)
                for r in (above, below))
    assert strip > 0.4, "no label drawn next to the box"
    # and the face shows through inside the box
    assert shot[y + 5:y + h - 5, x + 5:x + w - 5].std() > 15


def test_student_joins_and_the_dashboard_updates(browser, server, screenshots):
    teacher = teacher_page(browser, server)
    code = open_session(teacher, server, "Browser class")
    assert len(code) == 6

    student = browser.new_context().new_page()
    student.goto(f"{server}/join?code={code}")
    assert "Pictures of you are never stored" in student.inner_text("body")
    student.fill("#name", "Ana")
    student.click("#join-button")
    student.wait_for_url(f"{server}/student")
    wait_for(student, "document.getElementById('me').textContent === 'Ana'")  # from /api/me
    assert student.is_disabled("#start")  # until the student agrees to what the consent card says
    student.check("#agree")
    student.click("#start")
    wait_for(student, "Number(document.body.dataset.answers || 0) >= 2", timeout=30_000)

    # the teacher's page was not reloaded: the dashboard socket brings Ana in, then her emotions
    wait_for(teacher, "[...document.querySelectorAll('.tile .name')].some((e) => e.value === 'Ana')",
                              timeout=15_000)
    wait_for(teacher, "(words) => { const t = document.querySelector('.tile .emotion');"
        " return t && words.some((w) => t.textContent.startsWith(w)); }", arg=list(LABEL_WORDS), timeout=15_000)
    wait_for(teacher, "document.querySelector('#state').textContent.includes('1 connected')")
    student.screenshot(path=str(screenshots / "student.png"))
    time.sleep(3.5)  # a few seconds of records for the sparkline and the class timeline
    snapshot = teacher.evaluate("snapshot")
    tile = snapshot["participants"][0]
    assert tile["name"] == "Ana" and tile["connected"] and len(tile["spark"]) >= 2
    assert len(snapshot["timeline"]["seconds"]) >= 2
    path = screenshots / "dashboard.png"
    teacher.screenshot(path=str(path), full_page=True)
    spark_canvas = teacher.locator(".tile canvas").first
    spark_canvas.screenshot(path=str(screenshots / "spark.png"))

    shot = cv2.imread(str(path))
    assert shot is not None and shot.std() > 20
    colours = [hex_to_bgr(c) for c in teacher.evaluate("Object.values(ML.meta.colors)")]

    def painted(image: np.ndarray) -> float:
        """Share of pixels in one of the emotion colours."""
        mask = np.zeros(image.shape[:2], bool)
        for c in colours:
            mask |= np.abs(image.astype(float) - c).max(axis=2) < 12
        return mask.mean()

    # one bar per second so far, on a 60 s axis: a few percent of the sparkline
    assert painted(cv2.imread(str(screenshots / "spark.png"))) > 0.01, "the sparkline is empty"
    teacher.locator("#timeline").screenshot(path=str(screenshots / "timeline.png"))
    assert painted(cv2.imread(str(screenshots / "timeline.png"))) > 0.2, "the class timeline has no emotion bands"

    # Pause: the student is still in class with the camera off, not gone; Resume brings her back
    student.click("#pause")
    wait_for(teacher, "document.querySelector('.tile .emotion').textContent.startsWith('camera off')", timeout=15_000)
    assert student.inner_text("#fps") == "–" and student.inner_text("#mine") == ""  # no stale numbers
    student.click("#pause")
    wait_for(teacher, "(words) => { const t = document.querySelector('.tile .emotion');"
        " return t && words.some((w) => t.textContent.startsWith(w)); }", arg=list(LABEL_WORDS), timeout=15_000)

    # ending the session tells the student and turns the dashboard into a review
    teacher.once("dialog", lambda dialog: dialog.accept())
    teacher.click("#end")
    wait_for(teacher, "document.body.dataset.live === 'false'", timeout=15_000)
    wait_for(student, "document.getElementById('status').textContent.includes('ended')", timeout=15_000)
    assert teacher.input_value(".tile .name") == "Ana"
    teacher.screenshot(path=str(screenshots / "review.png"), full_page=True)
    teacher.goto(f"{server}/sessions")
    teacher.wait_for_selector("#list a:text('Browser class')")
    teacher.screenshot(path=str(screenshots / "sessions.png"))
    teacher.context.close()
    student.context.close()


def test_deleting_a_live_session_from_its_dashboard_goes_to_the_list_without_errors(browser, server):
    teacher = teacher_page(browser, server)
    errors = []
    teacher.on("pageerror", lambda e: errors.append(str(e)))
    open_session(teacher, server, "Deleted class")

    def slow_list(route):  # a slow network: the dashboard page lives on while the list loads
        time.sleep(1.5)
        route.continue_()

    teacher.route(f"{server}/sessions", slow_list)
    teacher.once("dialog", lambda dialog: dialog.accept())
    teacher.click("#delete")
    teacher.wait_for_url(f"{server}/sessions")
    assert errors == []  # the dashboard socket closing after the delete did not fetch the lost session
    assert "Deleted class" not in teacher.inner_text("body")
    teacher.context.close()


def test_upload_page_analyses_a_photo(browser, server, screenshots):
    page = teacher_page(browser, server)
    page.goto(f"{server}/upload")
    page.set_input_files("#file", str(MEDIA / "group.jpg"))
    wait_for(page, "Number(document.body.dataset.faces || 0) >= 1", timeout=20_000)
    assert page.locator("#faces li").count() >= 7
    path = screenshots / "upload.png"
    page.locator("#view").screenshot(path=str(path))
    page.context.close()
    shot = cv2.imread(str(path))
    assert shot is not None and shot.std() > 20
    original = cv2.resize(cv2.imread(str(MEDIA / "group.jpg")), (shot.shape[1], shot.shape[0]))
    assert np.abs(shot.astype(int) - original).max(axis=2).__gt__(60).mean() > 0.005, "no boxes drawn"


def show_meeting(teacher, frame: np.ndarray) -> None:
    """Open a tab titled "Meeting gallery" showing ``frame`` (the tab the teacher will share),
    then bring the teacher's page back to the front."""
    picture = base64.b64encode(cv2.imencode(".png", frame)[1].tobytes()).decode()
    call = teacher.context.new_page()
    call.goto("about:blank")  # not a page of the server: its CSP would block the data: image
    call.set_content("<title>Meeting gallery</title><body style='margin:0;background:#202124'>"
                     f"<img src='data:image/png;base64,{picture}' style='display:block'></body>")
    teacher.bring_to_front()


def test_teacher_shares_a_meeting_gallery(screen_browser, server, screenshots):
    """A tab shows a 3x3 meeting gallery; the teacher shares it and each face becomes a tile."""
    frame, truth = make_gallery(shared_participants(MEDIA), 3, 3, (1280, 720))
    teacher = teacher_page(screen_browser, server)
    show_meeting(teacher, frame)
    teacher.goto(f"{server}/sessions")
    teacher.fill("#title", "Gallery class")
    teacher.click("#open")
    teacher.wait_for_url(f"{server}/sessions/*")
    teacher.click("#share")
    try:
        wait_for(teacher, "Number(document.body.dataset.participants) >= 7", timeout=30_000)
    except (playwright_api.Error, TimeoutError):
        teacher.screenshot(path=str(screenshots / "gallery-failed.png"), full_page=True)
        raise
    time.sleep(2.5)  # a few seconds of records
    snapshot = teacher.evaluate("snapshot")
    tiles = [p for p in snapshot["participants"] if p["source"] == "tile"]
    assert 7 <= len(tiles) <= len(truth) + 1 and all(t["connected"] for t in tiles)
    assert len({t["name"] for t in tiles}) == len(tiles)
    path = screenshots / "gallery.png"
    teacher.screenshot(path=str(path), full_page=True)
    teacher.locator("#gallery").screenshot(path=str(screenshots / "gallery-overlay.png"))
    overlay = cv2.imread(str(screenshots / "gallery-overlay.png"))
    assert overlay is not None and overlay.std() > 20
    boxes = teacher.evaluate("document.getElementById('gallery').width")
    assert boxes == 1280
    teacher.click("#share")  # stop sharing: the tiles leave
    wait_for(teacher, "snapshot.participants.every((p) => !p.connected)", timeout=15_000)
    teacher.context.close()


def test_upload_page_analyses_a_video(browser, server, screenshots, tmp_path):
    """A video goes up with progress, is analysed on the server, and its timeline is charted."""
    frames = [cv2.resize(cv2.imread(str(MEDIA / n)), (320, 240)) for n in ("portrait.jpg", "crying.jpg")]
    video = tmp_path / "lesson.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(30):
        writer.write(frames[i // 10 % 2])
    writer.release()
    page = teacher_page(browser, server)
    page.goto(f"{server}/upload")
    page.set_input_files("#file", str(video))
    wait_for(page, "Number(document.body.dataset.seconds || 0) >= 3", timeout=60_000)
    assert page.inner_text("#progress-text").startswith("Done")
    # Chromium plays no AVI: the page says so instead of showing a black player
    wait_for(page, "document.getElementById('error').textContent.includes('cannot play')")
    page.locator("#timeline").screenshot(path=str(screenshots / "video-timeline.png"))
    page.screenshot(path=str(screenshots / "video-page.png"), full_page=True)
    href = page.get_attribute("#session-link", "href")
    assert href.startswith("/sessions/")
    page.context.close()
    chart = cv2.imread(str(screenshots / "video-timeline.png"))
    assert chart is not None and chart.std() > 20


def _upload_page(browser, server):
    page = teacher_page(browser, server)
    page.goto(f"{server}/upload")
    return page


def _view_shows(page, screenshots, photo: str) -> float:
    """Mean difference (0-255) between the upload page's canvas, as shown, and ``photo``."""
    path = screenshots / f"view-{photo}.png"
    page.locator("#view").screenshot(path=str(path))
    shot = cv2.imread(str(path))
    original = cv2.resize(cv2.imread(str(MEDIA / photo)), (shot.shape[1], shot.shape[0]))
    return float(np.abs(shot.astype(int) - original).mean())


def test_a_photo_chosen_after_a_played_video_replaces_it(browser, server, screenshots, tmp_path):
    """The video's drawing loop and playback stop when another file is chosen: the canvas keeps
    the photo and the face list its faces, and the player's button goes."""
    frame = cv2.resize(cv2.imread(str(MEDIA / "portrait.jpg")), (320, 240))
    video = tmp_path / "lesson.webm"  # VP8, which Chromium plays
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"VP80"), 10, (320, 240))
    for _ in range(30):
        writer.write(frame)
    writer.release()
    page = _upload_page(browser, server)
    page.set_input_files("#file", str(video))
    wait_for(page, "Number(document.body.dataset.seconds || 0) >= 2", timeout=60_000)
    assert page.is_visible("#video-controls")
    page.click("#play")
    wait_for(page, "document.getElementById('video').currentTime > 0.5")
    page.set_input_files("#file", str(MEDIA / "group.jpg"))
    wait_for(page, "Number(document.body.dataset.faces || 0) >= 7", timeout=20_000)
    faces = page.locator("#faces li").count()
    page.wait_for_timeout(500)  # some thirty animation frames, in which the video's loop would draw
    assert page.evaluate("document.getElementById('video').paused")
    assert not page.is_visible("#video-controls")
    assert page.evaluate("document.getElementById('view').width") == cv2.imread(str(MEDIA / "group.jpg")).shape[1]
    assert page.locator("#faces li").count() == faces >= 7
    assert _view_shows(page, screenshots, "group.jpg") < 20, "the canvas does not show the photo"
    page.context.close()


def test_a_failed_upload_shows_only_its_error(browser, server, tmp_path):
    """A refused file leaves nothing of the file before it (picture, faces, scores, progress)
    under its error, which names the limit as the page does."""
    photo = (MEDIA / "portrait.jpg").read_bytes()
    bad = {"broken.jpg": photo[:2000], "notes.jpg": b"not a picture\n" * 20, "fake.mp4": b"\x00" * 4000,
           "huge.jpg": photo + b"\x00" * (11 * 2**20)}
    page = _upload_page(browser, server)
    wait_for(page, "document.getElementById('limits').textContent !== ''")
    assert "images up to 10 MB" in page.inner_text("#limits")
    for name, data in bad.items():
        page.set_input_files("#file", str(MEDIA / "portrait.jpg"))
        wait_for(page, "Number(document.body.dataset.faces || 0) >= 1", timeout=20_000)
        assert page.is_visible("#view") and page.locator("#faces li").count() >= 1
        (tmp_path / name).write_bytes(data)
        page.set_input_files("#file", str(tmp_path / name))
        wait_for(page, "document.getElementById('error').textContent !== ''", timeout=20_000)
        error = page.inner_text("#error")
        assert not page.is_visible("#view"), name
        assert page.locator("#faces li").count() == 0 and page.inner_text("#scores") == "", name
        assert not page.is_visible("#progress-box"), name
        if name == "huge.jpg":
            assert error == "image larger than 10 MB"
    page.context.close()


# --- class sessions: reconnecting, a dashboard of 50, the lesson report -------------------------

def test_after_a_server_restart_the_student_and_the_dashboard_come_back_on_their_own(browser, tmp_path, screenshots):
    db, port = tmp_path / "restart.db", _free_port()
    recognizer = default_recognizer()
    url, srv, thread, _ = start_server(db, port, recognizer)
    teacher = teacher_page(browser, url)
    code = open_session(teacher, url, "Restart class")
    student = browser.new_context().new_page()
    student.goto(f"{url}/join?code={code}")
    student.fill("#name", "Ana")
    student.click("#join-button")
    student.wait_for_url(f"{url}/student")
    student.check("#agree")
    student.click("#start")
    wait_for(student, "Number(document.body.dataset.answers || 0) >= 2", timeout=30_000)
    wait_for(teacher, "document.body.dataset.present === '1'", timeout=15_000)

    stop_server(srv, thread)
    wait_for(student, "document.body.dataset.connection === 'reconnecting'", timeout=15_000)
    wait_for(teacher, "document.body.dataset.connection === 'reconnecting'", timeout=15_000)
    assert "reconnecting" in student.inner_text("#status")
    student.evaluate("delete document.body.dataset.answers")
    try:
        url, srv, thread, _ = start_server(db, port, recognizer)
        back = time.perf_counter()
        wait_for(student, "Number(document.body.dataset.answers || 0) >= 1", timeout=10_000)
        resumed = time.perf_counter() - back
        wait_for(teacher, "document.body.dataset.connection === 'open' && document.body.dataset.present === '1'",
                                  timeout=10_000)
        print(f"\nstudent sending again {resumed:.1f} s after the server was back")
        assert "1 connected" in teacher.inner_text("#state") and student.inner_text("#start") and \
            student.is_disabled("#start")  # no click needed
        teacher.screenshot(path=str(screenshots / "restart-dashboard.png"))
    finally:
        teacher.context.close()
        student.context.close()
        stop_server(srv, thread)


def _class_of(app, n: int, seconds: int, flagged: int, ended: bool, privacy: str = "per_student",
              emotions: bool = True, episodes: dict | None = None):
    """A session of ``n`` participants with ``seconds`` of per-second records so far: the first
    ``flagged`` turn sad halfway, participant 4 (Dev) is away for 40 s a third of the way in;
    all face the screen but in ``episodes`` (participant index -> ``(start, end, state)``).
    Returns the session and ``feed(second)``, which records one more second."""
    from moodlens.aggregate import SecondRecord
    from moodlens.faces import Face

    ml = app.state.moodlens
    session = ml.store.create_session("Year 9 history: the 1920s", CLASSES, started_at=time.time() - seconds - 1,
                                      privacy=privacy, emotions=emotions)

    def attention(i: int, second: int) -> str:
        return next((state for start, end, state in (episodes or {}).get(i, ()) if start <= second < end), "facing")

    rng = np.random.default_rng(1)
    people = [ml.store.add_participant(session.id, f"Student {i + 1:02d}", "student", joined_at=session.started_at)
              for i in range(n)]
    for i, name in enumerate(["Ana", "Ben", "Chloe", "Dev", "Eli"][:n]):
        ml.store.rename_participant(people[i].id, name)
    live = None if ended else ml.live_session(session)

    def feed(second: int) -> list:
        batch = []
        for i, p in enumerate(people):
            if i == 3 and seconds // 3 <= second < seconds // 3 + 40:
                continue  # camera off for 40 s: a gap
            sad = i < flagged and second >= seconds // 2
            p_ = np.array([0.03, 0.02, 0.05, 0.1, 0.7 if sad else 0.1, 0.05, 0.05 if sad else 0.65])
            p_ = np.clip(p_ + rng.normal(0, 0.03, 7), 0.001, None)
            scores = dict(zip(CLASSES, (p_ / p_.sum()).tolist()))
            batch.append(SecondRecord(second, p.id, max(scores, key=scores.get), scores, 2, attention=attention(i, second)))
        if live is None:
            return batch
        ml.store.add_seconds(session.id, batch)
        live.count(batch)
        for r in batch:  # as if each had just sent a frame of that second
            me = live.participants[r.track_id]
            me.recent.append(r)
            me.connections = 1
            me.face = Face((0, 0, 80, 80), scores=r.scores, emotion=r.emotion) if r.attention != "no_face" else None
            me.last_frame = r.second + 0.5
        return batch

    history = [r for second in range(seconds) for r in feed(second)]
    if ended:  # stored at once: a past lesson
        ml.store.add_seconds(session.id, history)
        ml.store.end_session(session.id, session.started_at + seconds)
    return session, feed


def _no_sideways_overflow(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page is {width} px wide on a {page.viewport_size['width']} px screen"


def _keep_feeding(session, feed, second: int):
    """Feed a live class from ``second`` on, each second as the clock passes it, so the class
    goes on while the page is looked at; returns the function that stops it."""
    running = threading.Event()
    running.set()

    def keep_feeding() -> None:
        nonlocal second
        while running.is_set():
            if time.time() - session.started_at > second + 1:
                feed(second)
                second += 1
            time.sleep(0.1)

    feeder = threading.Thread(target=keep_feeding, daemon=True)
    feeder.start()

    def stop() -> None:
        running.clear()
        feeder.join()
    return stop


def test_a_class_of_50_fits_a_laptop_screen_flagged_first(browser, served, screenshots):
    url, app = served
    session, feed = _class_of(app, 50, 120, 5, ended=False)
    stop_feeding = _keep_feeding(session, feed, 120)
    page = teacher_page(browser, url)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{url}/sessions/{session.id}")
    wait_for(page, "document.body.dataset.participants === '50'")
    wait_for(page, "snapshot.flagged === 5", timeout=10_000)
    page.screenshot(path=str(screenshots / "dashboard-50-laptop.png"))
    page.screenshot(path=str(screenshots / "dashboard-50-laptop-full.png"), full_page=True)
    names = page.evaluate("[...document.querySelectorAll('.tile .name')].map((e) => e.value)")
    assert sorted(names[:5]) == ["Ana", "Ben", "Chloe", "Dev", "Eli"]  # flagged first
    assert page.locator(".tile.flagged").count() == 5
    # the flagged tiles are on the first screen, below the mood and the timeline
    box = page.locator(".tile.flagged").nth(4).bounding_box()
    assert box["y"] + box["height"] <= 768 + 200, box
    assert page.locator(".tile").nth(49).bounding_box()["width"] >= 150
    _no_sideways_overflow(page)
    # acknowledging a flag keeps it but stops counting it
    page.locator(".tile.flagged button.ack").first.click()
    wait_for(page, "snapshot.flagged === 4", timeout=10_000)
    # renaming inline
    page.locator(".tile .name").nth(10).fill("Zed Renamed")
    page.locator(".tile .name").nth(10).press("Enter")
    wait_for(page, "snapshot.participants.some((p) => p.name === 'Zed Renamed')", timeout=10_000)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(1500)
    _no_sideways_overflow(page)
    page.screenshot(path=str(screenshots / "dashboard-50-phone.png"))
    page.context.close()
    stop_feeding()
    app.state.moodlens.live.pop(session.id, None)


@pytest.mark.parametrize("viewport", [(1366, 768), (390, 844)], ids=["laptop", "phone"])
def test_the_lesson_report_in_the_browser(browser, served, screenshots, viewport):
    url, app = served
    session, _ = _class_of(app, 12, 600, 3, ended=True)
    page = teacher_page(browser, url)
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    page.goto(f"{url}/sessions/{session.id}/report")
    wait_for(page, "document.body.dataset.ready === '1'", timeout=15_000)
    name = f"report-{viewport[0]}x{viewport[1]}"
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
    _no_sideways_overflow(page)
    assert page.locator("#students tbody tr").count() == 12
    assert page.locator("#flags tbody tr").count() == 3 and "sadder than usual" in page.inner_text("#flags")
    assert "No stretch" in page.inner_text("#drops")  # 3 of 12 sadder is three students, not the class
    # sorting by flags puts the flagged students last, then first
    page.click("th[data-key=flag_count]")
    page.click("th[data-key=flag_count]")
    first = page.locator("#students tbody tr").first.inner_text()
    assert any(n in first for n in ("Ana", "Ben", "Chloe"))
    # the sparklines share one time axis: Dev's 40 s away is a gap at the same place in a 600 s lesson
    spark = page.evaluate("report.students.find((s) => s.name === 'Dev').spark.map((b) => b[0])")
    assert not any(200 <= s < 240 for s in spark) and spark[0] == 0
    page.emulate_media(media="print")
    page.screenshot(path=str(screenshots / f"{name}-print.png"), full_page=True)
    assert not page.is_visible("#print")
    labels = _time_axis(page)
    assert len(set(labels)) == len(labels) >= (5 if viewport[0] > 1000 else 2), labels
    page.context.close()


def _time_axis(page) -> list[str]:
    """The labels drawn under the report's mood chart, left to right."""
    return page.evaluate("""() => {
      const labels = [], fillText = CanvasRenderingContext2D.prototype.fillText;
      CanvasRenderingContext2D.prototype.fillText = function (text, x, y) {
        if (this.canvas.id === "mood" && text !== "100%") labels.push([x, text]);
        return fillText.apply(this, arguments);
      };
      drawMood(document.getElementById("mood"), report.mood, report.drops, report.classes, report.duration);
      CanvasRenderingContext2D.prototype.fillText = fillText;
      return labels.sort((a, b) => a[0] - b[0]).map((l) => l[1]);
    }""")


def test_a_short_lessons_time_axis_has_distinct_labels(browser, served, screenshots):
    url, app = served
    session, _ = _class_of(app, 6, 37, 0, ended=True)
    page = teacher_page(browser, url)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{url}/sessions/{session.id}/report")
    wait_for(page, "document.body.dataset.ready === '1'", timeout=15_000)
    page.locator("#mood").screenshot(path=str(screenshots / "report-37s-mood.png"))
    labels = _time_axis(page)
    assert 5 <= len(labels) <= 8 and len(set(labels)) == len(labels), labels
    page.context.close()


def test_a_class_only_report_counts_the_class_and_shows_no_student(browser, served, screenshots):
    url, app = served
    session, _ = _class_of(app, 6, 120, 2, ended=True, privacy="class_only")
    page = teacher_page(browser, url)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{url}/sessions/{session.id}/report")
    wait_for(page, "document.body.dataset.ready === '1'", timeout=15_000)
    page.screenshot(path=str(screenshots / "report-class-only.png"), full_page=True)
    assert page.evaluate("report.students_count") == 6
    attendance = page.inner_text("#attendance")
    assert attendance.startswith("6 joined") and "on camera at some point" not in attendance, attendance
    assert not page.is_visible("#students") and not page.is_visible("#table-csv")
    assert "per-student numbers" in page.inner_text("#students-card")
    assert not page.is_visible("#flags-card")
    page.context.close()


def test_no_page_is_wider_than_a_phone(browser, server, screenshots):
    teacher = teacher_page(browser, server)
    teacher.set_viewport_size({"width": 390, "height": 844})
    code = open_session(teacher, server, "A class with a rather long title, as some teachers write them")
    _no_sideways_overflow(teacher)
    for path in ("/", "/live", "/upload", "/sessions"):
        teacher.goto(f"{server}{path}")
        teacher.wait_for_load_state("networkidle")
        _no_sideways_overflow(teacher)
    teacher.screenshot(path=str(screenshots / "sessions-phone.png"), full_page=True)
    student = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    student.goto(f"{server}/join?code={code}")
    _no_sideways_overflow(student)
    student.fill("#name", "Ana")
    student.click("#join-button")
    student.wait_for_url(f"{server}/student")
    wait_for(student, "document.getElementById('me').textContent === 'Ana'")
    _no_sideways_overflow(student)
    student.screenshot(path=str(screenshots / "student-phone.png"), full_page=True)
    teacher.context.close()
    student.context.close()


def test_a_shared_gallery_comes_back_on_its_own_after_a_server_restart(screen_browser, tmp_path):
    db, port = tmp_path / "gallery-restart.db", _free_port()
    recognizer = default_recognizer()
    url, srv, thread, _ = start_server(db, port, recognizer)
    frame, _ = make_gallery(shared_participants(MEDIA), 2, 2, (960, 540))
    teacher = teacher_page(screen_browser, url)
    show_meeting(teacher, frame)
    open_session(teacher, url, "Gallery restart")
    teacher.click("#share")
    try:
        wait_for(teacher, "document.getElementById('share-status').textContent.startsWith('gallery: ') "
                                  "&& / [1-9] faces/.test(document.getElementById('share-status').textContent)",
                                  timeout=30_000)
        stop_server(srv, thread)
        wait_for(teacher, "document.getElementById('share-status').textContent.includes('reconnecting')",
                                  timeout=15_000)
        url, srv, thread, _ = start_server(db, port, recognizer)
        wait_for(teacher, "/ [1-9] faces/.test(document.getElementById('share-status').textContent)",
                                  timeout=10_000)  # frames answered again, the share never stopped
        assert teacher.inner_text("#share") == "Stop sharing"
    finally:
        teacher.context.close()
        stop_server(srv, thread)


def test_an_attention_only_class_on_the_teachers_pages(browser, served, screenshots):
    """A live attention-only class of 12 (simulated seconds, going on while the page is looked
    at), then a past one's report: the pages show attention and its flags, and no mood."""
    url, app = served
    now = {4: [(120, 260, "away")], 1: [(170, 240, "no_face")], 2: [(185, 200, "away")], 9: [(195, 230, "away")]}
    session, feed = _class_of(app, 12, 200, 0, ended=False, emotions=False, episodes=now)
    stop_feeding = _keep_feeding(session, feed, 200)
    page = teacher_page(browser, url)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{url}/sessions/{session.id}")
    wait_for(page, "document.body.dataset.participants === '12'")
    wait_for(page, "snapshot.flagged === 1", timeout=10_000)  # Eli, away since 120
    page.screenshot(path=str(screenshots / "dashboard-attention-only.png"), full_page=True)
    assert not page.is_visible("#mood-card") and page.is_visible("#attention-card")
    assert "May need attention: looking away for" in page.inner_text(".tile.flagged")
    assert page.inner_text("#attending-now").endswith("%")
    assert page.inner_text(".tile:not(.flagged) .attention").startswith("facing · ")
    assert not EMOTION_NAMES.search(page.inner_text("main"))
    page.context.close()
    stop_feeding()
    app.state.moodlens.live.pop(session.id, None)

    past = {4: [(300, 380, "away")], 1: [(100, 190, "no_face")], **{i: [(420, 470, "away")] for i in range(7, 12)}}
    done, _ = _class_of(app, 12, 600, 0, ended=True, emotions=False, episodes=past)
    page = teacher_page(browser, url)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{url}/sessions/{done.id}/report")
    wait_for(page, "document.body.dataset.ready === '1'", timeout=15_000)
    page.screenshot(path=str(screenshots / "report-attention-only.png"), full_page=True)
    _no_sideways_overflow(page)
    assert not page.is_visible("#mood-card")
    assert "The class drifted" in page.inner_text("#drifts")  # 5 of 12 away for 50 s: 58 % facing
    headings = page.inner_text("#students thead")
    assert "Facing the screen" in headings and "Usual expression" not in headings
    assert "not in view" in page.inner_text("#flags") and "looking away" in page.inner_text("#flags")
    assert not EMOTION_NAMES.search(page.inner_text("main"))
    page.context.close()


def test_an_attention_only_session_from_opening_to_report_never_sends_the_teacher_an_emotion(browser, server,
                                                                                             screenshots):
    """Opened as attention only on the sessions page; a student with a camera (server mode, so the
    server's own stream of the session runs); every socket message the teacher's page receives,
    live and after the end, carries no emotion field or name."""
    teacher = teacher_page(browser, server)
    received: list = []
    teacher.on("websocket", lambda ws: ws.on("framereceived", lambda payload: received.append(payload)))
    teacher.goto(f"{server}/sessions")
    teacher.fill("#title", "Attention only class")
    teacher.select_option("#reads", "attention")
    teacher.click("#open")
    teacher.wait_for_url(f"{server}/sessions/*")
    wait_for(teacher, "document.body.dataset.participants === '0'")
    code = teacher.inner_text("#code").strip()
    student = browser.new_context().new_page()
    student.goto(f"{server}/join?code={code}")
    student.fill("#name", "Ana")
    student.click("#join-button")
    student.wait_for_url(f"{server}/student")
    student.goto(f"{server}/student?mode=server")
    wait_for(student, "!document.getElementById('notice').classList.contains('hidden')")
    assert ATTENTION_ONLY in student.inner_text("#consent")
    student.check("#agree")
    student.click("#start")
    wait_for(student, "Number(document.body.dataset.answers || 0) >= 6", timeout=60_000)
    wait_for(teacher, "(() => { const t = document.querySelector('.tile .attention');"
             " return t && t.textContent.startsWith('facing · '); })()", timeout=20_000)
    teacher.screenshot(path=str(screenshots / "dashboard-attention-only-live.png"), full_page=True)
    assert not teacher.is_visible("#mood-card") and not teacher.is_visible(".tile .emotion")
    teacher.once("dialog", lambda dialog: dialog.accept())
    teacher.click("#end")
    wait_for(teacher, "document.body.dataset.live === 'false'", timeout=15_000)
    teacher.goto(teacher.url + "/report")
    wait_for(teacher, "document.body.dataset.ready === '1'", timeout=15_000)
    assert not EMOTION_NAMES.search(teacher.inner_text("main"))
    student.context.close()
    teacher.context.close()
    snapshots = [json.loads(p) for p in received if isinstance(p, str)]
    assert len(snapshots) >= 3 and any(s["participants"] for s in snapshots)
    for snapshot in snapshots:
        emotion_free(snapshot)
