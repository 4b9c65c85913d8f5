"""A directory written by tf.data.Dataset.save, streamed: its labels are decoded batch by
batch (sources.interface.LabelStream)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.errors import InputError
from kerasdoctor.load import LoadedModel, _first_line, _fmt_shape, input_keys
from kerasdoctor.sources.interface import Bound, Chunk, LabelStream, Source, StreamBound


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
            raise InputError(
                f"DATA: {path}: the labels y must be one tensor, found "
                f"{_describe_spec(self.y_spec)}"
            )
        if self.y_spec.dtype == tf.string:
            raise InputError(
                f"DATA: {path}: the labels are strings; map them to class indices before saving"
            )
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
            raise InputError(
                f"DATA: {self.path}: labels of shape {self.y_spec.shape} per "
                "sample; expected a class index or a one-hot row"
            )

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
                raise InputError(f"DATA: {self.path}: reading failed ({_first_line(exc)})") from exc

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
