"""Classification metrics in plain numpy: accuracy, per-class precision/recall/F1, confusion
matrix and calibration error. Shared by training, evaluation and export."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted class."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Gap between confidence and accuracy, averaged over equal-width confidence bins."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return float(ece)


def classification_report(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict:
    """Everything `moodlens evaluate --json` prints, from probabilities and true labels."""
    num_classes = len(classes)
    predictions = probs.argmax(1)
    cm = confusion_matrix(labels, predictions, num_classes)
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros(num_classes), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros(num_classes), where=cm.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(num_classes), where=precision + recall > 0)
    nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean()
    return {
        "n": int(len(labels)),
        "accuracy": float((predictions == labels).mean()),
        "macro_f1": float(f1.mean()),
        "nll": float(nll),
        "ece": expected_calibration_error(probs, labels),
        "classes": list(classes),
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(cm[i].sum())}
            for i, c in enumerate(classes)
        },
        "confusion": cm.tolist(),
    }


def format_report(report: dict) -> str:
    """A human-readable table of a classification report."""
    lines = [f"{'class':<10}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}"]
    for c, s in report["per_class"].items():
        lines.append(f"{c:<10}{s['precision']:>10.3f}{s['recall']:>8.3f}{s['f1']:>8.3f}{s['support']:>9d}")
    lines.append(f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  "
                 f"ECE {report['ece']:.4f}  n={report['n']}")
    return "\n".join(lines)
