"""TFRecord files of tf.train.Example: the record framing (read, count) and the Example codec.

Framing (TensorFlow's): per record a little-endian uint64 length, the masked CRC-32C of those
8 bytes, the payload, the masked CRC-32C of the payload. Files are read through any
binary file object (Beam's FileSystems for gs://, s3://, hdfs://, local, compressed or not),
so the reader is not tied to TensorFlow's own file systems. Both checksums are verified.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from kerasdoctor.errors import InputError

_HEADER = 12  # uint64 length + uint32 masked crc of the length
_MASK_DELTA = 0xA282EAD8

# How a row's values are stored, by the dtype of the array they come from:
# float_list holds float32, so float64 rows go as one bytes value of their raw little-endian
# bytes (lossless: the sharded run must see the very values the .npz holds).
FLOAT_LIST, INT64_LIST, BYTES_LIST = "float_list", "int64_list", "bytes_list"


def _crc32c(data: bytes) -> int:
    try:
        import google_crc32c
    except ImportError as exc:  # part of the [beam] extra
        raise InputError(
            "reading TFRecord shards needs google-crc32c: pip install 'kerasdoctor[beam]'"
        ) from exc
    return int(google_crc32c.value(data))


def masked_crc(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _length(head: bytes, where: str) -> int:
    if len(head) < _HEADER:
        raise InputError(f"DATA: {where} is truncated (a record header is cut short)")
    (length,) = struct.unpack("<Q", head[:8])
    (crc,) = struct.unpack("<I", head[8:12])
    if masked_crc(head[:8]) != crc:
        raise InputError(f"DATA: {where} is not a TFRecord file (bad length checksum)")
    return int(length)


def iter_records(f: IO[bytes], where: str) -> Iterator[bytes]:
    """The payloads of a TFRecord stream, in order, checksums verified."""
    while True:
        head = f.read(_HEADER)
        if not head:
            return
        length = _length(head, where)
        data = f.read(length)
        tail = f.read(4)
        if len(data) < length or len(tail) < 4:
            raise InputError(f"DATA: {where} is truncated (a record is cut short)")
        if masked_crc(data) != struct.unpack("<I", tail)[0]:
            raise InputError(f"DATA: {where} has a corrupt record (bad data checksum)")
        yield data


def count_records(f: IO[bytes], where: str) -> int:
    """Records in a TFRecord stream, skipping the payloads (seek) where the stream allows."""
    n = 0
    while True:
        head = f.read(_HEADER)
        if not head:
            return n
        skip = _length(head, where) + 4
        try:
            f.seek(skip, 1)
        except (OSError, ValueError, NotImplementedError):  # a stream that cannot seek
            if len(f.read(skip)) < skip:
                raise InputError(f"DATA: {where} is truncated (a record is cut short)") from None
        n += 1


# ------------------------------------------------------------------ tf.train.Example


def storage_kind(dtype: np.dtype[Any]) -> str:
    """The Example list a column of this dtype is written to."""
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return FLOAT_LIST
    if dtype.kind in "biu" and not (dtype.kind == "u" and dtype.itemsize == 8):
        return INT64_LIST
    return BYTES_LIST  # float64, uint64, strings: raw bytes (strings: utf-8)


def encode_example(row: Mapping[str, np.ndarray]) -> bytes:
    """One tf.train.Example: a feature per key holding the row's values flattened in C order."""
    import tensorflow as tf

    feats = {}
    for key, value in row.items():
        v = np.asarray(value)
        kind = storage_kind(v.dtype)
        if kind == FLOAT_LIST:
            feats[key] = tf.train.Feature(float_list=tf.train.FloatList(value=v.ravel()))
        elif kind == INT64_LIST:
            feats[key] = tf.train.Feature(
                int64_list=tf.train.Int64List(value=v.ravel().astype(np.int64))
            )
        elif v.dtype.kind in "US":
            items = [str(s).encode() for s in v.ravel().tolist()]
            feats[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=items))
        else:
            raw = np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")).tobytes()
            feats[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw]))
    return bytes(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())


@dataclass(frozen=True)
class Column:
    """How to read one feature: its list kind, values per row, row shape and numpy dtype."""

    key: str
    kind: str
    length: int  # values in the list per row (1 for raw bytes)
    shape: tuple[int, ...]
    dtype: str


def example_columns(record: bytes) -> dict[str, tuple[str, int]]:
    """(list kind, values per row) of every feature of one serialized Example."""
    import tensorflow as tf

    ex = tf.train.Example.FromString(record)
    out = {}
    for key, feat in ex.features.feature.items():
        kind = feat.WhichOneof("kind") or FLOAT_LIST
        out[key] = (kind, len(getattr(feat, kind).value))
    return out


def decode_examples(
    records: Sequence[bytes], columns: Sequence[Column], where: str
) -> dict[str, np.ndarray]:
    """A batch of serialized Examples -> one array (n, *shape) per column (parsed in C++)."""
    import tensorflow as tf

    spec = {}
    for c in columns:
        if c.kind == FLOAT_LIST:
            spec[c.key] = tf.io.FixedLenFeature([c.length], tf.float32)
        elif c.kind == INT64_LIST:
            spec[c.key] = tf.io.FixedLenFeature([c.length], tf.int64)
        else:
            spec[c.key] = tf.io.FixedLenFeature([c.length], tf.string)
    try:
        parsed = tf.io.parse_example(tf.constant(list(records), dtype=tf.string), spec)
    except (tf.errors.InvalidArgumentError, ValueError) as exc:
        text = str(exc).strip().splitlines()
        raise InputError(
            f"DATA: {where}: records do not share one layout "
            f"({text[0][:200] if text else type(exc).__name__})"
        ) from exc
    n = len(records)
    out = {}
    for c in columns:
        v = parsed[c.key].numpy()
        dtype = np.dtype(c.dtype)
        if c.kind != BYTES_LIST:
            out[c.key] = v.astype(dtype, copy=False).reshape((n, *c.shape))
        elif dtype.kind in "US":
            out[c.key] = np.array([s.decode() for s in v.ravel()]).reshape((n, *c.shape))
        else:
            buf = b"".join(v.ravel().tolist())
            out[c.key] = (
                np.frombuffer(buf, dtype=dtype.newbyteorder("<"))
                .astype(dtype, copy=False)
                .reshape((n, *c.shape))
            )
    return out
