"""The browser pipeline against Python: the same frames through ``static/recognize.js`` in a page
(onnxruntime-web) and through :class:`moodlens.Recognizer`, paired face by face: boxes, scores and
head poses.

``scripts/browser_check.py`` reports it with the browser's speed; tests/test_web_browser_mode.py
holds it to its bars. ``page`` is a Playwright page on a MoodLens page the visitor may use;
nothing here imports Playwright.
"""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np

from moodlens.track import iou_matrix

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


def parity_frames(media: Path) -> list[np.ndarray]:
    """640x480 frames from the shared photos: the portrait first (one face, for the speed run),
    then the other photos (the group has several faces), and the group at 1280x720 (a frame the
    detector shrinks further, with area interpolation for CenterFace)."""
    names = ["portrait.jpg", "angry.jpg", "crying.jpg", "group.jpg"]
    return [fit(cv2.imread(str(media / n))) for n in names] + [fit(cv2.imread(str(media / "group.jpg")), (1280, 720))]


def browser_analyze(page, frames: list[np.ndarray], repeat: int = 30) -> dict:
    """Run the browser pipeline on ``frames`` in ``page`` (a MoodLens page the visitor may use)."""
    pngs = [base64.b64encode(cv2.imencode(".png", f)[1].tobytes()).decode() for f in frames]
    return page.evaluate(ANALYZE_JS, {"pngs": pngs, "repeat": repeat})


def compare(python_faces: list, browser_faces: list[dict]) -> dict:
    """Pair each Python face with its best-overlapping browser face: the lowest IoU, the largest
    score difference, the largest head-pose angle (degrees) and confidence differences, how many
    pairs have a pose on one side only, and how many faces only one side found."""
    if not python_faces or not browser_faces:
        return {"min_iou": None, "max_score_diff": None, "max_pose_diff": None, "max_pose_confidence_diff": None,
                "pose_mismatch": 0, "unmatched": len(python_faces) + len(browser_faces)}
    overlap = iou_matrix(np.array([f.box for f in python_faces]), np.array([f["box"] for f in browser_faces]))
    best = overlap.argmax(1)
    pairs = [(f, browser_faces[j]) for f, j in zip(python_faces, best)]
    diffs = [abs(f.scores.get(c, 0.0) - b["scores"].get(c, 0.0)) for f, b in pairs for c in set(f.scores) | set(b["scores"])]
    posed = [(f.pose, b["pose"]) for f, b in pairs if f.pose is not None and b["pose"] is not None]
    angles = [abs(getattr(p, k) - q[k]) for p, q in posed for k in ("yaw", "pitch", "roll")]
    return {"min_iou": float(overlap.max(1).min()), "max_score_diff": max(diffs, default=0.0),
            "max_pose_diff": max(angles, default=None),
            "max_pose_confidence_diff": max((abs(p.confidence - q["confidence"]) for p, q in posed), default=None),
            "pose_mismatch": sum((f.pose is None) != (b["pose"] is None) for f, b in pairs),
            "unmatched": abs(len(python_faces) - len(browser_faces)) + int(len(set(best.tolist())) < len(best))}
