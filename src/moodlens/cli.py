"""The `moodlens` command: one verb per job, each a thin call into the Python API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from moodlens.errors import MoodLensError

FER_HINT = "a FER2013 CSV (emotion,pixels,Usage; .csv or .csv.gz) or a folder of <class>/ image folders"


DB_HELP = ("database: a file path, or postgresql://user:pass@host/name (default: moodlens.db in the per-user "
           "data folder, e.g. ~/.local/share/moodlens; MOODLENS_DATA moves it)")


def _engine_options(sp) -> None:
    sp.add_argument("--model", help="MoodLens ONNX model (default: the shipped one)")
    sp.add_argument("--detector", help="face detector backend: yunet (default), centerface or haar")


def _recognizer(args):
    from moodlens.recognizer import Recognizer

    return Recognizer(model=args.model, detector=args.detector, tta=getattr(args, "tta", False))


def _writable_file(target: str) -> Path:
    """``target`` if a file can be written there; checked before long work, so a bad path is
    said at once instead of after processing a whole video."""
    path = Path(target)
    if path.is_dir():
        raise MoodLensError(f"{target}: is a folder; give a file name")
    if not path.resolve().parent.is_dir():
        raise MoodLensError(f"{target}: its folder does not exist")
    if not os.access(path.resolve().parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise MoodLensError(f"{target}: cannot write there (read-only or no permission)")
    return path


def _writable_folder(target: str) -> Path:
    """The folder ``target``, made if missing, that files can be written into."""
    folder = Path(target)
    if folder.exists() and not folder.is_dir():
        raise MoodLensError(f"{target}: is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MoodLensError(f"{target}: cannot make this folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise MoodLensError(f"{target}: cannot write there (read-only or no permission)")
    return folder


def _in_range(option: str, value: float | None, low: float, high: float | None = None, *,
              above: bool = False) -> None:
    """Refuse an option's number outside ``low``..``high`` (``above``: ``low`` itself excluded) with
    one line naming the range; None is an option left out."""
    if value is None:
        return
    if not ((value > low if above else value >= low) and (high is None or value <= high)):  # NaN fits neither
        bounds = f"{'above' if above else 'at least'} {low}" + ("" if high is None else f" and at most {high}")
        raise MoodLensError(f"{option} must be {bounds}, not {value}")


def _needs_train_extra():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MoodLensError("training and export need the `train` extra: pip install 'moodlens[train]'") from None


def add_train_parser(sub) -> None:
    sp = sub.add_parser("train", help="train an emotion CNN (needs the `train` extra: torch)",
                        description=f"Train on DATA, {FER_HINT}. Writes checkpoints, metrics.csv, curves.png, "
                        "confusion.png and report.json into --out.")
    sp.add_argument("data", help="training data")
    sp.add_argument("--out", default="runs/train", help="run folder (default: %(default)s)")
    sp.add_argument("--arch", default="moodnet_s",
                    help="model preset: moodnet_xs, moodnet_s (default), moodnet_sd, moodnet_m")
    sp.add_argument("--backbone", choices=["resnet18", "vgg16"],
                    help="train a torchvision-layout backbone instead of --arch (for --pretrained)")
    sp.add_argument("--pretrained", metavar="FILE",
                    help="start --backbone from this local torchvision state dict (.pth; nothing is downloaded)")
    sp.add_argument("--freeze-epochs", type=int, default=3,
                    help="with --pretrained: epochs with the backbone frozen, only the new head learning (default: 3)")
    sp.add_argument("--finetune-lr", type=float, default=0.1,
                    help="with --pretrained: backbone learning rate as a fraction of --lr (default: 0.1)")
    _train_target_options(sp)
    _train_schedule_options(sp)
    sp.set_defaults(func=cmd_train)


def _train_target_options(sp) -> None:
    """What the network learns from: classes, the crowd's votes, degradations, teachers."""
    sp.add_argument("--classes", help="comma-separated class subset, e.g. angry,happy,neutral,sad")
    sp.add_argument("--ferplus", help="FER+ vote file (fer2013new.csv): FER+ vote distributions as soft targets, "
                    "non-faces dropped")
    sp.add_argument("--ferplus-8", action="store_true", help="with --ferplus: the 8-class FER+ task (adds contempt)")
    sp.add_argument("--ferplus-weight", type=float, default=1.0,
                    help="with --ferplus: below 1, keep FER2013's labels and blend this much of the crowd's vote "
                    "distribution into each target (default: %(default)s, votes only)")
    sp.add_argument("--degrade", type=float, default=0.0,
                    help="share of training faces given random webcam degradations: blur, noise, JPEG/WebP, "
                    "downscaling, low light (default: %(default)s)")
    sp.add_argument("--ema", type=float, default=0.0,
                    help="keep an exponential moving average of the weights with this decay, e.g. 0.999, and "
                    "evaluate/export it (default: off)")
    sp.add_argument("--teacher", nargs="+", metavar="FILE",
                    help="distil from teachers, averaged: training checkpoints (.pt) or exported models (.onnx) "
                    "of stronger models, the teacher_probs.npy an earlier run saved for the same faces, or a "
                    "teachers/*.npz of scripts/teacher_probs.py (by FER2013 row, for any run on that CSV)")
    sp.add_argument("--fer2013-head", action="store_true",
                    help="with --ferplus: a second output head trained on FER2013's own labels beside the crowd's "
                    "(the FER2013 benchmark reads it; the product shows the crowd head)")
    sp.add_argument("--fer2013-weight", type=float, default=1.0,
                    help="with --fer2013-head: weight of its loss beside the crowd head's (default: %(default)s)")
    sp.add_argument("--teacher-weight", type=float, default=0.7,
                    help="with --teacher: share of each target taken from the teachers' probabilities "
                    "(default: %(default)s)")


def _train_schedule_options(sp) -> None:
    """How long and how it learns: splits, schedule, optimiser, hardware, where it starts."""
    sp.add_argument("--train-split", default="Training", help="Usage value or sub-folder to train on "
                    "(default: %(default)s)")
    sp.add_argument("--val-split", default="PublicTest", help="Usage value or sub-folder for validation/early stop "
                    "(default: %(default)s)")
    sp.add_argument("--epochs", type=int, default=60, help="length of the learning-rate schedule; "
                    "--patience may stop earlier (default: %(default)s)")
    sp.add_argument("--batch-size", type=int, default=128, help="faces per training step (default: %(default)s)")
    sp.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"],
                    help="optimizer (default: %(default)s)")
    sp.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule "
                    "(default: %(default)s)")
    sp.add_argument("--weight-decay", type=float, default=0.05, help="weight decay (default: %(default)s)")
    sp.add_argument("--class-weights", default="sqrt", choices=["none", "sqrt", "inverse"],
                    help="loss weights for rare classes (default: %(default)s)")
    sp.add_argument("--patience", type=int, default=20, help="stop early, before --epochs, after this many epochs "
                    "without a better validation accuracy (default: %(default)s)")
    sp.add_argument("--limit", type=int, help="train on a random subset of this many faces (quick runs; default: "
                    "all)")
    sp.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    sp.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu, cuda or cuda:N "
                    "(default: %(default)s)")
    sp.add_argument("--no-bf16", action="store_true", help="train in float32 (bf16 autocast is used where supported)")
    sp.add_argument("--threads", type=int, help="CPU threads (default: all cores; 1 is faster on a machine busy "
                    "with other work, where threads wait for each other)")
    sp.add_argument("--init", metavar="CKPT",
                    help="start from the weights of another run's checkpoint (.pt, same --arch and classes) "
                    "or of an exported moodnet (.onnx, e.g. the shipped model; a deeper --arch such as "
                    "moodnet_sd grows from it) with a fresh schedule: fine-tune on new faces, or give a "
                    "trained model a second cycle")
    sp.add_argument("--resume", help="continue from a last.pt checkpoint (same --epochs)")


def cmd_train(args) -> int:
    _in_range("--epochs", args.epochs, 1)
    _in_range("--batch-size", args.batch_size, 1)
    _in_range("--lr", args.lr, 0, above=True)
    _in_range("--weight-decay", args.weight_decay, 0)
    _in_range("--patience", args.patience, 1)
    _in_range("--limit", args.limit, 1)
    _in_range("--seed", args.seed, 0, 2**32 - 1)  # numpy's seed range
    _in_range("--threads", args.threads, 1)
    _in_range("--freeze-epochs", args.freeze_epochs, 0)
    _in_range("--finetune-lr", args.finetune_lr, 0)
    _in_range("--degrade", args.degrade, 0, 1)
    _in_range("--ema", args.ema, 0, 1)
    _in_range("--teacher-weight", args.teacher_weight, 0, 1)
    _in_range("--ferplus-weight", args.ferplus_weight, 0, 1)
    _in_range("--fer2013-weight", args.fer2013_weight, 0)
    _needs_train_extra()
    from moodlens.training.models import list_models
    from moodlens.training.train import TrainConfig, train

    if args.arch not in list_models():
        raise MoodLensError(f"--arch {args.arch}: choose one of {', '.join(list_models())}")
    if args.pretrained and not args.backbone:
        raise MoodLensError("--pretrained needs --backbone: the architecture of the weights in the file")
    if args.pretrained and args.init:
        raise MoodLensError("--pretrained and --init both choose the starting weights; give one")
    _writable_folder(args.out)
    cfg = TrainConfig(data=args.data, out=args.out, model=args.backbone or args.arch, classes=args.classes,
                      ferplus=args.ferplus, ferplus_classes=args.ferplus_8, ferplus_weight=args.ferplus_weight,
                      degrade=args.degrade, ema=args.ema, teacher=args.teacher,
                      teacher_weight=args.teacher_weight, fer2013_head=args.fer2013_head,
                      fer2013_weight=args.fer2013_weight, pretrained=args.pretrained, init=args.init,
                      freeze_epochs=args.freeze_epochs,
                      finetune_lr=args.finetune_lr,
                      train_split=args.train_split, val_split=args.val_split, epochs=args.epochs,
                      batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      weight_decay=args.weight_decay, class_weights=args.class_weights,
                      patience=args.patience, limit=args.limit, seed=args.seed, device=args.device,
                      bf16=not args.no_bf16, threads=args.threads, resume=args.resume)
    report = train(cfg)
    print(f"best {cfg.val_split} accuracy {report['accuracy']:.4f} (epoch {report['epoch']}); run folder: {cfg.out}")
    return 0


def add_evaluate_parser(sub) -> None:
    sp = sub.add_parser("evaluate", help="accuracy, per-class scores and confusion matrix of a model",
                        description=f"Evaluate a model on DATA, {FER_HINT}.")
    sp.add_argument("data")
    sp.add_argument("--split", help="Usage value (default PublicTest) or sub-folder")
    sp.add_argument("--model", help="MoodLens ONNX model (default: the shipped one)")
    sp.add_argument("--ferplus", help="FER+ vote file (fer2013new.csv): also report agreement with the crowd on the "
                    "faces where one class has a strict majority of the votes")
    sp.add_argument("--corruptions", action="store_true",
                    help="also re-score under fixed webcam degradations (blur, noise, JPEG, WebP, small, low light, "
                    "rotation; docs/robustness.md) and report their mean")
    sp.add_argument("--tta", action="store_true", help="average each face with its mirror image")
    sp.add_argument("--plot", help="write the confusion matrix to this image (.png, .jpg, .svg, .pdf)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from moodlens.training.evaluate import evaluate, format_extras
    from moodlens.training.metrics import format_report

    if args.plot:
        try:
            import matplotlib.backend_bases
        except ImportError:
            raise MoodLensError("--plot needs matplotlib: pip install 'moodlens[train]' (or matplotlib)") from None
        # matplotlib picks the format from the suffix and fails only after the whole evaluation.
        kinds = matplotlib.backend_bases.FigureCanvasBase.get_supported_filetypes()
        if Path(args.plot).suffix.lower().lstrip(".") not in kinds:
            raise MoodLensError(f"{args.plot}: --plot writes an image; name it .png, .jpg, .svg or .pdf")
        _writable_file(args.plot)
    report = evaluate(args.data, args.split, args.model, tta=args.tta, ferplus=args.ferplus, plot=args.plot,
                      corruptions=args.corruptions, progress=not args.json)
    print(json.dumps(report) if args.json else "\n".join(filter(None, [format_report(report), format_extras(report)])))
    return 0


def add_export_parser(sub) -> None:
    sp = sub.add_parser("export", help="checkpoint -> calibrated ONNX, checked against torch on real faces")
    sp.add_argument("checkpoint", help="best.pt or last.pt from a training run")
    sp.add_argument("--out", default="moodnet.onnx", help="ONNX file to write; its report goes beside it, "
                    "with the suffix .json (default: %(default)s)")
    sp.add_argument("--data", help="dataset for calibration and parity (default: the training data, as stored in "
                    "the checkpoint)")
    sp.add_argument("--ferplus", help="FER+ vote file of a run trained with --ferplus (default: the one stored in "
                    "the checkpoint)")
    sp.add_argument("--no-calibrate", action="store_true", help="skip temperature scaling")
    sp.add_argument("--int8", action="store_true", help="also write an int8-quantised model beside OUT, with "
                    "the suffix .int8.onnx, and report its accuracy")
    sp.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    _needs_train_extra()
    from moodlens.training.export import export

    _writable_folder(str(Path(args.out).parent))  # export makes a missing folder, as it always has
    _writable_file(args.out)
    report = export(args.checkpoint, args.out, data=args.data, calibrate=not args.no_calibrate, quantize=args.int8,
                    ferplus=args.ferplus)
    print(json.dumps(report, indent=2))
    return 0


def add_image_parser(sub) -> None:
    sp = sub.add_parser("image", help="faces and emotions in images")
    sp.add_argument("paths", nargs="+", metavar="PATH", help="image files (JPEG, PNG, WebP, BMP)")
    sp.add_argument("--out", help="folder for annotated copies")
    sp.add_argument("--json", action="store_true", help="print the faces as JSON")
    sp.add_argument("--tta", action="store_true",
                    help="average each face with its mirror image: twice the classifier time, slightly more accurate")
    _engine_options(sp)
    sp.set_defaults(func=cmd_image)


def cmd_image(args) -> int:
    import cv2

    from moodlens.annotate import annotate, describe
    from moodlens.sources import read_image

    out_dir = _writable_folder(args.out) if args.out else None
    recognizer = _recognizer(args)
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
            try:
                written = cv2.imwrite(str(target), annotate(image, faces))
            except cv2.error:
                written = False
            if not written:
                print(f"moodlens: error: {target}: could not be written", file=sys.stderr)
                failed += 1
        if not args.json:
            summary = ", ".join(describe(f) for f in faces) or "no faces"
            print(f"{path}: {len(faces)} face(s): {summary}")
    if args.json and results:  # nothing on stdout when the only image failed: its error says it all
        print(json.dumps(results if len(args.paths) > 1 else results[0], indent=1))
    return 2 if failed else 0


def add_video_parser(sub) -> None:
    sp = sub.add_parser("video", help="annotated video and a per-face, per-second emotion timeline")
    sp.add_argument("path", help="video file to analyse")
    sp.add_argument("--out", help="annotated video to write: .webm (VP8; plays in browsers) or .mp4 (H.264, "
                    "where this OpenCV can encode it)")
    sp.add_argument("--timeline", help="timeline to write: .csv or .json")
    sp.add_argument("--detect-every", type=int, default=3, help="run the detector every N frames (default: 3)")
    _engine_options(sp)
    sp.set_defaults(func=cmd_video)


def cmd_video(args) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from moodlens.aggregate import Timeline
    from moodlens.annotate import annotate
    from moodlens.sources import VideoFile, VideoSink

    _in_range("--detect-every", args.detect_every, 1)
    for target in (args.out, args.timeline):
        if target:
            _writable_file(target)
    recognizer = _recognizer(args)
    source = VideoFile(args.path)
    timeline = Timeline(recognizer.classes)
    sink = VideoSink(args.out, source.fps, (source.width, source.height)) if args.out else None
    try:
        with logging_redirect_tqdm():  # a warning (a cut-short file) on a line of its own, not on the bar's
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
        try:
            timeline.write(args.timeline)
        except OSError as exc:
            raise MoodLensError(f"{args.timeline}: cannot write the timeline ({exc.strerror})") from None
    tracks = {r.track_id for r in timeline.records}
    from moodlens.aggregate import mood

    mix = ", ".join(f"{k} {v:.0%}" for k, v in mood(timeline.records, recognizer.classes).items() if v)
    print(f"{args.path}: {len(tracks)} face track(s), {len(timeline.records)} face-seconds; mood: {mix or 'n/a'}")
    return 0


def add_webcam_parser(sub) -> None:
    sp = sub.add_parser("webcam", help="live window on a local camera",
                        description="Live window on a local camera: the desktop app when the `desktop` extra is "
                        "installed, otherwise an OpenCV window (needs an OpenCV build with GUI support).")
    sp.add_argument("--device", type=int, default=0, help="camera index (default: 0)")
    sp.add_argument("--detect-every", type=int, default=3, help="run the detector every N frames (default: 3)")
    _engine_options(sp)
    sp.set_defaults(func=cmd_webcam)


def cmd_webcam(args) -> int:
    import cv2

    from moodlens.annotate import annotate
    from moodlens.sources import Camera

    _in_range("--detect-every", args.detect_every, 1)
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


def _web_extra():
    try:
        from moodlens.web import server
    except ImportError as e:
        raise MoodLensError(f"the web app needs the `web` extra: pip install 'moodlens[web]' ({e.name} missing)") from None
    return server


def add_serve_parser(sub) -> None:
    sp = sub.add_parser("serve", help="web app: live camera, uploads, class dashboard (extra `web`)")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this computer "
                    "only; 0.0.0.0 for the classroom network)")
    sp.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s; 0: any free port, "
                    "printed at the start)")
    sp.add_argument("--db", help=DB_HELP)
    sp.add_argument("--ssl-certfile", help="serve https (browsers give other computers' pages the camera only "
                    "over https)")
    sp.add_argument("--ssl-keyfile", help="private key for --ssl-certfile")
    sp.add_argument("--self-signed", action="store_true", help="serve https with a self-signed certificate for "
                    "this computer, made once in the data folder (each browser warns once)")
    sp.add_argument("--trusted-proxies", help="comma-separated addresses of reverse proxies whose X-Forwarded-For/"
                    "-Proto are believed (default: none; MOODLENS_TRUSTED_PROXIES)")
    sp.add_argument("--max-participants", type=int, default=200, help="most participants in one class session "
                    "(default: %(default)s)")
    sp.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    server = _web_extra()
    _in_range("--max-participants", args.max_participants, 1)
    limits = server.Limits(participants=args.max_participants)
    server.serve(args.host, args.port, args.db, ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
                 self_signed=args.self_signed, trusted_proxies=args.trusted_proxies, limits=limits)
    return 0


def add_token_parser(sub) -> None:
    sp = sub.add_parser("token", help="the teacher's token: --reset makes a new one (extra `web`)",
                        description="The teacher token is printed once, at the first start. A lost one is "
                        "replaced with --reset, which also logs every teacher out.")
    sp.add_argument("--reset", action="store_true", help="make, store and print a new teacher token")
    sp.add_argument("--db", help=DB_HELP)
    sp.set_defaults(func=cmd_token)


def cmd_token(args) -> int:
    _web_extra()
    from moodlens.store import Store, database_url
    from moodlens.web.auth import reset_teacher_token

    store = Store(database_url(args.db))
    try:
        if not args.reset:
            print("the teacher token is shown only when it is made; `moodlens token --reset` makes a new one "
                  "(and logs every teacher out)")
            return 0
        token = reset_teacher_token(store)
    finally:
        store.close()
    print(f"new teacher token (shown only now; restart a running `moodlens serve` to use it): {token}")
    if os.environ.get("MOODLENS_TOKEN"):
        print("note: MOODLENS_TOKEN is set, and a server started with it uses that token instead")
    return 0


def add_desktop_parser(sub) -> None:
    sp = sub.add_parser("desktop", help="desktop window for a camera or video file (extra `desktop`)")
    sp.add_argument("source", nargs="?", help="camera index or video file (default: camera 0)")
    _engine_options(sp)
    sp.set_defaults(func=cmd_desktop)


def cmd_desktop(args) -> int:
    try:
        from moodlens.desktop.app import main as desktop_main
    except ImportError as e:
        raise MoodLensError(f"the desktop app needs the `desktop` extra: pip install 'moodlens[desktop]' "
                            f"({e.name} missing)") from None
    return desktop_main(args.source, args.model, args.detector)


def add_benchmark_parser(sub) -> None:
    sp = sub.add_parser("benchmark", help="speed of the detector, classifier and whole pipeline on this machine")
    sp.add_argument("--json", action="store_true", help="print the results as one JSON object")
    sp.add_argument("--repeat", type=int, default=30, help="timed runs per figure (default: %(default)s)")
    sp.add_argument("--media", default=os.environ.get("MOODLENS_MEDIA"),
                    help="folder with the test photos (default: MOODLENS_MEDIA, else ../shared/media of a source checkout)")
    sp.add_argument("--data", help="FER2013 CSV for the PublicTest gallery (default: "
                    "../shared/datasets/fer2013/fer2013.csv.gz; skipped when missing)")
    sp.add_argument("--stat", choices=("median", "min"), default="median",
                    help="statistic over the timed runs: median (default) or min, the best run (steadier "
                    "when other jobs share the CPU)")
    _engine_options(sp)
    sp.set_defaults(func=cmd_benchmark)


def cmd_benchmark(args) -> int:
    from moodlens.benchmark import format_benchmark, run_benchmark

    _in_range("--repeat", args.repeat, 1)
    result = run_benchmark(model=args.model, detector=args.detector, repeat=args.repeat, media=args.media,
                           fer_csv=args.data, stat=args.stat)
    print(json.dumps(result, indent=1) if args.json else format_benchmark(result))
    return 0


def add_batch_parser(sub) -> None:
    sp = sub.add_parser("batch", help="analyse many recorded videos in parallel, locally or on a Ray cluster",
                        description="Cut each video into time chunks, analyse them in parallel and merge one "
                        "per-second timeline per video (CSV and Parquet in OUT/timelines) plus OUT/summary.csv. "
                        "A re-run skips chunks already done. Needs the `distributed` extra. See docs/batch.md.")
    sp.add_argument("paths", nargs="+", metavar="PATH_OR_GLOB", help="video files, folders, or quoted glob patterns")
    sp.add_argument("--out", required=True, help="output folder (also holds the state that makes re-runs resume)")
    sp.add_argument("--engine", default="local", choices=["local", "ray"], help="a process pool on this machine "
                    "(default) or Ray")
    sp.add_argument("--address", help="with --engine ray: the cluster's address (default: start a local Ray)")
    sp.add_argument("--workers", type=int, help="worker processes, or chunks in flight on Ray (default: one per CPU)")
    sp.add_argument("--fps", type=float, default=5.0, help="frames analysed per second of video (default: %(default)s)")
    sp.add_argument("--chunk-seconds", type=int, default=60, help="seconds of video per chunk (default: %(default)s)")
    sp.add_argument("--detect-every", type=int, default=2, help="run the detector every N analysed frames, "
                    "optical flow between (default: %(default)s)")
    sp.add_argument("--db", help="also import the videos into this database as video sessions (file path, "
                    "sqlite:// or postgresql:// URL; needs the `web` extra)")
    _engine_options(sp)
    sp.set_defaults(func=cmd_batch)


def cmd_batch(args) -> int:
    from moodlens.batch import Settings, run_batch

    _writable_folder(args.out)
    settings = Settings(fps=args.fps, chunk_s=args.chunk_seconds, detect_every=args.detect_every, model=args.model,
                        detector=args.detector)
    report = run_batch(args.paths, args.out, engine=args.engine, workers=args.workers, address=args.address,
                       settings=settings, db=args.db)
    for row in report.rows:
        if row["status"] == "ok":
            drops = f"; mood dropped at {row['mood_drops']}" if row["mood_drops"] else ""
            print(f"{row['video']}: {row['duration_s']:.0f} s, {row['faces']} face(s), mood {row['mood'] or 'n/a'}{drops}")
        else:
            print(f"moodlens: error: {row['error']}", file=sys.stderr)
    print(f"{len(report.rows) - len(report.failed)} of {len(report.rows)} videos analysed ({report.chunks - report.skipped} "
          f"chunks run, {report.skipped} already done) in {report.wall_s:.0f} s; summary: {Path(args.out) / 'summary.csv'}"
          + (f"; {len(report.sessions)} video sessions in the database" if args.db else ""))
    return 2 if report.failed else 0


VERBS = (add_train_parser, add_evaluate_parser, add_export_parser, add_image_parser, add_video_parser,
         add_webcam_parser, add_serve_parser, add_token_parser, add_desktop_parser, add_benchmark_parser,
         add_batch_parser)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moodlens", description="Read facial emotions in images, video and live cameras; "
                                "train, evaluate and export the emotion model; serve the class dashboard.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_verb in VERBS:
        add_verb(sub)
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
