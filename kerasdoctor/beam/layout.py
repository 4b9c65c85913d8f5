"""The shard layout: the manifest, matching a pattern to shards, and each shard's row offset.

A sharded dataset is the concatenation of its shards in the order of their file names
(sorted as strings; the converter's zero-padded names sort in write order). A row's id is its
position in that concatenation, the id a single process streaming the same data gives it, so
the bounded sample (the rows with the smallest seeded keys per class) is the same rows.
Offsets come from the manifest (`kerasdoctor-shards.json` beside the shards: rows per shard)
when it lists every matched shard; otherwise a counting pre-step reads each shard's record
headers (TFRecord) or label array (.npz) before the pipeline starts.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import numpy as np

from kerasdoctor.errors import InputError

MANIFEST_NAME = "kerasdoctor-shards.json"
MANIFEST_VERSION = 1
TFRECORD, NPZ = "tfrecord", "npz"


@dataclass(frozen=True)
class FeatureInfo:
    """One stored array: its key (a model input name, x, x0...), dtype, per-row shape."""

    dtype: str
    shape: tuple[int, ...]
    kind: str = ""  # TFRecord list kind (float_list, int64_list, bytes_list); "" for .npz


@dataclass
class Manifest:
    """What the converter wrote: the format, the rows of each shard, the features, the labels."""

    format: str
    shards: list[tuple[str, int]]  # (file name, rows), in row order
    features: dict[str, FeatureInfo]
    label_key: str = "y"
    label_encoding: str = "index"  # the encoding of the source labels (decode_labels)
    label_width: int | None = None  # K of a one-hot source
    class_names: list[str] | None = None
    source: str = ""
    version: int = MANIFEST_VERSION

    @property
    def n_samples(self) -> int:
        return sum(n for _, n in self.shards)

    def to_json(self) -> str:
        d = asdict(self)
        d["shards"] = [{"file": f, "rows": n} for f, n in self.shards]
        d["n_samples"] = self.n_samples
        d["kerasdoctor_shards"] = d.pop("version")
        return json.dumps(d, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            d = json.loads(text)
            version = int(d.get("kerasdoctor_shards", 0))
            if version != MANIFEST_VERSION:
                raise ValueError(f"unsupported manifest version {version}")
            return cls(
                format=str(d["format"]),
                shards=[(str(s["file"]), int(s["rows"])) for s in d["shards"]],
                features={
                    str(k): FeatureInfo(
                        str(v["dtype"]), tuple(int(i) for i in v["shape"]), str(v.get("kind", ""))
                    )
                    for k, v in d["features"].items()
                },
                label_key=str(d.get("label_key", "y")),
                label_encoding=str(d.get("label_encoding", "index")),
                label_width=d.get("label_width"),
                class_names=d.get("class_names"),
                source=str(d.get("source", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"DATA: {where} is not a valid shard manifest ({exc})") from exc


@dataclass(frozen=True)
class Shard:
    """One file of the dataset and where its rows sit in the whole: ids offset..offset+rows-1."""

    path: str
    offset: int
    rows: int


@dataclass
class ShardSet:
    """The matched shards in row order, their format, and the manifest when there is one."""

    pattern: str
    format: str
    shards: list[Shard]
    manifest: Manifest | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return sum(s.rows for s in self.shards)


# ------------------------------------------------------------------ file access


def open_file(path: str) -> IO[bytes]:
    """Open any path Beam can read (local, gs://, s3://, hdfs://; .gz etc. decompressed)."""
    from apache_beam.io.filesystems import FileSystems

    try:
        return FileSystems.open(path)
    except Exception as exc:  # Beam raises IOError/BeamIOError subtypes per file system
        raise InputError(f"DATA: cannot open {path} ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def match_files(pattern: str) -> list[str]:
    """The files a pattern matches, sorted by name (the dataset's row order)."""
    from apache_beam.io.filesystems import FileSystems

    try:
        results = FileSystems.match([pattern])
    except Exception as exc:
        raise InputError(f"DATA: cannot list {pattern} ({_first_line(exc)})") from exc
    paths = sorted(m.path for r in results for m in r.metadata_list)
    paths = [p for p in paths if posixpath.basename(p) != MANIFEST_NAME]
    if not paths:
        raise InputError(f"DATA: no shard matches {pattern}")
    return paths


def shard_format(path: str) -> str:
    name = path.lower()
    if name.endswith(".npz"):
        return NPZ
    return TFRECORD


def read_manifest(directory: str) -> Manifest | None:
    from apache_beam.io.filesystems import FileSystems

    path = FileSystems.join(directory, MANIFEST_NAME)
    if not FileSystems.exists(path):
        return None
    with open_file(path) as f:
        return Manifest.from_json(f.read().decode("utf-8"), path)


def count_rows(path: str, fmt: str, label_key: str = "y") -> int:
    """Rows in one shard, without decoding its examples."""
    from kerasdoctor.beam.tfrecord import count_records

    with open_file(path) as f:
        if fmt == TFRECORD:
            return count_records(f, path)
        return int(_npz_labels(f, path, label_key).shape[0])


def _npz_labels(f: IO[bytes], where: str, label_key: str) -> np.ndarray:
    import io
    import zipfile

    try:
        with np.load(io.BytesIO(f.read()), allow_pickle=False) as npz:
            if label_key not in npz.files:
                raise InputError(f"DATA: {where} has no '{label_key}' array for the labels")
            return np.asarray(npz[label_key])
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(f"DATA: {where} is not a readable .npz archive ({exc})") from exc


def find_shards(pattern: str, *, label_key: str = "y") -> ShardSet:
    """Match the shards and give each its row offset (manifest, or a counting pre-step)."""
    paths = match_files(pattern)
    formats = {shard_format(p) for p in paths}
    if len(formats) > 1:
        raise InputError(f"DATA: {pattern} matches both .npz and TFRecord shards; pick one kind")
    fmt = formats.pop()
    directories = {posixpath.dirname(p) for p in paths}
    manifest = read_manifest(directories.pop()) if len(directories) == 1 else None
    notes: list[str] = []
    rows: dict[str, int] = {}
    if manifest is not None:
        if manifest.format != fmt:
            raise InputError(
                f"DATA: the manifest beside {pattern} describes {manifest.format} shards, "
                f"but the pattern matches {fmt} files"
            )
        listed = dict(manifest.shards)
        names = [posixpath.basename(p) for p in paths]
        if all(n in listed for n in names):
            rows = {p: listed[n] for p, n in zip(paths, names)}
        else:
            notes.append(f"{MANIFEST_NAME} does not list every matched shard: rows counted")
    if not rows:
        rows = {p: count_rows(p, fmt, label_key) for p in paths}
    shards, offset = [], 0
    for p in paths:
        shards.append(Shard(p, offset, rows[p]))
        offset += rows[p]
    if offset == 0:
        raise InputError(f"DATA: the shards matching {pattern} hold no rows")
    return ShardSet(pattern, fmt, shards, manifest, notes)


def feature_columns(
    first_record: bytes,
    keys: Sequence[str],
    label_key: str,
    manifest: Manifest | None,
    input_shapes: dict[str, tuple[int | None, ...]],
    where: str,
) -> list[Any]:
    """How to parse the wanted features and the label (kerasdoctor.beam.tfrecord.Column).

    Shapes and dtypes come from the manifest; without one, a feature's row shape is that of
    the model input it feeds (which must be fully known) and its dtype that of its list kind.
    The label is one value per example (a class index, or a string with class names) or K
    values (one-hot).
    """
    from kerasdoctor.beam.tfrecord import BYTES_LIST, FLOAT_LIST, Column

    found = _example_columns(first_record)
    cols = []
    for key in [*keys, label_key]:
        if key not in found:
            what = "label" if key == label_key else "feature"
            raise InputError(
                f"DATA: {where}: the examples have no {what} '{key}' "
                f"(found: {', '.join(sorted(found))})"
            )
        kind, length = found[key]
        info = manifest.features.get(key) if manifest is not None else None
        if info is not None:
            shape, dtype = tuple(info.shape), info.dtype
        elif key == label_key:
            shape = (length,) if length != 1 else ()
            dtype = {FLOAT_LIST: "float32", BYTES_LIST: "U"}.get(kind, "int64")
        else:
            if kind == BYTES_LIST:
                raise InputError(
                    f"DATA: {where}: feature '{key}' holds bytes; without a {MANIFEST_NAME} "
                    "giving its dtype and shape it cannot be decoded"
                )
            want = input_shapes.get(key)
            if want is None:
                shape = (length,)
            elif any(d is None for d in want):
                raise InputError(
                    f"DATA: {where}: feature '{key}' feeds an input of shape {want} with free "
                    f"axes; write a {MANIFEST_NAME} with its shape (kerasdoctor shard does)"
                )
            else:
                shape = tuple(int(d) for d in want if d is not None)
            dtype = "float32" if kind == FLOAT_LIST else "int64"
        per_row = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (kind == BYTES_LIST and np.dtype(dtype).kind not in "US") and per_row != length:
            raise InputError(
                f"DATA: {where}: {key!r} holds {length} values per example but its "
                f"shape {shape} needs {per_row}"
            )
        cols.append(Column(key, kind, length, shape, dtype))
    return cols


def _example_columns(record: bytes) -> dict[str, tuple[str, int]]:
    from kerasdoctor.beam.tfrecord import example_columns

    return example_columns(record)
