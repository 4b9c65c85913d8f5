"""The diagnosis on sharded data with Apache Beam: shard layout, converter, reader, pipeline.

Importing this package is cheap: apache_beam is imported only by kerasdoctor.beam.pipeline,
TensorFlow only when shards are written or parsed. ``pip install "kerasdoctor[beam]"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

SHARD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecords.gz", ".npz")
GLOB_CHARS = frozenset("*?[")

if TYPE_CHECKING:
    from kerasdoctor.findings import Report


def is_sharded(data: str) -> bool:
    """Does DATA name shards (a glob pattern, or TFRecord files) rather than one .npz file?"""
    name = data.lower()
    if any(c in data for c in GLOB_CHARS):
        return name.endswith(SHARD_SUFFIXES)
    return name.endswith(tuple(s for s in SHARD_SUFFIXES if s != ".npz"))


def diagnose_shards(model_path: str, pattern: str, *args: Any, **kwargs: Any) -> Report:
    """Diagnose MODEL on the shards matching PATTERN with a Beam pipeline (see pipeline.py)."""
    from kerasdoctor.beam.pipeline import diagnose_shards as run

    report: Report = run(model_path, pattern, *args, **kwargs)
    return report
