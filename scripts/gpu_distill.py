"""Train the shipped model on a lent GPU in one timed call: teachers, then distilled students.

The GPU machine sees only the repository, at most 64 MiB, and has PyTorch, OpenCV and numpy but
not this package installed. So the faces travel packed (raw uint8, delta + xz), the run calls the
ordinary ``moodlens train`` from ``src/``, and it plans its epochs from the speed it measures,
because one call must fit a fixed time budget.

Here (packs Training + PublicTest and the FER+ votes into ``gpu_pack/``, about 50 MB)::

    python scripts/gpu_distill.py pack ../shared/datasets/fer2013/fer2013.csv.gz \\
        ../shared/datasets/fer2013/fer2013new.csv

On the GPU machine (writes the students' checkpoints, the teachers' probabilities for the
training faces, every run's metrics and a summary into OUT)::

    python3 scripts/gpu_distill.py run --out $OUT --budget 470

Phase 1 trains ``--teachers`` wide models side by side with the v2 recipe (FER+ votes blended
into FER2013's labels, webcam degradations, EMA); phase 2 trains ``moodnet_s`` students with
``--teacher`` pointing at all of them, one per ``--variants`` entry (with ``--teachers 0``,
students of the plain recipe). PublicTest picks
the student (``summary.json``); export it here with ``moodlens export``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("Training", "PublicTest")
# Horizontal differences make neighbouring grey values small numbers that xz packs well.
FILTERS = [{"id": lzma.FILTER_DELTA, "dist": 1}, {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
RECIPE = ["--ferplus-weight", "0.5", "--degrade", "0.5", "--ema", "0.999"]


def pack(data: Path, ferplus: Path, out: Path) -> None:
    emotions, usages, pixels = [], [], []
    with gzip.open(data, "rt", newline="") if data.suffix == ".gz" else open(data, newline="") as f:
        for row in csv.DictReader(f):
            if row["Usage"] in SPLITS:
                emotions.append(int(row["emotion"]))
                usages.append(SPLITS.index(row["Usage"]))
                pixels.append(np.array(row["pixels"].split(), np.uint8))
    out.mkdir(parents=True, exist_ok=True)
    (out / "faces.xz").write_bytes(lzma.compress(np.stack(pixels).tobytes(), lzma.FORMAT_XZ, filters=FILTERS))
    np.savez(out / "labels.npz", emotion=np.array(emotions, np.uint8), usage=np.array(usages, np.uint8))
    shutil.copy(ferplus, out / "fer2013new.csv")
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    print(f"{len(emotions)} faces packed into {out} ({size:.1f} MiB)")


def unpack(packed: Path, csv_path: Path) -> None:
    labels = np.load(packed / "labels.npz")
    faces = np.frombuffer(lzma.decompress((packed / "faces.xz").read_bytes()), np.uint8).reshape(len(labels["emotion"]), -1)
    with open(csv_path, "w", newline="") as f:
        f.write("emotion,pixels,Usage\n")
        for emotion, usage, face in zip(labels["emotion"], labels["usage"], faces):
            f.write(f"{emotion},{' '.join(map(str, face.tolist()))},{SPLITS[usage]}\n")


class Phase:
    """Training runs side by side whose epochs are planned to end by a deadline. Every run starts
    with a guessed epoch count; once all have finished two epochs, runs whose plan is off by more
    than 15% are restarted with the count the measured speed allows."""

    def __init__(self, name: str, commands: list[list[str]], folders: list[Path], seconds: float, guess: int):
        self.name, self.commands, self.folders = name, commands, folders
        self.deadline = time.time() + seconds
        self.procs: list[subprocess.Popen] = []
        self.epochs = guess

    def launch(self, epochs: int) -> None:
        self.epochs, self.started = epochs, time.time()
        self.procs = []
        for cmd, folder in zip(self.commands, self.folders):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            log = open(folder / "train.log", "w")
            self.procs.append(subprocess.Popen([*cmd, "--epochs", str(epochs), "--patience", str(epochs),
                                                "--out", str(folder)], stdout=log, stderr=subprocess.STDOUT))
        print(f"[{self.name}] {len(self.procs)} runs of {epochs} epochs", flush=True)

    def _check(self) -> None:
        for proc, folder in zip(self.procs, self.folders):
            if proc.poll() not in (None, 0):
                sys.exit(f"[{self.name}] {folder} failed:\n" + (folder / "train.log").read_text()[-3000:])

    def _epochs_done(self) -> list[int]:
        done = []
        for folder in self.folders:
            metrics = folder / "metrics.csv"
            done.append(len(metrics.read_text().splitlines()) - 1 if metrics.exists() else 0)
        return done

    def run(self) -> None:
        self.launch(self.epochs)
        # The first epoch is slower (CUDA kernels are chosen, caches fill): plan from the second.
        while min(self._epochs_done()) < 2:
            self._check()
            time.sleep(1)
        rows = [list(csv.DictReader(open(f / "metrics.csv"))) for f in self.folders]
        per_epoch = max(float(r[1]["seconds"]) for r in rows)
        # 5% for validation passes and checkpoints, which the "seconds" column leaves out
        fits = int((self.deadline - time.time()) / (per_epoch * 1.05)) + 2
        print(f"[{self.name}] {per_epoch:.1f}s an epoch; {fits} epochs fit", flush=True)
        if abs(fits - self.epochs) > 0.15 * self.epochs:
            for proc in self.procs:
                proc.kill()
                proc.wait()
            startup = time.time() - self.started - 2 * per_epoch
            self.launch(max(int((self.deadline - time.time() - startup) / (per_epoch * 1.05)), 1))
        while any(p.poll() is None for p in self.procs):
            self._check()
            time.sleep(2)
        self._check()
        print(f"[{self.name}] done in {time.time() - self.started:.0f}s", flush=True)


def best_row(folder: Path) -> dict:
    rows = list(csv.DictReader(open(folder / "metrics.csv")))
    return max(rows, key=lambda r: float(r["val_acc"]))


def run(args: argparse.Namespace) -> None:
    import torch  # the GPU machine has it; packing here does not need it

    out, work = Path(args.out), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    begin = time.time()
    print(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, {os.cpu_count()} CPUs", flush=True)
    data = work / "fer2013.csv"
    unpack(Path(args.pack), data)
    print(f"unpacked in {time.time() - begin:.0f}s", flush=True)
    train = [sys.executable, "-c", "import sys; from moodlens.cli import main; sys.exit(main())", "train",
                  str(data), "--ferplus", str(Path(args.pack) / "fer2013new.csv"), *RECIPE, "--threads", str(args.threads)]
    if args.limit:
        train += ["--limit", str(args.limit)]
    os.environ["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")

    left = args.budget - (time.time() - begin)
    teachers = [work / f"teacher_{k}" for k in range(args.teachers)]
    if teachers:
        Phase("teachers", [[*train, "--arch", args.teacher_model, "--seed", str(k)] for k in range(args.teachers)],
              teachers, left * args.teacher_share, args.teacher_epochs).run()
    distil = ["--teacher", *[str(t / "best.pt") for t in teachers]] if teachers else []
    variants = [v.split() for v in args.variants.split(";")]
    students = [work / f"student_{k}" for k in range(len(variants))]
    Phase("students", [[*train, "--arch", "moodnet_s", "--seed", str(k), *distil, *v] for k, v in enumerate(variants)],
          students, args.budget - (time.time() - begin) - 15, args.student_epochs).run()

    summary = {"teachers": {t.name: best_row(t) for t in teachers},
               "students": {s.name: {**best_row(s), "args": " ".join(v)} for s, v in zip(students, variants)}}
    out.mkdir(parents=True, exist_ok=True)
    for s in students:
        # Only what export needs: the optimizer state would triple the file.
        state = torch.load(s / "best.pt", map_location="cpu", weights_only=False)
        torch.save({k: state[k] for k in ("model", "config", "spec", "epoch", "best_acc", "history")},
                   out / f"{s.name}.pt")
    if teachers:
        shutil.copy(students[0] / "teacher_probs.npy", out / "teacher_probs.npy")
    with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
        for folder in teachers + students:
            for f in folder.iterdir():
                if f.suffix != ".pt" and f.name != "teacher_probs.npy":
                    tar.add(f, arcname=f"{folder.name}/{f.name}")
    summary["seconds"] = time.time() - begin
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    sp = sub.add_parser("pack", help="pack the faces and votes for the GPU machine")
    sp.add_argument("data", type=Path)
    sp.add_argument("ferplus", type=Path)
    sp.add_argument("--out", type=Path, default=ROOT / "gpu_pack")
    sp.set_defaults(func=lambda a: pack(a.data, a.ferplus, a.out))
    sp = sub.add_parser("run", help="train teachers then students, within --budget seconds")
    sp.add_argument("--pack", default=str(ROOT / "gpu_pack"))
    sp.add_argument("--out", required=True)
    sp.add_argument("--work", default="/tmp/moodlens_gpu")
    sp.add_argument("--budget", type=float, default=470, help="seconds for everything (default: %(default)s)")
    sp.add_argument("--teachers", type=int, default=3, help="0: students without a teacher")
    sp.add_argument("--teacher-model", default="moodnet_m")
    sp.add_argument("--teacher-share", type=float, default=0.5, help="share of the budget for the teachers")
    sp.add_argument("--teacher-epochs", type=int, default=40, help="first guess; replanned after one epoch")
    sp.add_argument("--student-epochs", type=int, default=60, help="first guess; replanned after one epoch")
    sp.add_argument("--variants", default="--teacher-weight 0.5;--teacher-weight 0.7;--teacher-weight 0.9",
                    help="one student per ';'-separated set of extra train arguments")
    sp.add_argument("--threads", type=int, default=2, help="CPU threads of each run (degradations)")
    sp.add_argument("--limit", type=int, help="train on this many faces (a dry run of the script)")
    sp.set_defaults(func=run)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
