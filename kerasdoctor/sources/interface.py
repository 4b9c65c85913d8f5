"""The interface of the data sources: what a source is (Source, bound to a model as a Bound that
yields batches), how DATA is told apart and opened (data_kind, open_source, read_labels) from a
dataspec.DataSpec, and which data option applies to which kind (OPTION_KINDS, refuse_options:
the one home of the refused-data error). One module per kind does the reading.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kerasdoctor.errors import InputError
from kerasdoctor.load import Labels, LoadedModel, _first_line, decode_labels, refuse_special_file
from kerasdoctor.probe import Batch, array_batches

if TYPE_CHECKING:
    from kerasdoctor.dataspec import DataSpec

# The files keras.utils.image_dataset_from_directory reads (its ALLOWLIST_FORMATS).
IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
TABLE_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


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


def rebatch(
    chunks: Iterable[Chunk], batch_size: int, indices: np.ndarray | None = None
) -> Iterator[Batch]:
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


def _take(
    xs_parts: list[list[np.ndarray]], y_parts: list[np.ndarray], n: int
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


def _single_input(lm: LoadedModel, path: str, what: str) -> Any:
    if len(lm.inputs) != 1:
        names = ", ".join(s.name for s in lm.inputs)
        raise InputError(
            f"DATA: {path}: {what} feeds one model input, but the model has {len(lm.inputs)} "
            f"({names}); put one array per input in an .npz"
        )
    return lm.inputs[0]


# ------------------------------------------------------------------ parsing options


def parse_columns(
    spec: str | Sequence[str] | None, flag: str = "--feature-columns"
) -> list[str] | None:
    """--feature-columns a,b,c (or a list) -> ['a', 'b', 'c']; --class-names alike."""
    if spec is None:
        return None
    parts = spec.split(",") if isinstance(spec, str) else [str(v) for v in spec]
    cols = [p.strip() for p in parts if p.strip()]
    if not cols:
        raise InputError(f"{flag} is empty; give names separated by commas")
    return cols


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


# ------------------------------------------------------------------ which options apply


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

_KIND_NAMES = {
    "npz": ".npz",
    "npy": ".npy",
    "csv": ".csv",
    "parquet": ".parquet",
    "tfdata": "a tf.data directory",
    "images": "an image folder",
    "segmentation": "a segmentation folder (images/ and masks/)",
}


def refused_option(flag: str, path: str | os.PathLike[str], kind: str) -> InputError:
    """The error for a data option given with DATA of a kind it does not apply to (the one
    place that words it: open_source and `fix --oversample` on data it reads itself)."""
    kinds = OPTION_KINDS[flag]
    return InputError(
        f"{flag} does not apply to {path} ({_KIND_NAMES[kind]}); it is for "
        f"{' and '.join(_KIND_NAMES[k] for k in kinds)} data"
    )


def refuse_options(path: str | os.PathLike[str], kind: str, spec: DataSpec) -> None:
    """Refuse the first option of `spec` that does not apply to DATA of this kind."""
    given = {
        "--labels": spec.labels is not None,
        "--label-column": spec.label_column is not None,
        "--feature-columns": spec.feature_columns is not None,
        "--drop-columns": spec.drop_columns is not None,
        "--image-size": spec.image_size is not None,
        "--x-key": spec.x_key is not None,
        "--y-key": spec.y_key != "y",
        "--class-names": spec.class_names is not None,
    }
    for flag, used in given.items():
        if used and kind not in OPTION_KINDS[flag]:
            raise refused_option(flag, path, kind)


# ------------------------------------------------------------------ choosing


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


def open_source(path: str | os.PathLike[str], spec: DataSpec, *, seed: int | None = 0) -> Source:
    """Open DATA by what it is: a file by its suffix (or its first bytes), a directory by
    what it holds, read as `spec` says (`seed`: an image folder's shuffle). Options that do
    not apply to that kind of data are refused, not ignored."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"DATA: no such file or directory: {p}")
    refuse_special_file(p, "DATA")  # before any read: a FIFO would block it for ever
    kind = _seg_kind(p, _kind(p))
    refuse_options(p, kind, spec)
    class_names = None if spec.class_names is None else list(spec.class_names)
    features = None if spec.feature_columns is None else list(spec.feature_columns)
    dropped = None if spec.drop_columns is None else list(spec.drop_columns)
    # the kinds' modules import this one (Source, Bound): imported here, when DATA is opened
    if kind == "npz":
        from kerasdoctor.load import read_npz
        from kerasdoctor.sources.arrays import ArraySource

        return ArraySource(read_npz(p, x_key=spec.x_key, y_key=spec.y_key))
    if kind == "npy":
        from kerasdoctor.sources.npy import NpySource

        return NpySource(p, spec.labels, class_names)
    if kind in ("csv", "parquet"):
        from kerasdoctor.sources.table import ParquetSource, TableSource

        table = TableSource if kind == "csv" else ParquetSource
        return table(p, spec.label_column, features, class_names, dropped)
    if kind == "tfdata":
        from kerasdoctor.sources.tfdata import TFDataSource

        return TFDataSource(p, class_names)
    if kind == "segmentation":  # issue 16: core routes it to kerasdoctor.seg_folder
        from kerasdoctor.seg_folder import SegFolderSource

        return SegFolderSource(p, spec)
    from kerasdoctor.sources.images import ImageFolderSource

    return ImageFolderSource(p, spec.image_size, int(seed or 0))


def _kind(p: Path) -> str:
    from kerasdoctor.sources.tfdata import is_tfdata_dir

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


def read_labels(path: str | os.PathLike[str], spec: DataSpec, *, seed: int | None = 0) -> Labels:
    """Only the labels of DATA, without a model (what `fix --class-weights` needs)."""
    from kerasdoctor.sources.arrays import ArraySource

    src = open_source(path, spec, seed=seed)
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
