"""Reading one shard in batches: (arrays by key, class indices, global row ids).

Shared by the pipeline's workers and the launcher's first-batch check, so both bind and
decode the data exactly as `kerasdoctor diagnose` does for an .npz (load.decode_labels,
load.bind_inputs).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kerasdoctor.beam.layout import NPZ, Shard, open_file
from kerasdoctor.errors import InputError
from kerasdoctor.load import InputSpec, decode_labels


@dataclass(frozen=True)
class ReadSpec:
    """What the workers read (picklable; made once by the launcher)."""

    format: str
    input_keys: tuple[str, ...]  # the stored arrays that feed the model, in input order
    label_key: str
    batch_size: int
    columns: tuple[Any, ...] = ()  # tfrecord.Column per input key, then the label
    class_names: tuple[str, ...] | None = None
    selected: np.ndarray | None = None  # --sample: sorted global ids of the rows kept
    raw_labels: bool = False  # dense / multi-hot labels: y as stored, not decoded


Batch = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]  # arrays by key, y, row ids


def input_keys(available: Sequence[str], specs: Sequence[InputSpec], where: str) -> list[str]:
    """Which stored features feed the model inputs: the same choice as load.bind_inputs."""
    from kerasdoctor.load import input_keys as choose

    return choose(available, specs, where, noun="feature")


def read_batches(shard: Shard, spec: ReadSpec, limit: int | None = None) -> Iterator[Batch]:
    """The shard's rows in batches of spec.batch_size (fewer with --sample), in file order.

    `limit` stops after that many rows (the launcher's first-batch check).
    """
    source = _npz_batches if spec.format == NPZ else _tfrecord_batches
    names = list(spec.class_names) if spec.class_names is not None else None
    seen = 0
    for arrays, y_raw, local in source(shard, spec, limit):
        seen = int(local[-1]) + 1
        y = (
            y_raw
            if spec.raw_labels
            else decode_labels(y_raw, names, where=f"DATA: {shard.path}: '{spec.label_key}'").y
        )
        rows = shard.offset + local
        if spec.selected is not None:
            pos = np.searchsorted(spec.selected, rows)
            keep = (pos < spec.selected.size) & (
                spec.selected[np.minimum(pos, spec.selected.size - 1)] == rows
            )
            if not keep.any():
                continue
            arrays = {k: a[keep] for k, a in arrays.items()}
            y, rows = y[keep], pos[keep]  # ids within the sample, as the single run numbers them
        yield arrays, y, rows.astype(np.int64)
    if limit is None and seen != shard.rows:
        raise InputError(
            f"DATA: {shard.path} holds {seen} rows but the shard index says {shard.rows}; "
            "rewrite the manifest (kerasdoctor shard) or delete it to count again"
        )


def _npz_batches(
    shard: Shard, spec: ReadSpec, limit: int | None
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    with open_file(shard.path) as f:
        blob = io.BytesIO(f.read())
    try:
        with np.load(blob, allow_pickle=False) as npz:
            missing = [k for k in (*spec.input_keys, spec.label_key) if k not in npz.files]
            if missing:
                raise InputError(
                    f"DATA: {shard.path} has no array '{missing[0]}' "
                    f"(found: {', '.join(npz.files)})"
                )
            arrays = {k: np.asarray(npz[k]) for k in spec.input_keys}
            y = np.asarray(npz[spec.label_key])
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(f"DATA: {shard.path} is not a readable .npz archive ({exc})") from exc
    n = int(y.shape[0]) if limit is None else min(int(y.shape[0]), limit)
    for start in range(0, n, spec.batch_size):
        stop = min(n, start + spec.batch_size)
        yield (
            {k: a[start:stop] for k, a in arrays.items()},
            y[start:stop],
            np.arange(start, stop, dtype=np.int64),
        )


def _tfrecord_batches(
    shard: Shard, spec: ReadSpec, limit: int | None
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    from kerasdoctor.beam.tfrecord import decode_examples, iter_records

    def decoded(
        records: list[bytes], start: int
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        cols = decode_examples(records, spec.columns, shard.path)
        y = cols.pop(spec.label_key)
        return cols, y, np.arange(start, start + len(records), dtype=np.int64)

    start, records = 0, []
    with open_file(shard.path) as f:
        for rec in iter_records(f, shard.path):
            records.append(rec)
            if len(records) == spec.batch_size:
                yield decoded(records, start)
                start += len(records)
                records = []
            if limit is not None and start + len(records) >= limit:
                break
    if records:
        yield decoded(records, start)
