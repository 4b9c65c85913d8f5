"""The Keras graph adapter: every access to a live model's layers and private graph lives here.

The probe taps (the Keras layers that reduce an activation per sample, and the tensors they
read), the experiments' re-runs with BatchNorm in training mode or re-estimated on a
copy of the model, and the output layer's features and pre-activations all go through these
functions, so Keras-version details stay in one module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kerasdoctor.keras_graph import output_layer, producer, producer_call

if TYPE_CHECKING:
    from kerasdoctor.experiments import HeadTap
    from kerasdoctor.model_facts import ModelFacts
    from kerasdoctor.predictor import Predictor


def tensors_on_path(model: Any) -> dict[str, tuple[Any, Any]]:
    """Each layer's (input, output) tensors in the graph that computes model.outputs.

    layer.output / layer.input are those of the layer's FIRST call, and a loaded Sequential
    model has called its layers several times while being rebuilt: tapping layer.output there
    makes the probe model recompute the network up to that layer once more per tap (3x the
    cost of a plain predict on a small CNN). Layers met more than once (shared) are left out.
    """
    found: dict[str, tuple[Any, Any]] = {}
    shared: set[str] = set()
    seen: set[int] = set()
    stack = list(model.outputs)
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        call = producer_call(t)
        if call is None:
            continue
        op, node = call
        ins, outs = list(node.input_tensors), list(node.output_tensors)
        if op.name in found and found[op.name][1] is not (outs[0] if len(outs) == 1 else None):
            shared.add(op.name)
        if len(ins) == 1 and len(outs) == 1:
            found[op.name] = (ins[0], outs[0])
        stack.extend(ins)
    return {name: io for name, io in found.items() if name not in shared}


def all_layers(model: Any) -> list[Any]:
    """Every layer, nested models' layers included."""
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(all_layers(layer))
    return out


_REDUCTION_LAYERS: dict[str, Any] = {}


def reduction_layers() -> dict[str, Any]:
    """Keras layers reducing (batch, ..., C) to (batch, C), defined once keras is imported."""
    if _REDUCTION_LAYERS:
        return _REDUCTION_LAYERS
    from kerasdoctor._keras import keras

    k = keras()
    ops = k.ops

    class _Reduce(k.layers.Layer):  # type: ignore[name-defined]
        mode = "max"

        def call(self, t: Any) -> Any:
            axes = tuple(range(1, len(t.shape) - 1))
            t = ops.cast(t, "float32")
            if self.mode == "max":
                return ops.max(t, axis=axes) if axes else t
            mean = ops.mean(t, axis=axes) if axes else t
            if self.mode == "mean":
                return mean
            if not axes:
                return ops.zeros_like(t)
            return ops.sum(ops.square(t - ops.mean(t, axis=axes, keepdims=True)), axis=axes)

    for mode in ("max", "mean", "m2"):
        _REDUCTION_LAYERS[mode] = type(f"KDReduce_{mode}", (_Reduce,), {"mode": mode})
    return _REDUCTION_LAYERS


def probe_taps(model: Any, facts: ModelFacts) -> tuple[list[Any], list[tuple[str, str]], list[str]]:
    """Per-sample reductions of ReLU outputs and BatchNorm inputs, as extra output tensors.

    Returns (tensors, ReLU layers as (name, activation), BatchNorm layer names). All ReLU taps
    come first, then the BatchNorm (mean, M2) pairs: the pass reads them in that order.
    """
    layer_types = reduction_layers()
    relu_taps: list[Any] = []
    bn_taps: list[Any] = []
    relu_layers: list[tuple[str, str]] = []
    bn_layers: list[str] = []
    relu = set(facts.relu_layers)
    on_path = tensors_on_path(model)
    for layer in model.layers:
        try:
            if layer.name in relu:
                t = on_path[layer.name][1] if layer.name in on_path else layer.output
                relu_taps.append(layer_types["max"](name=f"kd_max_{layer.name}")(t))
                act = next(i.activation for i in facts.layers if i.name == layer.name)
                relu_layers.append((layer.name, act or "relu"))
            elif type(layer).__name__ == "BatchNormalization" and any(
                b.name == layer.name for b in facts.batchnorms
            ):
                t = on_path[layer.name][0] if layer.name in on_path else layer.input
                mean = layer_types["mean"](name=f"kd_mean_{layer.name}")(t)
                m2 = layer_types["m2"](name=f"kd_m2_{layer.name}")(t)
                bn_taps += [mean, m2]
                bn_layers.append(layer.name)
        except (AttributeError, ValueError):  # a shared layer with several nodes: skip
            continue
    return relu_taps + bn_taps, relu_layers, bn_layers


def copy_model(model: Any) -> Any:
    """A copy of the model with the same weights; the live model is never modified.

    Preprocessing layers (Normalization) derive their tensors from their variables in
    finalize_state, which set_weights does not call: without it a copied Normalization
    layer divides by a zero variance."""
    from kerasdoctor._keras import keras

    k = keras()
    clone = k.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer in all_layers(clone):
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()
    return clone


def _batch_stats_call(call: Any) -> Any:
    """The layer's own call, always in training mode (batch statistics)."""

    def forced(inputs: Any, training: Any = None, mask: Any = None) -> Any:
        return call(inputs, training=True, mask=mask)

    return forced


def _bn_layers(model: Any) -> list[Any]:
    return [layer for layer in all_layers(model) if type(layer).__name__ == "BatchNormalization"]


def batchnorm_run(
    predictor: Predictor,
    xs: Sequence[np.ndarray],
    *,
    reestimate: bool,
    seed: int = 0,
    batch: int = 256,
    outputs: bool = False,
) -> np.ndarray:
    """Predicted classes on the sample with BatchNorm using batch statistics (reestimate=False)
    or with its moving statistics re-estimated from the sample as a cumulative average over
    shuffled batches (AdaBN) and then inference. Runs on a copy of the model. outputs=True
    returns the raw outputs instead, flattened per row (n, -1), for callers that score them
    in their own terms (dense and multi-label diagnoses)."""
    from kerasdoctor.predictor import predicted_classes, probability_fn

    model = copy_model(predictor.lm.keras_model)
    bns = _bn_layers(model)
    if not bns:
        raise ValueError("the model has no BatchNormalization layer")
    n = int(xs[0].shape[0])
    # The sample is sorted by position in the file, which may be sorted by class: shuffle so
    # each batch's statistics describe a mix of classes, as during training.
    order = np.random.default_rng(seed).permutation(n)
    index = predictor.lm.output_index

    def forward(rows: np.ndarray) -> np.ndarray:
        part = predictor.cast([np.asarray(x[rows]) for x in xs])
        out = model(part if len(part) > 1 else part[0], training=False)
        if isinstance(out, (list, tuple)):
            out = out[index]
        return np.asarray(out).reshape(rows.size, -1).astype(np.float64)

    originals = [b.call for b in bns]
    for b in bns:
        b.call = _batch_stats_call(b.call)
    outs = []
    try:
        for i, s in enumerate(range(0, n, batch), start=1):
            if reestimate:
                for b in bns:
                    b.momentum = (i - 1) / i  # a running average over the batches
            outs.append(forward(order[s : s + batch]))
    finally:
        for b, orig in zip(bns, originals):
            b.call = orig
    if reestimate:  # inference with the re-estimated moving statistics
        outs = [forward(order[s : s + batch]) for s in range(0, n, batch)]
    raw = np.empty((n, outs[0].shape[1]))
    raw[order] = np.concatenate(outs)
    if outputs:  # the raw outputs, flattened per row (dense and multi-label callers score them)
        return raw
    with np.errstate(all="ignore"):
        probs = probability_fn(
            predictor.facts.head if predictor.facts.head != "unknown" else "linear", raw.shape[1]
        )(raw)
    return predicted_classes(raw, probs)


def head_tap(predictor: Predictor, xs: Sequence[np.ndarray], batch: int = 256) -> HeadTap:
    """The output layer's input (penultimate features) and the head's pre-activations.

    A Dense output layer with an activation: features are its input, pre-activations its
    kernel applied to them. A separate Activation/Softmax layer: pre-activations are its
    input, features the input of the Dense before it (when there is one).
    """
    from kerasdoctor._keras import keras
    from kerasdoctor.experiments import HeadTap

    model = predictor.lm.keras_model
    if model is None:
        raise ValueError("a SavedModel has no layers to tap")
    layer = output_layer(model, predictor.lm.output_index)
    if layer is None:
        raise ValueError("the output tensor has no layer history")
    path = tensors_on_path(model)
    name = type(layer).__name__
    k = keras()
    if name == "Dense":
        feat_t = path[layer.name][0] if layer.name in path else layer.input
        feats = _run(k, model, feat_t, predictor, xs, batch)
        kernel, bias = (
            (np.asarray(w, np.float64) for w in layer.get_weights()[:2])
            if layer.use_bias
            else (np.asarray(layer.get_weights()[0], np.float64), None)
        )
        pre = feats @ kernel + (bias if bias is not None else 0.0)
        act = layer.get_config().get("activation", "linear")
        return HeadTap(feats, pre, str(act) if isinstance(act, str) else "linear")
    if name in ("Activation", "Softmax", "ReLU"):
        pre_t = path[layer.name][0] if layer.name in path else layer.input
        pre = _run(k, model, pre_t, predictor, xs, batch)
        act = {"Softmax": "softmax", "ReLU": "relu"}.get(
            name, str(layer.get_config().get("activation", "linear"))
        )
        penultimate: np.ndarray | None = None  # none unless a Dense feeds the activation
        prev = producer(pre_t)
        if prev is not None and type(prev).__name__ == "Dense" and prev.name in path:
            penultimate = _run(k, model, path[prev.name][0], predictor, xs, batch)
        return HeadTap(penultimate, pre, act)
    raise ValueError(f"the output layer is a {name}, not a Dense or an activation layer")


def _run(
    k: Any, model: Any, tensor: Any, predictor: Predictor, xs: Sequence[np.ndarray], batch: int
) -> np.ndarray:
    sub = k.Model(model.inputs, tensor)
    n = int(xs[0].shape[0])
    parts = []
    for s in range(0, n, batch):
        part = predictor.cast([np.asarray(x[s : s + batch]) for x in xs])
        res = sub.predict_on_batch(part if len(part) > 1 else part[0])
        parts.append(np.asarray(res, np.float64).reshape(len(part[0]), -1))
    return np.concatenate(parts)
