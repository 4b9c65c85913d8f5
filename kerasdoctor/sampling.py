"""`--sample N`: which rows a diagnosis reads, in one place (issue 17, item 7).

The single run (core), the multi-label and dense runs, and both Beam planners draw the same
rows for the same N and --seed, so a sharded run with --sample reads the rows a single run
reads."""

from __future__ import annotations

import numpy as np

from kerasdoctor.errors import InputError


def sample_indices(n_total: int, sample: int | None, seed: int) -> np.ndarray | None:
    """Sorted row indices of a seeded draw of `sample` rows without replacement out of
    `n_total`; None for every row (no --sample, or N at least the rows there are)."""
    if sample is None:
        return None
    if sample <= 0:
        raise InputError(f"--sample must be positive, got {sample}")
    if sample >= n_total:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=sample, replace=False))
