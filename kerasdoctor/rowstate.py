"""Mergeable pieces of the dense and multi-label states (issue 16, item 5): input moments, and
rows kept by global row id for the experiments that re-run the model on a bounded sample.

Both the single run and the Beam run (kerasdoctor.beam.tasks) fill these batch by batch and
build the report from them through the same function, so a sharded run gives the report of
one process: the moments are sums (merged by adding, equal up to float rounding), the kept
rows are the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from kerasdoctor.sections import InputSummary


class Moments:
    """One input's finite values: count, sum, sum of squares, min, max (mergeable)."""

    def __init__(self, dtype: str, tail: tuple[int, ...]) -> None:
        self.dtype, self.tail = dtype, tail
        self.tot, self.sq, self.cnt, self.lo, self.hi = 0.0, 0.0, 0, math.inf, -math.inf

    def update(self, a: Any) -> None:
        step = max(1, 2**22 // max(int(np.prod(self.tail, dtype=np.int64)), 1))
        for i in range(0, len(a), step):
            v = np.asarray(a[i : i + step], dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size:
                self.tot += float(v.sum())
                self.sq += float((v * v).sum())
                self.cnt += int(v.size)
                self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))

    def merge(self, o: Moments) -> None:
        self.tot, self.sq, self.cnt = self.tot + o.tot, self.sq + o.sq, self.cnt + o.cnt
        self.lo, self.hi = min(self.lo, o.lo), max(self.hi, o.hi)

    def info(self, name: str, rows: int) -> InputSummary:
        from kerasdoctor.sections import InputSummary

        cnt = self.cnt
        mean = self.tot / cnt if cnt else None
        std = math.sqrt(max(self.sq / cnt - mean * mean, 0.0)) if mean is not None else None
        return InputSummary(
            name=name,
            shape=(rows, *self.tail),
            dtype=self.dtype,
            mean=mean,
            std=std,
            min=self.lo if cnt else None,
            max=self.hi if cnt else None,
        )


def moments_of(xs: Sequence[Any]) -> list[Moments]:
    return [Moments(str(a.dtype), tuple(int(d) for d in a.shape[1:])) for a in xs]


def merge_moments(into: list[Moments], other: list[Moments]) -> list[Moments]:
    if not into:
        return other
    for m, o in zip(into, other):
        m.merge(o)
    return into


class RowsAt:
    """Some rows of an (n, ...) array, indexed by row id as the whole array would be: what
    the experiments read of the inputs and labels of a sharded run (the bounded sample)."""

    def __init__(self, ids: np.ndarray, values: np.ndarray, n: int) -> None:
        order = np.argsort(ids, kind="stable")
        self.ids = np.asarray(ids, np.int64)[order]
        self.values = values[order]
        self.shape: tuple[int, ...] = (int(n), *values.shape[1:])
        self.dtype = values.dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, sel: Any) -> np.ndarray:
        if isinstance(sel, slice):
            sel = np.arange(*sel.indices(self.shape[0]))
        want = np.asarray(sel, np.int64)
        if want.size and not self.ids.size:
            raise RuntimeError(f"the sharded run kept no rows, not row {int(want.ravel()[0])}")
        pos = np.searchsorted(self.ids, want)
        ok = (pos < self.ids.size) & (self.ids[np.minimum(pos, self.ids.size - 1)] == want)
        if not np.all(ok):
            raise RuntimeError(
                f"the sharded run kept rows {self.ids[:5].tolist()}..., not row {int(want[~ok][0])}"
            )
        out: np.ndarray = self.values[pos]
        return out
