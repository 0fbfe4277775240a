"""Time the `fer` PyPI package's pipeline on the frame `moodlens benchmark` uses.

fer's pipeline is OpenCV's Haar cascade plus its own emotion CNN: ``FER(mtcnn=False)`` and
``detect_emotions(frame)``. The frame is ``moodlens.benchmark.webcam_frame``: the shared
portrait letterboxed into 640x480, or a PNG given with ``--frame``. The frame and the timing come
from this checkout's ``src/`` (OpenCV and numpy are all they need), so moodlens need not be
installed in fer's venv.

Run it with a separate venv that has fer, NOT the project's (fer wants tensorflow and, through
its hard dependency on facenet-pytorch, torch; neither is needed for the Haar path):

    python3 -m venv /tmp/fer-venv
    /tmp/fer-venv/bin/pip install --no-deps fer==25.10.3
    /tmp/fer-venv/bin/pip install tensorflow-cpu "opencv-python-headless<5" pillow requests "setuptools<81"
    /tmp/fer-venv/bin/python scripts/bench_fer.py [--json] [--model tflite|keras|both]

With ``--moodlens`` (needs ``pip install onnxruntime`` in that venv) the
script also times ``Recognizer.analyze_frame`` (MoodLens end to end, detector on every frame) and a
``FaceStream`` (detector every 3rd frame) on the same frame, *in alternation* with fer's call, so
that on a busy machine both see the same load; it then prints MoodLens' frames/s as a multiple
of fer's.

fer >= 25 uses its quantized TFLite model by default (``use_tflite=True``); ``keras`` times the
original Keras .hdf5 model (``use_tflite=False``). Both ship in the fer wheel; sockets are
blocked while fer runs so nothing can be downloaded. TensorFlow, TFLite and OpenCV keep their
default thread settings (what a fer user gets): thread-limiting variables are cleared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

# Defaults as a fer user gets them: no thread caps; only TF's C++ log noise is hidden.
for _var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.pop(_var, None)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from moodlens.benchmark import time_ms, webcam_frame  # noqa: E402
from moodlens.errors import MoodLensError  # noqa: E402


def _no_network(*_args, **_kwargs):
    raise RuntimeError("bench_fer: fer tried to open a network connection")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--media", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "media",
                   help="folder with portrait.jpg (default: ../shared/media beside the repo)")
    p.add_argument("--frame", type=Path, help="use this image (e.g. a PNG of moodlens' webcam_frame) instead")
    p.add_argument("--model", choices=("tflite", "keras", "both"), default="both",
                   help="fer's default quantized TFLite model, its Keras .hdf5 model, or both (default)")
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--moodlens", action="store_true",
                   help="also time MoodLens (still frame and stream) in alternation with fer")
    args = p.parse_args(argv)

    if args.frame:
        frame = cv2.imread(str(args.frame))
        if frame is None:
            sys.exit(f"{args.frame}: cannot read")
    else:
        try:
            frame = webcam_frame(args.media)
        except MoodLensError as e:
            sys.exit(str(e))

    socket.socket.connect = _no_network  # fer must run from the files in its wheel
    socket.create_connection = _no_network

    import warnings
    warnings.filterwarnings("ignore")  # tf.lite.Interpreter deprecation notice
    import fer
    import tensorflow as tf
    from fer.fer import FER  # fer 25.10.3's __init__ does not export FER

    result = {
        "fer": fer.__version__, "tensorflow": tf.__version__, "opencv": cv2.__version__,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "frame": f"{frame.shape[1]}x{frame.shape[0]}", "repeat": args.repeat, "models": {},
    }
    ours = []
    if args.moodlens:
        from moodlens.recognizer import Recognizer

        recognizer = Recognizer()
        stream = recognizer.open_stream(3)
        ours = [lambda: recognizer.analyze_frame(frame),
                lambda: [stream.push(frame) for _ in range(3)]]  # a whole detect + 2 flow cycle
    for model in (("tflite", "keras") if args.model == "both" else (args.model,)):
        t0 = time.perf_counter()
        detector = FER(mtcnn=False, use_tflite=(model == "tflite"))
        load_s = time.perf_counter() - t0
        faces = detector.detect_emotions(frame)
        ms, *ours_ms = np.atleast_1d(time_ms(lambda d=detector: d.detect_emotions(frame), *ours, repeat=args.repeat,
                                             warmup=args.warmup)).tolist()
        top = None
        if faces:
            biggest = max(faces, key=lambda f: f["box"][2] * f["box"][3])
            label = max(biggest["emotions"], key=biggest["emotions"].get)
            top = {"emotion": label, "score": biggest["emotions"][label],
                   "box": [int(v) for v in biggest["box"]]}
        result["models"][model] = {"fps": 1e3 / ms, "ms": ms, "faces": len(faces), "top": top,
                                   "load_s": load_s}
        if ours_ms:
            result["models"][model]["moodlens_fps"] = 1e3 / ours_ms[0]
            result["models"][model]["moodlens_stream_fps"] = 3e3 / ours_ms[1]

    if args.json:
        print(json.dumps(result))
    else:
        m = result["machine"]
        print(f"fer {result['fer']}, tensorflow {result['tensorflow']}, opencv {result['opencv']}; "
              f"{m['cpus']} CPUs, {m['processor']}, Python {m['python']}")
        for model, r in result["models"].items():
            top = f"{r['top']['emotion']} {r['top']['score']:.2f}" if r["top"] else "-"
            print(f"fer Haar + {model} model, one face {result['frame']}: {r['fps']:.1f} frames/s "
                  f"({r['ms']:.1f} ms median of {args.repeat}), {r['faces']} face(s), top emotion {top}")
            if "moodlens_fps" in r:
                print(f"  MoodLens in alternation: {r['moodlens_fps']:.1f} frames/s ({r['moodlens_fps'] / r['fps']:.1f}x), "
                      f"as a stream {r['moodlens_stream_fps']:.1f} ({r['moodlens_stream_fps'] / r['fps']:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
