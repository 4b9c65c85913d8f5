"""The one adapter for Keras-private graph attributes (issue 17, item 6).

Keras 3 records, on every symbolic tensor of a functional model, the operation (layer) that
made it and which of that layer's calls (`_keras_history`), and on every layer its calls
(`_inbound_nodes`). Neither is public API. Every module that walks a model's graph goes
through these functions, so a Keras release that renames them is mended here, once."""

from __future__ import annotations

from typing import Any


def producer(tensor: Any) -> Any | None:
    """The layer that computed a symbolic tensor; None for a model input or a bare tensor."""
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history is not None else None


def producer_call(tensor: Any) -> tuple[Any, Any] | None:
    """(layer, node): the layer that computed the tensor and that call of it (a shared layer
    has one node per call); None where the graph does not record it."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    layer, node_index = history[0], history[1]
    try:
        return layer, layer._inbound_nodes[node_index]
    except (AttributeError, IndexError):
        return None


def first_call_inputs(layer: Any) -> list[Any]:
    """The input tensors of a layer's first call in its graph (none when it was never called
    symbolically)."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    return list(getattr(nodes[0], "input_tensors", []) or []) if nodes else []


def output_layer(model: Any, index: int = 0) -> Any | None:
    """The layer that computes the model's output `index`."""
    return producer(model.outputs[index])


def innermost_head(layer: Any) -> Any:
    """Through nested single-output models at the output, down to the layer that computes it."""
    while hasattr(layer, "outputs") and len(getattr(layer, "outputs", []) or []) == 1:
        inner = producer(layer.outputs[0])
        if inner is None:
            break
        layer = inner
    return layer
