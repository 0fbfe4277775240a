"""The `moodlens` command: one verb per job, each a thin call into the Python API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from moodlens.errors import MoodLensError

FER_HINT = "a FER2013 CSV (emotion,pixels,Usage; .csv or .csv.gz) or a folder of <class>/ image folders"


def _recognizer(args):
    from moodlens.recognizer import Recognizer

    return Recognizer(model=args.model, detector=args.detector)


def _needs_train_extra():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MoodLensError("training and export need the `train` extra: pip install 'moodlens[train]'") from None


def cmd_train(args) -> int:
    _needs_train_extra()
    from moodlens.train import TrainConfig, train

    cfg = TrainConfig(data=args.data, out=args.out, model=args.arch, classes=args.classes, ferplus=args.ferplus,
                      ferplus_classes=args.ferplus_8,
                      train_split=args.train_split, val_split=args.val_split, epochs=args.epochs,
                      batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      weight_decay=args.weight_decay, class_weights=args.class_weights,
                      patience=args.patience, limit=args.limit, seed=args.seed, device=args.device,
                      bf16=not args.no_bf16, resume=args.resume)
    report = train(cfg)
    print(f"best {cfg.val_split} accuracy {report['accuracy']:.4f} (epoch {report['epoch']}); run folder: {cfg.out}")
    return 0


def cmd_evaluate(args) -> int:
    from moodlens.evaluate import evaluate
    from moodlens.metrics import format_report

    report = evaluate(args.data, args.split, args.model, tta=args.tta, ferplus=args.ferplus, plot=args.plot,
                      progress=not args.json)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def cmd_export(args) -> int:
    _needs_train_extra()
    from moodlens.export import export

    report = export(args.checkpoint, args.out, data=args.data, calibrate=not args.no_calibrate, quantize=args.int8)
    print(json.dumps(report, indent=2))
    return 0


def cmd_image(args) -> int:
    import cv2

    from moodlens.annotate import annotate, describe
    from moodlens.sources import read_image

    recognizer = _recognizer(args)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    results, failed = [], 0
    for path in args.paths:
        try:
            image = read_image(path)
        except MoodLensError as e:
            print(f"moodlens: error: {e}", file=sys.stderr)
            failed += 1
            continue
        faces = recognizer.analyze(image)
        results.append({"path": str(path), "faces": [f.to_dict() for f in faces]})
        if out_dir:
            target = out_dir / (Path(path).stem + "_moodlens.png")
            cv2.imwrite(str(target), annotate(image, faces))
        if not args.json:
            summary = ", ".join(describe(f) for f in faces) or "no faces"
            print(f"{path}: {len(faces)} face(s): {summary}")
    if args.json:
        print(json.dumps(results if len(args.paths) > 1 else (results[0] if results else {}), indent=1))
    return 2 if failed else 0


def cmd_video(args) -> int:
    from tqdm import tqdm

    from moodlens.aggregate import Timeline
    from moodlens.annotate import annotate
    from moodlens.sources import VideoFile, VideoSink

    if args.timeline and not Path(args.timeline).resolve().parent.is_dir():
        raise MoodLensError(f"{args.timeline}: its folder does not exist")
    recognizer = _recognizer(args)
    source = VideoFile(args.path)
    timeline = Timeline(recognizer.classes)
    sink = VideoSink(args.out, source.fps, (source.width, source.height)) if args.out else None
    try:
        for frame in tqdm(recognizer.stream(source, args.detect_every, keep_image=sink is not None),
                          total=source.frame_count or None, unit="frame", desc=Path(args.path).name):
            timeline.add(frame)
            if sink is not None:
                sink.write(annotate(frame.image, frame.faces))
    finally:
        if sink is not None:
            sink.close()
    timeline.flush()
    if args.timeline:
        timeline.write(args.timeline)
    tracks = {r.track_id for r in timeline.records}
    from moodlens.aggregate import mood

    mix = ", ".join(f"{k} {v:.0%}" for k, v in mood(timeline.records, recognizer.classes).items() if v)
    print(f"{args.path}: {len(tracks)} face track(s), {len(timeline.records)} face-seconds; mood: {mix or 'n/a'}")
    return 0


def cmd_webcam(args) -> int:
    import cv2

    from moodlens.annotate import annotate
    from moodlens.sources import Camera

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise MoodLensError("no display to open a window on; try `moodlens serve` and open the live page in a browser")
    try:  # the desktop app is the better window when its extra is installed
        from moodlens.desktop.app import main as desktop_main
    except ImportError:
        desktop_main = None
    if desktop_main is not None:
        return desktop_main(str(args.device), args.model, args.detector, args.detect_every)
    recognizer = _recognizer(args)
    camera = Camera(args.device)
    try:
        for frame in recognizer.stream(camera, args.detect_every, keep_image=True):
            cv2.imshow("MoodLens (q to quit)", annotate(frame.image, frame.faces))
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                break
    except cv2.error:
        raise MoodLensError("this OpenCV build cannot open windows (opencv-python-headless); "
                            "use `moodlens desktop` or `moodlens serve`") from None
    finally:
        camera.close()
        cv2.destroyAllWindows()
    return 0


def cmd_serve(args) -> int:
    try:
        from moodlens.web.server import serve
    except ImportError as e:
        raise MoodLensError(f"the web app needs the `web` extra: pip install 'moodlens[web]' ({e.name} missing)") from None
    serve(args.host, args.port, args.db, ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    return 0


def cmd_desktop(args) -> int:
    try:
        from moodlens.desktop.app import main as desktop_main
    except ImportError as e:
        raise MoodLensError(f"the desktop app needs the `desktop` extra: pip install 'moodlens[desktop]' "
                            f"({e.name} missing)") from None
    return desktop_main(args.source, args.model, args.detector)


def cmd_benchmark(args) -> int:
    from moodlens.benchmark import format_benchmark, run_benchmark

    result = run_benchmark(model=args.model, detector=args.detector, repeat=args.repeat, media=args.media,
                           fer_csv=args.data, stat=args.stat)
    print(json.dumps(result, indent=1) if args.json else format_benchmark(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moodlens", description="Read facial emotions in images, video and live cameras; "
                                "train, evaluate and export the emotion model; serve the class dashboard.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def engine_options(sp):
        sp.add_argument("--model", help="MoodLens ONNX model (default: the shipped one)")
        sp.add_argument("--detector", help="face detector backend: yunet (default), centerface or haar")

    sp = sub.add_parser("train", help="train an emotion CNN (needs the `train` extra: torch)",
                        description=f"Train on DATA, {FER_HINT}. Writes checkpoints, metrics.csv, curves.png, "
                        "confusion.png and report.json into --out.")
    sp.add_argument("data", help="training data")
    sp.add_argument("--out", default="runs/train", help="run folder (default: %(default)s)")
    sp.add_argument("--arch", default="moodnet_s", help="model preset: moodnet_xs, moodnet_s (default), moodnet_m")
    sp.add_argument("--classes", help="comma-separated class subset, e.g. angry,happy,neutral,sad")
    sp.add_argument("--ferplus", help="FER+ vote file (fer2013new.csv): FER+ vote distributions as soft targets, "
                    "non-faces dropped")
    sp.add_argument("--ferplus-8", action="store_true", help="with --ferplus: the 8-class FER+ task (adds contempt)")
    sp.add_argument("--train-split", default="Training", help="Usage value or sub-folder to train on")
    sp.add_argument("--val-split", default="PublicTest", help="Usage value or sub-folder for validation/early stop")
    sp.add_argument("--epochs", type=int, default=60)
    sp.add_argument("--batch-size", type=int, default=128)
    sp.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    sp.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule")
    sp.add_argument("--weight-decay", type=float, default=0.05)
    sp.add_argument("--class-weights", default="sqrt", choices=["none", "sqrt", "inverse"],
                    help="loss weights for rare classes (default: %(default)s)")
    sp.add_argument("--patience", type=int, default=20, help="stop after this many epochs without improvement")
    sp.add_argument("--limit", type=int, help="train on a random subset of this many faces (quick runs)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--device", default="auto", help="auto, cpu or cuda")
    sp.add_argument("--no-bf16", action="store_true", help="train in float32 (bf16 autocast is used where supported)")
    sp.add_argument("--resume", help="continue from a last.pt checkpoint")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("evaluate", help="accuracy, per-class scores and confusion matrix of a model",
                        description=f"Evaluate a model on DATA, {FER_HINT}.")
    sp.add_argument("data")
    sp.add_argument("--split", help="Usage value (default PublicTest) or sub-folder")
    sp.add_argument("--model", help="MoodLens ONNX model (default: the shipped one)")
    sp.add_argument("--ferplus", help="score against FER+ majority labels from this vote file")
    sp.add_argument("--tta", action="store_true", help="average each face with its mirror image")
    sp.add_argument("--plot", help="write the confusion matrix to this PNG")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("export", help="checkpoint -> calibrated ONNX, checked against torch on real faces")
    sp.add_argument("checkpoint", help="best.pt or last.pt from a training run")
    sp.add_argument("--out", default="moodnet.onnx", help="ONNX file to write (default: %(default)s)")
    sp.add_argument("--data", help="dataset for calibration and parity (default: the training data)")
    sp.add_argument("--no-calibrate", action="store_true", help="skip temperature scaling")
    sp.add_argument("--int8", action="store_true", help="also write an int8-quantised model and its accuracy")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("image", help="faces and emotions in images")
    sp.add_argument("paths", nargs="+", metavar="PATH")
    sp.add_argument("--out", help="folder for annotated copies")
    sp.add_argument("--json", action="store_true", help="print the faces as JSON")
    engine_options(sp)
    sp.set_defaults(func=cmd_image)

    sp = sub.add_parser("video", help="annotated video and a per-face, per-second emotion timeline")
    sp.add_argument("path")
    sp.add_argument("--out", help="annotated video to write: .webm (VP8; plays in browsers) or .mp4 (H.264, "
                    "where this OpenCV can encode it)")
    sp.add_argument("--timeline", help="timeline to write: .csv or .json")
    sp.add_argument("--detect-every", type=int, default=3, help="run the detector every N frames (default: 3)")
    engine_options(sp)
    sp.set_defaults(func=cmd_video)

    sp = sub.add_parser("webcam", help="live window on a local camera",
                        description="Live window on a local camera: the desktop app when the `desktop` extra is "
                        "installed, otherwise an OpenCV window (needs an OpenCV build with GUI support).")
    sp.add_argument("--device", type=int, default=0, help="camera index (default: 0)")
    sp.add_argument("--detect-every", type=int, default=3, help="run the detector every N frames (default: 3)")
    engine_options(sp)
    sp.set_defaults(func=cmd_webcam)

    sp = sub.add_parser("serve", help="web app: live camera, uploads, class dashboard (extra `web`)")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--db", help="database URL (default: SQLite file moodlens.db; postgresql://... for PostgreSQL)")
    sp.add_argument("--ssl-certfile", help="serve https (browsers give other computers' pages the camera only "
                    "over https)")
    sp.add_argument("--ssl-keyfile", help="private key for --ssl-certfile")
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("desktop", help="desktop window for a camera or video file (extra `desktop`)")
    sp.add_argument("source", nargs="?", help="camera index or video file (default: camera 0)")
    engine_options(sp)
    sp.set_defaults(func=cmd_desktop)

    sp = sub.add_parser("benchmark", help="speed of the detector, classifier and whole pipeline on this machine")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--repeat", type=int, default=30, help="timed runs per figure (default: %(default)s)")
    sp.add_argument("--media", help="folder with the test photos (default: ../shared/media of a source checkout)")
    sp.add_argument("--data", help="FER2013 CSV for the PublicTest gallery (default: "
                    "../shared/datasets/fer2013/fer2013.csv.gz; skipped when missing)")
    sp.add_argument("--stat", choices=("median", "min"), default="median",
                    help="statistic over the timed runs: median (default) or min, the best run (steadier "
                    "when other jobs share the CPU)")
    engine_options(sp)
    sp.set_defaults(func=cmd_benchmark)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MoodLensError as e:
        print(f"moodlens: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
