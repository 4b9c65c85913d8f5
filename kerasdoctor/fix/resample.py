"""Rebalanced copies of training data: random over- or undersampling, in the data's own format.

.npz: every array kept aligned. .csv/.tsv (optionally gzipped): the rows, byte for byte, in a
new table of the same format. .parquet: the rows taken from the table (needs pyarrow). An image
folder: a NEW folder of the same class subfolders holding symbolic links to the original files
(copies where links cannot be made), repeats named NAME__copyK.EXT, so that
keras.utils.image_dataset_from_directory(OUT) trains on the balanced set. Nothing is ever
written to the input; files are written atomically, a folder is built beside its final name
and renamed into place.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.dataspec import DataSpec
from kerasdoctor.errors import InputError
from kerasdoctor.fix.results import ResampledFile, ResampleReport

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
) -> ResampleReport:
    """An .npz: write its rebalanced copy to `output` (atomically); return the report."""
    return _resample_npz(data_path, output, method, seed, y_key)


def _resample_npz(
    data_path: str, output: Path, method: str, seed: int, y_key: str = "y"
) -> ResampleReport:
    """Write the rebalanced copy of DATA to `output` (atomically); return the report."""
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
    result = _report(data_path, output, method, seed, "npz", raw.labels, idx)
    return replace(result, arrays=tuple(key for key in out if key != "class_names"))


# The most file entries an image folder's JSON result lists.
MAX_LISTED_FILES = 100_000
FORMATS = {"npz": "npz", "images": "image-folder", "csv": "csv", "parquet": "parquet"}


def _note(method: str, n: int, unique: int) -> str:
    if method == "oversample":
        return (
            "rare samples are repeated: split off validation data BEFORE oversampling, or "
            "the copies leak into it"
        )
    return f"{n - unique} samples of the larger classes were left out"


def resample_data(
    data_path: str, output: Path, method: str, seed: int, spec: DataSpec | None = None
) -> ResampleReport:
    """Write the rebalanced copy of TRAIN_DATA, of any kind `fix` resamples, to `output` in
    the same format, read as `spec` says; return the report."""
    from kerasdoctor.fix.common import same_file
    from kerasdoctor.load import refuse_special_file
    from kerasdoctor.sources import data_kind, refuse_options
    from kerasdoctor.sources.interface import _kind

    spec = spec or DataSpec()
    p = Path(data_path)
    if not p.exists():
        raise InputError(f"DATA: no such file or directory: {p}")
    refuse_special_file(p, "DATA")
    kind = _kind(p)
    flag = f"--{method}"
    if kind == "images" and data_kind(p) == "segmentation":
        raise InputError(
            f"{flag} rebalances one label per sample; {p} is a segmentation folder (images/ "
            "and masks/) whose masks label every pixel: weight the pixels instead "
            f"(kerasdoctor diagnose MODEL {p} shows how)"
        )
    if kind == "npy":
        raise InputError(
            f"{flag} writes .npz, .csv/.tsv, .parquet and image-folder data, not an .npy pair: "
            "put x and y in one .npz (np.savez('train.npz', x=np.load('x.npy'), "
            "y=np.load('y.npy'))) and resample that"
        )
    if kind == "tfdata":
        raise InputError(
            f"{flag} writes .npz, .csv/.tsv, .parquet and image-folder data, not a tf.data "
            "directory: rebalance it in the pipeline (tf.data.Dataset.rejection_resample or "
            "sample_from_datasets), or save x and y as an .npz and resample that"
        )
    if same_file(output, p):
        raise InputError(
            f"--output {output} is the input TRAIN_DATA; kerasdoctor never "
            "overwrites its inputs: choose a new name"
        )
    if kind in ("npz", "parquet"):  # read here, not through open_source: its refusal
        refuse_options(p, kind, spec)
    if kind == "npz":
        return _resample_npz(data_path, output, method, seed, spec.y_key)
    if kind == "images":
        return _resample_images(p, output, method, seed, spec)
    if kind == "csv":
        return _resample_csv(p, output, method, seed, spec)
    return _resample_parquet(p, output, method, seed, spec)


def _report(
    data_path: str | Path,
    output: Path,
    method: str,
    seed: int,
    fmt: str,
    labels: Any,
    idx: np.ndarray,
) -> ResampleReport:
    """The fields every format reports (labels: a load.Labels)."""
    from kerasdoctor.fix.common import n_classes_of, names_for
    from kerasdoctor.load import RawData

    raw = RawData(str(data_path), {}, labels)
    y = labels.y
    n = int(y.shape[0])
    k = n_classes_of(raw)
    unique = int(np.unique(idx).size)
    return ResampleReport(
        method=method,
        seed=seed,
        data=str(data_path),
        output=str(output),
        format=fmt,
        class_names=tuple(names_for(raw, k)),
        n_samples_before=n,
        n_samples_after=int(idx.size),
        distinct_samples=unique,
        label_counts_before=tuple(np.bincount(y, minlength=k).tolist()),
        label_counts_after=tuple(np.bincount(y[idx], minlength=k).tolist()),
        note=_note(method, n, unique),
    )


def _kept_columns_note(spec: DataSpec) -> str:
    given = [
        f
        for f, v in (
            ("--feature-columns", spec.feature_columns),
            ("--drop-columns", spec.drop_columns),
        )
        if v is not None
    ]
    if not given:
        return ""
    verb = "chooses" if len(given) == 1 else "choose"
    return (
        f"; every column is kept ({' and '.join(given)} only {verb} what a model reads, "
        "not what is written)"
    )


def _check_output_suffix(data: Path, output: Path, suffixes: tuple[str, ...], what: str) -> None:
    if not output.name.lower().endswith(suffixes):
        raise InputError(
            f"--output {output}: the rebalanced copy of {data} is written as {what}: give a "
            f"name ending in {' or '.join(suffixes)}"
        )


# -- a folder of class subfolders of images


def _resample_images(
    data: Path, output: Path, method: str, seed: int, spec: DataSpec
) -> ResampleReport:
    from kerasdoctor.sources import (
        IMAGE_FORMATS,
        PARQUET_SUFFIXES,
        TABLE_SUFFIXES,
        ImageFolderSource,
        open_source,
    )

    # refuses the flags that are not for an image folder
    src = open_source(data, spec, seed=seed)
    assert isinstance(src, ImageFolderSource)
    if output.name.lower().endswith(
        (".npz", ".npy", *TABLE_SUFFIXES, *PARQUET_SUFFIXES, *IMAGE_FORMATS)
    ):
        raise InputError(
            f"--output {output}: an image folder is rebalanced into a NEW folder of class "
            "subfolders (links to the images): give --output a directory name, e.g. balanced/"
        )
    d_abs, o_abs = data.resolve(), output.resolve()
    if d_abs == o_abs or d_abs in o_abs.parents:
        raise InputError(
            f"--output {output} lies inside the input TRAIN_DATA {data}; "
            "kerasdoctor never writes into its inputs: choose a folder outside it"
        )
    if o_abs in d_abs.parents:
        raise InputError(
            f"--output {output} holds the input TRAIN_DATA {data}; choose a new folder outside it"
        )
    if output.exists() or output.is_symlink():
        if not output.is_dir() or output.is_symlink():
            raise InputError(f"--output {output} exists and is not a folder; give a new folder")
        if any(output.iterdir()):
            raise InputError(
                f"--output {output} exists and is not empty; kerasdoctor writes a "
                "new folder: choose a new name or empty it"
            )
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--output: directory {parent} does not exist")

    labels = src.labels
    names = list(labels.class_names or [])
    y = labels.y
    idx = resample_indices(y, method, seed)
    # where each row goes: OUT/<class>/<its path inside the class folder>, repeats renamed
    plan: list[tuple[str, str, str]] = []  # (class, absolute source, path relative to OUT)
    used: set[str] = set()
    for i in idx.tolist():
        cls = names[int(y[i])]
        source = os.path.abspath(src.paths[i])
        rel = os.path.relpath(source, os.path.abspath(os.path.join(data, cls)))
        dest = os.path.join(cls, rel)
        copy = 1
        while dest in used:
            copy += 1
            stem, ext = os.path.splitext(rel)
            dest = os.path.join(cls, f"{stem}__copy{copy}{ext}")
        used.add(dest)
        plan.append((cls, source, dest))

    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=parent))
    try:
        written_as = "links"
        try:
            _fill(tmp, names, plan, link=True)
        except OSError:
            written_as = "copies"
            shutil.rmtree(tmp)
            tmp.mkdir()
            try:
                _fill(tmp, names, plan, link=False)
            except OSError as exc:
                raise InputError(
                    f"--output {output}: cannot copy the images ({_first_line(exc)})"
                ) from exc
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a plain mkdir honours the umask
        if output.is_dir():
            output.rmdir()  # checked empty above
        os.rename(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    result = _report(data, output, method, seed, "image-folder", labels, idx)
    if written_as == "links":
        how = (
            "images are not duplicated on disk: the folder holds symbolic links to the "
            "original files (repeats named NAME__copyK.EXT); keep the originals where they "
            "are"
        )
    else:
        how = (
            "symbolic links could not be made here, so the images were copied "
            "(repeats named NAME__copyK.EXT)"
        )
    shown = sorted(plan, key=lambda t: (t[0], t[2]))[:MAX_LISTED_FILES]
    return replace(
        result,
        note=f"{how}; train with keras.utils.image_dataset_from_directory('{output}'); "
        f"{result.note}",
        written_as=written_as,
        files=tuple(ResampledFile(cls, source, str(output / dest)) for cls, source, dest in shown),
        files_omitted=len(plan) - len(shown) if len(plan) > len(shown) else None,
    )


def _first_line(exc: BaseException) -> str:
    from kerasdoctor.load import _first_line as first

    return first(exc)


def _fill(root: Path, classes: list[str], plan: list[tuple[str, str, str]], link: bool) -> None:
    for cls in classes:
        (root / cls).mkdir()
    for _, source, dest in plan:
        target = root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if link:
            os.symlink(source, target)
        else:
            shutil.copy2(source, target)


# -- .csv / .tsv tables


def _has_bom(path: Path) -> bool:
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            return bool(fh.read(3) == codecs.BOM_UTF8)
    except (OSError, EOFError):
        return False


def _raw_rows(src: Any) -> tuple[str, list[str]]:
    """The header's and every data row's text exactly as in the file (quotes, spaces and line
    ends kept), blank lines skipped as the source skips them."""
    with src._open() as fh:
        captured: list[str] = []

        def lines() -> Iterator[str]:
            for line in fh:
                captured.append(line)
                yield line

        reader = csv.reader(lines(), src._dialect())
        header: str | None = None
        rows: list[str] = []
        try:
            for row in reader:
                text = "".join(captured)
                captured.clear()
                if header is None:
                    header = text
                    continue
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                rows.append(text)
        except (csv.Error, UnicodeDecodeError, EOFError, OSError) as exc:
            raise InputError(
                f"DATA: {src.path}: unreadable after row {len(rows)} ({_first_line(exc)})"
            ) from exc
    return header or "", rows


def _resample_csv(
    data: Path, output: Path, method: str, seed: int, spec: DataSpec
) -> ResampleReport:
    from kerasdoctor.io import atomic_write
    from kerasdoctor.sources import TABLE_SUFFIXES, TableSource, open_source

    # the labels, found and decoded as `diagnose` does
    src = open_source(data, spec, seed=seed)
    assert isinstance(src, TableSource)
    _check_output_suffix(data, output, TABLE_SUFFIXES, "a table of the same format")
    dialect: Any = src._dialect()
    delim = str(getattr(dialect, "delimiter", ","))
    if output.name.lower().endswith((".tsv", ".tsv.gz")) and delim != "\t":
        raise InputError(
            f"--output {output}: a .tsv is tab-separated but {data} is separated "
            f"by '{delim}': give a .csv name"
        )
    header, rows = _raw_rows(src)
    if len(rows) != src.n_rows:
        raise InputError(
            f"DATA: {data} changed while it was read ({src.n_rows} rows, then {len(rows)})"
        )
    idx = resample_indices(src.labels.y, method, seed)
    end = "\r\n" if header.endswith("\r\n") else ("\r" if header.endswith("\r") else "\n")
    encoding = "utf-8-sig" if _has_bom(data) else "utf-8"
    gz = output.name.lower().endswith(".gz")

    def write(tmp: str) -> None:
        opener: Any = gzip.open if gz else open
        with opener(tmp, "wt", encoding=encoding, newline="") as fh:
            fh.write(header if header.endswith(("\n", "\r")) else header + end)
            for i in idx.tolist():
                text = rows[i]
                fh.write(text if text.endswith(("\n", "\r")) else text + end)

    atomic_write(output, write)
    result = _report(data, output, method, seed, "csv", src.labels, idx)
    return replace(
        result,
        label_column=src.header[src.label_index],
        columns=tuple(src.header),
        note=result.note + _kept_columns_note(spec),
    )


# -- .parquet


def _parquet_labels(data: Path, spec: DataSpec) -> tuple[Any, Any, str]:
    """(pyarrow ParquetFile, Labels, label column): the labels as ParquetSource reads them,
    without its check that the feature columns are numeric (every column is written back)."""
    from kerasdoctor.load import decode_labels
    from kerasdoctor.sources.table import _choose_columns, _decode_label_values

    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            f"DATA: reading {data} needs pyarrow: pip install pyarrow "
            "(or pip install 'kerasdoctor[parquet]')"
        ) from None
    class_names = None if spec.class_names is None else list(spec.class_names)
    try:
        pf = pq.ParquetFile(data)
        header = list(pf.schema_arrow.names)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError family
        raise InputError(
            f"DATA: {data} is not a readable Parquet file ({_first_line(exc)})"
        ) from exc
    li, _ = _choose_columns(
        str(data), header, spec.label_column, spec.feature_columns, spec.drop_columns
    )
    name = header[li]
    col = pf.read(columns=[name]).column(0)
    where = f"DATA: {data}: label column '{name}'"
    if col.null_count:
        raise InputError(f"{where} has {col.null_count} missing labels")
    values = col.to_numpy(zero_copy_only=False)
    if values.dtype == object:
        values = values.astype(str)
    if values.shape[0] == 0:
        raise InputError(f"DATA: {data} holds no samples")
    if values.dtype.kind in "US":
        labels = _decode_label_values(values, where, class_names)
    else:
        labels = decode_labels(values, class_names, where=where)
    return pf, labels, name


def _resample_parquet(
    data: Path, output: Path, method: str, seed: int, spec: DataSpec
) -> ResampleReport:
    from kerasdoctor.io import atomic_write
    from kerasdoctor.sources import PARQUET_SUFFIXES

    pf, labels, label_name = _parquet_labels(data, spec)
    _check_output_suffix(data, output, PARQUET_SUFFIXES, "a Parquet file")
    import pyarrow as pa
    import pyarrow.parquet as pq

    idx = resample_indices(labels.y, method, seed)
    compression: Any = "snappy"
    with contextlib.suppress(Exception):  # the input's codec, where the metadata says it
        if pf.metadata.num_row_groups and pf.metadata.num_columns:
            codec = str(pf.metadata.row_group(0).column(0).compression).lower()
            compression = "none" if codec == "uncompressed" else codec
    try:
        table = pf.read().take(pa.array(idx))
    except Exception as exc:
        raise InputError(f"DATA: {data}: reading failed ({_first_line(exc)})") from exc

    def write(tmp: str) -> None:
        try:
            pq.write_table(table, tmp, compression=compression)
        except (ValueError, NotImplementedError, pa.ArrowException):
            pq.write_table(table, tmp)  # a codec this pyarrow cannot write: its default

    atomic_write(output, write)
    result = _report(data, output, method, seed, "parquet", labels, idx)
    return replace(
        result,
        label_column=label_name,
        columns=tuple(table.schema.names),
        note=result.note + _kept_columns_note(spec),
    )
