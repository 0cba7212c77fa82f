"""Training a graph: the loop the command line and the GUI both drive.

- ``config.py``: the training settings, checked (``parse_training`` -> ``TrainConfig``).
- ``events.py``: what training reports (``StepEvent``, ``EpochEvent``, ``DoneEvent``,
  ``Snapshot``, ``ClassificationReport``) and each one's JSON, for the metrics log and for
  the wire to the training process (``core.remote``).
- ``metrics.py``: the one accuracy rule (``Classifier``, ``predicted_classes``,
  ``correct_count``).
- ``step.py``: one optimizer step (``training_step``).
- ``trainer.py``: the loop (``Trainer``): events, pause / stop, requests between steps.
"""
from core.training.config import TRAINING_KEYS, TrainConfig, parse_training
from core.training.events import (
    ClassificationReport,
    DoneEvent,
    EpochEvent,
    Event,
    Snapshot,
    StepEvent,
)
from core.training.metrics import Classifier, correct_count, predicted_classes
from core.training.step import training_step
from core.training.trainer import Trainer

__all__ = ["TrainConfig", "parse_training", "TRAINING_KEYS", "StepEvent", "EpochEvent",
           "DoneEvent", "Event", "Snapshot", "ClassificationReport", "Classifier",
           "predicted_classes", "correct_count", "training_step", "Trainer"]
