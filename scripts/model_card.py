"""Write the shipped model's card from the files the commands produced, so every figure in it
comes from a command anyone can rerun (moodnet_s_v3's commands; docs/model_runs/moodnet_s_v3/README.md):

    moodlens train ../shared/datasets/fer2013/fer2013.csv.gz --arch moodnet_s \
        --teacher teachers/r18_s0.npz teachers/r18_s1.npz --teacher-weight 0.7 \
        --ferplus ../shared/datasets/fer2013/fer2013new.csv --ferplus-weight 1.0 --fer2013-head \
        --degrade 0.5 --ema 0.999 --epochs 30 --patience 30 --out runs/student_v3c
    moodlens train ...the same... --init runs/student_v3c/best.pt --lr 0.0007 --epochs 15 --patience 15 \
        --out runs/student_v3d
    moodlens export runs/student_v3d/last.pt --out src/moodlens/weights/moodnet_s_v3.onnx
    moodlens evaluate ../shared/datasets/fer2013/fer2013.csv.gz --ferplus ../shared/datasets/fer2013/fer2013new.csv \
        --corruptions --json --plot src/moodlens/weights/confusion.png > runs/eval.json
    moodlens benchmark --json --stat min > runs/bench.json
    python scripts/model_card.py runs/student_v3c runs/student_v3d runs/eval.json runs/bench.json \
        --curves src/moodlens/weights/training_curves.png > src/moodlens/weights/MODEL_CARD.md

RUNS are the training runs in order: the first trained from scratch, each later one started with
``--init`` from the one before (a fine-tune with a fresh schedule).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

from moodlens.classify import default_model_path
from moodlens.training.plots import plot_curves

NUMERIC = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


def main() -> None:
    ap = argparse.ArgumentParser(description="print the model card (markdown)")
    ap.add_argument("files", nargs="+", type=Path,
                    help="the training run folders in order, then the outputs of moodlens evaluate --json and benchmark --json")
    ap.add_argument("--wall", help="wall time of the training commands, as measured (e.g. '58 min')")
    ap.add_argument("--int8-benchmark", type=Path, help="moodlens benchmark --json --model <the int8 model>")
    ap.add_argument("--curves", type=Path, help="also plot the runs' joined loss and accuracy curves to this image")
    args = ap.parse_args()
    if len(args.files) < 3:
        ap.error("give at least one run folder, the evaluation and the benchmark")
    *runs, evaluation, benchmark = args.files

    configs = [json.loads((run / "config.json").read_text()) for run in runs]
    history = joined_history(runs)
    if args.curves:
        plot_curves(history, args.curves)
    ev = json.loads(evaluation.read_text())
    bench = json.loads(benchmark.read_text())
    model = default_model_path()
    export = json.loads(model.with_suffix(".json").read_text())
    cfg = configs[0]
    classes = ev["classes"]
    train_s = sum(h["seconds"] for h in history)
    print(f"""# Model card: {cfg['model']} (shipped as `moodlens/weights/{model.name}`)

A small residual CNN that reads one of seven facial expressions ({', '.join(classes)}) from a
48x48 grey face crop. Built for real-time use on a CPU; runs with onnxruntime alone.
{heads(cfg)}
## How it was trained
- Data: FER2013 `Training` (28,709 faces), {targets(cfg)}.
- Validation / checkpoint choice: FER2013 `PublicTest` (3,589 faces). The same split
  fitted the softmax temperature. `PrivateTest` was never used (it is withheld for independent
  evaluation), so the PublicTest figures below are those of the split the checkpoint was chosen on.
- Commands (2-core CPU, {precision(configs)}):""")
    for c in configs:
        print(f"  - `{train_command(c)}`")
    print(f"""  - optimizer {cfg['optimizer']}, one-cycle learning rate, weight decay {cfg['weight_decay']},
    batch {cfg['batch_size']}, label smoothing {cfg['label_smoothing']}, {cfg['class_weights']} class weights
    (each face weighted by its own label's class), seed {cfg['seed']}; augmentation: flips, rotation +-15 deg,
    scale/shift +-10 %, brightness/contrast, random erasing{regularisers(cfg)}.
  - {len(history)} epochs in all, {train_s / 60:.0f} min of training epochs{f' ({args.wall} wall)' if args.wall else ''}.
    {checkpoint_choice(export['checkpoint'], [h for h in history if h['run'] == len(runs) - 1])}; curves: `training_curves.png`.
- Export: `moodlens export {export['checkpoint']} --out src/moodlens/weights/{model.name}`
  - ONNX vs torch on the {export['n_val']} PublicTest faces of the validation: largest probability difference
    {export['max_abs_diff_vs_torch']:.1e}; accuracy {export['accuracy_onnx']:.4f} vs {export['accuracy_torch']:.4f}.
  - Temperature {export['temperature']:.3f}{' (product head)' if 'fer2013_head' in export else ''}: expected calibration error
    {export['ece_before']:.4f} -> {export['ece_after']:.4f}, NLL {export['nll_before']:.4f} -> {export['nll_after']:.4f}.{fer2013_export(export)}{int8(export, bench, args.int8_benchmark)}
- Preprocessing facts (class names, 48x48 input, mean/std) travel in the ONNX metadata
  (`moodlens.spec`) and are applied by `moodlens.preprocess.preprocess`, the same function training used.

## PublicTest results (single pass, no test-time augmentation)
`moodlens evaluate {Path(ev['data']).name} --split PublicTest --ferplus fer2013new.csv --json`

{agreement(ev)}- accuracy on FER2013's labels{' (FER2013 head)' if ev.get('head') == 'fer2013' else ''}: **{ev['accuracy']:.4f}**,
  macro-F1 {ev['macro_f1']:.4f}, ECE {ev['ece']:.4f}, n = {ev['n']}; per class and confusion below.

| class | precision | recall | F1 | support |
| --- | --- | --- | --- | --- |""")
    for c in classes:
        s = ev["per_class"][c]
        print(f"| {c} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
    print("\nConfusion matrix on FER2013's labels (rows: true class, columns: predicted):\n")
    print("| | " + " | ".join(classes) + " |\n|" + " --- |" * (len(classes) + 1))
    for c, row in zip(classes, ev["confusion"]):
        print(f"| **{c}** | " + " | ".join(str(v) for v in row) + " |")
    print("\n![confusion matrix](confusion.png)\n")
    if "corruptions" in ev:
        c = ev["corruptions"]
        print("## Under webcam and gallery degradations\n`moodlens evaluate ... --corruptions` (severities and why: "
              "docs/robustness.md), accuracy on FER2013's labels\n")
        print("| degradation | severity | accuracy |\n| --- | --- | --- |")
        for name, r in c["per_corruption"].items():
            print(f"| {name} | {r['severity']} | {r['accuracy']:.4f} |")
        print(f"| **mean** | | **{c['mean_accuracy']:.4f}** ({c['drop'] * 100:.1f} points below clean) |\n")
    c, e = bench["classifier"], bench["end_to_end"]
    print(f"""## Size and speed
- {model.stat().st_size / 1e6:.1f} MB (float32 ONNX).
- `moodlens benchmark --stat {bench.get('statistic', 'median')}` on {bench['machine']['cpus']} CPU cores ({bench['machine']['processor']}):
  {c['crops_per_s_batch64']:.0f} crops/s in batches of 64, {c['ms_one_crop']:.2f} ms for one crop;
  whole pipeline with the {bench['detector']} detector: {e['one_face_640x480_fps']:.0f} frames/s for one face at 640x480,
  {e['gallery_20_faces_1280x720_fps']:.1f} frames/s for a 20-face 1280x720 gallery.

## Limits
- FER2013 is web-scraped, posed and spontaneous faces, mostly frontal, 48x48 grey; its labels are
  noisy (human accuracy on it was estimated at about 65 %). Disgust has 436 training faces and is the least
  reliable class; fear is often confused with sad and surprise.
- The faces' demographics are not documented; accuracy across groups was not measured.
- An expression is not a feeling. MoodLens reports what faces show, to help a teacher notice who may
  need attention; it is not meant for grading, hiring, or any decision about a person.""")


def joined_history(runs: list[Path]) -> list[dict]:
    """The runs' metrics.csv rows one after another, epochs numbered on across the runs; each row
    keeps its run's index and its epoch within that run."""
    history: list[dict] = []
    for i, run in enumerate(runs):
        for row in csv.DictReader(open(run / "metrics.csv")):
            h = {k: float(row[k]) for k in NUMERIC}
            h.update(epoch=len(history) + 1, run=i, run_epoch=int(row["epoch"]))
            history.append(h)
    return history


def heads(cfg: dict) -> str:
    if not cfg.get("fer2013_head"):
        return ""
    return ("\nIt has two output heads on one network. `probs`, what MoodLens shows, learnt people's reading of a\n"
            "face (the crowd's votes and the teachers below). `probs_fer2013` learnt FER2013's own labels, which\n"
            "disagree with the crowd on about a third of the faces; only the FER2013 benchmark reads it.\n"
            "Each figure below names its head.\n")


def targets(cfg: dict) -> str:
    if not cfg.get("ferplus"):
        return "original FER2013 labels"
    w = cfg.get("ferplus_weight", 1.0)
    crowd = ("the FER+ crowd's vote distribution" if w >= 1.0 else
             f"the FER+ crowd's vote distribution ({w:.0%}) blended with the original FER2013 label ({1 - w:.0%})")
    if cfg.get("teacher"):
        names = ", ".join(f"`{t}`" for t in cfg["teacher"])
        crowd = (f"for the shown head, the average of {len(cfg['teacher'])} teachers' probabilities ({names}; "
                 f"{cfg['teacher_weight']:.0%} of each target) blended with {crowd}")
    if cfg.get("fer2013_head"):
        crowd += "; for the FER2013 head, FER2013's labels"
    return crowd + "; faces FER+ marks as not a face dropped"


def train_command(cfg: dict) -> str:
    flags = [f"moodlens train {os.path.relpath(cfg['data'])} --arch {cfg['model']}"]
    if cfg.get("teacher"):
        flags.append(f"--teacher {' '.join(cfg['teacher'])} --teacher-weight {cfg['teacher_weight']}")
    if cfg.get("ferplus"):
        flags.append(f"--ferplus {os.path.relpath(cfg['ferplus'])} --ferplus-weight {cfg['ferplus_weight']}")
    if cfg.get("fer2013_head"):
        flags.append("--fer2013-head")
    for key in ("degrade", "ema", "init"):
        if cfg.get(key):
            flags.append(f"--{key} {cfg[key]}")
    flags.append(f"--lr {cfg['lr']} --batch-size {cfg['batch_size']} --epochs {cfg['epochs']} "
                 f"--patience {cfg['patience']} --out {cfg['out']}")
    return " ".join(flags)


def precision(configs: list[dict]) -> str:
    used = {c.get("bf16", True) for c in configs}  # runs written before the flag recorded what ran used bf16
    return "bf16 autocast" if used == {True} else "float32" if used == {False} else "bf16 autocast in part"


def regularisers(cfg: dict) -> str:
    text = ""
    if cfg.get("degrade"):
        text += (f"; webcam degradations (blur, noise, JPEG, WebP, downscaling, low light) at random severities "
                 f"on {cfg['degrade']:.0%} of faces")
    if cfg.get("ema"):
        text += f"; the exported weights are an exponential moving average (decay {cfg['ema']})"
    return text


def checkpoint_choice(checkpoint: str, last_run: list[dict]) -> str:
    if Path(checkpoint).name == "last.pt":
        return f"Exported: the last epoch's weights (epoch {last_run[-1]['run_epoch']} of the last run)"
    best = max(last_run, key=lambda h: h["val_acc"])
    return f"Exported: the best PublicTest epoch (epoch {best['run_epoch']} of the last run)"


def fer2013_export(export: dict) -> str:
    if "fer2013_head" not in export:
        return ""
    f = export["fer2013_head"]
    return (f"\n  - FER2013 head (`{f['output']}`): temperature {f['temperature']:.3f}, accuracy {f['accuracy']:.4f} "
            f"and ECE {f['ece']:.4f} on the {f['n_val']} PublicTest faces.")


def int8(export: dict, bench: dict, int8_benchmark: Path | None) -> str:
    if "int8_accuracy" not in export:
        return ""
    speed = ""
    if int8_benchmark:
        q = json.loads(int8_benchmark.read_text())["classifier"]
        speed = (f"; {q['crops_per_s_batch64']:.0f} crops/s and {q['ms_one_crop']:.2f} ms for one crop against "
                 f"{bench['classifier']['crops_per_s_batch64']:.0f} and {bench['classifier']['ms_one_crop']:.2f} ms in float32")
    return (f"\n  - int8 (static, QDQ): accuracy {export['int8_accuracy']:.4f}, {export['int8_size_bytes'] / 1e6:.1f} MB{speed}.\n"
            "    Not shipped: on this CPU it is not faster, and the accuracies are within a few faces.")


def agreement(ev: dict) -> str:
    if "crowd" not in ev:
        return ""
    head = " (product head)" if ev.get("head") == "fer2013" else ""
    lines = ""
    if "ferplus_majority" in ev:
        m = ev["ferplus_majority"]
        lines += (f"- FER+ majority vote, the benchmark as the FER+ paper reports it{head}: **{m['accuracy']:.4f}** on "
                  f"{m['n']} PublicTest faces ({m['outside_model_classes']} contempt faces, a class the model "
                  f"lacks, scored as misses)\n")
    c = ev["crowd"]
    lines += f"- agreement with people{head}: **{c['accuracy']:.4f}** on the {c['n']} PublicTest {c['definition']}\n"
    return lines


if __name__ == "__main__":
    main()
