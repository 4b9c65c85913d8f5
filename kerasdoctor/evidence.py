"""Evidence: what the single pass measured, in mergeable accumulators the checks read.

Every accumulator merges exactly (count/mean/M2, min/max, counts, bitmaps), so states built on
shards combine to the figures of one pass. This module holds no model code: checks and tests
build an Evidence by hand without TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ------------------------------------------------------------------ accumulators


@dataclass
class Moments:
    """Per-feature streaming moments (Chan et al.), min/max and non-finite counts."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray
    n_nan: np.ndarray
    n_inf: np.ndarray

    @classmethod
    def empty(cls, n_features: int) -> Moments:
        z = np.zeros(n_features)
        return cls(
            count=np.zeros(n_features, np.int64),
            mean=z.copy(),
            m2=z.copy(),
            min=np.full(n_features, np.inf),
            max=np.full(n_features, -np.inf),
            n_nan=np.zeros(n_features, np.int64),
            n_inf=np.zeros(n_features, np.int64),
        )

    @property
    def n_features(self) -> int:
        return int(self.count.shape[0])

    @property
    def var(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.m2 / np.maximum(self.count, 1), np.nan)

    @property
    def std(self) -> np.ndarray:
        out: np.ndarray = np.sqrt(self.var)
        return out

    def update(self, x: np.ndarray) -> None:
        """Add a (n, F) block of values."""
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return
        finite = np.isfinite(x)
        if finite.all():
            n_b = np.full(x.shape[1], x.shape[0], np.int64)
            mean_b = x.mean(axis=0)
            m2_b = ((x - mean_b) ** 2).sum(axis=0)
            mn, mx = x.min(axis=0), x.max(axis=0)
        else:
            self.n_nan += np.isnan(x).sum(axis=0)
            self.n_inf += np.isinf(x).sum(axis=0)
            n_b = finite.sum(axis=0).astype(np.int64)
            xf = np.where(finite, x, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_b = np.where(n_b > 0, xf.sum(axis=0) / np.maximum(n_b, 1), 0.0)
            m2_b = (np.where(finite, x - mean_b, 0.0) ** 2).sum(axis=0)
            mn = np.where(finite, x, np.inf).min(axis=0)
            mx = np.where(finite, x, -np.inf).max(axis=0)
        self._combine(n_b, mean_b, m2_b)
        self.min = np.minimum(self.min, mn)
        self.max = np.maximum(self.max, mx)

    def update_batch(self, x: np.ndarray) -> None:
        """Add a batch (B, ..., F): moments per feature (last axis) over every other axis.

        Same figures as update(x.reshape(-1, F)), computed on the (B, positions x F) view:
        reducing down the batch axis of that wide array is contiguous and vectorised, where
        reducing a tall (B x positions, F) array with few features (RGB: 3) walks it with a
        stride of F and costs ~10x more per value.
        """
        x = np.asarray(x)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        b, f = int(x.shape[0]), int(x.shape[-1])
        if b == 0 or f == 0:
            return
        wide = x.reshape(b, -1)
        if wide.dtype.kind not in "iuf" or (wide.dtype.kind == "f" and not np.isfinite(wide).all()):
            self.update(x.reshape(-1, f))  # bool, or non-finite values to count: general path
            return
        positions = wide.shape[1] // f
        n_b = b * positions
        mean_b = wide.sum(axis=0, dtype=np.float64).reshape(positions, f).sum(axis=0) / n_b
        dev = wide - np.tile(mean_b, positions)  # float64 (B, positions x F)
        m2_b = np.einsum("ij,ij->j", dev, dev).reshape(positions, f).sum(axis=0)
        mn = wide.min(axis=0).reshape(positions, f).min(axis=0).astype(np.float64)
        mx = wide.max(axis=0).reshape(positions, f).max(axis=0).astype(np.float64)
        self._combine(np.full(f, n_b, np.int64), mean_b, m2_b)
        self.min = np.minimum(self.min, mn)
        self.max = np.maximum(self.max, mx)

    def update_moments(self, n_b: np.ndarray, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        """Add pre-reduced groups: per-group counts, means and M2 of shape (G, F)."""
        for i in range(mean_b.shape[0]):
            self._combine(n_b[i], mean_b[i], m2_b[i])

    def _combine(self, n_b: Any, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        n_a = self.count
        n = n_a + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = mean_b - self.mean
            frac = np.where(n > 0, n_b / np.maximum(n, 1), 0.0)
            self.mean = self.mean + delta * frac
            self.m2 = self.m2 + m2_b + delta**2 * n_a * frac
        self.count = n

    def merge(self, other: Moments) -> None:
        """Fold another accumulator of the same features into this one (exact)."""
        self._combine(other.count, other.mean, other.m2)
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        self.n_nan = self.n_nan + other.n_nan
        self.n_inf = self.n_inf + other.n_inf

    def pooled(self) -> tuple[float, float, float, float]:
        """(mean, std, min, max) of all features pooled together."""
        n = self.count.sum()
        if n == 0:
            return (float("nan"),) * 4
        mean = float((self.count * self.mean).sum() / n)
        m2 = float((self.m2 + self.count * (self.mean - mean) ** 2).sum())
        return mean, float(np.sqrt(m2 / n)), float(self.min.min()), float(self.max.max())

    def rms(self) -> float:
        """Root mean square of all values: the input's typical magnitude."""
        n = self.count.sum()
        if n == 0:
            return float("nan")
        return float(np.sqrt((self.m2 + self.count * self.mean**2).sum() / n))


# Token ids that carry no word in Keras's conventions: 0 is padding (the mask token of
# TextVectorization / StringLookup, pad_sequences' default value), 1 is the out-of-vocabulary
# id ("[UNK]", TextVectorization's single default OOV index; Tokenizer(oov_token=...)'s id).
RESERVED_TOKEN_IDS = 2  # ids below this are reserved: a row of only these holds no word
TOKEN_ID_CAP = 2**20  # distinct ids are tracked below this (a bitmap of at most 1 MB)


@dataclass
class TokenStats:
    """An input read as token ids (it feeds an Embedding): rows that hold no word, ids seen.

    Exact and mergeable: counts add, the bitmap of ids seen is OR-ed.
    """

    rows: int = 0
    blank_rows: int = 0  # rows whose every id is reserved (padding/OOV): no word at all
    seen: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # id -> seen
    out_of_range: int = 0  # values below 0 or at/above TOKEN_ID_CAP (not in the bitmap)

    def update(self, x: np.ndarray) -> None:
        """Add a batch (B, ...) of ids (floats are truncated, as an Embedding casts them)."""
        b = int(x.shape[0])
        if b == 0 or x.dtype.kind not in "iuf":
            return
        wide = x.reshape(b, -1)
        self.rows += b
        if wide.shape[1]:
            # NaN compares False: a row holding one is not counted as blank
            self.blank_rows += int((wide.max(axis=1) < RESERVED_TOKEN_IDS).sum())
        if wide.dtype.kind == "f":  # NaN/Inf and huge values land out of range, not in int64
            wide = np.clip(np.where(np.isfinite(wide), wide, -1), -1, TOKEN_ID_CAP)
        ids = wide.astype(np.int64, copy=False).reshape(-1)
        ok = (ids >= 0) & (ids < TOKEN_ID_CAP)
        self.out_of_range += int(ids.size - ok.sum())
        self._mark(np.bincount(ids[ok]) > 0 if ok.any() else np.zeros(0, bool))

    def _mark(self, seen: np.ndarray) -> None:
        if seen.size > self.seen.size:
            self.seen = np.concatenate([self.seen, np.zeros(seen.size - self.seen.size, bool)])
        self.seen[: seen.size] |= seen

    def merge(self, other: TokenStats) -> None:
        self.rows += other.rows
        self.blank_rows += other.blank_rows
        self.out_of_range += other.out_of_range
        self._mark(other.seen)

    @property
    def n_distinct(self) -> int:
        """Distinct ids seen (below TOKEN_ID_CAP)."""
        return int(self.seen.sum())

    @property
    def max_id(self) -> int:
        """The largest id seen below TOKEN_ID_CAP, -1 if none."""
        nz = np.flatnonzero(self.seen)
        return int(nz[-1]) if nz.size else -1


@dataclass
class InputStats:
    """Statistics of one model input, per feature (the last axis: channels or columns)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    moments: Moments
    integral: bool = True  # every finite value is a whole number (e.g. raw 0-255 pixels)
    tokens: TokenStats | None = None  # inputs read as token ids (they feed an Embedding)

    @property
    def n_nonfinite(self) -> int:
        return int(self.moments.n_nan.sum() + self.moments.n_inf.sum())


@dataclass
class ActivationStats:
    """A ReLU-family layer: per unit, in how many samples it was ever positive."""

    layer: str
    activation: str
    active_count: np.ndarray  # (units,) samples in which the unit fired somewhere
    max: np.ndarray  # (units,) largest value seen
    n_samples: int = 0

    @property
    def dead(self) -> np.ndarray:
        out: np.ndarray = self.active_count == 0
        return out

    @property
    def dead_fraction(self) -> float:
        return float(self.dead.mean()) if self.active_count.size else 0.0


@dataclass
class BatchNormInputStats:
    """Moments, per channel, of what a BatchNormalization layer actually receives."""

    layer: str
    moments: Moments


@dataclass
class OutputStats:
    """The diagnosed output: raw values and probabilities per unit."""

    head_used: str  # how raw outputs were turned into probabilities
    raw: Moments
    probs: Moments
    nonfinite_rows: int = 0


@dataclass
class Evidence:
    """All that the single pass measured; checks read only this (and the model facts)."""

    n_samples: int
    n_classes: int
    y_true: np.ndarray
    y_pred: np.ndarray
    confusion: np.ndarray  # (K, K): rows are labels, columns predictions
    output: OutputStats
    inputs: list[InputStats]
    activations: list[ActivationStats] = field(default_factory=list)
    bn_inputs: list[BatchNormInputStats] = field(default_factory=list)
    scores: np.ndarray | None = None  # binary models (1 or 2 units): P(class 1) per sample
    sample_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sample_probs: np.ndarray | None = None  # (S, K) probabilities of the bounded sample
    sample_inputs: list[np.ndarray] = field(default_factory=list)  # its inputs, per model input
    batch_size: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def label_counts(self) -> np.ndarray:
        out: np.ndarray = self.confusion.sum(axis=1)
        return out

    @property
    def predicted_counts(self) -> np.ndarray:
        out: np.ndarray = self.confusion.sum(axis=0)
        return out
