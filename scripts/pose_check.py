"""How well five landmarks tell where a head points: the figures of docs/attention.md.

No head-pose dataset with true angles reaches this machine, so the check uses what is exact:

1. geometry: the generic face projected at known angles and places, with landmark noise;
2. mirrored real faces: flipping a photo must negate yaw and roll and keep pitch;
3. rotated real faces: turning a photo by a known angle in its plane must add that roll and
   leave the angle between the head's direction and the camera alone;
4. cost: the pose's share of the end-to-end time of a one-face 640x480 frame.

Real faces: every face in the shared photos plus PublicTest faces of FER2013 (upscaled, on a
grey canvas), each re-detected after the change and matched to itself by overlap.

    python scripts/pose_check.py ../shared/datasets/fer2013/fer2013.csv.gz --media ../shared/media --faces 300
    python scripts/pose_check.py ../shared/datasets/fer2013/fer2013.csv.gz --proportions   # FACE_MODEL's shape
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from moodlens import Recognizer
from moodlens.pose import estimate_pose, project
from moodlens.track import iou


def geometry(rng: np.random.Generator, n: int, noise_px: float) -> dict:
    errors = []
    for _ in range(n):
        truth = rng.uniform([-60, -35, -30], [60, 35, 30])
        marks = project(*truth, rng.uniform([100, 100], [540, 380]), 640, rng.uniform(400, 1200))
        pose = estimate_pose(marks + rng.normal(0, noise_px, marks.shape), 640)
        if pose is not None:
            errors.append(np.abs([pose.yaw, pose.pitch, pose.roll] - truth))
    errors = np.array(errors)
    named = lambda values: dict(zip(("yaw", "pitch", "roll"), np.round(values, 2).tolist()))  # noqa: E731
    return {"noise_px": noise_px, "faces": n, "posed": len(errors), "mean_abs_error_deg": named(errors.mean(0)),
            "p90_abs_error_deg": named(np.percentile(errors, 90, axis=0))}


def fer_canvases(csv: Path, split: str, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    from moodlens.training.data import load_fer2013  # the training side only reads the CSV here
    faces = load_fer2013(csv, split).images
    picks = rng.choice(len(faces), size=min(n, len(faces)), replace=False)
    canvases = []
    for face in faces[picks]:
        canvas = np.full((320, 320), 128, np.uint8)
        canvas[64:256, 64:256] = cv2.resize(face, (192, 192), interpolation=cv2.INTER_CUBIC)
        canvases.append(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))
    return canvases


def proportions(recognizer: Recognizer, images: list[np.ndarray]) -> dict:
    """The median detected face's shape in units of the distance between its eyes, with the eyes
    turned level: the heights and mouth width of :data:`moodlens.pose.FACE_MODEL`."""
    shapes = []
    for image in images:
        found = recognizer.detect(image)
        if not found or found[0].landmarks is None:
            continue
        marks = found[0].landmarks.astype(float)
        eyes = marks[1] - marks[0]
        angle = -np.arctan2(eyes[1], eyes[0])
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        level = (marks - marks[2]) @ turn.T / np.linalg.norm(eyes)
        shapes.append([-(level[0, 1] + level[1, 1]) / 2, (level[3, 1] + level[4, 1]) / 2, level[4, 0] - level[3, 0]])
    median = np.median(shapes, axis=0)
    return {"faces": len(shapes), "eyes_above_nose": round(float(median[0]), 3),
            "mouth_below_nose": round(float(median[1]), 3), "mouth_width": round(float(median[2]), 3)}


def same_face(recognizer: Recognizer, image: np.ndarray, box: tuple[int, int, int, int]):
    """The face detected in ``image`` that overlaps ``box`` most (IoU >= 0.5), or None."""
    found = [(iou(f.box, box), f) for f in recognizer.detect(image)]
    found = [pair for pair in found if pair[0] >= 0.5]
    return max(found, key=lambda pair: pair[0])[1] if found else None


def turned_box(box, matrix: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = box
    cx, cy = matrix @ np.array([x + w / 2, y + h / 2, 1.0])
    return int(cx - w / 2), int(cy - h / 2), w, h


def off_axis(pose) -> float:
    """Degrees between where the head points and the line to the camera: an in-plane turn of
    the image moves yaw into pitch for a turned head, but leaves this alone."""
    return float(np.degrees(np.arccos(np.cos(np.radians(pose.yaw)) * np.cos(np.radians(pose.pitch)))))


def real_faces(recognizer: Recognizer, images: list[np.ndarray], angles: tuple[float, ...]) -> dict:
    mirror, turn, posed, faces = [], [], 0, 0
    for image in tqdm(images, desc="real faces", unit="image"):
        height, width = image.shape[:2]
        flipped = image[:, ::-1].copy()
        for face in recognizer.detect(image):
            faces += 1
            if face.pose is None:
                continue
            posed += 1
            x, y, w, h = face.box
            other = same_face(recognizer, flipped, (width - x - w, y, w, h))
            if other is not None and other.pose is not None:
                mirror.append([face.pose.yaw + other.pose.yaw, face.pose.pitch - other.pose.pitch,
                               face.pose.roll + other.pose.roll])
            for angle in angles:
                # cv2 turns counter-clockwise for a positive angle; the head then leans to its
                # own right, a negative roll.
                m = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), angle, 1.0)
                turned = cv2.warpAffine(image, m, (width, height), borderMode=cv2.BORDER_REPLICATE)
                other = same_face(recognizer, turned, turned_box(face.box, m))
                if other is not None and other.pose is not None:
                    turn.append([angle, other.pose.roll - face.pose.roll + angle,
                                 off_axis(other.pose) - off_axis(face.pose)])
    mirror, turn = np.abs(np.array(mirror)), np.array(turn)
    return {
        "faces": faces, "posed": posed,
        "mirror": {"pairs": len(mirror), **{f"mean_abs_{k}": round(float(v), 2) for k, v in
                                            zip(("yaw_sum", "pitch_difference", "roll_sum"), mirror.mean(0))}},
        "rotation": {"pairs": len(turn), "angles": list(angles),
                     "mean_abs_roll_error": round(float(np.abs(turn[:, 1]).mean()), 2),
                     "mean_abs_off_axis_change": round(float(np.abs(turn[:, 2]).mean()), 2)},
    }


def cost(recognizer: Recognizer, image: np.ndarray, repeats: int = 50) -> dict:
    frame = cv2.resize(image, (640, 480))
    face = recognizer.detect(frame)[0]
    times = {}
    for name, work in (("frame_ms", lambda: recognizer.analyze_frame(frame)),
                       ("pose_ms", lambda: estimate_pose(face.landmarks, 640))):
        work()
        started = time.perf_counter()
        for _ in range(repeats):
            work()
        times[name] = (time.perf_counter() - started) / repeats * 1e3
    return {k: round(v, 3) for k, v in times.items()} | {"share": round(times["pose_ms"] / times["frame_ms"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fer2013", type=Path, help="FER2013 CSV (its PublicTest faces are used)")
    parser.add_argument("--media", type=Path, default=Path("../shared/media"), help="folder of photos")
    parser.add_argument("--faces", type=int, default=300, help="PublicTest faces to use (default: 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--proportions", action="store_true",
                        help="only measure the median face's proportions on 400 Training faces (for FACE_MODEL)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    recognizer = Recognizer()
    if args.proportions:
        print(json.dumps(proportions(recognizer, fer_canvases(args.fer2013, "Training", 400, np.random.default_rng(1)))))
        return
    photos = [img for p in sorted(args.media.glob("*.jpg")) if (img := cv2.imread(str(p))) is not None]
    result = {
        "geometry": [geometry(rng, 2000, noise) for noise in (0.0, 1.0, 2.0)],
        "photos": real_faces(recognizer, photos, (-30, -15, 15, 30)),
        "fer2013_publictest": real_faces(recognizer, fer_canvases(args.fer2013, "PublicTest", args.faces, rng),
                                         (-30, -15, 15, 30)),
        "cost_one_face_640x480": cost(recognizer, photos[0]),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
