"""The predictor: the model (Keras or SavedModel) behind one adapter that runs batches.

A Keras model runs as a probe model whose extra outputs are the graph taps that
predictor_graph builds (per-sample reductions of ReLU outputs and BatchNorm inputs); a
SavedModel runs through its serving signature. The head maths that turns raw outputs into
probabilities and predicted classes lives here too, shared by the pass, the experiments and
the fixes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kerasdoctor.predictor_graph import probe_taps

if TYPE_CHECKING:
    from kerasdoctor.load import LoadedModel
    from kerasdoctor.model_facts import ModelFacts


def probability_fn(head: str, k: int) -> Callable[[np.ndarray], np.ndarray]:
    """Raw outputs -> probabilities: as they are under a softmax or sigmoid head, else a
    sigmoid (one unit) or a softmax (several) over the logits."""
    if head in ("softmax", "sigmoid"):
        return lambda r: r
    if k == 1:
        return lambda r: 1.0 / (1.0 + np.exp(-np.clip(r, -80, 80)))

    def softmax(r: np.ndarray) -> np.ndarray:
        z = r - np.nanmax(r, axis=1, keepdims=True)
        e = np.exp(z)
        out: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return out

    return softmax


def looks_like_probabilities(raw: np.ndarray) -> str | None:
    """For a model whose head is unknown (SavedModel): do its outputs look like probabilities?"""
    finite = raw[np.isfinite(raw).all(axis=1)]
    if finite.size == 0 or finite.min() < 0 or finite.max() > 1:
        return None
    if raw.shape[1] == 1:
        return "sigmoid"
    return "softmax" if np.allclose(finite.sum(axis=1), 1.0, atol=1e-3) else "sigmoid"


class Predictor:
    """Runs a model (Keras or SavedModel) on batches, with the probe taps attached."""

    def __init__(self, lm: LoadedModel, facts: ModelFacts, *, taps: bool = True) -> None:
        self.lm = lm
        self.facts = facts
        self.relu_layers: list[tuple[str, str]] = []
        self.bn_layers: list[str] = []
        self._fn: Callable[[list[np.ndarray]], list[np.ndarray]]
        self.notes: list[str] = []
        self._spatial: dict[str, int] = {}
        self.probe_model: Any = None
        if lm.keras_model is not None:
            self._fn = self._keras_fn(taps)
        else:
            self._fn = self._savedmodel_fn()

    # -- building

    def _keras_fn(self, taps: bool) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
        model = self.lm.keras_model
        out = model.outputs[self.lm.output_index]
        outputs = [out]
        if taps:  # ReLU taps first, then the BatchNorm (mean, M2) pairs: the pass's order
            tap_outputs, self.relu_layers, self.bn_layers = probe_taps(model, self.facts)
            outputs += tap_outputs
        from kerasdoctor._keras import keras

        k = keras()
        try:
            probe = k.Model(model.inputs, outputs) if len(outputs) > 1 else None
        except Exception as exc:  # a graph we cannot tap: predictions only
            self.notes.append(f"layer activations not probed ({type(exc).__name__})")
            self.relu_layers, self.bn_layers = [], []
            probe = None
        self.probe_model = probe  # the tapped model (None: predictions only)
        if probe is None:
            self.relu_layers, self.bn_layers = [], []
            target = model
            index = self.lm.output_index if len(model.outputs) > 1 else None

            def run_plain(xs: list[np.ndarray]) -> list[np.ndarray]:
                res = target.predict_on_batch(xs if len(xs) > 1 else xs[0])
                if index is not None:
                    res = res[index]
                return [np.asarray(res)]

            return run_plain

        def run(xs: list[np.ndarray]) -> list[np.ndarray]:
            res = probe.predict_on_batch(xs if len(xs) > 1 else xs[0])
            return [np.asarray(r) for r in res]

        return run

    def _savedmodel_fn(self) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
        import tensorflow as tf

        fn = self.lm.signature
        keys = self.lm.signature_keys
        name = self.lm.output_name
        assert fn is not None

        def run(xs: list[np.ndarray]) -> list[np.ndarray]:
            feed = {k: tf.constant(x) for k, x in zip(keys, xs)}
            return [np.asarray(fn(**feed)[name])]

        return run

    def spatial_size(self, layer_name: str) -> int:
        """Values per channel per sample at a layer's input (1 for dense inputs)."""
        if layer_name not in self._spatial:
            shape = self.lm.keras_model.get_layer(layer_name).input.shape
            self._spatial[layer_name] = int(np.prod(shape[1:-1], dtype=np.int64)) or 1
        return self._spatial[layer_name]

    # -- running

    def cast(self, xs: Sequence[Any]) -> list[np.ndarray]:
        out = []
        for x, spec in zip(xs, self.lm.inputs):
            a = np.asarray(x)
            want = np.dtype(spec.dtype) if _is_numpy_dtype(spec.dtype) else np.float32
            out.append(a.astype(want, copy=False))
        return out

    def run_batch(self, xs: Sequence[Any]) -> list[np.ndarray]:
        """Raw outputs: [head output, taps...] for one batch."""
        return self._fn(self.cast(xs))

    def predict(
        self, xs: Sequence[np.ndarray], head: str, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, predicted classes) for small in-memory arrays (bounded re-runs)."""
        n = len(xs[0])
        probs, preds = [], []
        for s in range(0, n, batch_size):
            raw = self.run_batch([x[s : s + batch_size] for x in xs])[0]
            raw = raw.reshape(raw.shape[0], -1).astype(np.float64)
            p = probability_fn(head, raw.shape[1])(raw)
            probs.append(p)
            preds.append(predicted_classes(raw, p))
        return np.concatenate(probs), np.concatenate(preds)


def _is_numpy_dtype(name: str) -> bool:
    try:
        np.dtype(name)
        return True
    except TypeError:
        return False


def predicted_classes(raw: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One unit: class 1 when P > 0.5; several: the argmax."""
    if raw.shape[1] == 1:
        return (probs[:, 0] > 0.5).astype(np.int64)
    out: np.ndarray = np.argmax(raw, axis=1).astype(np.int64)
    return out
