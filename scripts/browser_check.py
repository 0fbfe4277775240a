"""Browser mode against Python: the same frames through static/recognize.js in headless Chromium
(onnxruntime-web) and through moodlens.Recognizer, and the browser's speed at 640x480.

    python scripts/browser_check.py                 # parity on 4 frames, speed over 30 frames
    python scripts/browser_check.py --repeat 100 --json

It starts the web app on a free loopback port (temp SQLite), joins a session as a student in
Chromium (``/usr/bin/chromium`` or ``MOODLENS_CHROMIUM``), opens the student page (cross-origin
isolated, so onnxruntime-web may use threads) and runs the browser pipeline on lossless PNG
frames made from the shared photos. Each Python face is paired with the browser face of highest
IoU; reported: the lowest IoU, the largest score difference, faces found by one side only, and
analysed frames/s (canvas read + detect + crop + classify of one 640x480 frame with one face).
Exits 1 when a bar is missed (IoU >= 0.9, scores within 0.02, same faces, >= 10 frames/s).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CHROMIUM = os.environ.get("MOODLENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "browser-check-token"

# Runs in the page: the browser pipeline on each PNG, then `repeat` timed runs on the first.
ANALYZE_JS = """
async ({ pngs, repeat }) => {
  if (!window.Recognize) {
    await new Promise((ok, bad) => { const s = document.createElement("script"); s.src = "/static/recognize.js";
      s.onload = ok; s.onerror = bad; document.head.append(s); });
  }
  const config = await (await fetch("/api/browser")).json();
  const recognizer = await Recognize.Recognizer.create(config);
  const bitmaps = [];
  for (const b64 of pngs) {
    // decoded here, not fetched: the pages' Content-Security-Policy allows no data: connections
    const blob = new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: "image/png" });
    bitmaps.push(await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" }));
  }
  const read = (bitmap) => {
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  };
  const results = [];
  for (const bitmap of bitmaps) results.push(await recognizer.analyze(read(bitmap)));
  await recognizer.analyze(read(bitmaps[0]));  // warm
  const t0 = performance.now();
  const ms = [];
  for (let i = 0; i < repeat; i++) ms.push((await recognizer.analyze(read(bitmaps[0]))).ms);
  const seconds = (performance.now() - t0) / 1000;
  return { results, fps: repeat / seconds, threads: recognizer.threads, isolated: self.crossOriginIsolated,
           detect_ms: ms.reduce((a, m) => a + m.detect, 0) / repeat,
           classify_ms: ms.reduce((a, m) => a + m.classify, 0) / repeat };
}
"""


def fit(image: np.ndarray, size=(640, 480), fill: int = 40) -> np.ndarray:
    """``image`` scaled to fit ``size`` (never enlarged beyond it), letterboxed."""
    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    small = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    out = np.full((height, width, 3), fill, np.uint8)
    y, x = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def test_frames() -> list[np.ndarray]:
    """640x480 frames from the shared photos: the portrait first (one face, for the speed run),
    then the other photos (the group has several faces), and the group at 1280x720 (a frame the
    detector shrinks further, with area interpolation for CenterFace)."""
    names = ["portrait.jpg", "angry.jpg", "crying.jpg", "group.jpg"]
    return [fit(cv2.imread(str(MEDIA / n))) for n in names] + [fit(cv2.imread(str(MEDIA / "group.jpg")), (1280, 720))]


def browser_analyze(page, frames: list[np.ndarray], repeat: int = 30) -> dict:
    """Run the browser pipeline on ``frames`` in ``page`` (a MoodLens page the visitor may use)."""
    pngs = [base64.b64encode(cv2.imencode(".png", f)[1].tobytes()).decode() for f in frames]
    return page.evaluate(ANALYZE_JS, {"pngs": pngs, "repeat": repeat})


def compare(python_faces: list, browser_faces: list[dict]) -> dict:
    """Pair each Python face with its best-overlapping browser face: the lowest IoU, the largest
    score difference, and how many faces only one side found."""
    from moodlens.track import iou_matrix

    if not python_faces or not browser_faces:
        return {"min_iou": None, "max_score_diff": None, "unmatched": len(python_faces) + len(browser_faces)}
    overlap = iou_matrix(np.array([f.box for f in python_faces]), np.array([f["box"] for f in browser_faces]))
    best = overlap.argmax(1)
    diffs = [abs(f.scores.get(c, 0.0) - browser_faces[j]["scores"].get(c, 0.0))
             for f, j in zip(python_faces, best) for c in set(f.scores) | set(browser_faces[j]["scores"])]
    return {"min_iou": float(overlap.max(1).min()), "max_score_diff": max(diffs, default=0.0),
            "unmatched": abs(len(python_faces) - len(browser_faces)) + int(len(set(best.tolist())) < len(best))}


def run(repeat: int) -> dict:
    import httpx
    import uvicorn
    from playwright.sync_api import sync_playwright

    from moodlens.web.server import create_app, default_recognizer

    recognizer = default_recognizer()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = Path(tempfile.mkdtemp(prefix="moodlens-browser-")) / "check.db"
    server = uvicorn.Server(uvicorn.Config(create_app(f"sqlite:///{db}", recognizer, TOKEN), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        code = httpx.post(f"{base}/api/sessions", json={"title": "browser check"},
                          headers={"Authorization": f"Bearer {TOKEN}"}).json()["session"]["code"]
        frames = test_frames()
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = chromium.new_page()
            page.goto(f"{base}/join")
            page.request.post(f"{base}/api/join", data={"code": code, "name": "Parity"})
            page.goto(f"{base}/student")
            answer = browser_analyze(page, frames, repeat)
            chromium.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    per_frame = []
    for frame, result in zip(frames, answer["results"]):
        faces = recognizer.analyze_frame(frame).faces
        per_frame.append({"python_faces": len(faces), "browser_faces": len(result["faces"]),
                          **compare(faces, result["faces"])})
    ious = [f["min_iou"] for f in per_frame if f["min_iou"] is not None]
    diffs = [f["max_score_diff"] for f in per_frame if f["max_score_diff"] is not None]
    return {"detector": recognizer.detector.name, "frames": per_frame,
            "min_iou": min(ious), "max_score_diff": max(diffs),
            "unmatched_faces": sum(f["unmatched"] for f in per_frame),
            "fps_640x480": round(answer["fps"], 1), "detect_ms": round(answer["detect_ms"], 1),
            "classify_ms": round(answer["classify_ms"], 1), "threads": answer["threads"],
            "cross_origin_isolated": answer["isolated"], "load_average": round(os.getloadavg()[0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed runs on the one-face frame")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    args = parser.parse_args()
    report = run(args.repeat)
    ok = report["min_iou"] >= 0.9 and report["max_score_diff"] <= 0.02 and not report["unmatched_faces"] \
        and report["fps_640x480"] >= 10
    print(json.dumps(report, indent=None if args.json else 1))
    if not args.json:
        print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
