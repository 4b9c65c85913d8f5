"""Helpers shared by the model-side cause checks: symptoms, chance level, loss families."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import unquoted

if TYPE_CHECKING:
    from kerasdoctor.checks.base import Context
    from kerasdoctor.evidence import Evidence

# Losses that read the output as probabilities unless from_logits=True.
BINARY_LOSSES = frozenset({"binary_crossentropy", "binary_focal_crossentropy"})
CATEGORICAL_LOSSES = frozenset({"categorical_crossentropy", "categorical_focal_crossentropy"})
SPARSE_LOSSES = frozenset({"sparse_categorical_crossentropy"})
CROSSENTROPY_LOSSES = BINARY_LOSSES | CATEGORICAL_LOSSES | SPARSE_LOSSES
# Heads whose outputs already are probabilities.
PROBABILITY_HEADS = frozenset({"softmax", "sigmoid", "hard_sigmoid"})
# Heads that squash (so a from_logits=True loss squashes a second time).
SQUASHING_HEADS = frozenset({"softmax", "sigmoid", "hard_sigmoid"})


def label_classes(ev: Evidence) -> np.ndarray:
    """The classes that occur in the labels."""
    return np.flatnonzero(ev.label_counts > 0)


def balanced_accuracy(ev: Evidence) -> float:
    """Mean recall over the classes present in the labels."""
    return balanced_accuracy_of_confusion(ev.confusion)


def balanced_accuracy_of_confusion(conf: np.ndarray) -> float:
    support = conf.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float((np.diag(conf)[present] / support[present]).mean())


def py_path(shell_path: str) -> str:
    """A shell-quoted path (ctx.model_path) as a Python string literal for code snippets."""
    return repr(unquoted(shell_path))


def chance_gain(ev: Evidence) -> float:
    """How far the balanced accuracy b went from chance c = 1/K to perfect: (b - c) / (1 - c).

    0 is a coin toss (or always answering one class), 1 is perfect; negative is worse than
    chance. Balanced accuracy makes "always the majority class" score exactly chance.
    """
    k = int(label_classes(ev).size)
    if k < 2:
        return float("nan")
    c = 1.0 / k
    return (balanced_accuracy(ev) - c) / (1.0 - c)


def loss_text(ctx: Context) -> str:
    """The compiled loss as a user reads it, with from_logits where it was saved."""
    f = ctx.facts
    if f.loss is None:
        return "no saved loss"
    if f.loss_from_logits is None:
        return f.loss
    return f"{f.loss}(from_logits={f.loss_from_logits})"


def from_logits(ctx: Context) -> bool:
    """Whether the loss reads logits; a loss saved by name has Keras' default False."""
    return bool(ctx.facts.loss_from_logits)


def fit_head_code(k: int) -> str:
    """The head + loss pairing that fits single-label classification with K classes."""
    if k <= 2:
        return (
            "outputs = keras.layers.Dense(1, activation='sigmoid')(features)\n"
            "model = keras.Model(inputs, outputs)\n"
            "model.compile(optimizer='adam', loss='binary_crossentropy', metrics=['accuracy'])"
        )
    return (
        f"outputs = keras.layers.Dense({k}, activation='softmax')(features)\n"
        "model = keras.Model(inputs, outputs)\n"
        "# integer labels 0..K-1; with one-hot labels use loss='categorical_crossentropy'\n"
        "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy',\n"
        "              metrics=['accuracy'])"
    )
