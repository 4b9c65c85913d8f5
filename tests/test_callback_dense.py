"""DoctorCallback and kerasdoctor.diagnose() on dense and multi-label models (issue 16): a tiny
U-Net, a token tagger with a padding mask and a multi-label model, each trained for an epoch or
two with the callback on its validation data (seeded, tiny shapes: seconds in all)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import kerasdoctor
from kerasdoctor.callback import LOG_KEYS
from kerasdoctor.errors import InputError


def _segmentation(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16 images of noise with one or two bright squares; the squares are class 1 or 2
    (by brightness), the rest background: about 90% of the pixels."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 16, 16, 1), dtype=np.float32) * 0.3
    y = np.zeros((n, 16, 16), np.int64)
    for i in range(n):
        for _ in range(int(rng.integers(1, 3))):
            c = int(rng.integers(1, 3))
            r0, c0 = rng.integers(0, 13, 2)
            y[i, r0 : r0 + 3, c0 : c0 + 3] = c
            x[i, r0 : r0 + 3, c0 : c0 + 3, 0] = 0.5 + 0.4 * (c - 1)
    return x, y


def _unet() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1))
    d1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    d2 = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(
        keras.layers.MaxPooling2D()(d1)
    )
    up = keras.layers.UpSampling2D()(d2)
    out = keras.layers.Conv2D(3, 1, activation="softmax")(keras.layers.Concatenate()([up, d1]))
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    return model


def test_a_collapsed_unet_is_caught_and_stopped() -> None:
    x, y = _segmentation(320, seed=0)
    xv, yv = _segmentation(40, seed=1)
    messages: list[str] = []
    cb = kerasdoctor.DoctorCallback(
        (xv, yv),
        on_collapse="stop",
        patience=1,
        log=messages.append,
        class_names=["background", "dim", "bright"],
    )
    history = _unet().fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[cb])
    # one epoch of a U-Net on 90% background: everything is background
    report = cb.reports[0]
    assert cb.task == "dense"
    assert report.metrics.task == "dense"
    assert report.metrics.positions == 40 * 16 * 16
    assert report.finding("prediction-collapse") is not None
    assert report.finding("missing-classes") is not None
    assert cb.stopped_epoch == 0 and len(history.history["loss"]) == 1
    for key in LOG_KEYS:
        assert key in history.history, key
    assert history.history["kd_collapsed"] == [1.0] and history.history["kd_unhealthy"] == [1.0]
    assert history.history["kd_dominant_share"][0] > 0.95
    text = "\n".join(messages)
    assert "epoch 1: prediction-collapse" in text and "missing-classes" in text
    assert "stopping training after 1 unhealthy epoch" in text
    # the callback keeps no sample masks in its per-epoch reports (memory)
    assert getattr(report, "samples", ()) == ()
    # kerasdoctor.diagnose on the same model and data: the full dense diagnosis
    full = kerasdoctor.diagnose(cb.model, xv, yv)
    assert full.metrics.task == "dense" and not full.passed
    assert full.metrics.confusion_matrix == report.metrics.confusion_matrix
    assert len(getattr(full, "samples", ())) == 6


def test_the_dense_advice_is_per_position_weights() -> None:
    """The U-Net fixture (class-imbalance is its root cause) under the callback: the advice
    is the dense fix (a sample_weight array), not a class_weight dict, which Keras refuses
    for dense targets."""
    import keras
    from conftest import fixture_path

    data = np.load(fixture_path("dense_unet_collapsed.npz"))
    model = keras.models.load_model(fixture_path("dense_unet_collapsed.keras"), compile=False)
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")  # frozen
    messages: list[str] = []
    cb = kerasdoctor.DoctorCallback(
        (data["x"], data["y"]), log=messages.append, train_labels=data["y"]
    )
    model.fit(data["x"][:8], data["y"][:8], epochs=1, verbose=0, callbacks=[cb])
    report = cb.reports[0]
    assert report.root_cause is not None and report.root_cause.id == "class-imbalance"
    text = "\n".join(messages)
    assert "most likely cause: class-imbalance" in text
    assert "sample_weight=sample_weight" in text and "class_weight = {" not in text
    assert cb.class_weight is None


def test_a_tagger_with_a_padding_mask_counts_only_the_tokens() -> None:
    import keras

    rng = np.random.default_rng(0)
    n, t, vocab = 200, 12, 30
    lengths = rng.integers(4, t + 1, n)
    mask = np.arange(t)[None, :] < lengths[:, None]
    x = rng.integers(1, vocab, (n, t)) * mask  # 0 = padding
    y = np.where(x >= 25, 2, np.where(x >= 20, 1, 0)) * mask  # tags: O, B, I by token id
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((t,), dtype="int32"),
            keras.layers.Embedding(vocab, 8),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    xv, yv, mv = x[150:], y[150:], mask[150:]
    messages: list[str] = []
    cb = kerasdoctor.DoctorCallback((xv, yv, mv), log=messages.append)
    history = model.fit(
        x[:150],
        y[:150],
        sample_weight=mask[:150].astype("float32"),
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[cb],
    )
    assert cb.task == "dense"
    report = cb.reports[1]
    assert report.metrics.task == "dense"
    assert report.metrics.positions == int(mv.sum())  # padding left out
    assert report.data.positions_excluded == int((~mv).sum())
    assert history.history["kd_balanced_accuracy"][1] > 0.9  # an easy task, learnt
    assert history.history["kd_unhealthy"] == [0.0, 0.0] and messages == []
    # a float sample_weight array of the labels' shape works as the mask (nonzero counts)
    cb2 = kerasdoctor.DoctorCallback((xv, yv, mv.astype("float32")), log=messages.append)
    model.fit(x[:10], y[:10], epochs=1, verbose=0, callbacks=[cb2])
    assert cb2.reports[0].metrics.positions == int(mv.sum())
    # the padding as --ignore-label instead of a mask: the same positions count
    void = np.where(mv, yv, 7)
    cb3 = kerasdoctor.DoctorCallback((xv, void), ignore_label=7, log=messages.append)
    model.fit(x[:10], y[:10], epochs=1, verbose=0, callbacks=[cb3])
    assert cb3.reports[0].metrics.positions == int(mv.sum())
    assert kerasdoctor.diagnose(model, xv, void, ignore_label=7).metrics.task == "dense"


def test_a_multi_label_model_is_diagnosed_per_label() -> None:
    import keras

    rng = np.random.default_rng(0)
    n, f, k = 400, 8, 4
    x = rng.normal(size=(n, f)).astype("float32")
    logits = x[:, :k] * 2.0 + np.array([0.0, 0.0, -1.0, -3.5])  # label 3: rare
    y = (logits > rng.logistic(size=(n, k))).astype(np.int64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((f,)), keras.layers.Dense(k, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    messages: list[str] = []
    cb = kerasdoctor.DoctorCallback(
        (x[300:], y[300:]), log=messages.append, class_names=["a", "b", "c", "rare"]
    )
    history = model.fit(x[:300], y[:300], epochs=2, batch_size=32, verbose=0, callbacks=[cb])
    assert cb.task == "multilabel"
    report = cb.reports[1]
    assert report.metrics.task == "multilabel"
    assert [c.name for c in report.metrics.per_class] == ["a", "b", "c", "rare"]
    for key in LOG_KEYS:
        assert len(history.history[key]) == 2, key
    assert 0.0 <= history.history["kd_balanced_accuracy"][1] <= 1.0
    # only the checks that read the pass: no model-level experiment ran
    assert {o.check_id for o in report.outcomes if o.status != "skipped"} <= {
        "prediction-collapse",
        "missing-classes",
        "class-imbalance",
        "decision-threshold",
        "output-activation",
        "loss-mismatch",
    }
    full = kerasdoctor.diagnose(model, x[300:], y[300:])
    assert full.metrics.task == "multilabel"
    assert full.metrics.per_class[3].support == int(y[300:, 3].sum())


def test_wrong_dense_data_fails_before_the_first_epoch() -> None:
    x, y = _segmentation(8, seed=0)
    model = _unet()
    cb = kerasdoctor.DoctorCallback((x, y[:, :8, :8]))  # masks of the wrong size
    with pytest.raises(InputError, match=r"\(N, 8, 8\)"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[cb])
    assert cb.reports == {}
    # a mask is for dense labels: with a single-label model it is refused, not ignored
    import keras

    clf = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    clf.compile("adam", "sparse_categorical_crossentropy")
    xs, ys = np.zeros((6, 3), "float32"), np.array([0, 1] * 3)
    cb = kerasdoctor.DoctorCallback((xs, ys, np.ones(6)))
    with pytest.raises(ValueError, match="mask is for a dense model"):
        clf.fit(xs, ys, epochs=1, verbose=0, callbacks=[cb])
    # masks given to a model with one prediction per sample: the labels' own error
    cb = kerasdoctor.DoctorCallback((xs, np.zeros((6, 4, 4), np.int64)))
    with pytest.raises(InputError, match=r"expected \(N,\) or \(N, K\)"):
        clf.fit(xs, ys, epochs=1, verbose=0, callbacks=[cb])
