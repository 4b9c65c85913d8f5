"""Models no check was tuned on: ordinary Keras models trained here on scikit-learn's bundled
datasets (offline). Healthy ones must get no warning; sick ones the right root cause."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import kerasdoctor

pytestmark = pytest.mark.slow


def _split(x: np.ndarray, y: np.ndarray, test: float = 0.3) -> tuple[Any, ...]:
    from sklearn.model_selection import train_test_split

    return train_test_split(x.astype("float32"), y, test_size=test, random_state=0, stratify=y)


def _mlp(n_in: int, n_out: int, act: str = "softmax", pre: Any = None) -> Any:
    import keras

    layers = [keras.Input((n_in,))] + ([pre] if pre is not None else [])
    layers += [keras.layers.Dense(32, activation="relu"), keras.layers.Dense(n_out, activation=act)]
    return keras.Sequential(layers)


def _fit(
    model: Any, x: np.ndarray, y: np.ndarray, epochs: int, loss: Any = None, opt: Any = "adam"
) -> Any:
    model.compile(
        opt,
        loss
        or (
            "binary_crossentropy"
            if model.outputs[0].shape[-1] == 1
            else "sparse_categorical_crossentropy"
        ),
    )
    model.fit(x, y, epochs=epochs, verbose=0, batch_size=32)
    return model


def digits_scaled() -> tuple[Any, ...]:
    from sklearn.datasets import load_digits

    xtr, xte, ytr, yte = _split(*load_digits(return_X_y=True))
    return _fit(_mlp(64, 10), xtr / 16, ytr, 30), xte / 16, yte


def digits_raw_pixels_trained_raw() -> tuple[Any, ...]:
    from sklearn.datasets import load_digits

    xtr, xte, ytr, yte = _split(*load_digits(return_X_y=True))
    return _fit(_mlp(64, 10), xtr, ytr, 30), xte, yte  # unscaled, but trained so: it works


def digits_cnn_batchnorm() -> tuple[Any, ...]:
    import keras
    from sklearn.datasets import load_digits

    xtr, xte, ytr, yte = _split(*load_digits(return_X_y=True))
    xtr, xte = (xtr / 16).reshape(-1, 8, 8, 1), (xte / 16).reshape(-1, 8, 8, 1)
    m = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    return _fit(m, xtr, ytr, 25), xte, yte


def iris_logits() -> tuple[Any, ...]:
    import keras
    from sklearn.datasets import load_iris

    xtr, xte, ytr, yte = _split(*load_iris(return_X_y=True), test=0.4)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return _fit(_mlp(4, 3, act="linear"), xtr, ytr, 150, loss=loss), xte, yte


def wine_normalization_layer() -> tuple[Any, ...]:
    import keras
    from sklearn.datasets import load_wine

    xtr, xte, ytr, yte = _split(*load_wine(return_X_y=True), test=0.4)
    norm = keras.layers.Normalization()
    norm.adapt(xtr)
    return _fit(_mlp(13, 3, pre=norm), xtr, ytr, 60), xte, yte


def cancer_rare_positives_learned() -> tuple[Any, ...]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    keep = (y == 1) | (np.random.default_rng(0).random(len(y)) < 0.15)
    xtr, xte, ytr, yte = _split(x[keep], y[keep], test=0.4)
    return _fit(_mlp(30, 1, act="sigmoid"), xtr, ytr, 60), xte, yte


def cancer_unscaled_brief_sgd() -> tuple[Any, ...]:
    import keras
    from sklearn.datasets import load_breast_cancer

    xtr, xte, ytr, yte = _split(*load_breast_cancer(return_X_y=True), test=0.4)
    return _fit(_mlp(30, 1, act="sigmoid"), xtr, ytr, 5, opt=keras.optimizers.SGD(0.01)), xte, yte


def wine_trained_standardised_fed_raw() -> tuple[Any, ...]:
    from sklearn.datasets import load_wine

    xtr, xte, ytr, yte = _split(*load_wine(return_X_y=True), test=0.4)
    mu, sd = xtr.mean(0), xtr.std(0)
    return _fit(_mlp(13, 3), (xtr - mu) / sd, ytr, 80), xte, yte


def iris_labels_in_another_order() -> tuple[Any, ...]:
    from sklearn.datasets import load_iris

    xtr, xte, ytr, yte = _split(*load_iris(return_X_y=True), test=0.4)
    return _fit(_mlp(4, 3), xtr, ytr, 150), xte, np.array([2, 0, 1])[yte]


HEALTHY: list[Callable[[], tuple[Any, ...]]] = [
    digits_scaled,
    digits_raw_pixels_trained_raw,
    digits_cnn_batchnorm,
    iris_logits,
    wine_normalization_layer,
    cancer_rare_positives_learned,
]
SICK: dict[Callable[[], tuple[Any, ...]], str] = {
    cancer_unscaled_brief_sgd: "input-scale",
    wine_trained_standardised_fed_raw: "preprocessing-mismatch",
    iris_labels_in_another_order: "label-permutation",
}


@pytest.mark.parametrize("make", HEALTHY, ids=lambda f: f.__name__)
def test_healthy_models_get_no_warning(make: Callable[[], tuple[Any, ...]]) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model, x, y = make()
    report = kerasdoctor.diagnose(model, x, y)
    loud = [(f.id, f.severity.value) for f in report.findings if f.severity.value != "info"]
    assert loud == [], loud
    assert report.metrics.balanced_accuracy > 0.8


@pytest.mark.parametrize("make", list(SICK), ids=lambda f: f.__name__)
def test_sick_models_get_the_right_root_cause(make: Callable[[], tuple[Any, ...]]) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model, x, y = make()
    report = kerasdoctor.diagnose(model, x, y)
    assert report.verdict == "sick"
    assert report.root_cause is not None and report.root_cause.id == SICK[make]
