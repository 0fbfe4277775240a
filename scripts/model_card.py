"""Write the shipped model's card from the files the commands produced, so every figure in it
comes from a command anyone can rerun:

    moodlens train ../shared/datasets/fer2013/fer2013.csv.gz --ferplus ../shared/datasets/fer2013/fer2013new.csv \
        --ferplus-weight 0.5 --degrade 0.5 --ema 0.999 --epochs 75 --patience 75 --out runs/moodnet_s_v2
    moodlens export runs/moodnet_s_v2/best.pt --out src/moodlens/weights/moodnet_s_v2.onnx --int8
    moodlens evaluate ../shared/datasets/fer2013/fer2013.csv.gz --ferplus ../shared/datasets/fer2013/fer2013new.csv \
        --corruptions --json --plot src/moodlens/weights/confusion.png > runs/eval.json
    moodlens benchmark --json > runs/bench.json
    moodlens benchmark --json --model runs/moodnet_s_v2.int8.onnx > runs/bench_int8.json   # after moving the int8 file out of weights/
    python scripts/model_card.py runs/moodnet_s_v2 runs/eval.json runs/bench.json --wall "..." \
        --int8-benchmark runs/bench_int8.json > src/moodlens/weights/MODEL_CARD.md
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from moodlens.classify import default_model_path


def main() -> None:
    ap = argparse.ArgumentParser(description="print the model card (markdown)")
    ap.add_argument("run", type=Path, help="training run folder")
    ap.add_argument("evaluation", type=Path, help="output of moodlens evaluate --json")
    ap.add_argument("benchmark", type=Path, help="output of moodlens benchmark --json")
    ap.add_argument("--wall", help="wall time of the training command, as measured (e.g. '58 min')")
    ap.add_argument("--int8-benchmark", type=Path, help="moodlens benchmark --json --model <the int8 model>")
    args = ap.parse_args()

    cfg = json.loads((args.run / "config.json").read_text())
    history = list(csv.DictReader(open(args.run / "metrics.csv")))
    ev = json.loads(args.evaluation.read_text())
    bench = json.loads(args.benchmark.read_text())
    int8_speed = ""
    if args.int8_benchmark:
        q = json.loads(args.int8_benchmark.read_text())["classifier"]
        int8_speed = (f"; {q['crops_per_s_batch64']:.0f} crops/s and {q['ms_one_crop']:.2f} ms for one crop against "
                      f"{bench['classifier']['crops_per_s_batch64']:.0f} and {bench['classifier']['ms_one_crop']:.2f} ms in float32")
    model = default_model_path()
    export = json.loads(model.with_suffix(".json").read_text())
    train_s = sum(float(h["seconds"]) for h in history)
    best = max(history, key=lambda h: float(h["val_acc"]))
    classes = ev["classes"]
    targets = "original FER2013 labels"
    flags = ""
    if cfg.get("ferplus"):
        flags += f" --ferplus {cfg['ferplus']}"
        if cfg.get("ferplus_weight", 1.0) < 1.0:
            w = cfg["ferplus_weight"]
            flags += f" --ferplus-weight {w}"
            targets = (f"targets blending the FER+ crowd's vote distribution ({w:.0%}) with the original FER2013 label "
                       f"({1 - w:.0%}); faces FER+ marks as not a face dropped")
        else:
            targets = "FER+ vote distributions as targets; faces FER+ marks as not a face dropped"
    degrade = ""
    if cfg.get("degrade"):
        flags += f" --degrade {cfg['degrade']}"
        degrade = (f"; webcam degradations (blur, noise, JPEG, WebP, downscaling, low light) at random severities "
                   f"on {cfg['degrade']:.0%} of faces")
    if cfg.get("ema"):
        flags += f" --ema {cfg['ema']}"
        degrade += f"; the exported weights are an exponential moving average (decay {cfg['ema']})"

    print(f"""# Model card: {cfg['model']} (shipped as `moodlens/weights/{model.name}`)

A small residual CNN that reads one of seven facial expressions ({', '.join(classes)}) from a
48x48 grey face crop. Built for real-time use on a CPU; runs with onnxruntime alone.

## How it was trained
- Data: FER2013 `Training` (28,709 faces), {targets}.
- Validation / early stopping / checkpoint choice: FER2013 `PublicTest` (3,589 faces). The same split
  fitted the softmax temperature. `PrivateTest` was never used (it is withheld for independent
  evaluation), so the PublicTest figures below are those of the split the checkpoint was chosen on.
- Command (2-core CPU, bf16 autocast): `moodlens train {cfg['data']}{flags} --out {cfg['out']} --epochs {cfg['epochs']} --patience {cfg['patience']}`
  - optimizer {cfg['optimizer']}, one-cycle learning rate peaking at {cfg['lr']}, weight decay {cfg['weight_decay']},
    batch {cfg['batch_size']}, label smoothing {cfg['label_smoothing']}, {cfg['class_weights']} class weights,
    seed {cfg['seed']}; augmentation: flips, rotation +-15 deg, scale/shift +-10 %, brightness/contrast,
    random erasing{degrade}.
  - {len(history)} epochs, {train_s / 60:.0f} min of training epochs{f' ({args.wall} wall for the whole command)' if args.wall else ''};
    best PublicTest accuracy at epoch {best['epoch']} (curves: `training_curves.png`, the run's `curves.png`).
- Export: `moodlens export {cfg['out']}/best.pt --out src/moodlens/weights/{model.name} --int8`
  - ONNX vs torch on the {export['n_val']} PublicTest faces: largest probability difference
    {export['max_abs_diff_vs_torch']:.1e}; accuracy {export['accuracy_onnx']:.4f} vs {export['accuracy_torch']:.4f}.
  - Temperature {export['temperature']:.3f}: expected calibration error {export['ece_before']:.4f} -> {export['ece_after']:.4f},
    NLL {export['nll_before']:.4f} -> {export['nll_after']:.4f}.
  - int8 (static, QDQ): accuracy {export.get('int8_accuracy', float('nan')):.4f}, {export.get('int8_size_bytes', 0) / 1e6:.1f} MB{int8_speed}.
    Not shipped: on this CPU it is not faster, and the accuracies are within a few faces.
- Preprocessing facts (class names, 48x48 input, mean/std) travel in the ONNX metadata
  (`moodlens.spec`) and are applied by `moodlens.preprocess.preprocess`, the same function training used.

## PublicTest results (single pass, no test-time augmentation)
`moodlens evaluate {Path(ev['data']).name} --split PublicTest --json`

- accuracy **{ev['accuracy']:.4f}**, macro-F1 {ev['macro_f1']:.4f}, ECE {ev['ece']:.4f}, n = {ev['n']}

{agreement(ev)}
| class | precision | recall | F1 | support |
| --- | --- | --- | --- | --- |""")
    for c in classes:
        s = ev["per_class"][c]
        print(f"| {c} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
    print("\nConfusion matrix (rows: true class, columns: predicted):\n")
    print("| | " + " | ".join(classes) + " |\n|" + " --- |" * (len(classes) + 1))
    for c, row in zip(classes, ev["confusion"]):
        print(f"| **{c}** | " + " | ".join(str(v) for v in row) + " |")
    print("\n![confusion matrix](confusion.png)\n")
    if "corruptions" in ev:
        c = ev["corruptions"]
        print("## Under webcam and gallery degradations\n`moodlens evaluate ... --corruptions` (severities and why: docs/robustness.md)\n")
        print("| degradation | severity | accuracy |\n| --- | --- | --- |")
        for name, r in c["per_corruption"].items():
            print(f"| {name} | {r['severity']} | {r['accuracy']:.4f} |")
        print(f"| **mean** | | **{c['mean_accuracy']:.4f}** ({c['drop'] * 100:.1f} points below clean) |\n")
    c, e = bench["classifier"], bench["end_to_end"]
    print(f"""## Size and speed
- {model.stat().st_size / 1e6:.1f} MB (float32 ONNX).
- `moodlens benchmark` on {bench['machine']['cpus']} CPU cores ({bench['machine']['processor']}):
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


def agreement(ev: dict) -> str:
    if "crowd" not in ev:
        return ""
    c = ev["crowd"]
    lines = (f"- agreement with people: **{c['accuracy']:.4f}** on the {c['n']} PublicTest {c['definition']}\n"
             f"  (`--ferplus fer2013new.csv`)\n")
    if "ferplus_majority" in ev:
        m = ev["ferplus_majority"]
        lines += (f"- FER+ majority vote, the benchmark as the FER+ paper reports it: **{m['accuracy']:.4f}** on "
                  f"{m['n']} PublicTest faces ({m['outside_model_classes']} contempt faces, a class the model "
                  f"lacks, scored as misses)\n")
    return lines


if __name__ == "__main__":
    main()
