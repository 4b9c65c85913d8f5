"""Helpers shared by the data-side cause checks: symptoms, inputs to judge, accuracy noise."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import prediction_symptoms, unquoted
from kerasdoctor.findings import Severity

if TYPE_CHECKING:
    from kerasdoctor.checks.base import Context
    from kerasdoctor.evidence import InputStats

# Layers that read an input as indices, not measurements: its scale means nothing.
INDEX_LAYERS = frozenset(
    {
        "Embedding",
        "CategoryEncoding",
        "IntegerLookup",
        "StringLookup",
        "Hashing",
        "HashedCrossing",
        "TextVectorization",
    }
)
# Symptoms that a data defect (scale, preprocessing) can explain: the output stops following
# the input. low-recall alone is too common on honestly hard data to pin on a data defect.
SCALE_SYMPTOMS = ("prediction-collapse", "missing-classes", "constant-output")


def symptom_ids(ctx: Context) -> list[str]:
    """The symptoms present that a data defect can explain (see SCALE_SYMPTOMS)."""
    found = prediction_symptoms(ctx)
    return [s for s in SCALE_SYMPTOMS if s in found]


def severity_for_symptoms(symptoms: list[str]) -> Severity:
    """A scale defect is the failure only when the predictions show it: error when the output
    no longer depends on the input, warning with a collapse, info (a risk) otherwise."""
    if "constant-output" in symptoms:
        return Severity.ERROR
    return Severity.WARNING if symptoms else Severity.INFO


@dataclass(frozen=True)
class JudgedInput:
    """A model input whose values are measurements (not token ids), with its statistics."""

    index: int
    stats: InputStats
    normalizer: Any  # the model's Normalizer at this input, or None

    @property
    def name(self) -> str:
        return self.stats.name


def value_inputs(ctx: Context) -> list[JudgedInput]:
    """Inputs whose scale matters: numeric, not fed to an Embedding/lookup layer."""
    facts = ctx.facts
    out = []
    for i, st in enumerate(ctx.evidence.inputs):
        if not _is_dtype(st.dtype) or np.dtype(st.dtype).kind not in "biuf":
            continue  # strings, objects: not values with a scale
        consumers = facts.input_consumers.get(st.name, ())
        if any(c in INDEX_LAYERS for c in consumers):
            continue
        if st.moments.count.sum() == 0:  # nothing finite to measure
            continue
        out.append(JudgedInput(i, st, facts.input_normalizers.get(st.name)))
    return out


def _is_dtype(name: str) -> bool:
    try:
        np.dtype(name)
        return True
    except TypeError:
        return False


def feature_rms(st: InputStats) -> np.ndarray:
    """Per-feature typical magnitude sqrt(mean^2 + var) over finite values (NaN if none)."""
    m = st.moments
    return np.sqrt(np.where(m.count > 0, m.var + m.mean**2, np.nan))


def fixed_model_name(ctx: Context) -> str:
    """`<model stem>_fixed.keras`, shell-quoted, for retraining commands."""
    stem = Path(unquoted(ctx.model_path).rstrip("/")).stem or "model"
    return shlex.quote(f"{stem}_fixed.keras")


def fmt_num(v: float) -> str:
    """A number as a user would type it in code: 4 significant digits."""
    if not np.isfinite(v):
        return "float('nan')"
    return f"{v:.4g}"


def fmt_list(values: np.ndarray | list[float], limit: int = 16) -> str | None:
    """A Python list literal, or None when too long to paste sensibly."""
    vals = list(np.asarray(values, dtype=np.float64).reshape(-1))
    if len(vals) > limit:
        return None
    return "[" + ", ".join(fmt_num(v) for v in vals) + "]"
