"""Rebalanced copies of an .npz: random over- or undersampling, every array kept aligned."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.errors import InputError

METHODS = ("oversample", "undersample")
# np.savez takes these as its own arguments: an array so named cannot be written back.
_RESERVED = {"file", "allow_pickle"}


def resample_indices(y: np.ndarray, method: str, seed: int) -> np.ndarray:
    """Row indices of the rebalanced data, shuffled.

    oversample: every present class drawn up to the largest class's count (all its own rows,
    then random repeats). undersample: every class cut to the smallest present count, rows
    drawn without replacement. The result is shuffled: a file ordered by class is a trap for
    Keras' validation_split, which takes the LAST rows.
    """
    rng = np.random.default_rng(seed)
    counts = np.bincount(y)
    present = np.flatnonzero(counts)
    parts = []
    if method == "oversample":
        target = int(counts[present].max())
        for c in present:
            idx = np.flatnonzero(y == c)
            extra = rng.choice(idx, size=target - idx.size, replace=True)
            parts += [idx, extra]
    elif method == "undersample":
        target = int(counts[present].min())
        for c in present:
            parts.append(rng.choice(np.flatnonzero(y == c), size=target, replace=False))
    else:
        raise ValueError(f"unknown method {method!r}")
    return rng.permutation(np.concatenate(parts)).astype(np.int64)


def _read_all(path: str) -> tuple[dict[str, np.ndarray], bool]:
    """Every array of the file in its stored form, and whether the file was compressed."""
    arrays: dict[str, np.ndarray] = {}
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except ValueError as exc:  # object arrays need pickle
                raise InputError(
                    f"DATA: {path}: array '{key}' holds Python objects, which kerasdoctor does "
                    "not unpickle, so it cannot be carried into the rebalanced file"
                ) from exc
    try:
        with zipfile.ZipFile(path) as zf:
            compressed = any(i.compress_type != zipfile.ZIP_STORED for i in zf.infolist())
    except (zipfile.BadZipFile, OSError):
        compressed = False
    return arrays, compressed


def resample_file(
    data_path: str, output: Path, method: str, seed: int, y_key: str = "y"
) -> dict[str, Any]:
    """Write the rebalanced copy of DATA to `output` (atomically); return the report."""
    from kerasdoctor.fix.common import n_classes_of, names_for
    from kerasdoctor.io import atomic_write
    from kerasdoctor.load import read_npz

    raw = read_npz(data_path, y_key=y_key)  # validates and decodes the labels
    y = raw.labels.y
    n = int(y.shape[0])
    arrays, compressed = _read_all(data_path)
    reserved = sorted(_RESERVED & set(arrays))
    if reserved:
        raise InputError(
            f"DATA: {data_path}: an array named '{reserved[0]}' cannot be written back by numpy; "
            "rename it"
        )
    idx = resample_indices(y, method, seed)
    out: dict[str, np.ndarray] = {}
    for key, a in arrays.items():
        if key == "class_names" or a.ndim == 0:
            out[key] = a  # per-file, not per-sample
        elif a.shape[0] == n:
            out[key] = a[idx]
        else:
            raise InputError(
                f"DATA: {data_path}: array '{key}' has {a.shape[0]} rows but the labels have {n}; "
                "it cannot be kept aligned"
            )

    def write(tmp: str) -> None:
        save: Any = np.savez_compressed if compressed else np.savez
        with open(tmp, "wb") as fh:  # a file object: numpy adds no '.npz' to the name
            save(fh, **out)

    atomic_write(output, write)
    k = n_classes_of(raw)
    before = np.bincount(y, minlength=k)
    after = np.bincount(y[idx], minlength=k)
    unique = int(np.unique(idx).size)
    return {
        "method": method,
        "seed": seed,
        "data": data_path,
        "output": str(output),
        "arrays": [key for key in out if key != "class_names"],
        "class_names": names_for(raw, k),
        "n_samples_before": n,
        "n_samples_after": int(idx.size),
        "distinct_samples": unique,
        "label_counts_before": before.tolist(),
        "label_counts_after": after.tolist(),
        "note": (
            "rare samples are repeated: split off validation data BEFORE oversampling, or the "
            "copies leak into it"
            if method == "oversample"
            else f"{n - unique} samples of the larger classes were left out"
        ),
    }
