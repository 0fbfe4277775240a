"""Export a trained checkpoint to ONNX: temperature calibration, parity check against torch on
real faces, optional int8 quantisation. The preprocessing spec travels in the ONNX metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moodlens.classify import EmotionModel
from moodlens.errors import MoodLensError
from moodlens.preprocess import PreprocessSpec, preprocess
from moodlens.training.data import load_fer2013
from moodlens.training.metrics import classification_report
from moodlens.training.train import load_checkpoint, load_splits

SPEC_KEY = "moodlens.spec"


class CalibratedSoftmax(nn.Module):
    """The trained network followed by temperature-scaled softmax: the ONNX graph outputs
    calibrated probabilities directly, one output per head (each with its own temperature)."""

    def __init__(self, model: nn.Module, temperature: float, fer2013_temperature: float | None = None):
        super().__init__()
        self.model = model
        self.temperature = temperature
        self.fer2013_temperature = fer2013_temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.fer2013_temperature is None:
            return torch.softmax(self.model(x) / self.temperature, dim=1)
        crowd, fer2013 = self.model.both(x)
        return torch.softmax(crowd / self.temperature, dim=1), torch.softmax(fer2013 / self.fer2013_temperature, dim=1)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature that minimises validation NLL (Guo et al., 2017), by a fine search over
    0.25-8: one parameter needs no optimiser, and a grid cannot diverge."""
    temperatures = torch.exp(torch.linspace(np.log(0.25), np.log(8.0), 400))
    nll = torch.stack([nn.functional.cross_entropy(logits / t, labels) for t in temperatures])
    return float(temperatures[nll.argmin()])


def export(checkpoint: str | Path, out: str | Path, data: str | None = None, calibrate: bool = True,
           quantize: bool = False, ferplus: str | None = None) -> dict:
    """Write ``out`` (ONNX) and ``out`` with ``.json`` (the export report); returns the report.

    ``data`` defaults to the dataset the checkpoint was trained on; its validation split
    supplies the real faces for calibration and the parity check. ``ferplus`` defaults to the
    FER+ vote file it was trained with, if any.
    """
    model, spec, cfg = load_checkpoint(checkpoint)
    cfg.data = data or _stored_path(checkpoint, "training data", cfg.data, "--data")
    if cfg.ferplus or ferplus:
        cfg.ferplus = ferplus or _stored_path(checkpoint, "FER+ vote file", cfg.ferplus, "--ferplus")
    cfg.limit = 512  # the training split is needed only as quantisation calibration faces
    train_set, val_set = load_splits(cfg)
    x_val = torch.from_numpy(preprocess(val_set.images, spec))
    with torch.no_grad():
        logits = torch.cat([model(x_val[i:i + 512]) for i in range(0, len(x_val), 512)])
    labels = torch.from_numpy(val_set.labels)
    before = classification_report(logits.softmax(1).numpy(), val_set.labels, spec.classes)
    temperature = fit_temperature(logits, labels) if calibrate else 1.0
    probs_torch = (logits / temperature).softmax(1).numpy()
    after = classification_report(probs_torch, val_set.labels, spec.classes)

    fer2013 = _fer2013_head(model, cfg, spec, calibrate) if cfg.fer2013_head else None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapped = CalibratedSoftmax(model, temperature, fer2013 and fer2013["temperature"]).eval()
    outputs = ["probs", "probs_fer2013"] if fer2013 else ["probs"]
    torch.onnx.export(wrapped, x_val[:1], str(out), input_names=["faces"], output_names=outputs,
                      dynamic_axes={"faces": {0: "n"}, **{o: {0: "n"} for o in outputs}}, opset_version=17, dynamo=False)
    _set_metadata(out, spec, {"temperature": temperature, "trained_on": Path(cfg.data).name,
                              "val_split": cfg.val_split, "val_accuracy": after["accuracy"],
                              **({"fer2013_head": fer2013} if fer2013 else {})})

    probs_onnx = EmotionModel(out).predict(val_set.images)
    report = {
        "checkpoint": str(checkpoint), "onnx": str(out), "model": cfg.model, "classes": list(spec.classes),
        "val_split": cfg.val_split, "n_val": len(val_set),
        "temperature": temperature,
        "ece_before": before["ece"], "ece_after": after["ece"], "nll_before": before["nll"], "nll_after": after["nll"],
        "accuracy_torch": after["accuracy"],
        "accuracy_onnx": float((probs_onnx.argmax(1) == val_set.labels).mean()),
        "max_abs_diff_vs_torch": float(np.abs(probs_onnx - probs_torch).max()),
        "size_bytes": out.stat().st_size,
        **({"fer2013_head": fer2013} if fer2013 else {}),
    }
    if quantize:
        report.update(_quantize(out, spec, train_set.images, val_set.images, val_set.labels))
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    return report


def _fer2013_head(model: nn.Module, cfg, spec: PreprocessSpec, calibrate: bool) -> dict:
    """The FER2013 head's temperature and scores, on the validation split's FER2013 labels."""
    faces = load_fer2013(cfg.data, cfg.val_split)
    x = torch.from_numpy(preprocess(faces.images, spec))
    with torch.no_grad():
        logits = torch.cat([model.both(x[i:i + 512])[1] for i in range(0, len(x), 512)])
    labels = torch.from_numpy(faces.labels)
    temperature = fit_temperature(logits, labels) if calibrate else 1.0
    report = classification_report((logits / temperature).softmax(1).numpy(), faces.labels, spec.classes)
    return {"output": "probs_fer2013", "temperature": temperature, "accuracy": report["accuracy"],
            "ece": report["ece"], "n_val": len(faces)}


def _stored_path(checkpoint: str | Path, what: str, path: str, option: str) -> str:
    """A data path from a checkpoint's config, where it is still there. Older runs stored paths
    relative to the folder training ran from; they are read from the current folder."""
    if not Path(path).exists():
        relative = "" if Path(path).is_absolute() else " (relative to the folder training ran from)"
        raise MoodLensError(f"{checkpoint}: its {what} {path} is not there{relative}; give it with {option}")
    return path


def _set_metadata(path: Path, spec: PreprocessSpec, extra: dict) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in {SPEC_KEY: spec.to_json(), "moodlens.info": json.dumps(extra)}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _quantize(path: Path, spec: PreprocessSpec, calib_faces: np.ndarray, val_faces: np.ndarray,
              val_labels: np.ndarray) -> dict:
    """Static int8 quantisation (QDQ), calibrated on training faces; reports the accuracy change."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Faces(CalibrationDataReader):
        def __init__(self):
            x = preprocess(calib_faces, spec)
            self.batches = iter([{"faces": x[i:i + 64]} for i in range(0, len(x), 64)])

        def get_next(self):
            return next(self.batches, None)

    q_path = path.with_suffix(".int8.onnx")
    pre = path.with_suffix(".pre.onnx")
    quant_pre_process(str(path), str(pre))
    quantize_static(str(pre), str(q_path), Faces(), quant_format=QuantFormat.QDQ)
    pre.unlink()
    _set_metadata(q_path, spec, {"quantized": "int8"})
    q_acc = float((EmotionModel(q_path).predict(val_faces).argmax(1) == val_labels).mean())
    return {"int8_onnx": str(q_path), "int8_accuracy": q_acc, "int8_size_bytes": q_path.stat().st_size}
