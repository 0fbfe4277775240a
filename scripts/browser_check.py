"""Browser mode against Python: the same frames through static/recognize.js in headless Chromium
(onnxruntime-web) and through moodlens.Recognizer, and the browser's speed at 640x480.

    python scripts/browser_check.py                 # parity on 4 frames, speed over 30 frames
    python scripts/browser_check.py --repeat 100 --json

It starts the web app on a free loopback port (temp SQLite), joins a session as a student in
Chromium (``/usr/bin/chromium`` or ``MOODLENS_CHROMIUM``), opens the student page (cross-origin
isolated, so onnxruntime-web may use threads) and runs the browser pipeline on lossless PNG
frames made from the shared photos. Each Python face is paired with the browser face of highest
IoU; reported: the lowest IoU, the largest score difference, the largest head-pose angle and
confidence differences, faces found by one side only (or with a pose on one side only), and
analysed frames/s (canvas read + detect + pose + crop + classify of one 640x480 frame with one
face). Exits 1 when a bar is missed (IoU >= 0.9, scores within 0.02, poses within 1.5 degrees and
the same faces and poses found, >= 10 frames/s).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CHROMIUM = os.environ.get("MOODLENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "browser-check-token"


def run(repeat: int) -> dict:
    import httpx
    import uvicorn
    from playwright.sync_api import sync_playwright

    from moodlens.web.parity import browser_analyze, compare, parity_frames
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
        frames = parity_frames(MEDIA)
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
    def worst(key, pick):
        return pick(f[key] for f in per_frame if f[key] is not None)

    return {"detector": recognizer.detector.name, "frames": per_frame,
            "min_iou": worst("min_iou", min), "max_score_diff": worst("max_score_diff", max),
            "max_pose_diff": worst("max_pose_diff", max), "max_pose_confidence_diff": worst("max_pose_confidence_diff", max),
            "unmatched_faces": sum(f["unmatched"] for f in per_frame),
            "pose_mismatch": sum(f["pose_mismatch"] for f in per_frame),
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
        and report["max_pose_diff"] <= 1.5 and not report["pose_mismatch"] and report["fps_640x480"] >= 10
    print(json.dumps(report, indent=None if args.json else 1))
    if not args.json:
        print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
