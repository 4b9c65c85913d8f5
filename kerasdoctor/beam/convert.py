"""The converter: one .npz of the contract -> N shards (TFRecord or .npz) plus the manifest.

Rows are split into contiguous, nearly equal runs in their original order, so shard k's
first row id is the sum of the earlier shards' rows and the concatenation of the shards is
the .npz. Needs only the base install (TensorFlow writes the TFRecord files).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kerasdoctor.beam.layout import MANIFEST_NAME, NPZ, TFRECORD, FeatureInfo, Manifest
from kerasdoctor.errors import InputError

SHARD_PREFIX = "shard"


def shard_name(index: int, count: int, fmt: str) -> str:
    """shard-00003-of-00008.tfrecord: zero-padded, so name order is row order."""
    return f"{SHARD_PREFIX}-{index:05d}-of-{count:05d}.{fmt}"


def convert_npz(
    data: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    shards: int,
    fmt: str = TFRECORD,
    x_key: str | None = None,
    y_key: str = "y",
    force: bool = False,
) -> Manifest:
    """Write `shards` shards of DATA into OUTDIR and the manifest beside them."""
    from kerasdoctor.load import DenseLabels, MultiHotLabels, read_npz

    if fmt not in (TFRECORD, NPZ):
        raise InputError(f"--format must be {TFRECORD} or {NPZ}, got '{fmt}'")
    try:
        raw = read_npz(data, x_key=x_key, y_key=y_key)
    except (DenseLabels, MultiHotLabels) as exc:
        # issue 16: dense (N, H, W) / (N, T) labels (with their `mask`) and multi-hot (N, K)
        # labels are written as they are, into .npz shards only
        kind = "multi-hot" if isinstance(exc, MultiHotLabels) else "dense"
        if fmt != NPZ:
            raise InputError(
                f"DATA: {data}: {kind} labels are sharded as .npz only: pass --format npz"
            ) from None
        return _convert_raw(
            data, outdir, shards=shards, kind=kind, x_key=x_key, y_key=y_key, force=force
        )
    n = raw.n_samples
    if shards < 1:
        raise InputError(f"--shards must be at least 1, got {shards}")
    if shards > n:
        raise InputError(f"--shards {shards} is more than the {n} rows of {raw.path}")
    if not raw.arrays:
        raise InputError(f"DATA: {raw.path} holds no input arrays besides '{y_key}'")
    for key, arr in raw.arrays.items():
        if arr.ndim == 0 or arr.shape[0] != n:
            raise InputError(f"DATA: {raw.path}: array '{key}' does not have {n} rows")
    out = _outdir(outdir, force)
    bounds = np.linspace(0, n, shards + 1).round().astype(np.int64)
    labels = raw.labels
    features: dict[str, FeatureInfo] = {}
    written: list[tuple[str, int]] = []
    if fmt == TFRECORD:
        from kerasdoctor.beam.tfrecord import storage_kind

        for key, arr in raw.arrays.items():
            features[key] = FeatureInfo(
                str(arr.dtype), tuple(int(d) for d in arr.shape[1:]), storage_kind(arr.dtype)
            )
    else:
        features = {
            k: FeatureInfo(str(a.dtype), tuple(int(d) for d in a.shape[1:]))
            for k, a in raw.arrays.items()
        }
    for i in range(shards):
        a, b = int(bounds[i]), int(bounds[i + 1])
        name = shard_name(i, shards, fmt)
        if fmt == TFRECORD:
            _write_tfrecord(out / name, raw.arrays, labels.y, a, b, y_key)
        else:
            _write_npz(out / name, raw, a, b, y_key)
        written.append((name, b - a))
    manifest = Manifest(
        format=fmt,
        shards=written,
        features=features,
        label_key=y_key,
        label_encoding=labels.encoding,
        label_width=labels.width,
        class_names=list(labels.class_names) if labels.class_names is not None else None,
        source=os.path.basename(raw.path),
    )
    (out / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def _outdir(outdir: str | os.PathLike[str], force: bool) -> Path:
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"OUTDIR: {out} is a file; expected a directory")
    out.mkdir(parents=True, exist_ok=True)
    old = sorted(out.glob(f"{SHARD_PREFIX}-*")) + sorted(out.glob(MANIFEST_NAME))
    if old and not force:
        raise InputError(
            f"OUTDIR: {out} already holds shards ({old[0].name}...); a pattern would mix them "
            "with the new ones: pick an empty directory or pass --force to replace them"
        )
    for p in old:
        p.unlink()
    return out


def _convert_raw(
    data: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    shards: int,
    kind: str,
    x_key: str | None,
    y_key: str,
    force: bool,
) -> Manifest:
    """Dense or multi-hot labels: .npz shards holding y (and `mask`) as the source does."""
    from kerasdoctor.dense import read_dense_npz

    arrays, y, mask, names = read_dense_npz(data, x_key, y_key)
    n = int(y.shape[0])
    if shards < 1:
        raise InputError(f"--shards must be at least 1, got {shards}")
    if shards > n:
        raise InputError(f"--shards {shards} is more than the {n} rows of {data}")
    if not arrays:
        raise InputError(f"DATA: {data} holds no input arrays besides '{y_key}'")
    for key, arr in [*arrays.items(), *((("mask", mask),) if mask is not None else ())]:
        if arr.ndim == 0 or arr.shape[0] != n:
            raise InputError(f"DATA: {data}: array '{key}' does not have {n} rows")
    out = _outdir(outdir, force)
    bounds = np.linspace(0, n, shards + 1).round().astype(np.int64)
    written: list[tuple[str, int]] = []
    for i in range(shards):
        a, b = int(bounds[i]), int(bounds[i + 1])
        name = shard_name(i, shards, NPZ)
        part = {k: v[a:b] for k, v in arrays.items()}
        part[y_key] = y[a:b]
        if mask is not None:
            part["mask"] = mask[a:b]
        if names is not None:
            part["class_names"] = np.asarray(names)
        tmp = out / (name + ".tmp.npz")
        np.savez(tmp, **part)  # type: ignore[arg-type]
        os.replace(tmp, out / name)
        written.append((name, b - a))
    manifest = Manifest(
        format=NPZ,
        shards=written,
        features={
            k: FeatureInfo(str(a.dtype), tuple(int(d) for d in a.shape[1:]))
            for k, a in arrays.items()
        },
        label_key=y_key,
        label_encoding=kind,
        label_width=int(y.shape[-1]),
        class_names=list(names) if names is not None else None,
        source=os.path.basename(str(data)),
    )
    (out / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def _write_tfrecord(
    path: Path, arrays: dict[str, np.ndarray], y: np.ndarray, a: int, b: int, y_key: str
) -> None:
    import tensorflow as tf

    from kerasdoctor.beam.tfrecord import encode_example

    # The label is stored decoded (one int64 class index per example); the manifest keeps
    # the source's encoding and class names, which the report shows and the checks read.
    tmp = path.with_name(path.name + ".tmp")
    with tf.io.TFRecordWriter(str(tmp)) as writer:
        for i in range(a, b):
            row = {k: v[i] for k, v in arrays.items()}
            row[y_key] = np.asarray(y[i], np.int64)
            writer.write(encode_example(row))
    os.replace(tmp, path)


def _write_npz(path: Path, raw: object, a: int, b: int, y_key: str) -> None:
    from kerasdoctor.load import RawData

    assert isinstance(raw, RawData)
    # Each shard is an .npz of the contract by itself: the source's label encoding, and
    # class names written into every shard so string labels decode the same everywhere.
    with np.load(raw.path, allow_pickle=False) as src:
        y = src[y_key][a:b]
    out = {k: v[a:b] for k, v in raw.arrays.items()}
    out[y_key] = y
    if raw.labels.class_names is not None:
        out["class_names"] = np.asarray(raw.labels.class_names)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **out)  # type: ignore[arg-type]
    os.replace(tmp, path)
