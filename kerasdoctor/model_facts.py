"""Static facts about a model, read once: head, loss, layers, preprocessing, weights."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerasdoctor.load import LoadedModel

# Layers that pass values through without changing their scale: looking for what an input
# meets first, we walk through these.
TRANSPARENT = {
    "InputLayer",
    "Reshape",
    "Flatten",
    "Permute",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "Resizing",
    "CenterCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomCrop",
    "RandomTranslation",
    "RandomContrast",
    "RandomBrightness",
    "Masking",
    "Identity",
    "RepeatVector",
    "ActivityRegularization",
}
NORMALIZERS = {
    "Rescaling",
    "Normalization",
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "UnitNormalization",
}
# ReLU-family activations whose units can be exactly zero for every input ("die").
RELU_FAMILY = {"relu", "relu6"}


@dataclass(frozen=True)
class LayerInfo:
    """One top-level layer: what it is and what it computes."""

    name: str
    class_name: str
    activation: str | None
    units: int | None
    n_params: int


@dataclass(frozen=True)
class BatchNormInfo:
    """A BatchNormalization layer's saved statistics (channels on the last axis)."""

    name: str
    moving_mean: np.ndarray
    moving_variance: np.ndarray
    gamma: np.ndarray | None
    beta: np.ndarray | None
    epsilon: float
    momentum: float
    trainable: bool = True  # a frozen BatchNorm keeps its (e.g. pretrained) statistics


@dataclass(frozen=True)
class Normalizer:
    """The normalising layer an input meets first (before any weighted layer), if any."""

    layer: str
    class_name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegularizerInfo:
    """A layer's weight penalty (L1/L2 factors) or dropout rate, and its weights' size."""

    layer: str
    kind: str  # "kernel", "bias", "activity" or "dropout"
    l1: float = 0.0
    l2: float = 0.0
    rate: float = 0.0  # dropout
    weight_rms: float | None = None  # RMS of the penalised kernel
    fan_in: int | None = None  # its inputs: a Glorot-scale kernel has RMS ~ sqrt(1 / fan_in)


@dataclass(frozen=True)
class NonfiniteWeights:
    """NaN/Inf values in one layer's weights."""

    layer: str
    n_nan: int
    n_inf: int
    n_values: int


@dataclass(frozen=True)
class ModelFacts:
    """Everything checks may want to know about the model without running it."""

    format: str
    n_outputs: int  # output units of the diagnosed head (last axis)
    head: str  # activation of the output: softmax | sigmoid | linear | relu | ... | unknown
    head_layer: str | None
    head_axis_size: int | None  # size of the axis a softmax head normalises over
    loss: str | None  # canonical snake_case name, None when not compiled / not saved
    loss_from_logits: bool | None
    loss_config: dict[str, Any] | None
    compiled: bool
    optimizer: str | None
    optimizer_iterations: int | None  # None when the saved file holds no optimizer state
    layers: tuple[LayerInfo, ...] = ()
    relu_layers: tuple[str, ...] = ()
    batchnorms: tuple[BatchNormInfo, ...] = ()
    input_normalizers: dict[str, Normalizer | None] = field(default_factory=dict)
    # input name -> class names of the first non-transparent layers it feeds (e.g. Embedding)
    input_consumers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    nonfinite_weights: tuple[NonfiniteWeights, ...] = ()
    n_params: int = 0
    # trainable bias vectors, and how many are exactly zero (their initial value): all zero
    # means the weights the optimizer could move never moved
    trainable_bias_layers: int = 0
    zero_trainable_bias_layers: int = 0
    inspectable: bool = True  # False for a SavedModel: no layers to read
    learning_rate: float | None = None  # the saved optimizer's constant rate (None: schedule)
    head_class: str | None = None  # class name of the output layer (Dense, Activation, ...)
    regularizers: tuple[RegularizerInfo, ...] = ()  # weight penalties and dropout, per layer


def activation_name(value: Any) -> str | None:
    """The activation's name from a layer config value (a string or a serialised dict)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.split(".")[-1].lower()
    if isinstance(value, dict):
        cfg = value.get("config")
        if isinstance(cfg, dict) and "name" in cfg:
            return str(cfg["name"]).lower()
        if isinstance(cfg, str):
            return cfg.lower()
        if "class_name" in value:
            return _snake(str(value["class_name"]))
    name = getattr(value, "__name__", None)
    return str(name).lower() if name else None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def layer_activation(layer: Any) -> str | None:
    """What activation a layer applies, read from its config, never from its name."""
    cls = type(layer).__name__
    try:
        cfg = layer.get_config()
    except Exception:  # a custom layer without get_config
        return None
    if cls == "Softmax":
        return "softmax"
    if cls == "ReLU":
        slope = float(cfg.get("negative_slope", 0.0) or 0.0)
        thr = float(cfg.get("threshold", 0.0) or 0.0)
        return "relu" if slope == 0.0 and thr >= 0.0 else "leaky_relu"
    if cls == "LeakyReLU":
        return "leaky_relu"
    if cls in ("ELU", "PReLU"):
        return cls.lower()
    return activation_name(cfg.get("activation"))


def canonical_loss(value: Any) -> tuple[str | None, bool | None, dict[str, Any] | None]:
    """(name, from_logits, config) of a compiled loss in any of its serialised forms."""
    if value is None:
        return None, None, None
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) == 1 else None
        return canonical_loss(value)
    if isinstance(value, dict):
        if value.get("class_name") == "function" and isinstance(value.get("config"), str):
            return _loss_alias(value["config"].lower()), None, None  # a plain loss function
        if "class_name" in value:
            cfg = value.get("config") or {}
            name = _loss_alias(_snake(str(value["class_name"])))
            if isinstance(cfg, dict):
                return name, _opt_bool(cfg.get("from_logits")), cfg
            return name, None, None
        if len(value) == 1:  # {output_name: loss}
            return canonical_loss(next(iter(value.values())))
        return None, None, None
    if isinstance(value, str):
        return _loss_alias(value.lower()), None, None
    cls = type(value).__name__
    if hasattr(value, "get_config") and cls not in ("function", "LossFunctionWrapper"):
        try:
            cfg = value.get_config()
        except Exception:
            cfg = {}
        return _loss_alias(_snake(cls)), _opt_bool(cfg.get("from_logits")), cfg
    fn = getattr(value, "fn", None) or value
    fn_name = getattr(fn, "__name__", None)
    return (_loss_alias(str(fn_name).lower()) if fn_name else None), None, None


def _opt_bool(v: Any) -> bool | None:
    return None if v is None else bool(v)


def _loss_alias(name: str) -> str:
    aliases = {
        "mse": "mean_squared_error",
        "mae": "mean_absolute_error",
        "mean_squared_error": "mean_squared_error",
        "kld": "kl_divergence",
        "kullback_leibler_divergence": "kl_divergence",
        "bce": "binary_crossentropy",
    }
    return aliases.get(name, name)


def read_facts(lm: LoadedModel) -> ModelFacts:
    """Read the static facts of a loaded model (a SavedModel gives only its output size)."""
    units = lm.output_shape[-1] if lm.output_shape else None
    n_out = int(units) if units else 1
    if lm.keras_model is None:
        return ModelFacts(
            format=lm.format,
            n_outputs=n_out,
            head="unknown",
            head_layer=None,
            head_axis_size=None,
            loss=None,
            loss_from_logits=None,
            loss_config=None,
            compiled=False,
            optimizer=None,
            optimizer_iterations=None,
            inspectable=False,
        )
    model = lm.keras_model
    out_tensor = model.outputs[lm.output_index]
    head, head_layer, axis_size = _head(out_tensor)
    loss, from_logits, loss_cfg = _compiled_loss(model, lm.output_name)
    if loss is None:  # not a finding, but the loss checks can only judge the head then
        note = "no compiled loss in the file: the head is judged without knowing the loss"
        if note not in lm.notes:
            lm.notes.append(note)
    layers = tuple(_layer_info(layer) for layer in model.layers)
    bns = tuple(
        _bn_info(layer)
        for layer in _walk_layers(model)
        if type(layer).__name__ == "BatchNormalization"
    )
    nonfinite = _weight_scan(model)
    trainable_bias = _trainable_bias_scan(model)
    return ModelFacts(
        format=lm.format,
        n_outputs=n_out,
        head=head,
        head_layer=head_layer,
        head_axis_size=axis_size,
        loss=loss,
        loss_from_logits=from_logits,
        loss_config=loss_cfg,
        compiled=lm.compiled and loss is not None,
        optimizer=_optimizer_name(model),
        optimizer_iterations=_optimizer_iterations(model, lm),
        layers=layers,
        relu_layers=tuple(info.name for info in layers if info.activation in RELU_FAMILY),
        batchnorms=tuple(b for b in bns if b is not None),
        input_normalizers=_input_normalizers(model, [s.name for s in lm.inputs]),
        input_consumers=_input_consumers(model, [s.name for s in lm.inputs]),
        nonfinite_weights=nonfinite,
        n_params=int(sum(info.n_params for info in layers)),
        trainable_bias_layers=trainable_bias[0],
        zero_trainable_bias_layers=trainable_bias[1],
        learning_rate=_learning_rate(model) if lm.compiled else None,
        head_class=_head_class(out_tensor),
        regularizers=_regularizers(model),
    )


def _learning_rate(model: Any) -> float | None:
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return None
    try:
        lr = float(np.asarray(opt.learning_rate))
    except (TypeError, ValueError, AttributeError):  # none, or a schedule: no single value
        return None
    return lr if np.isfinite(lr) and lr > 0 else None


def _head_class(out_tensor: Any) -> str | None:
    from kerasdoctor.keras_graph import producer

    layer = producer(out_tensor)
    return type(layer).__name__ if layer is not None else None


def _regularizers(model: Any) -> tuple[RegularizerInfo, ...]:
    """Weight penalties (from each layer's regularizer objects) and dropout rates."""
    out: list[RegularizerInfo] = []
    for layer in _walk_layers(model):
        if type(layer).__name__ in (
            "Dropout",
            "SpatialDropout1D",
            "SpatialDropout2D",
            "SpatialDropout3D",
            "AlphaDropout",
            "GaussianDropout",
        ):
            out.append(
                RegularizerInfo(layer.name, "dropout", rate=float(getattr(layer, "rate", 0.0)))
            )
            continue
        for kind in ("kernel", "bias", "activity"):
            reg = getattr(layer, f"{kind}_regularizer", None)
            if reg is None:
                continue
            cfg = reg.get_config() if hasattr(reg, "get_config") else {}
            l1, l2 = float(cfg.get("l1", 0.0) or 0.0), float(cfg.get("l2", 0.0) or 0.0)
            if l1 <= 0 and l2 <= 0:
                continue
            rms = fan_in = None
            w = getattr(layer, kind, None) if kind == "kernel" else None
            if w is not None:
                arr = np.asarray(w, dtype=np.float64)
                rms = float(np.sqrt(np.mean(arr**2))) if arr.size else None
                fan_in = int(np.prod(arr.shape[:-1])) if arr.ndim >= 2 else None
            out.append(RegularizerInfo(layer.name, kind, l1, l2, weight_rms=rms, fan_in=fan_in))
    return tuple(out)


def _walk_layers(model: Any) -> list[Any]:
    """All layers, nested models flattened."""
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_walk_layers(layer))
    return out


def _layer_info(layer: Any) -> LayerInfo:
    units = None
    try:
        cfg = layer.get_config()
        units = cfg.get("units") or cfg.get("filters")
    except Exception:
        pass
    return LayerInfo(
        name=layer.name,
        class_name=type(layer).__name__,
        activation=layer_activation(layer),
        units=int(units) if isinstance(units, int) else None,
        n_params=int(sum(int(np.prod(w.shape)) for w in layer.weights)),
    )


def _producer(t: Any) -> Any:
    from kerasdoctor.keras_graph import producer

    return producer(t)


def _parents(layer: Any) -> list[Any]:
    from kerasdoctor.keras_graph import first_call_inputs

    out = []
    for t in first_call_inputs(layer):
        p = _producer(t)
        if p is not None:
            out.append(p)
    return out


def _head(out_tensor: Any) -> tuple[str, str | None, int | None]:
    """The output activation, walking back through reshapes; and the softmax axis size."""
    layer = _producer(out_tensor)
    axis_size = out_tensor.shape[-1]
    seen = 0
    while layer is not None and seen < 20:
        seen += 1
        cls = type(layer).__name__
        if cls in TRANSPARENT or cls in ("Reshape", "Flatten"):
            parents = _parents(layer)
            layer = parents[0] if parents else None
            continue
        if hasattr(layer, "layers") and hasattr(layer, "outputs"):  # nested model: its output
            try:
                return _head(layer.outputs[0])
            except Exception:
                return "unknown", layer.name, axis_size
        act = layer_activation(layer)
        if cls == "Softmax":
            axis = layer.get_config().get("axis", -1)
            try:
                shape = layer.output.shape
                axis_size = shape[axis if isinstance(axis, int) else axis[0]]
            except Exception:
                pass
        return (act or "unknown"), layer.name, axis_size
    return "unknown", None, axis_size


def _compiled_loss(model: Any, output_name: str) -> tuple[str | None, bool | None, Any]:
    value = None
    try:
        cc = model.get_compile_config()
        if cc:
            value = cc.get("loss")
    except Exception:
        value = None
    if value is None:
        value = getattr(model, "loss", None)
    if isinstance(value, dict) and output_name in value:
        value = value[output_name]
    return canonical_loss(value)


def _optimizer_name(model: Any) -> str | None:
    opt = getattr(model, "optimizer", None)
    return type(opt).__name__ if opt is not None else None


def _optimizer_iterations(model: Any, lm: LoadedModel) -> int | None:
    """The optimizer's step count, only when the file really saved the optimizer state."""
    opt = getattr(model, "optimizer", None)
    if opt is None or not _optimizer_state_saved(lm):
        return None
    try:
        return int(np.asarray(opt.iterations))
    except Exception:
        return None


def _optimizer_state_saved(lm: LoadedModel) -> bool:
    if lm.format == "object":
        return True  # in memory: the live optimizer is the truth
    try:
        if lm.format == "keras":
            import zipfile

            with zipfile.ZipFile(lm.path) as zf, zf.open("model.weights.h5") as fh:
                import io

                import h5py

                with h5py.File(io.BytesIO(fh.read()), "r") as h5:
                    return "optimizer" in h5 and len(h5["optimizer"].get("vars", {})) > 0
        if lm.format == "h5":
            import h5py

            with h5py.File(lm.path, "r") as h5:
                return "optimizer_weights" in h5
    except Exception:
        return False
    return False


def _bn_info(layer: Any) -> BatchNormInfo | None:
    cfg = layer.get_config()
    axis = cfg.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return None
        axis = axis[0]
    try:
        rank = len(layer.input.shape)
    except Exception:
        rank = None
    if axis != -1 and rank is not None and axis != rank - 1:
        return None  # channels-first BN: not compared (the probe reduces the last axis)

    def arr(name: str) -> np.ndarray | None:
        v = getattr(layer, name, None)
        return None if v is None else np.asarray(v, dtype=np.float64)

    mean, var = arr("moving_mean"), arr("moving_variance")
    if mean is None or var is None:
        return None
    return BatchNormInfo(
        name=layer.name,
        moving_mean=mean,
        moving_variance=var,
        gamma=arr("gamma"),
        beta=arr("beta"),
        epsilon=float(cfg.get("epsilon", 1e-3)),
        momentum=float(cfg.get("momentum", 0.99)),
        trainable=bool(getattr(layer, "trainable", True)),
    )


def _trainable_bias_scan(model: Any) -> tuple[int, int]:
    """(trainable bias vectors, those exactly zero): Keras initialises biases to zero, and
    any optimizer step with a non-zero gradient moves them off it."""
    n = zero = 0
    for layer in _walk_layers(model):
        if hasattr(layer, "layers") or type(layer).__name__ == "BatchNormalization":
            continue
        bias = getattr(layer, "bias", None)
        if bias is None or not getattr(layer, "trainable", True):
            continue
        if not getattr(bias, "trainable", True):
            continue
        n += 1
        if not np.any(np.asarray(bias)):
            zero += 1
    return n, zero


def _weight_scan(model: Any) -> tuple[NonfiniteWeights, ...]:
    """NaN/Inf values per layer (the trainable biases are _trainable_bias_scan's)."""
    nonfinite = []
    for layer in _walk_layers(model):
        if hasattr(layer, "layers"):
            continue
        n_nan = n_inf = n_vals = 0
        for w in layer.weights:
            a = np.asarray(w)
            if a.dtype.kind != "f":
                continue
            n_vals += a.size
            n_nan += int(np.isnan(a).sum())
            n_inf += int(np.isinf(a).sum())
        if n_nan or n_inf:
            nonfinite.append(NonfiniteWeights(layer.name, n_nan, n_inf, n_vals))
    return tuple(nonfinite)


def _input_normalizers(model: Any, names: list[str]) -> dict[str, Normalizer | None]:
    """For each input, the normalising layer it meets before any layer with weights."""
    children: dict[int, list[Any]] = {}
    for layer in model.layers:
        for p in _parents(layer):
            children.setdefault(id(p), []).append(layer)
    out: dict[str, Normalizer | None] = {}
    for name, t in zip(names, model.inputs):
        src = _producer(t)
        firsts = _first_layers(src, children, depth=0) if src is not None else []
        norms = [f for f in firsts if type(f).__name__ in NORMALIZERS]
        out[name] = _normalizer(norms[0]) if firsts and len(norms) == len(firsts) else None
    return out


def _input_consumers(model: Any, names: list[str]) -> dict[str, tuple[str, ...]]:
    """For each input, the class names of the first layers that transform it: lets the data
    checks tell token ids (an Embedding) from measured values."""
    children: dict[int, list[Any]] = {}
    for layer in model.layers:
        for p in _parents(layer):
            children.setdefault(id(p), []).append(layer)
    out: dict[str, tuple[str, ...]] = {}
    for name, t in zip(names, model.inputs):
        src = _producer(t)
        firsts = _first_layers(src, children, depth=0) if src is not None else []
        out[name] = tuple(type(f).__name__ for f in firsts)
    return out


def _first_layers(layer: Any, children: dict[int, list[Any]], depth: int) -> list[Any]:
    """The first non-transparent layers downstream of `layer`."""
    if depth > 30:
        return []
    found: list[Any] = []
    for child in children.get(id(layer), []):
        cls = type(child).__name__
        if cls in TRANSPARENT:
            found.extend(_first_layers(child, children, depth + 1))
        elif hasattr(child, "layers") and getattr(child, "layers", None):
            first = _first_inner(child)
            found.append(first if first is not None else child)
        else:
            found.append(child)
    return found


def _first_inner(model: Any) -> Any:
    for layer in model.layers:
        if type(layer).__name__ not in TRANSPARENT:
            return _first_inner(layer) if hasattr(layer, "layers") else layer
    return None


def _normalizer(layer: Any) -> Normalizer:
    cls = type(layer).__name__
    params: dict[str, Any] = {}
    try:
        cfg = layer.get_config()
    except Exception:
        cfg = {}
    if cls == "Rescaling":
        params = {"scale": cfg.get("scale"), "offset": cfg.get("offset")}
    elif cls == "Normalization":
        for key in ("mean", "variance"):
            v = getattr(layer, key, None)
            if v is not None:
                params[key] = np.asarray(v, dtype=np.float64).reshape(-1)
        params["invert"] = bool(cfg.get("invert", False))
    return Normalizer(layer.name, cls, params)
