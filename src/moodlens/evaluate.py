"""Evaluate an exported model (onnxruntime, no torch) on a FER2013 CSV or an image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from moodlens.classify import EmotionModel
from moodlens.data import DataError, load_faces
from moodlens.metrics import classification_report


def predict_all(model: EmotionModel, faces: np.ndarray, tta: bool = False, batch_size: int = 256,
                progress: bool = True) -> np.ndarray:
    """Probabilities for all faces, in batches, with a progress bar. ``tta`` averages each face
    with its mirror image."""
    out = []
    for i in tqdm(range(0, len(faces), batch_size), desc="evaluating", unit="batch", disable=not progress,
                  leave=False):
        batch = faces[i:i + batch_size]
        p = model.predict(batch)
        if tta:
            p = (p + model.predict(np.ascontiguousarray(batch[:, :, ::-1]))) / 2
        out.append(p)
    return np.concatenate(out) if out else np.zeros((0, len(model.classes)), np.float32)


def evaluate(data: str | Path, split: str | None = None, model: str | Path | EmotionModel | None = None,
             tta: bool = False, ferplus: str | Path | None = None, plot: str | Path | None = None,
             progress: bool = True) -> dict:
    """Accuracy, macro-F1, per-class scores, confusion matrix and calibration error.

    ``split`` is a FER2013 ``Usage`` (default ``PublicTest``) or a sub-folder of an image
    folder. The data's labels are restricted to the model's classes. ``plot`` writes the
    confusion matrix as PNG.
    """
    model = model if isinstance(model, EmotionModel) else EmotionModel(model)
    data = Path(data)
    if split is None and not data.is_dir():
        split = "PublicTest"
    faces = load_faces(data, split, None, ferplus, ferplus_classes="contempt" in model.classes)
    # Score only the faces of classes the model knows, with labels in the model's numbering.
    shared = [i for i, c in enumerate(faces.classes) if c in model.classes]
    if not shared:
        raise DataError(f"{data}: none of its classes ({', '.join(faces.classes)}) is one of the model's")
    faces = faces.subset(np.isin(faces.labels, shared))
    to_model = np.array([model.classes.index(c) if c in model.classes else -1 for c in faces.classes])
    probs = predict_all(model, faces.images, tta, progress=progress)
    report = classification_report(probs, to_model[faces.labels], model.classes)
    report.update({"data": str(data), "split": split, "model": str(model.path), "tta": tta})
    if plot:
        from moodlens.plots import plot_confusion

        plot_confusion(report["confusion"], model.classes, plot,
                       f"{data.name} {split or ''}: accuracy {report['accuracy']:.3f}")
    return report
