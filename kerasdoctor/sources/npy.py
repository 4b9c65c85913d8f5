"""x.npy with --labels y.npy: the inputs read in row chunks on demand, so data larger than
memory streams."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.errors import InputError
from kerasdoctor.load import (
    LoadedModel,
    _first_line,
    _fit_shape,
    _fmt_shape,
    check_input_array,
    decode_labels,
    refuse_special_file,
)
from kerasdoctor.sources.interface import ArrayBound, Bound, Source, _single_input


class NpyRows:
    """An .npy file as an array-like whose row slices (and sorted row-index arrays) are read
    from disk on demand: nothing of the file stays in memory between batches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fh = open(path, "rb")  # noqa: SIM115 (kept open: rows are read on demand)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                shape, fortran, dtype = np.lib.format._read_array_header(  # type: ignore
                    fh, version
                )
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(
                f"DATA: {path} is not a readable .npy file ({_first_line(exc)})"
            ) from exc
        if dtype.hasobject:
            fh.close()
            raise InputError(
                f"DATA: {path} holds Python objects, which kerasdoctor does not unpickle; "
                "save it with a numeric dtype"
            )
        self.shape: tuple[int, ...] = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self._fh = fh
        self._offset = fh.tell()
        self._row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        self._row_bytes = self._row_items * self.dtype.itemsize
        self._lock = threading.Lock()
        # Column-major data has no contiguous rows: read those through a memory map.
        self._mmap = np.load(path, mmap_mode="r") if fortran and self.ndim > 1 else None
        if self.ndim:
            need = self._offset + self.shape[0] * self._row_bytes
            size = os.fstat(fh.fileno()).st_size
            if size < need:
                raise InputError(
                    f"DATA: {path} is truncated: its header says {_fmt_shape(self.shape)} "
                    f"{self.dtype} ({need} bytes) but the file has {size}"
                )

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Any) -> np.ndarray:
        if self._mmap is not None:
            return np.array(self._mmap[idx])
        if isinstance(idx, slice):
            start, stop, step = idx.indices(self.shape[0])
            if step != 1:
                return self[np.arange(start, stop, step)]
            out = np.empty((max(0, stop - start), *self.shape[1:]), self.dtype)
            self._read(start, out)
            return out
        rows = np.asarray(idx, dtype=np.int64).reshape(-1)
        out = np.empty((rows.size, *self.shape[1:]), self.dtype)
        if rows.size == 0:
            return out
        # contiguous runs of the sorted rows are read in one go each
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for part, first in zip(
            np.split(np.arange(rows.size), breaks), rows[np.concatenate([[0], breaks])]
        ):
            self._read(int(first), out[part[0] : part[-1] + 1])
        return out

    def _read(self, start: int, out: np.ndarray) -> None:
        if out.size == 0:
            return
        view = out.reshape(-1).view(np.uint8).data
        with self._lock:
            self._fh.seek(self._offset + start * self._row_bytes)
            got = self._fh.readinto(view)
        if got != view.nbytes:
            raise InputError(f"DATA: {self.path}: short read at row {start} (file truncated?)")

    def close(self) -> None:
        self._fh.close()


class NpySource(Source):
    """x.npy (the model's one input) with --labels y.npy."""

    kind = "npy"

    def __init__(
        self, path: Path, labels_path: str | None, class_names: list[str] | None = None
    ) -> None:
        self.path = str(path)
        if labels_path is None:
            raise InputError(
                f"DATA: {path} holds only the inputs; give the labels with --labels y.npy"
            )
        lp = Path(labels_path)
        refuse_special_file(lp, "--labels")
        if not lp.is_file():
            raise InputError(f"--labels: no such file: {lp}")
        self.x = NpyRows(path)
        try:
            y = np.load(lp, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(
                f"--labels: {lp} is not a readable .npy file ({_first_line(exc)})"
            ) from exc
        self.labels = decode_labels(np.asarray(y), class_names, where=f"--labels: {lp}")
        del y
        if self.labels.y.shape[0] == 0:
            raise InputError(f"--labels: {lp} holds no samples")
        n = int(self.labels.y.shape[0])
        if self.x.ndim == 0 or self.x.shape[0] != n:
            got = "a scalar" if self.x.ndim == 0 else f"{self.x.shape[0]} rows"
            raise InputError(f"DATA: {path} has {got} but the labels in {lp} have {n}")

    def bind(self, lm: LoadedModel) -> Bound:
        spec = _single_input(lm, self.path, "an .npy file")
        check_input_array(self.x, "x", self.labels.y.shape[0], self.path)  # type: ignore[arg-type]
        arr = _fit_shape(self.x, spec, "x", self.path, lm)  # type: ignore[arg-type]
        return ArrayBound(self.path, [arr], self.labels)
