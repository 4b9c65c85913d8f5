"""Data sources: what DATA is decides how its rows reach the probe, one batch at a time.

.npz (the contract's format), an .npy pair (x.npy with --labels y.npy, read in row chunks so
data larger than memory streams), .csv / .parquet tables (--label-column, feature columns),
a folder of class subfolders of images (keras.utils.image_dataset_from_directory's layout),
a directory written by tf.data.Dataset.save, and a segmentation folder (images/ + masks/,
kerasdoctor.seg_folder, issue 16). A source is bound to a model (inputs matched,
shapes checked) and then yields (inputs, labels, row ids) batches in one pass; labels from
every source go through load.decode_labels. Unusable data raises InputError, one line.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from kerasdoctor.errors import InputError
from kerasdoctor.load import (
    Labels,
    LoadedModel,
    RawData,
    _first_line,
    _fit_shape,
    _fmt_shape,
    bind_inputs,
    check_input_array,
    decode_labels,
    input_keys,
    read_npz,
    refuse_special_file,
)
from kerasdoctor.probe import Batch, array_batches

# The files keras.utils.image_dataset_from_directory reads (its ALLOWLIST_FORMATS).
IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
TABLE_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
# Label columns found without --label-column (exactly one of them must be present).
LABEL_COLUMN_NAMES = ("label", "labels", "y", "target", "class")
# Table cells read as a missing value (NaN), so that nonfinite-inputs reports them.
MISSING_CELLS = frozenset({"", "na", "n/a", "nan", "null", "none"})
# Rows parsed per chunk while reading the labels of a table (bounds that pass's memory).
LABEL_CHUNK = 65536


# ------------------------------------------------------------------ bound data


class Bound(ABC):
    """Data matched to a model's inputs, ready to stream."""

    path: str
    n_rows: int | None  # rows, when known before the pass
    labels: Labels | None  # every label, decoded before the pass (None: decoded as they come)
    templates: list[np.ndarray]  # one zero-row array per model input: its row shape and dtype

    @abstractmethod
    def batches(self, batch_size: int, indices: np.ndarray | None = None) -> Iterator[Batch]:
        """Batches of (inputs per model input, int64 labels, row ids 0, 1, ...) in one pass;
        `indices` (sorted positions) keeps only those rows."""

    def label_info(self) -> Labels:
        """Encoding, width and class names of the labels (complete once the pass is over)."""
        assert self.labels is not None
        return self.labels


class ArrayBound(Bound):
    """Arrays (in memory, or read in row chunks on demand) with all labels known."""

    def __init__(self, path: str, arrays: Sequence[Any], labels: Labels) -> None:
        self.path = path
        self.arrays = list(arrays)
        self.labels = labels
        self.n_rows = int(labels.y.shape[0])
        self.templates = [np.empty((0, *a.shape[1:]), a.dtype) for a in self.arrays]

    def batches(self, batch_size: int, indices: np.ndarray | None = None) -> Iterator[Batch]:
        assert self.labels is not None
        return array_batches(self.arrays, self.labels.y, batch_size, indices)


Chunk = tuple[list[np.ndarray], np.ndarray]  # (inputs, int64 labels) of consecutive rows


class StreamBound(Bound):
    """A source read front to back in chunks (tables, tf.data): re-cut into batches."""

    def __init__(
        self,
        path: str,
        templates: list[np.ndarray],
        chunks: Callable[[int], Iterable[Chunk]],
        *,
        n_rows: int | None,
        labels: Labels | None = None,
        tracker: LabelStream | None = None,
    ) -> None:
        self.path = path
        self.templates = templates
        self._chunks = chunks
        self.n_rows = n_rows
        self.labels = labels
        self.tracker = tracker

    def batches(self, batch_size: int, indices: np.ndarray | None = None) -> Iterator[Batch]:
        return rebatch(self._chunks(batch_size), batch_size, indices)

    def label_info(self) -> Labels:
        if self.labels is not None:
            return self.labels
        assert self.tracker is not None
        return self.tracker.result()


def rebatch(chunks: Iterable[Chunk], batch_size: int,
            indices: np.ndarray | None = None) -> Iterator[Batch]:
    """Cut a stream of row chunks into batches of batch_size, keeping only the rows at the
    sorted positions `indices` when given; row ids count the rows kept."""
    xs_parts: list[list[np.ndarray]] = []
    y_parts: list[np.ndarray] = []
    pending = 0
    pos = 0  # source position of the next chunk's first row
    emitted = 0
    last = int(indices[-1]) if indices is not None and indices.size else -1
    for xs, y in chunks:
        m = int(y.shape[0])
        if indices is not None:
            lo, hi = np.searchsorted(indices, [pos, pos + m])
            keep = indices[lo:hi] - pos
            pos += m
            if keep.size < m:
                xs, y = [x[keep] for x in xs], y[keep]
        else:
            pos += m
        if y.shape[0]:
            xs_parts.append(xs)
            y_parts.append(y)
            pending += int(y.shape[0])
        while pending >= batch_size:
            bx, by, xs_parts, y_parts = _take(xs_parts, y_parts, batch_size)
            pending -= batch_size
            yield bx, by, np.arange(emitted, emitted + batch_size, dtype=np.int64)
            emitted += batch_size
        if indices is not None and pos > last:
            break  # the rest of the source holds no selected row
    if pending:
        bx, by, _, _ = _take(xs_parts, y_parts, pending)
        yield bx, by, np.arange(emitted, emitted + pending, dtype=np.int64)


def _take(xs_parts: list[list[np.ndarray]], y_parts: list[np.ndarray], n: int
          ) -> tuple[list[np.ndarray], np.ndarray, list[list[np.ndarray]], list[np.ndarray]]:
    """The first n pending rows, and what remains."""
    if len(y_parts) == 1:
        xs, y = xs_parts[0], y_parts[0]
    else:
        xs = [np.concatenate(p) for p in zip(*xs_parts)]
        y = np.concatenate(y_parts)
    if y.shape[0] == n:
        return xs, y, [], []
    return [x[:n] for x in xs], y[:n], [[x[n:] for x in xs]], [y[n:]]


class LabelStream:
    """Decodes labels batch by batch (when they are not known before the pass) and keeps
    what load.decode_labels would say of all of them together: encoding and width."""

    def __init__(self, where: str, class_names: list[str] | None = None) -> None:
        self.where = where
        self.class_names = class_names
        self.encodings: set[str] = set()
        self.width: int | None = None
        self.max = -1

    def decode(self, y: np.ndarray) -> np.ndarray:
        lab = decode_labels(np.asarray(y), self.class_names, where=self.where)
        if lab.encoding == "string":
            raise InputError(f"{self.where} are strings; map them to class indices first")
        self.encodings.add(lab.encoding)
        self.width = lab.width or self.width
        if lab.y.size:
            self.max = max(self.max, int(lab.y.max()))
        return lab.y

    def result(self) -> Labels:
        enc = self.encodings
        if "soft" in enc:
            encoding = "soft"
        elif "one-hot" in enc:
            encoding = "one-hot"
        elif "bool" in enc:
            encoding = "bool"
        else:  # decode_labels calls integer labels "binary" when all of them are 0 or 1
            encoding = "binary" if self.max <= 1 else "index"
        return Labels(np.zeros(0, np.int64), encoding, self.width, self.class_names)


# ------------------------------------------------------------------ sources


class Source(ABC):
    """DATA, opened and checked as far as it can be without the model."""

    kind: str
    path: str

    @abstractmethod
    def bind(self, lm: LoadedModel) -> Bound:
        """Match the data to the model's inputs (names, shapes) or raise InputError."""


class ArraySource(Source):
    """In-memory arrays: an .npz read by load.read_npz, or the library API's (x, y)."""

    kind = "npz"

    def __init__(self, raw: RawData) -> None:
        self.raw = raw
        self.path = raw.path

    def bind(self, lm: LoadedModel) -> Bound:
        return ArrayBound(self.raw.path, bind_inputs(self.raw, lm), self.raw.labels)


def _single_input(lm: LoadedModel, path: str, what: str) -> Any:
    if len(lm.inputs) != 1:
        names = ", ".join(s.name for s in lm.inputs)
        raise InputError(
            f"DATA: {path}: {what} feeds one model input, but the model has {len(lm.inputs)} "
            f"({names}); put one array per input in an .npz"
        )
    return lm.inputs[0]


# -- .npy pairs, read in row chunks


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
            raise InputError(f"DATA: {path} is not a readable .npy file ({_first_line(exc)})"
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
        for part, first in zip(np.split(np.arange(rows.size), breaks),
                               rows[np.concatenate([[0], breaks])]):
            self._read(int(first), out[part[0]: part[-1] + 1])
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

    def __init__(self, path: Path, labels_path: str | None,
                 class_names: list[str] | None = None) -> None:
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
            raise InputError(f"--labels: {lp} is not a readable .npy file ({_first_line(exc)})"
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


# -- images in class subfolders


class ImageRows:
    """The images of a folder as an array-like: indexing decodes and resizes just those files,
    as Keras's image loader does (nothing is cached)."""

    def __init__(self, paths: list[str], size: tuple[int, int], channels: int) -> None:
        self.paths = paths
        self.size = size
        self.channels = channels
        self.shape = (len(paths), size[0], size[1], channels)
        self.dtype = np.dtype(np.float32)
        self.ndim = 4

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: Any) -> np.ndarray:
        rows = range(*idx.indices(len(self.paths))) if isinstance(idx, slice) else (
            np.asarray(idx, dtype=np.int64).reshape(-1).tolist())
        out = np.empty((len(rows), *self.shape[1:]), np.float32)
        for j, i in enumerate(rows):
            out[j] = load_image(self.paths[i], self.size, self.channels)
        return out


def load_image(path: str, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as float32 (height, width, channels) in its own value range (0-255 for 8-bit
    files): decoded and color-converted as keras.utils.load_img / Keras's PIL loader does, then
    resized like tf.image.resize(method="bilinear"), what image_dataset_from_directory uses."""
    from PIL import Image, UnidentifiedImageError

    refuse_special_file(path, "DATA")  # a FIFO among the images would block Image.open
    try:
        with Image.open(path) as opened:
            img: Any = opened
            if channels == 1:
                if img.mode not in ("L", "I;16", "I"):
                    img = img.convert("L")
            elif channels == 3:
                if img.mode != "RGB":
                    img = img.convert("RGB")
            elif img.mode != "RGBA":
                img = img.convert("RGBA")
            a = np.asarray(img, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"DATA: {path}: cannot read this image ({_first_line(exc)})") from exc
    if a.ndim == 2:
        a = a[:, :, None]
    return resize_bilinear(a, size)


def resize_bilinear(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) -> (h, w, C), bilinear with half-pixel centres and no antialiasing: the
    arithmetic of TensorFlow's resize_bilinear (what tf.image.resize and keras.ops.image.resize
    use by default), so pixels match what the model saw in training."""
    h, w = size
    if a.shape[0] == h and a.shape[1] == w:
        return a

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(
            n_in / n_out) - np.float32(0.5)
        lo = np.floor(src)
        frac = (src - lo).astype(np.float32)
        lo_i = np.clip(lo, 0, n_in - 1).astype(np.int64)
        hi_i = np.clip(np.ceil(src), 0, n_in - 1).astype(np.int64)
        return lo_i, hi_i, frac

    y0, y1, fy = axis(a.shape[0], h)
    x0, x1, fx = axis(a.shape[1], w)
    fx3 = fx[None, :, None]
    top = a[y0][:, x0] + (a[y0][:, x1] - a[y0][:, x0]) * fx3
    bottom = a[y1][:, x0] + (a[y1][:, x1] - a[y1][:, x0]) * fx3
    out: np.ndarray = (top + (bottom - top) * fy[:, None, None]).astype(np.float32)
    return out


class ImageFolderSource(Source):
    """A folder of class subfolders of images, read the way
    keras.utils.image_dataset_from_directory reads it: class names are the sorted subfolder
    names (hidden ones skipped), files are listed per class in sorted walk order, and the list
    is shuffled with the seed as Keras does (a folder is ordered by class by construction;
    shuffling keeps the sorted-labels check about the user's data, not the folder layout)."""

    kind = "images"

    def __init__(self, path: Path, image_size: tuple[int, int] | None, seed: int) -> None:
        self.path = str(path)
        self.image_size = image_size
        try:
            entries = sorted(os.listdir(path))
        except OSError as exc:
            raise InputError(f"DATA: cannot read the directory {path} ({_first_line(exc)})"
                             ) from exc
        classes = [e for e in entries if (path / e).is_dir() and not e.startswith(".")]
        if not classes:
            images = [e for e in entries if e.lower().endswith(IMAGE_FORMATS)]
            holds = f"{len(images)} images and no subfolders" if images else "no subfolders"
            raise InputError(
                f"DATA: {path} is a directory but neither a folder of class subfolders of "
                f"images nor a tf.data.Dataset.save directory (it holds {holds}); put the "
                "images of each class in a subfolder named after the class"
            )
        paths: list[str] = []
        labels: list[int] = []
        for ci, name in enumerate(classes):
            found = _list_images(path / name)
            if not found:
                raise InputError(
                    f"DATA: class folder {path / name} holds no images "
                    f"({', '.join(IMAGE_FORMATS)}); remove it or add its images"
                )
            paths.extend(found)
            labels.extend([ci] * len(found))
        # keras.utils.dataset_utils.index_directory's shuffle, with the same seed
        np.random.RandomState(seed).shuffle(paths)
        y = np.asarray(labels, dtype=np.int64)
        np.random.RandomState(seed).shuffle(y)
        self.paths = paths
        self.labels = decode_labels(y, list(classes), where=f"DATA: {path}")

    def bind(self, lm: LoadedModel) -> Bound:
        spec = _single_input(lm, self.path, "an image folder")
        shape = spec.shape
        if len(shape) != 4 or shape[-1] not in (1, 3, 4):
            raise InputError(
                f"DATA: {self.path} holds images (height, width, channels with 1, 3 or 4 "
                f"channels) but model input '{spec.name}' expects {_fmt_shape(shape)}"
            )
        h, w, c = shape[1], shape[2], int(shape[3] or 3)
        if self.image_size is not None:
            if (h is not None and h != self.image_size[0]) or (
                w is not None and w != self.image_size[1]
            ):
                raise InputError(
                    f"--image-size {self.image_size[0]}x{self.image_size[1]} does not match "
                    f"model input '{spec.name}' {_fmt_shape(shape)}"
                )
            h, w = self.image_size
        if h is None or w is None:
            raise InputError(
                f"DATA: model input '{spec.name}' {_fmt_shape(shape)} takes any image size; "
                "give the size the model was trained on with --image-size HEIGHTxWIDTH"
            )
        rows = ImageRows(self.paths, (int(h), int(w)), c)
        return ArrayBound(self.path, [rows], self.labels)


def _list_images(folder: Path) -> list[str]:
    """Image files under a class folder, in keras.utils.dataset_utils.iter_valid_files order."""
    out: list[str] = []
    for root, _, files in sorted(os.walk(folder), key=lambda t: t[0]):
        out.extend(os.path.join(root, f) for f in sorted(files)
                   if f.lower().endswith(IMAGE_FORMATS))
    return out


# -- tables: .csv and .parquet


def parse_columns(spec: str | Sequence[str] | None,
                  flag: str = "--feature-columns") -> list[str] | None:
    """--feature-columns a,b,c (or a list) -> ['a', 'b', 'c']; --class-names alike."""
    if spec is None:
        return None
    parts = spec.split(",") if isinstance(spec, str) else [str(v) for v in spec]
    cols = [p.strip() for p in parts if p.strip()]
    if not cols:
        raise InputError(f"{flag} is empty; give names separated by commas")
    return cols


def _choose_columns(path: str, header: list[str], label_column: str | None,
                    feature_columns: Sequence[str] | None,
                    drop_columns: Sequence[str] | None = None) -> tuple[int, list[int]]:
    """(label index, feature indices): the features are --feature-columns in that order, or
    every column but the labels and --drop-columns, in file order."""
    shown = ", ".join(header[:20]) + (", ..." if len(header) > 20 else "")
    dropped = set(drop_columns or ())
    if feature_columns is not None and drop_columns is not None:
        raise InputError("--feature-columns and --drop-columns both choose the features; "
                         "give one of them")
    absent = [c for c in drop_columns or () if c not in header]
    if absent:
        raise InputError(
            f"DATA: {path} has no column '{absent[0]}' for --drop-columns (columns: {shown})"
        )
    if len(set(header)) != len(header):
        dup = sorted({c for c in header if header.count(c) > 1})
        used = {label_column, *(feature_columns or [])}
        if any(d in used for d in dup) or (feature_columns is None
                                           and not set(dup) <= dropped):
            raise InputError(f"DATA: {path} has duplicate column names: {', '.join(dup[:5])}")
    if label_column is None:
        found = [c for c in header if c.lower() in LABEL_COLUMN_NAMES and c not in dropped]
        if len(found) != 1:
            raise InputError(
                f"DATA: {path}: which column holds the labels? pass --label-column NAME "
                f"(columns: {shown})"
            )
        label_column = found[0]
    if label_column not in header:
        raise InputError(f"DATA: {path} has no label column '{label_column}' (columns: {shown})")
    if label_column in dropped:
        raise InputError(f"--drop-columns includes the label column '{label_column}'")
    li = header.index(label_column)
    if feature_columns is None:
        feats = [i for i in range(len(header)) if i != li and header[i] not in dropped]
    else:
        missing = [c for c in feature_columns if c not in header]
        if missing:
            raise InputError(
                f"DATA: {path} has no column '{missing[0]}' for --feature-columns "
                f"(columns: {shown})"
            )
        if label_column in feature_columns:
            raise InputError(f"--feature-columns includes the label column '{label_column}'")
        feats = [header.index(c) for c in feature_columns]
    if not feats:
        raise InputError(f"DATA: {path} has no feature column besides the labels '{label_column}'")
    return li, feats


def _table_input(lm: LoadedModel, path: str, features: list[str]) -> bool:
    """Check that the model takes rows of len(features) values; True when it wants them as
    length-1 sequences (a Keras 2-era (None, None, F) input, see load._fit_shape)."""
    spec = _single_input(lm, path, "a table")
    f = len(features)
    template = np.empty((0, f), np.float64)
    want = spec.shape
    fits = len(want) == 2 and want[1] in (None, f)
    expand = len(want) == 3 and want[1] is None and want[2] in (None, f)
    if not (fits or expand):
        shown = ", ".join(features[:8]) + (", ..." if f > 8 else "")
        raise InputError(
            f"DATA: {path} has {f} feature column(s) ({shown}) but model input '{spec.name}' "
            f"expects {_fmt_shape(want)}; choose the columns with --feature-columns, or leave "
            "some out with --drop-columns"
        )
    if expand:
        _fit_shape(template, spec, "features", path, lm)  # records the note on the model
    return expand


def _decode_label_values(values: np.ndarray, where: str,
                         class_names: list[str] | None = None) -> Labels:
    """Label cells read as text: integers, whole floats or class names, as decode_labels
    reads them from an array (class names sorted, as for string labels in an .npz)."""
    for dtype in (np.int64, np.float64):
        try:
            typed = values.astype(dtype)
        except (ValueError, OverflowError):
            continue
        return decode_labels(typed, class_names, where=where)
    names, inverse = np.unique(values, return_inverse=True)
    lab = decode_labels(names, class_names, where=where)
    return Labels(lab.y[inverse].astype(np.int64), lab.encoding, None, lab.class_names)


class TableSource(Source):
    """A .csv (comma, semicolon, tab or pipe separated, optionally gzipped) with a header row.

    Two passes over the file: the first reads only the label column (labels decoded up front,
    as for every source whose labels are cheap to read), the second streams the features."""

    kind = "csv"

    def __init__(self, path: Path, label_column: str | None,
                 feature_columns: Sequence[str] | None,
                 class_names: list[str] | None = None,
                 drop_columns: Sequence[str] | None = None) -> None:
        self.path = str(path)
        self._p = path
        self.class_names = class_names
        with self._open() as fh:
            reader = csv.reader(fh, self._dialect())
            header = next(reader, None)
            if header is None:
                raise InputError(f"DATA: {path} is empty (expected a header row)")
            self.header = [h.strip() for h in header]
            self.label_index, self.feature_index = _choose_columns(
                self.path, self.header, label_column, feature_columns, drop_columns
            )
            self.labels = self._read_labels(reader)
        self.n_rows = int(self.labels.y.shape[0])

    def _open(self) -> TextIO:
        try:
            if self._p.name.lower().endswith(".gz"):
                return gzip.open(self._p, "rt", newline="", encoding="utf-8-sig")
            return open(self._p, newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise InputError(f"DATA: cannot read {self._p} ({_first_line(exc)})") from exc

    def _dialect(self) -> type[csv.Dialect] | str:
        if not hasattr(self, "_dialect_cache"):
            name = self._p.name.lower()
            delim = "\t" if name.endswith((".tsv", ".tsv.gz")) else None
            if delim is None:
                try:
                    with self._open() as fh:
                        first = fh.readline()
                    delim = csv.Sniffer().sniff(first, delimiters=",;\t|").delimiter
                except (csv.Error, UnicodeDecodeError, OSError, EOFError):
                    delim = ","

            class Dialect(csv.excel):
                delimiter = delim  # type: ignore[assignment]

            self._dialect_cache = Dialect
        return self._dialect_cache

    def _rows(self, reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
        """Data rows (blank lines skipped), numbered from 1, with a checked field count."""
        width = len(self.header)
        n = 0
        try:
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                n += 1
                if len(row) != width:
                    raise InputError(
                        f"DATA: {self.path}: row {n} has {len(row)} fields but the header "
                        f"has {width}"
                    )
                yield n, row
        except (csv.Error, UnicodeDecodeError, EOFError, OSError) as exc:
            raise InputError(
                f"DATA: {self.path}: unreadable after row {n} ({_first_line(exc)})"
            ) from exc

    def _read_labels(self, reader: Iterator[list[str]]) -> Labels:
        li = self.label_index
        name = self.header[li]
        parts: list[np.ndarray] = []
        buf: list[str] = []
        for n, row in self._rows(reader):
            cell = row[li].strip()
            if not cell:
                raise InputError(f"DATA: {self.path}: row {n} has no label (column '{name}')")
            buf.append(cell)
            if len(buf) == LABEL_CHUNK:
                parts.append(np.asarray(buf))
                buf = []
        if buf:
            parts.append(np.asarray(buf))
        if not parts:
            raise InputError(f"DATA: {self.path} holds no samples (only a header)")
        values = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return _decode_label_values(values, f"DATA: {self.path}: label column '{name}'",
                                    self.class_names)

    def bind(self, lm: LoadedModel) -> Bound:
        expand = _table_input(lm, self.path, [self.header[i] for i in self.feature_index])
        f = len(self.feature_index)

        def chunks(batch_size: int) -> Iterator[Chunk]:
            for x, y in self._feature_chunks(batch_size):
                yield [x[:, None, :] if expand else x], y

        templ = np.empty((0, 1, f) if expand else (0, f), np.float64)
        return StreamBound(self.path, [templ], chunks, n_rows=self.n_rows, labels=self.labels)

    def _feature_chunks(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        feats = self.feature_index
        y = self.labels.y
        start = 0
        buf: list[list[str]] = []
        with self._open() as fh:
            reader = csv.reader(fh, self._dialect())
            next(reader, None)
            for n, row in self._rows(reader):
                buf.append([row[i] for i in feats])
                if len(buf) == batch_size:
                    yield self._to_float(buf, n - len(buf) + 1), y[start: start + len(buf)]
                    start += len(buf)
                    buf = []
            if buf:
                yield self._to_float(buf, start + 1), y[start: start + len(buf)]

    def _to_float(self, rows: list[list[str]], first_row: int) -> np.ndarray:
        try:
            return np.array(rows, dtype=np.float64)
        except ValueError:
            pass
        out = np.empty((len(rows), len(rows[0])), np.float64)
        for i, row in enumerate(rows):
            for j, cell in enumerate(row):
                s = cell.strip()
                if s.lower() in MISSING_CELLS:
                    out[i, j] = np.nan
                    continue
                try:
                    out[i, j] = float(s)
                except ValueError:
                    col = self.header[self.feature_index[j]]
                    raise InputError(
                        f"DATA: {self.path}: row {first_row + i}, column '{col}' holds "
                        f"'{cell[:40]}', not a number; feature columns must be numeric "
                        "(choose them with --feature-columns, or leave this one out with "
                        "--drop-columns)"
                    ) from None
        return out


class ParquetSource(Source):
    """A .parquet file (needs pyarrow): the label column is read first, the feature columns
    are streamed in record batches."""

    kind = "parquet"

    def __init__(self, path: Path, label_column: str | None,
                 feature_columns: Sequence[str] | None,
                 class_names: list[str] | None = None,
                 drop_columns: Sequence[str] | None = None) -> None:
        self.path = str(path)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(
                f"DATA: reading {path} needs pyarrow: pip install pyarrow "
                "(or pip install 'kerasdoctor[parquet]')"
            ) from None
        try:
            self.pf = pq.ParquetFile(path)
            schema = self.pf.schema_arrow
        except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError family
            raise InputError(f"DATA: {path} is not a readable Parquet file ({_first_line(exc)})"
                             ) from exc
        header = list(schema.names)
        li, feats = _choose_columns(self.path, header, label_column, feature_columns,
                                    drop_columns)
        self.label_name = header[li]
        self.feature_names = [header[i] for i in feats]
        for name in self.feature_names:
            t = schema.field(name).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
                raise InputError(
                    f"DATA: {path}: column '{name}' has type {t}; feature columns must be "
                    "numeric (choose them with --feature-columns, or leave this one out with "
                    "--drop-columns)"
                )
        col = self.pf.read(columns=[self.label_name]).column(0)
        where = f"DATA: {path}: label column '{self.label_name}'"
        if col.null_count:
            raise InputError(f"{where} has {col.null_count} missing labels")
        values = col.to_numpy(zero_copy_only=False)
        if values.dtype == object:
            values = values.astype(str)
        if values.shape[0] == 0:
            raise InputError(f"DATA: {path} holds no samples")
        if values.dtype.kind in "US":
            self.labels = _decode_label_values(values, where, class_names)
        else:
            self.labels = decode_labels(values, class_names, where=where)
        self.n_rows = int(self.labels.y.shape[0])

    def bind(self, lm: LoadedModel) -> Bound:
        import pyarrow as pa
        import pyarrow.compute as pc

        expand = _table_input(lm, self.path, self.feature_names)
        f = len(self.feature_names)
        y = self.labels.y

        def chunks(batch_size: int) -> Iterator[Chunk]:
            start = 0
            for rb in self.pf.iter_batches(batch_size=batch_size, columns=self.feature_names):
                cols = [pc.cast(rb.column(i), pa.float64()).to_numpy(zero_copy_only=False)
                        for i in range(rb.num_columns)]
                x = np.stack(cols, axis=1) if cols else np.empty((rb.num_rows, 0))
                m = x.shape[0]
                yield [x[:, None, :] if expand else x], y[start: start + m]
                start += m

        templ = np.empty((0, 1, f) if expand else (0, f), np.float64)
        return StreamBound(self.path, [templ], chunks, n_rows=self.n_rows, labels=self.labels)


# -- a saved tf.data.Dataset


def is_tfdata_dir(p: Path) -> bool:
    return (p / "dataset_spec.pb").exists() or (p / "snapshot.metadata").exists()


class TFDataSource(Source):
    """A directory written by tf.data.Dataset.save whose elements are (x, y) or
    (x, y, sample_weight), batched or not; x is one tensor, a tuple (model input order) or a
    dict (by input name). Streamed: its labels are decoded batch by batch."""

    kind = "tfdata"

    def __init__(self, path: Path, class_names: list[str] | None = None) -> None:
        self.path = str(path)
        self.class_names = class_names
        tf = _tensorflow()
        try:
            self.ds = tf.data.Dataset.load(str(path))
            spec = self.ds.element_spec
        except Exception as exc:  # TF raises many types for a damaged snapshot
            raise InputError(
                f"DATA: {path} is not a readable tf.data.Dataset.save directory "
                f"({_first_line(exc)})"
            ) from exc
        if not isinstance(spec, (tuple, list)) or len(spec) not in (2, 3):
            raise InputError(
                f"DATA: {path}: its elements must be (x, y) or (x, y, sample_weight) tuples; "
                f"found {_describe_spec(spec)}"
            )
        self.x_spec, self.y_spec = spec[0], spec[1]
        if not isinstance(self.y_spec, tf.TensorSpec):
            raise InputError(f"DATA: {path}: the labels y must be one tensor, found "
                             f"{_describe_spec(self.y_spec)}")
        if self.y_spec.dtype == tf.string:
            raise InputError(f"DATA: {path}: the labels are strings; map them to class "
                             "indices before saving")
        card = int(self.ds.cardinality())
        self.cardinality = card if card >= 0 else None

    def bind(self, lm: LoadedModel) -> Bound:
        tf = _tensorflow()
        specs = lm.inputs
        x = self.x_spec
        if isinstance(x, dict):
            keys = input_keys(list(x), specs, self.path, noun="element of x")
            parts = [x[k] for k in keys]

            def pick(xv: Any) -> tuple[Any, ...]:
                return tuple(xv[k] for k in keys)
        elif isinstance(x, (tuple, list)):
            parts = list(x)

            def pick(xv: Any) -> tuple[Any, ...]:
                return tuple(xv)
        else:
            parts = [x]

            def pick(xv: Any) -> tuple[Any, ...]:
                return (xv,)
        if len(parts) != len(specs) or not all(isinstance(p, tf.TensorSpec) for p in parts):
            raise InputError(
                f"DATA: {self.path}: x is {_describe_spec(x)} but the model has "
                f"{len(specs)} input(s)"
            )
        batched = None
        for p, s in zip(parts, specs):
            got = tuple(p.shape.as_list()) if p.shape.rank is not None else None
            if got is None:
                raise InputError(f"DATA: {self.path}: x has an unknown rank")
            if len(got) == len(s.shape):
                this, row = True, got[1:]
            elif len(got) == len(s.shape) - 1:
                this, row = False, got
            else:
                raise InputError(
                    f"DATA: {self.path}: x elements have shape {_fmt_shape(got)} but model "
                    f"input '{s.name}' expects {_fmt_shape(s.shape)}"
                )
            if batched is not None and this != batched:
                raise InputError(f"DATA: {self.path}: x parts are batched inconsistently")
            batched = this
            for ax, (w, g) in enumerate(zip(s.shape[1:], row), start=1):
                if w is not None and g is not None and w != g:
                    raise InputError(
                        f"DATA: {self.path}: x elements have shape {_fmt_shape(got)} but model "
                        f"input '{s.name}' expects {_fmt_shape(s.shape)} (axis {ax}: {g} != {w})"
                    )
        y_rank = self.y_spec.shape.rank or 0
        y_rank -= 1 if batched else 0
        if y_rank > 2 or y_rank < 0:
            raise InputError(f"DATA: {self.path}: labels of shape {self.y_spec.shape} per "
                             "sample; expected a class index or a one-hot row")
        @tf.autograph.experimental.do_not_convert  # plain tuple picking: nothing to convert
        def select(*element: Any) -> tuple[Any, Any]:
            return pick(element[0]), element[1]  # sample weights, if any, are not used

        ds = self.ds.map(select)
        if batched:
            ds = ds.unbatch()
        templates = [
            np.empty((0, *[d or 0 for d in s.shape[1:]]), np.dtype(p.dtype.as_numpy_dtype))
            for p, s in zip(parts, specs)
        ]
        tracker = LabelStream(f"DATA: {self.path}: labels", self.class_names)

        def chunks(batch_size: int) -> Iterator[Chunk]:
            pipe = ds.batch(batch_size).prefetch(2)
            try:
                for xs, y in pipe.as_numpy_iterator():
                    yield [np.asarray(v) for v in xs], tracker.decode(y)
            except InputError:
                raise
            except Exception as exc:  # tf.errors.* while reading the snapshot
                raise InputError(f"DATA: {self.path}: reading failed ({_first_line(exc)})"
                                 ) from exc

        n = None if batched else self.cardinality
        return StreamBound(self.path, templates, chunks, n_rows=n, tracker=tracker)


def _describe_spec(spec: Any) -> str:
    if isinstance(spec, dict):
        return "{" + ", ".join(f"{k}: {_describe_spec(v)}" for k, v in spec.items()) + "}"
    if isinstance(spec, (tuple, list)):
        return "(" + ", ".join(_describe_spec(v) for v in spec) + ")"
    shape = getattr(spec, "shape", None)
    dtype = getattr(getattr(spec, "dtype", None), "name", "?")
    return f"{dtype}{list(shape) if shape is not None else ''}"


def _tensorflow() -> Any:
    """TensorFlow, imported quietly; on another Keras backend, it only reads data here and
    must not claim the accelerators the model runs on."""
    from kerasdoctor._keras import keras

    k = keras()
    with _quiet():
        import tensorflow as tf
    if k.backend.backend() != "tensorflow":
        # devices already initialised (RuntimeError): nothing left to change
        with contextlib.suppress(RuntimeError, ValueError):
            tf.config.set_visible_devices([], "GPU")
    return tf


def _quiet() -> Any:
    from kerasdoctor._keras import _quiet_fd2

    return _quiet_fd2()


# ------------------------------------------------------------------ choosing


def parse_image_size(spec: str | Sequence[int] | None) -> tuple[int, int] | None:
    """--image-size 224x224 (or 224,224, or a pair) -> (224, 224)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        parts = spec.lower().replace(",", "x").split("x")
    else:
        parts = [str(v) for v in spec]
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"--image-size takes HEIGHTxWIDTH (e.g. 224x224), got '{spec}'") from None
    if h <= 0 or w <= 0:
        raise InputError(f"--image-size must be positive, got '{spec}'")
    return h, w


# Which kinds of DATA each data option applies to (elsewhere it is refused, not ignored).
OPTION_KINDS: dict[str, tuple[str, ...]] = {
    "--labels": ("npy",),
    "--label-column": ("csv", "parquet"),
    "--feature-columns": ("csv", "parquet"),
    "--drop-columns": ("csv", "parquet"),
    "--image-size": ("images", "segmentation"),
    "--x-key": ("npz",),
    "--y-key": ("npz",),
    # an .npz holds its own class_names array; an image folder's are its subfolders
    "--class-names": ("npy", "csv", "parquet", "tfdata", "segmentation"),
}


def data_kind(path: str | os.PathLike[str]) -> str | None:
    """What kind of DATA a path is (a key of _KIND_NAMES), None when that cannot be told
    (no such path, an unsupported file): open_source then says why."""
    try:
        p = Path(path)
        return _seg_kind(p, _kind(p)) if p.exists() else None
    except InputError:
        return None


def _seg_kind(p: Path, kind: str) -> str:
    """issue 16: a directory holding images/ and masks/ is a segmentation folder
    (kerasdoctor.seg_folder), not an image folder of two classes."""
    if kind != "images":
        return kind
    from kerasdoctor.seg_folder import is_seg_folder

    return "segmentation" if is_seg_folder(p) else kind


def open_source(path: str | os.PathLike[str], opts: Any) -> Source:
    """Open DATA by what it is: a file by its suffix (or its first bytes), a directory by
    what it holds. Options that do not apply to that kind of data are refused, not ignored."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"DATA: no such file or directory: {p}")
    refuse_special_file(p, "DATA")  # before any read: a FIFO would block it for ever
    labels_path = getattr(opts, "labels", None)
    label_column = getattr(opts, "label_column", None)
    feature_columns = parse_columns(getattr(opts, "feature_columns", None))
    drop_columns = parse_columns(getattr(opts, "drop_columns", None), "--drop-columns")
    names_opt = getattr(opts, "class_names", None)
    class_names = (parse_columns(names_opt, "--class-names") if names_opt is not None
                   else None)
    image_size = parse_image_size(getattr(opts, "image_size", None))
    x_key = getattr(opts, "x_key", None)
    y_key = getattr(opts, "y_key", "y")
    kind = _seg_kind(p, _kind(p))
    given = {
        "--labels": labels_path is not None,
        "--label-column": label_column is not None,
        "--feature-columns": feature_columns is not None,
        "--drop-columns": drop_columns is not None,
        "--image-size": image_size is not None,
        "--x-key": x_key is not None,
        "--y-key": y_key != "y",
        "--class-names": class_names is not None,
    }
    for flag, used in given.items():
        kinds = OPTION_KINDS[flag]
        if used and kind not in kinds:
            raise InputError(f"{flag} does not apply to {p} ({_KIND_NAMES[kind]}); it is for "
                             f"{' and '.join(_KIND_NAMES[k] for k in kinds)} data")
    if kind == "npz":
        return ArraySource(read_npz(p, x_key=x_key, y_key=y_key))
    if kind == "npy":
        return NpySource(p, labels_path, class_names)
    if kind == "csv":
        return TableSource(p, label_column, feature_columns, class_names, drop_columns)
    if kind == "parquet":
        return ParquetSource(p, label_column, feature_columns, class_names, drop_columns)
    if kind == "tfdata":
        return TFDataSource(p, class_names)
    if kind == "segmentation":  # issue 16: core routes it to kerasdoctor.seg_folder
        from kerasdoctor.seg_folder import SegFolderSource

        return SegFolderSource(p, opts)
    return ImageFolderSource(p, image_size, int(getattr(opts, "seed", 0) or 0))


_KIND_NAMES = {
    "npz": ".npz", "npy": ".npy", "csv": ".csv", "parquet": ".parquet",
    "tfdata": "a tf.data directory", "images": "an image folder",
    "segmentation": "a segmentation folder (images/ and masks/)",
}


def _kind(p: Path) -> str:
    refuse_special_file(p, "DATA")
    if p.is_dir():
        return "tfdata" if is_tfdata_dir(p) else "images"
    name = p.name.lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(TABLE_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    try:
        with open(p, "rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise InputError(f"DATA: cannot read {p} ({_first_line(exc)})") from exc
    if head.startswith(b"PK"):
        return "npz"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PAR1"):
        return "parquet"
    raise InputError(
        f"DATA: {p}: unsupported data file '{p.suffix or p.name}'; expected .npz, .npy (with "
        "--labels), .csv, .parquet, a folder of class subfolders of images, or a "
        "tf.data.Dataset.save directory"
    )


def read_labels(path: str | os.PathLike[str], opts: Any) -> Labels:
    """Only the labels of DATA, without a model (what `fix --class-weights` needs)."""
    src = open_source(path, opts)
    if isinstance(src, ArraySource):
        return src.raw.labels
    labels = getattr(src, "labels", None)
    if labels is None:
        raise InputError(
            f"DATA: {path}: a tf.data directory's labels are read while predicting; "
            "save them as y.npy, or pass an .npz"
        )
    out: Labels = labels
    return out
