"""Emotion classification with onnxruntime: no torch at inference time."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moodlens.errors import MoodLensError, existing_file
from moodlens.preprocess import PreprocessSpec, preprocess
from moodlens.weights import WEIGHTS_DIR

DEFAULT_MODEL = "moodnet_s_v3.onnx"
# A two-head model's second output: FER2013's own labels, read only by the FER2013 benchmark;
# the first output is always the head the product shows.
FER2013_OUTPUT = "probs_fer2013"


class ModelError(MoodLensError):
    """A model file that is missing or is not a MoodLens ONNX model."""


def default_model_path() -> Path:
    return WEIGHTS_DIR / DEFAULT_MODEL


class EmotionModel:
    """A facial-expression classifier.

    >>> m = EmotionModel()              # the model shipped inside the package
    >>> m.classes
    ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')
    >>> m.predict(np.zeros((2, 48, 48), np.uint8)).shape
    (2, 7)
    """

    def __init__(self, path: str | Path | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path) if path else default_model_path()
        existing_file(self.path, ModelError, "model file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
        options.log_severity_level = 3
        # Spinning worker threads would steal the CPU the detector needs between batches: on
        # 2 cores a whole frame took 22.5 ms with spinning, 17.1 ms without (one crop: +0.14 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for any malformed file
            raise ModelError(f"{self.path}: not a readable ONNX model ({type(e).__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "moodlens.spec" not in meta:
            raise ModelError(f"{self.path}: not a MoodLens model (no preprocessing metadata)")
        self.spec = PreprocessSpec.from_json(meta["moodlens.spec"])
        self._input = self.session.get_inputs()[0].name
        self.outputs = tuple(o.name for o in self.session.get_outputs())
        self._check_graph()

    def _check_graph(self) -> None:
        """Refuse a graph that does not take the faces and give the scores its metadata describes:
        it would otherwise load and then fail on the first face, or label faces with wrong classes."""
        size, n = self.spec.input_size, len(self.classes)
        inputs = self.session.get_inputs()
        shape = inputs[0].shape
        # Symbolic dims are accepted here and settled by the test run below; the batch must be free.
        fits = len(shape) == 4 and not isinstance(shape[0], int) and all(
            not isinstance(d, int) or d == want for d, want in zip(shape[1:], (1, size, size)))
        if len(inputs) != 1 or inputs[0].type != "tensor(float)" or not fits:
            got = ", ".join(f"{i.name} {i.type} {list(i.shape)}" for i in inputs)
            raise ModelError(f"{self.path}: its graph takes {got}, not the float faces [batch, 1, {size}, {size}] "
                             "its MoodLens metadata describes")
        try:
            outs = self.session.run(None, {self._input: np.zeros((2, 1, size, size), np.float32)})
        except Exception as e:  # onnxruntime's own exception types, e.g. an op that rejects the shape
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ModelError(f"{self.path}: its graph fails on a batch of 2 faces: {why}") from None
        for out in outs:
            if getattr(out, "shape", None) != (2, n):
                raise ModelError(f"{self.path}: its graph gives {getattr(out, 'shape', type(out).__name__)} for 2 "
                                 f"faces, not (2, {n}) for the {n} classes of its MoodLens metadata")

    @property
    def has_fer2013_head(self) -> bool:
        """Whether the model has a second head trained on FER2013's own labels."""
        return FER2013_OUTPUT in self.outputs[1:]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    def predict(self, faces: np.ndarray | Sequence[np.ndarray], batch_size: int = 512,
                fer2013_head: bool = False, tta: bool = False) -> np.ndarray:
        """Class probabilities (N, C) for uint8 face crops: (N, H, W) grey or (N, H, W, 3) BGR
        of any size, or a list of crops. Run ``batch_size`` faces at a time: a whole dataset in
        one run would need memory for all its activations at once (28,709 faces: over 24 GB).
        ``fer2013_head``: read a two-head model's FER2013 head instead of the product's.
        ``tta``: average each face with its mirror image (twice the time, about half a point
        more accuracy on PublicTest)."""
        if tta:
            # an array stays one array, so model-sized faces keep preprocess's whole-batch path
            mirrored = (np.ascontiguousarray(faces[:, :, ::-1]) if isinstance(faces, np.ndarray)
                        else [np.ascontiguousarray(f[:, ::-1]) for f in faces])
            return (self.predict(faces, batch_size, fer2013_head) + self.predict(mirrored, batch_size, fer2013_head)) / 2
        if fer2013_head and not self.has_fer2013_head:
            raise ModelError(f"{self.path}: has no FER2013 head")
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        output = [FER2013_OUTPUT if fer2013_head else self.outputs[0]]  # only that head's nodes run
        return np.concatenate([self.session.run(output, {self._input: preprocess(faces[i:i + batch_size], self.spec)})[0]
                               for i in range(0, len(faces), batch_size)])
