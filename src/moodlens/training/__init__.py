"""Training beside the pipeline: FER2013/FER+ data, the CNNs, the trainer, evaluation, ONNX export.

Everything here but :mod:`~moodlens.training.data`, :mod:`~moodlens.training.metrics`,
:mod:`~moodlens.training.degrade` and :mod:`~moodlens.training.evaluate` needs torch (the
``train`` extra); inference never imports this package. It uses the stages a face passes through
on its way to the model (:mod:`moodlens.preprocess`, :mod:`moodlens.classify`) so that training and
inference prepare faces the same way.
"""
