"""Tables: a .csv / .tsv (optionally gzipped) and a .parquet file; the label column is read
first, the feature columns (--feature-columns, or all but --drop-columns) are streamed."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from kerasdoctor.errors import InputError
from kerasdoctor.load import Labels, LoadedModel, _first_line, _fit_shape, _fmt_shape, decode_labels
from kerasdoctor.sources.interface import Bound, Chunk, Source, StreamBound, _single_input

# Label columns found without --label-column (exactly one of them must be present).
LABEL_COLUMN_NAMES = ("label", "labels", "y", "target", "class")
# Table cells read as a missing value (NaN), so that nonfinite-inputs reports them.
MISSING_CELLS = frozenset({"", "na", "n/a", "nan", "null", "none"})
# Rows parsed per chunk while reading the labels of a table (bounds that pass's memory).
LABEL_CHUNK = 65536


def _choose_columns(
    path: str,
    header: list[str],
    label_column: str | None,
    feature_columns: Sequence[str] | None,
    drop_columns: Sequence[str] | None = None,
) -> tuple[int, list[int]]:
    """(label index, feature indices): the features are --feature-columns in that order, or
    every column but the labels and --drop-columns, in file order."""
    shown = ", ".join(header[:20]) + (", ..." if len(header) > 20 else "")
    dropped = set(drop_columns or ())
    if feature_columns is not None and drop_columns is not None:
        raise InputError(
            "--feature-columns and --drop-columns both choose the features; give one of them"
        )
    absent = [c for c in drop_columns or () if c not in header]
    if absent:
        raise InputError(
            f"DATA: {path} has no column '{absent[0]}' for --drop-columns (columns: {shown})"
        )
    if len(set(header)) != len(header):
        dup = sorted({c for c in header if header.count(c) > 1})
        used = {label_column, *(feature_columns or [])}
        if any(d in used for d in dup) or (feature_columns is None and not set(dup) <= dropped):
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


def _decode_label_values(
    values: np.ndarray, where: str, class_names: list[str] | None = None
) -> Labels:
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


class _Table(Source):
    """What a .csv and a .parquet share: labels read up front, then the chosen feature
    columns streamed in batches of float64 rows (as length-1 sequences where the model's
    input wants them so)."""

    path: str
    feature_names: list[str]
    labels: Labels
    n_rows: int

    def _batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """The feature columns, batch_size rows at a time, in file order."""
        raise NotImplementedError

    def bind(self, lm: LoadedModel) -> Bound:
        expand = _table_input(lm, self.path, self.feature_names)
        f = len(self.feature_names)
        y = self.labels.y

        def chunks(batch_size: int) -> Iterator[Chunk]:
            start = 0
            for x in self._batches(batch_size):
                m = x.shape[0]
                yield [x[:, None, :] if expand else x], y[start : start + m]
                start += m

        templ = np.empty((0, 1, f) if expand else (0, f), np.float64)
        return StreamBound(self.path, [templ], chunks, n_rows=self.n_rows, labels=self.labels)


class TableSource(_Table):
    """A .csv (comma, semicolon, tab or pipe separated, optionally gzipped) with a header row.

    Two passes over the file: the first reads only the label column (labels decoded up front,
    as for every source whose labels are cheap to read), the second streams the features."""

    kind = "csv"

    def __init__(
        self,
        path: Path,
        label_column: str | None,
        feature_columns: Sequence[str] | None,
        class_names: list[str] | None = None,
        drop_columns: Sequence[str] | None = None,
    ) -> None:
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
        self.feature_names = [self.header[i] for i in self.feature_index]
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
        return _decode_label_values(
            values, f"DATA: {self.path}: label column '{name}'", self.class_names
        )

    def _batches(self, batch_size: int) -> Iterator[np.ndarray]:
        feats = self.feature_index
        done = 0
        buf: list[list[str]] = []
        with self._open() as fh:
            reader = csv.reader(fh, self._dialect())
            next(reader, None)
            for _, row in self._rows(reader):
                buf.append([row[i] for i in feats])
                if len(buf) == batch_size:
                    yield self._to_float(buf, done + 1)
                    done += len(buf)
                    buf = []
            if buf:
                yield self._to_float(buf, done + 1)

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


class ParquetSource(_Table):
    """A .parquet file (needs pyarrow): the label column is read first, the feature columns
    are streamed in record batches."""

    kind = "parquet"

    def __init__(
        self,
        path: Path,
        label_column: str | None,
        feature_columns: Sequence[str] | None,
        class_names: list[str] | None = None,
        drop_columns: Sequence[str] | None = None,
    ) -> None:
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
            raise InputError(
                f"DATA: {path} is not a readable Parquet file ({_first_line(exc)})"
            ) from exc
        header = list(schema.names)
        li, feats = _choose_columns(self.path, header, label_column, feature_columns, drop_columns)
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

    def _batches(self, batch_size: int) -> Iterator[np.ndarray]:
        import pyarrow as pa
        import pyarrow.compute as pc

        for rb in self.pf.iter_batches(batch_size=batch_size, columns=self.feature_names):
            cols = [
                pc.cast(rb.column(i), pa.float64()).to_numpy(zero_copy_only=False)
                for i in range(rb.num_columns)
            ]
            yield np.stack(cols, axis=1) if cols else np.empty((rb.num_rows, 0))
