"""Evaluate an exported model (onnxruntime, no torch) on a FER2013 CSV or an image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from moodlens.classify import EmotionModel
from moodlens.training.data import DataError, FaceSet, load_crowd_majority, load_faces, load_ferplus_majority
from moodlens.training.degrade import CORRUPTIONS, SEVERITIES, corrupt
from moodlens.training.metrics import classification_report


def predict_all(model: EmotionModel, faces: np.ndarray, tta: bool = False, batch_size: int = 256,
                progress: bool = True, fer2013_head: bool = False) -> np.ndarray:
    """Probabilities for all faces, in batches, with a progress bar. ``tta`` averages each face
    with its mirror image; ``fer2013_head`` reads a two-head model's FER2013 head."""
    out = []
    for i in tqdm(range(0, len(faces), batch_size), desc="evaluating", unit="batch", disable=not progress,
                  leave=False):
        batch = faces[i:i + batch_size]
        out.append(model.predict(batch, fer2013_head=fer2013_head, tta=tta))
    return np.concatenate(out) if out else np.zeros((0, len(model.classes)), np.float32)


def evaluate(data: str | Path, split: str | None = None, model: str | Path | EmotionModel | None = None,
             tta: bool = False, ferplus: str | Path | None = None, plot: str | Path | None = None,
             corruptions: bool = False, progress: bool = True) -> dict:
    """Accuracy, macro-F1, per-class scores, confusion matrix and calibration error.

    ``split`` is a FER2013 ``Usage`` (default ``PublicTest``) or a sub-folder of an image
    folder. The data's labels are restricted to the model's classes. ``ferplus`` (the FER+ vote
    file) adds ``crowd``: accuracy on the faces whose crowd vote has a strict majority, against
    that majority; and ``ferplus_majority``: accuracy against the FER+ paper's majority vote,
    where a face labelled with a class the model lacks (contempt, for a 7-class model) counts as
    a miss, as the paper's benchmark scores it. ``corruptions`` adds ``corruptions``: accuracy
    under each fixed degradation of :data:`moodlens.training.degrade.CORRUPTIONS`, their mean and the
    drop from clean accuracy. ``plot`` writes the confusion matrix as PNG.

    A two-head model is scored on the dataset's own labels (and their corruptions) with its
    FER2013 head, and against the crowd with the head the product shows; ``head`` says which
    head gave the main figures.
    """
    model = model if isinstance(model, EmotionModel) else EmotionModel(model)
    data = Path(data)
    if split is None and not data.is_dir():
        split = "PublicTest"
    faces = load_faces(data, split)
    faces, labels = _in_model_classes(faces, model, data)
    own = model.has_fer2013_head  # the dataset's own labels are FER2013's
    probs = predict_all(model, faces.images, tta, progress=progress, fer2013_head=own)
    report = classification_report(probs, labels, model.classes)
    report.update({"data": str(data), "split": split, "model": str(model.path), "tta": tta,
                   "head": "fer2013" if own else "product"})
    if ferplus:
        crowd, crowd_labels = _in_model_classes(load_crowd_majority(data, ferplus, split), model, data)
        hits = predict_all(model, crowd.images, tta, progress=progress).argmax(1) == crowd_labels
        report["crowd"] = {"accuracy": float(hits.mean()), "n": int(len(hits)),
                           "definition": "faces where more than half of the FER+ annotators chose one of the 7 classes"}
        majority = load_ferplus_majority(data, ferplus, split)
        to_model = np.array([model.classes.index(c) if c in model.classes else -1 for c in majority.classes])
        hits = predict_all(model, majority.images, tta, progress=progress).argmax(1) == to_model[majority.labels]
        report["ferplus_majority"] = {
            "accuracy": float(hits.mean()), "n": int(len(hits)),
            "outside_model_classes": int((to_model[majority.labels] < 0).sum()),
            "definition": "FER+ majority vote (Barsoum et al. 2016): the most-voted of the 8 FER+ emotions when "
                          "unique and not outvoted by unknown or not-a-face; classes the model lacks count as misses"}
    if corruptions:
        scores = {}
        for name in tqdm(CORRUPTIONS, desc="corruptions", disable=not progress, leave=False):
            p = predict_all(model, corrupt(faces.images, name), tta, progress=False, fer2013_head=own)
            scores[name] = {"accuracy": float((p.argmax(1) == labels).mean()), "severity": SEVERITIES[name]}
        mean = float(np.mean([s["accuracy"] for s in scores.values()]))
        report["corruptions"] = {"per_corruption": scores, "mean_accuracy": mean, "drop": report["accuracy"] - mean}
    if plot:
        from moodlens.training.plots import plot_confusion

        plot_confusion(report["confusion"], model.classes, plot,
                       f"{data.name} {split or ''}: accuracy {report['accuracy']:.3f}")
    return report


def _in_model_classes(faces: FaceSet, model: EmotionModel, data: Path) -> tuple[FaceSet, np.ndarray]:
    """The faces of classes the model knows, and their labels in the model's numbering."""
    shared = [i for i, c in enumerate(faces.classes) if c in model.classes]
    if not shared:
        raise DataError(f"{data}: none of its classes ({', '.join(faces.classes)}) is one of the model's")
    faces = faces.subset(np.isin(faces.labels, shared))
    to_model = np.array([model.classes.index(c) if c in model.classes else -1 for c in faces.classes])
    return faces, to_model[faces.labels]


def format_extras(report: dict) -> str:
    """The crowd-agreement and corruption lines of a report, for the console."""
    lines = []
    if report.get("head") == "fer2013":
        lines.append("the dataset's labels are scored with the model's FER2013 head, the crowd with the head it shows")
    if "crowd" in report:
        c = report["crowd"]
        lines.append(f"agreement with the FER+ crowd majority: {c['accuracy']:.4f} (n={c['n']})")
    if "ferplus_majority" in report:
        c = report["ferplus_majority"]
        lines.append(f"FER+ majority vote (the FER+ paper's benchmark): {c['accuracy']:.4f} (n={c['n']}, "
                     f"{c['outside_model_classes']} of a class the model lacks, scored as misses)")
    if "corruptions" in report:
        c = report["corruptions"]
        for name, s in c["per_corruption"].items():
            lines.append(f"{name:<10} {s['accuracy']:.4f}  ({s['severity']})")
        lines.append(f"mean under corruptions {c['mean_accuracy']:.4f}, {c['drop'] * 100:.1f} points below clean")
    return "\n".join(lines)
