"""Accuracy: which loss classifies (``Classifier``) and the one rule that turns its pred and
target into classes and correct counts, for the Trainer's per-batch accuracy and for its
classification report alike."""
from __future__ import annotations

from dataclasses import dataclass

from core.layers.losses import Decision
from kernels import backend


@dataclass(frozen=True)
class Classifier:
    """The loss whose predictions training reports accuracy for, and the nodes it reads."""
    decision: Decision
    pred: str  # node feeding the loss's pred
    target: str  # node feeding its target
    loss: str


def classification_heads(analysis) -> list[Classifier]:
    """The losses of an ``Analysis`` that classify (``Loss.decision``), in graph order: how
    each decides, and the nodes feeding its pred and target. The first gives a graph's
    accuracy."""
    heads = []
    for nid in analysis.losses():
        ins = analysis.inputs.get(nid, {})
        if "pred" not in ins or "target" not in ins:
            continue
        decision = analysis.layers[nid].decision(analysis.shapes[ins["pred"].src])
        if decision is not None:
            heads.append(Classifier(decision, ins["pred"].src, ins["target"].src, nid))
    return heads


def predicted_classes(pred, target, decision: Decision):
    """(guess, truth): the predicted and the true class of every decision in a batch, as
    flat integer arrays of the arrays' module. A binary loss decides once per output of
    each sample; a multi-class one once per position of a ``[..., C]`` prediction."""
    xp = backend.array_module(pred)
    n = int(pred.shape[0])
    if decision.binary:
        guess = pred.reshape(n, -1) > 0
        truth = target.reshape(n, -1) > decision.target_cut
        return guess.reshape(-1).astype(xp.int64), truth.reshape(-1).astype(xp.int64)
    guess = xp.argmax(pred, axis=-1).reshape(-1)
    if target.ndim == pred.ndim:  # class probabilities
        target = xp.argmax(target, axis=-1)
    return guess, target.reshape(-1).astype(xp.int64)


def correct_count(pred, target, decision: Decision) -> tuple[float, int]:
    """(correct, samples) of a batch: the samples classified right, a sample with several
    decisions counting the fraction of them that is right. Accuracy is their ratio."""
    guess, truth = predicted_classes(pred, target, decision)
    n = int(pred.shape[0])
    hits = float(backend.array_module(guess).sum(guess == truth))
    return hits / max(guess.size // max(n, 1), 1), n
