"""The output-layer bias that makes an untrained head predict the label prior.

A head whose bias is the log of the label prior starts training where a model that knows
nothing but the class frequencies would be: the first steps are not spent learning the
imbalance, and the initial loss is the prior's entropy instead of log K (Karpathy, "A Recipe
for Training Neural Networks": "init well").
"""

from __future__ import annotations

import numpy as np

from kerasdoctor.fix.results import BiasHead, OutputBias

# A class absent from the labels has share 0 and log(0) = -inf, which would freeze its unit.
# It gets the share of half a sample instead: the smallest prior the data cannot rule out.
ABSENT_PSEUDO_COUNT = 0.5


def prior_bias(y: np.ndarray, n_classes: int, names: list[str] | None = None) -> OutputBias:
    """The bias of each kind of head that puts the model's initial output at the label prior.

    softmax (K units, or a linear head trained from logits): b_k = log(count_k / N); any
    constant may be added to all of them. One sigmoid unit (binary labels): b = log(pos / neg).
    K sigmoid units (one-vs-rest): b_k = log(count_k / (N - count_k)).
    """
    counts = np.bincount(y, minlength=n_classes).astype(np.int64)
    n = int(counts.sum())
    absent = [int(k) for k in np.flatnonzero(counts == 0)]
    smoothed = np.where(counts == 0, ABSENT_PSEUDO_COUNT, counts).astype(np.float64)
    share = smoothed / n
    heads = [
        _head(
            "softmax",
            n_classes,
            [float(v) for v in np.log(share)],
            "log(count_k / N)",
            f"Dense({n_classes}, activation='softmax'), or a linear head of "
            f"{n_classes} units trained with from_logits=True",
        )
    ]
    if n_classes == 2:
        heads.append(
            _head(
                "sigmoid",
                1,
                [float(np.log(smoothed[1] / smoothed[0]))],
                "log(positives / negatives)",
                "Dense(1, activation='sigmoid'), or one linear unit trained with from_logits=True",
            )
        )
    else:
        rest = np.maximum(n - smoothed, ABSENT_PSEUDO_COUNT)
        heads.append(
            _head(
                "sigmoid",
                n_classes,
                [float(v) for v in np.log(smoothed / rest)],
                "log(count_k / (N - count_k))",
                f"Dense({n_classes}, activation='sigmoid') (one-vs-rest)",
            )
        )
    return OutputBias(
        label_counts=tuple(counts.tolist()),
        prior=tuple(float(c / n) for c in counts),
        class_names=None if names is None else tuple(names),
        absent_classes=tuple(absent),
        heads=tuple(heads),
        note="computed from the labels alone: the bias a head should START training with; "
        "a trained model's bias also absorbs what its features learned",
    )


def _head(head: str, units: int, bias: list[float], formula: str, for_: str) -> BiasHead:
    return BiasHead(head, units, tuple(bias), formula, for_, snippet(head, units, bias, formula))


def _vector(values: list[float]) -> str:
    inner = ", ".join(f"{v:.6g}" for v in values)
    return f"[{inner}]"


def snippet(act: str, units: int, values: list[float], formula: str) -> str:
    """Python that sets this bias on a new output layer and on an existing model's head."""
    bias = _vector(values)
    return (
        f"# {act} head, {units} unit(s): bias = {formula}\n"
        "import keras\n"
        "import numpy as np\n"
        "\n"
        "# a new output layer\n"
        f"output = keras.layers.Dense({units}, activation={act!r},\n"
        f"    bias_initializer=keras.initializers.Constant({bias}))\n"
        "\n"
        "# or the output layer of an existing model (before training it further)\n"
        "head = model.layers[-1]  # the Dense layer that produces the output\n"
        "kernel, _ = head.get_weights()\n"
        f"head.set_weights([kernel, np.array({bias}, dtype='float32')])\n"
    )


def python_text(result: OutputBias) -> str:
    """The snippets of every head, ready to paste (`--format python`)."""
    return "\n".join(h.code for h in result.heads)
