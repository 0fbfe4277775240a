"""Training (PyTorch): augmentation for 48x48 faces, class weighting, a one-cycle schedule,
weight averaging (EMA), early stopping on the validation split, checkpoints with resume, and a
run folder holding metrics, curves, the confusion matrix and the per-class report.

Each batch is degraded as webcam and video-call faces are (:mod:`moodlens.training.degrade`, on the uint8
faces), goes through :func:`moodlens.preprocess.preprocess` exactly as at inference, and is then
augmented geometrically on the normalised tensors.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from moodlens.errors import MoodLensError, existing_file
from moodlens.preprocess import PreprocessSpec, preprocess
from moodlens.training.data import FaceSet, load_crowd_majority, load_faces, load_fer2013
from moodlens.training.degrade import random_degrade
from moodlens.training.metrics import classification_report, format_report
from moodlens.training.models import create_model, load_backbone, load_exported, settle_batchnorms
from moodlens.training.plots import plot_confusion, plot_curves


@dataclass
class TrainConfig:
    """Every training argument; saved beside each checkpoint so a run can be repeated."""

    data: str
    out: str = "runs/train"
    model: str = "moodnet_s"
    classes: str | None = None
    ferplus: str | None = None
    ferplus_classes: bool = False
    ferplus_weight: float = 1.0
    degrade: float = 0.0
    ema: float = 0.0
    teacher: list[str] | None = None
    teacher_weight: float = 0.7
    fer2013_head: bool = False
    fer2013_weight: float = 1.0
    pretrained: str | None = None
    init: str | None = None
    freeze_epochs: int = 3
    finetune_lr: float = 0.1
    train_split: str | None = "Training"
    val_split: str | None = "PublicTest"
    epochs: int = 60
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    class_weights: str = "sqrt"
    patience: int = 20
    limit: int | None = None
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    threads: int | None = None
    resume: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """``auto`` (a CUDA GPU if there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise MoodLensError(f"--device {name}: choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise MoodLensError(f"--device {name}: no such CUDA GPU here (this torch sees "
                            f"{torch.cuda.device_count()}); use --device cpu or auto")
    return device


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast halves training time on CPUs with AVX512-BF16 and on recent GPUs."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flip, rotation (+-15 deg), scale (+-10%), shift (+-10%), brightness/contrast and
    erasing, on a normalised batch (N, 1, S, S). Values of 0 are the mean grey."""
    n, device = x.shape[0], x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)

    angle = uniform(-math.radians(15), math.radians(15))
    scale = uniform(0.9, 1.1)
    flip = (torch.rand(n, generator=gen) < 0.5).to(device).float() * -2 + 1
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, uniform(-0.2, 0.2)], 1),
        torch.stack([sin * flip, cos, uniform(-0.2, 0.2)], 1),
    ], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    x = x * uniform(0.8, 1.2).view(n, 1, 1, 1) + uniform(-0.3, 0.3).view(n, 1, 1, 1)
    # Random erasing: one rectangle of 2-20% of the face in half of the images.
    size = x.shape[-1]
    area = uniform(0.02, 0.2) * size * size
    aspect = torch.exp(uniform(math.log(0.3), math.log(3.3)))
    h = (area * aspect).sqrt().clamp(1, size - 1)
    w = (area / aspect).sqrt().clamp(1, size - 1)
    top, left = uniform(0, 1) * (size - h), uniform(0, 1) * (size - w)
    ys = torch.arange(size, device=device).view(1, size, 1)
    xs = torch.arange(size, device=device).view(1, 1, size)
    box = ((ys >= top.view(n, 1, 1)) & (ys < (top + h).view(n, 1, 1)) &
           (xs >= left.view(n, 1, 1)) & (xs < (left + w).view(n, 1, 1)))
    box &= (torch.rand(n, generator=gen) < 0.5).to(device).view(n, 1, 1)
    return x.masked_fill(box.unsqueeze(1), 0.0)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, list[float]]:
    """The optimizer and each parameter group's peak learning rate. AdamW by default: on these
    small nets it learns several times faster in the first epochs than SGD (measured on FER2013:
    0.48 vs 0.28 training accuracy after 4 epochs). A pretrained backbone is fine-tuned at
    ``finetune_lr`` times the head's rate, so its features are adapted rather than overwritten."""
    if cfg.pretrained:
        head_ids = {id(p) for p in model.head.parameters()}
        groups = [{"params": [p for p in model.parameters() if id(p) not in head_ids], "lr": cfg.lr * cfg.finetune_lr},
                  {"params": list(model.head.parameters()), "lr": cfg.lr}]
    else:
        groups = [{"params": list(model.parameters()), "lr": cfg.lr}]
    peaks = [g["lr"] for g in groups]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay), peaks
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay), peaks
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adamw or sgd")


def freeze_backbone(model: torch.nn.Module, frozen: bool) -> None:
    """Warm-up of a pretrained start: only the new head learns while the backbone is frozen
    (its BatchNorm statistics too), so random head gradients cannot wreck the features."""
    for p in model.features.parameters():
        p.requires_grad_(not frozen)
    if frozen:
        model.features.eval()


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> torch.Tensor | None:
    """Loss weights for rare classes: ``sqrt`` (inverse square-root frequency, mild),
    ``inverse`` (fully balanced) or ``none``. Normalised to average 1 over the samples."""
    if mode == "none":
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(float).clip(1)
    power = {"sqrt": 0.5, "inverse": 1.0}.get(mode)
    if power is None:
        raise ValueError(f"unknown class weighting {mode!r}; choose none, sqrt or inverse")
    w = counts ** -power
    w /= (w * counts).sum() / counts.sum()
    return torch.tensor(w, dtype=torch.float32)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, device: torch.device, bf16: bool,
                   batch_size: int = 512, head: int = 0) -> torch.Tensor:
    """Logits of the first head, or with ``head=1`` of a :class:`TwoHeads`' FER2013 head."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        batch = x[i:i + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out.append((model.both(batch)[head] if head else model(batch)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def fer2013_labels(cfg: TrainConfig, faces: FaceSet, split: str | None) -> np.ndarray:
    """FER2013's own label of each of ``faces`` (found by CSV row), for the FER2013 head: with
    FER+ votes a face's label is the crowd's, and faces FER+ drops are missing."""
    original = load_fer2013(cfg.data, split)
    return original.labels[np.searchsorted(original.rows, faces.rows)]


def check_two_heads(cfg: TrainConfig) -> None:
    if cfg.fer2013_head and not (cfg.ferplus and cfg.classes is None and str(cfg.data).endswith((".csv", ".csv.gz"))):
        raise MoodLensError("a FER2013 head beside the crowd's needs a FER2013 CSV, its FER+ votes (--ferplus) "
                            "and all 7 classes")


def load_splits(cfg: TrainConfig) -> tuple[FaceSet, FaceSet]:
    """Training and validation faces. When FER+ votes are only blended into the targets
    (``ferplus_weight`` < 1), validation keeps the dataset's own labels on all its faces."""
    train = load_faces(cfg.data, cfg.train_split, cfg.classes, cfg.ferplus, cfg.ferplus_classes, cfg.ferplus_weight)
    val_votes = cfg.ferplus if cfg.ferplus_weight >= 1.0 else None
    val = load_faces(cfg.data, cfg.val_split, cfg.classes, val_votes, cfg.ferplus_classes)
    if cfg.limit:
        idx = np.random.default_rng(cfg.seed).permutation(len(train))[: cfg.limit]
        train = train.subset(np.sort(idx))
    return train, val


def train(cfg: TrainConfig) -> dict:
    """Train a model; returns the best validation report. Writes into ``cfg.out``:
    ``last.pt``, ``best.pt``, ``config.json``, ``metrics.csv``, ``curves.png``,
    ``confusion.png`` and ``report.json``."""
    check_two_heads(cfg)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    out, resumed = _open_run(cfg)
    bf16 = cfg.bf16 and bf16_supported(device)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)

    train_set, val_set = load_splits(cfg)
    spec = PreprocessSpec(classes=train_set.classes)
    y_train = torch.from_numpy(train_set.soft if train_set.soft is not None else train_set.labels)
    if cfg.teacher:
        y_train = distillation_targets(cfg, train_set, out, device, bf16)
    validation = Validation(cfg, val_set, spec, device, bf16)
    y_fer = torch.from_numpy(fer2013_labels(cfg, train_set, cfg.train_split)) if cfg.fer2013_head else None

    model = _new_model(cfg, spec, device, train_set)
    optimizer, peaks = make_optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, peaks, total_steps=cfg.epochs * steps_per_epoch,
                                                    pct_start=0.15, div_factor=20, final_div_factor=200)
    loss_of = _loss(cfg, train_set, y_train, y_fer, len(spec.classes), device)
    # The weights that are evaluated, checkpointed and exported: an exponential moving average of
    # the trained ones when --ema is set, which smooths out the noise of the last steps.
    averaged = copy.deepcopy(model) if cfg.ema > 0 else model

    start_epoch, best_acc, history = 1, -1.0, []
    if resumed:
        _same_model(cfg.resume, resumed, cfg.model, spec)
        model.load_state_dict(resumed.get("trained", resumed["model"]))
        averaged.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        start_epoch, best_acc, history = resumed["epoch"] + 1, resumed["best_acc"], resumed["history"]
    # Data paths are stored absolute, so that the run exports from any folder; bf16 is stored as
    # what ran, since a CPU without AVX512-BF16 trains in float32 whatever was asked.
    saved_cfg = asdict(cfg) | {"bf16": bf16} | {name: str(Path(path).resolve()) for name, path in
                                                (("data", cfg.data), ("ferplus", cfg.ferplus)) if path}
    (out / "config.json").write_text(json.dumps(saved_cfg, indent=2))

    gen = torch.Generator().manual_seed(cfg.seed + start_epoch)
    rng = np.random.default_rng(cfg.seed + start_epoch)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=(start_epoch - 1) * steps_per_epoch,
               unit="batch", dynamic_ncols=True, mininterval=0.2 if os.isatty(2) else 30)
    stale = 0
    for epoch in range(start_epoch, cfg.epochs + 1):
        bar.set_description(f"epoch {epoch}/{cfg.epochs}")
        model.train()
        if cfg.pretrained:
            freeze_backbone(model, epoch <= cfg.freeze_epochs)
        started = time.time()
        # The whole epoch is degraded at once, in parallel, rather than batch by batch.
        order = torch.randperm(len(train_set), generator=gen)
        epoch_faces = train_set.images[order.numpy()]
        if cfg.degrade > 0:
            epoch_faces = random_degrade(epoch_faces, rng, cfg.degrade, workers=torch.get_num_threads())
        seen, loss_sum, correct = 0, 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            x = torch.from_numpy(preprocess(epoch_faces[i:i + cfg.batch_size], spec)).to(device)
            x = augment(x, gen).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                outputs = model.both(x) if cfg.fer2013_head else (model(x), None)
            loss, hits = loss_of(outputs, idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if averaged is not model:
                update_ema(averaged, model, cfg.ema, scheduler.last_epoch)
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += hits
            bar.update()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", best=f"{max(best_acc, 0):.3f}")

        report, scores = validation.score(averaged)
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen, **scores,
               "lr": scheduler.get_last_lr()[0], "seconds": time.time() - started}
        history.append(row)
        improved = report["accuracy"] > best_acc
        if improved:
            best_acc, stale = report["accuracy"], 0
        else:
            stale += 1
        state = {"model": averaged.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "epoch": epoch, "best_acc": best_acc, "history": history,
                 "config": saved_cfg, "spec": spec.to_json()}
        if averaged is not model:
            state["trained"] = model.state_dict()
        torch.save(state, out / "last.pt")
        if improved:
            torch.save(state, out / "best.pt")
        _write_metrics(history, out)
        crowd_text = f" crowd {row['val_crowd_acc']:.4f}" if "val_crowd_acc" in row else ""
        crowd_text += f" fer2013 head {row['val_fer2013_acc']:.4f}" if "val_fer2013_acc" in row else ""
        bar.write(f"epoch {epoch}: train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} | "
                  f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.4f} F1 {row['val_macro_f1']:.3f}{crowd_text}"
                  f"{' *' if improved else ''} ({row['seconds']:.0f}s)")
        if stale >= cfg.patience:
            bar.write(f"early stop: no better validation accuracy for {cfg.patience} epochs")
            break
    bar.close()

    best = torch.load(out / "best.pt", map_location=device, weights_only=False)
    averaged.load_state_dict(best["model"])
    report, _ = validation.score(averaged)
    report["epoch"] = best["epoch"]
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_confusion(report["confusion"], spec.classes, out / "confusion.png",
                   f"{cfg.val_split}: accuracy {report['accuracy']:.3f} (epoch {best['epoch']})")
    print(format_report(report))
    return report


def _new_model(cfg: TrainConfig, spec: PreprocessSpec, device: torch.device, faces: FaceSet) -> torch.nn.Module:
    """The network to train, on ``device``: fresh, or started from --pretrained or --init
    weights (a resumed run loads its own afterwards); ``faces`` settle an exported model's
    BatchNorms."""
    model = create_model(cfg.model, num_classes=len(spec.classes), fer2013_head=cfg.fer2013_head)
    if cfg.pretrained and not cfg.resume:
        try:
            load_backbone(model, cfg.model, cfg.pretrained)
        except ValueError as e:
            raise MoodLensError(str(e)) from None
    if cfg.init and not cfg.resume:
        init_weights(model, spec, cfg.model, cfg.init, faces)
    return model.to(device).to(memory_format=torch.channels_last)


def _open_run(cfg: TrainConfig) -> tuple[Path, dict | None]:
    """The run folder, made, and the checkpoint state being resumed (None for a new run)."""
    resumed = _read_checkpoint(cfg.resume, "optimizer", "scheduler", "epoch", "best_acc", "history") if cfg.resume else None
    if resumed and resumed["config"]["epochs"] != cfg.epochs:
        raise MoodLensError(f"{cfg.resume}: was planned for {resumed['config']['epochs']} epochs; resume with "
                            "the same --epochs (the learning-rate schedule depends on it)")
    out = Path(cfg.out)
    kept = [name for name in ("best.pt", "last.pt") if (out / name).exists()]
    if kept and not resumed:  # a new run would overwrite a trained one's checkpoints
        raise MoodLensError(f"{out}: already holds a trained run ({', '.join(kept)}); continue it with "
                            f"--resume {out / 'last.pt'}, or give another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out, resumed


def _loss(cfg: TrainConfig, train_set: FaceSet, y_train: torch.Tensor, y_fer: torch.Tensor | None,
          num_classes: int, device: torch.device) -> Callable:
    """``loss_of((logits, fer_logits), idx) -> (loss, hits)`` for a batch of training faces
    ``idx``: the weighted cross-entropy of the first head (plus the FER2013 head's, if any) and
    how many of the first head's top classes match the targets'."""
    def weights_for(labels: np.ndarray) -> torch.Tensor | None:
        w = class_weights(labels, num_classes, cfg.class_weights)
        return None if w is None else w.to(device)

    weights = weights_for(train_set.labels)
    fer_weights = weights_for(y_fer.numpy()) if y_fer is not None else None

    labels = torch.from_numpy(train_set.labels)

    def loss_of(outputs: tuple, idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        logits, fer_logits = outputs
        logits, y = logits.float(), y_train[idx].to(device)
        if cfg.teacher and weights is not None:
            # Class weights inside a soft target's sum would multiply the few percent a teacher
            # puts on every class: sqrt weights turned that into "disgust" on every face and the
            # student learnt it (4 epochs on 8,000 faces: 0.25 against 0.56 without teachers).
            # So each face is weighted by its own label's class, as hard labels are.
            face_weights = weights[labels[idx].to(device)]
            per_face = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing, reduction="none")
            loss = (per_face * face_weights).sum() / face_weights.sum()
        else:
            loss = F.cross_entropy(logits, y, weight=weights, label_smoothing=cfg.label_smoothing)
        if fer_logits is not None:
            loss = loss + cfg.fer2013_weight * F.cross_entropy(
                fer_logits.float(), y_fer[idx].to(device), weight=fer_weights, label_smoothing=cfg.label_smoothing)
        hard = y.argmax(1) if y.ndim == 2 else y
        return loss, int((logits.argmax(1) == hard).sum().item())

    return loss_of


class Validation:
    """The validation faces, preprocessed once, and what each epoch reports on them: the
    validation split's accuracy, loss and F1; agreement with the crowd's majority when votes are
    only blended into the targets; and the FER2013 head's accuracy on FER2013's own labels."""

    def __init__(self, cfg: TrainConfig, val_set: FaceSet, spec: PreprocessSpec, device: torch.device, bf16: bool):
        self.classes, self.device, self.bf16 = spec.classes, device, bf16
        self.x, self.labels = torch.from_numpy(preprocess(val_set.images, spec)), val_set.labels
        self.crowd = self.fer = None
        if cfg.ferplus and cfg.ferplus_weight < 1.0 and cfg.classes is None:
            self.crowd = load_crowd_majority(cfg.data, cfg.ferplus, cfg.val_split)
            self.x_crowd = torch.from_numpy(preprocess(self.crowd.images, spec))
        if cfg.fer2013_head:
            self.fer = load_fer2013(cfg.data, cfg.val_split)
            self.x_fer = torch.from_numpy(preprocess(self.fer.images, spec))

    def score(self, model: torch.nn.Module) -> tuple[dict, dict]:
        """The classification report on the validation split, and the epoch's ``val_*`` figures."""
        probs = predict_logits(model, self.x, self.device, self.bf16).softmax(1).numpy()
        report = classification_report(probs, self.labels, self.classes)
        row = {"val_loss": report["nll"], "val_acc": report["accuracy"], "val_macro_f1": report["macro_f1"]}
        if self.crowd is not None:
            agree = predict_logits(model, self.x_crowd, self.device, self.bf16).argmax(1).numpy() == self.crowd.labels
            row["val_crowd_acc"] = float(agree.mean())
        if self.fer is not None:
            hits = predict_logits(model, self.x_fer, self.device, self.bf16, head=1).argmax(1).numpy() == self.fer.labels
            row["val_fer2013_acc"] = float(hits.mean())
        return report, row


def _read_checkpoint(path: str | Path, *keys: str) -> dict:
    """The saved state of a training checkpoint, which must hold the model, config, spec and ``keys``."""
    path = Path(path)
    existing_file(path, what="checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        for key in ("model", "config", "spec", *keys):
            state[key]
    except Exception as e:  # torch.load raises many types (pickle, zip, runtime) for foreign files
        raise MoodLensError(f"{path}: not a training checkpoint ({type(e).__name__})") from None
    return state


def _same_model(path: str | Path, state: dict, preset: str, spec: PreprocessSpec) -> None:
    """Refuse a checkpoint of another preset, class set or preprocessing than this run's."""
    source_preset, source_spec = state["config"]["model"], PreprocessSpec.from_json(state["spec"])
    if source_preset != preset or source_spec.classes != spec.classes:
        raise MoodLensError(f"{path}: a {source_preset} for {', '.join(source_spec.classes)}; this run trains a "
                            f"{preset} for {', '.join(spec.classes)}")
    if source_spec != spec:
        raise MoodLensError(f"{path}: trained with other preprocessing ({source_spec.to_json()})")


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, PreprocessSpec, TrainConfig]:
    """The averaged (evaluated) model of a training checkpoint, with its spec and config."""
    state = _read_checkpoint(path)
    cfg = TrainConfig.from_dict(state["config"])
    spec = PreprocessSpec.from_json(state["spec"])
    model = create_model(cfg.model, num_classes=len(spec.classes), fer2013_head=cfg.fer2013_head)
    model.load_state_dict(state["model"])
    return model.eval(), spec, cfg


def init_weights(model: torch.nn.Module, spec: PreprocessSpec, preset: str, path: str, faces: FaceSet) -> None:
    """Start ``model`` from the evaluated weights of another run's checkpoint, or from an exported
    MoodNet (``.onnx``, such as the shipped model; a deeper preset grows from it). Unlike
    ``--resume`` the schedule starts afresh, so a trained model can be fine-tuned on new faces or
    given a second learning-rate cycle."""
    if path.endswith(".onnx"):
        from moodlens.classify import EmotionModel  # onnxruntime, to read and check the exported model

        source_spec = EmotionModel(path).spec
        if source_spec != spec:
            raise MoodLensError(f"{path}: made for other classes or preprocessing ({source_spec.to_json()}); "
                                f"this run trains {spec.to_json()}")
        try:
            settle = load_exported(model, path)
        except ValueError as e:
            raise MoodLensError(str(e)) from None
        sample = np.random.default_rng(0).permutation(len(faces))[:2048]
        settle_batchnorms(model, settle, torch.from_numpy(preprocess(faces.images[np.sort(sample)], spec)))
        return
    state = _read_checkpoint(path)
    _same_model(path, state, preset, spec)
    # a one-head checkpoint starts a two-head run: its FER2013 head starts fresh
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    if unexpected or any(not k.startswith("fer2013.") for k in missing):
        raise MoodLensError(f"{path}: its weights do not fit this run's network")


def teacher_probs(paths: list[str], faces: FaceSet, device: torch.device, bf16: bool) -> np.ndarray:
    """Class probabilities of the teachers for ``faces``, averaged over the teachers: a ``.pt``
    checkpoint or an exported ``.onnx`` model is run on each face and its mirror image; a ``.npy``
    file holds probabilities an earlier run saved (``teacher_probs.npy``) for the same faces; a
    ``.npz`` file (:func:`save_teacher_file`) holds them by FER2013 row, for any run on that CSV."""
    total = np.zeros((len(faces), len(faces.classes)), np.float64)
    for path in paths:
        if path.endswith(".npz"):
            probs = _probs_by_row(path, faces)
        elif path.endswith(".npy"):
            try:
                probs = np.load(path)
            except (OSError, ValueError) as e:
                raise MoodLensError(f"{path}: cannot read teacher probabilities ({e})") from None
        else:
            known, predict = load_teacher(path, device, bf16)
            if known != faces.classes:
                raise MoodLensError(f"{path}: the teacher knows {','.join(known)}, the run trains {','.join(faces.classes)}")
            probs = (predict(faces.images) + predict(faces.images[:, :, ::-1])) / 2
        if probs.shape != total.shape:
            raise MoodLensError(f"{path}: probabilities of shape {probs.shape}, but this run trains on "
                                f"{len(faces)} faces of {len(faces.classes)} classes")
        total += probs
    return (total / len(paths)).astype(np.float32)


def save_teacher_file(path: str | Path, probs: np.ndarray, faces: FaceSet) -> None:
    """Keep a teacher's probabilities for ``faces`` by FER2013 row, in float16 (a few hundred kB
    for the whole CSV, small enough to commit while the checkpoint that made them is not)."""
    if faces.rows is None:
        raise MoodLensError("teacher probabilities are kept by FER2013 row; give a FER2013 CSV")
    np.savez_compressed(path, rows=faces.rows, probs=probs.astype(np.float16), classes=np.array(faces.classes))


def _probs_by_row(path: str, faces: FaceSet) -> np.ndarray:
    """The saved probabilities of :func:`save_teacher_file` for ``faces``, matched by row."""
    existing_file(Path(path), what="file of teacher probabilities")
    try:
        saved = np.load(path)
        rows, probs, classes = saved["rows"], saved["probs"].astype(np.float32), tuple(saved["classes"].tolist())
    except (OSError, ValueError, KeyError) as e:
        raise MoodLensError(f"{path}: cannot read teacher probabilities ({e})") from None
    if classes != faces.classes:
        raise MoodLensError(f"{path}: the teacher knows {','.join(classes)}, the run trains {','.join(faces.classes)}")
    if faces.rows is None:
        raise MoodLensError(f"{path}: holds probabilities by FER2013 row; train on a FER2013 CSV to use it")
    order = np.argsort(rows)
    at = np.clip(np.searchsorted(rows, faces.rows, sorter=order), 0, len(rows) - 1)
    missing = rows[order[at]] != faces.rows
    if missing.any():
        raise MoodLensError(f"{path}: no probabilities for {int(missing.sum())} of the training faces "
                            f"(rows {faces.rows[missing][:3].tolist()}...); was it made from the same CSV?")
    return probs[order[at]]


def load_teacher(path: str, device: torch.device, bf16: bool) -> tuple[tuple[str, ...], Callable[[np.ndarray], np.ndarray]]:
    """A teacher's classes and its probabilities for uint8 faces: an exported ``.onnx`` model or a
    training checkpoint, each through its own preprocessing spec."""
    from moodlens.classify import EmotionModel  # onnxruntime, for exported teachers

    if path.endswith(".onnx"):
        onnx = EmotionModel(path)
        return onnx.classes, onnx.predict
    model, spec, _ = load_checkpoint(path)
    model = model.to(device).to(memory_format=torch.channels_last)
    return spec.classes, lambda faces: predict_logits(model, torch.from_numpy(preprocess(faces, spec)), device,
                                                      bf16).softmax(1).numpy()


def distillation_targets(cfg: TrainConfig, train_set: FaceSet, out: Path, device: torch.device,
                         bf16: bool) -> torch.Tensor:
    """Blend the teachers' probabilities into the targets (``teacher_weight`` of each target);
    the averaged probabilities are saved as ``teacher_probs.npy`` so a later run can reuse them."""
    probs = teacher_probs(cfg.teacher, train_set, device, bf16)
    np.save(out / "teacher_probs.npy", probs)
    base = train_set.soft if train_set.soft is not None else np.eye(len(train_set.classes))[train_set.labels]
    agree = (probs.argmax(1) == train_set.labels).mean()
    print(f"teachers agree with {agree:.1%} of the training labels; targets are {cfg.teacher_weight:.0%} teacher")
    return torch.from_numpy((cfg.teacher_weight * probs + (1 - cfg.teacher_weight) * base).astype(np.float32))


@torch.no_grad()
def update_ema(averaged: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """One EMA step; the decay ramps up over the first steps so early weights fade quickly.
    BatchNorm statistics are copied, not averaged: they already are running averages."""
    decay = min(decay, (1 + step) / (10 + step))
    for a, p in zip(averaged.parameters(), model.parameters()):
        a.lerp_(p, 1.0 - decay)
    for a, b in zip(averaged.buffers(), model.buffers()):
        a.copy_(b)


def _write_metrics(history: list[dict], out: Path) -> None:
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    plot_curves(history, out / "curves.png")
