"""DoctorCallback in real (tiny, seeded) training runs: stop, restore, logs, advice, gates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import fixture_path

import kerasdoctor
from kerasdoctor.class_weights import class_weights, python_line


def _blobs(counts: list[int], sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(counts), 6)) * sep / np.sqrt(6)
    x = np.concatenate([c + rng.normal(size=(n, 6)) for c, n in zip(centers, counts)])
    y = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
    order = rng.permutation(len(y))
    return x[order].astype("float32"), y[order]


def _model(n_inputs: int, n_classes: int, lr: float) -> Any:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((n_inputs,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(n_classes, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _run(callback: object | None, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> Any:
    cbs = [callback] if callback is not None else []
    return _model(x.shape[1], int(y.max()) + 1, lr).fit(
        x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=cbs, shuffle=False
    )


def _recorder() -> Any:
    """A callback that records the weights at each epoch end; listed before the
    DoctorCallback, it sees them before any restore."""
    import keras

    class Recorder(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.by_epoch: dict[int, list[np.ndarray]] = {}

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.by_epoch[epoch] = self.model.get_weights()

    return Recorder()


def _blow_up(**cb_options: Any) -> tuple[Any, Any, Any, Any, list[str], tuple[Any, Any]]:
    """The seeded collapse of a user's learning-rate schedule: SGD at 0.1 learns 3 blobs
    (one rare) for 3 epochs, then the rate jumps to 10 and the network dies into one class."""
    import keras

    x, y = _blobs([300, 300, 60], sep=5.0, seed=1)
    n_val = len(y) // 5
    xt, yt, xv, yv = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]
    messages: list[str] = []
    cb = kerasdoctor.DoctorCallback(
        (xv, yv), on_collapse="stop", patience=2, log=messages.append, train_labels=yt, **cb_options
    )
    weights = _recorder()
    model = _model(6, 3, 0.1)
    schedule = keras.callbacks.LearningRateScheduler(lambda e, lr: 0.1 if e < 3 else 10.0)
    history = model.fit(
        xt,
        yt,
        epochs=10,
        batch_size=32,
        verbose=0,
        shuffle=False,
        validation_data=(xv, yv),
        callbacks=[schedule, weights, cb],
    )
    return model, cb, history.history, weights, messages, (xv, yv)


def test_callback_stops_a_collapsing_run_within_patience() -> None:
    x, y = _blobs([570, 30], sep=0.5, seed=1)  # 95/5, overlapping: the minority vanishes
    messages: list[str] = []
    cb = kerasdoctor.DoctorCallback((x, y), on_collapse="stop", patience=2, log=messages.append)
    history = _run(cb, x, y, epochs=10, lr=0.05)
    assert len(history.epoch) == 2  # stopped after 2 collapsed epochs, not 10
    assert cb.stopped_epoch == 1
    assert any("prediction-collapse" in m for m in messages)
    assert history.history["kd_collapsed"] == [1.0, 1.0]
    assert history.history["kd_unhealthy"] == [1.0, 1.0]
    assert history.history["kd_missing_classes"][-1] >= 1.0
    # no epoch was healthy: nothing to restore, and the log says so
    assert cb.restored_epoch is None and "no checked epoch was healthy" in messages[-1]
    # the features do not separate the classes, so imbalance is not the cause: no weights
    assert cb.class_weight is None and not any("class_weight" in m for m in messages)


def test_callback_leaves_a_healthy_run_untouched() -> None:
    x, y = _blobs([200, 200, 200], sep=6.0, seed=2)
    messages: list[str] = []
    cb = kerasdoctor.DoctorCallback((x, y), on_collapse="stop", patience=1, log=messages.append)
    with_cb = _run(cb, x, y, epochs=4, lr=0.1).history
    without = _run(None, x, y, epochs=4, lr=0.1).history
    assert messages == []
    assert set(with_cb) - set(without) == {
        "kd_balanced_accuracy",
        "kd_missing_classes",
        "kd_dominant_share",
        "kd_collapsed",
        "kd_unhealthy",
    }
    np.testing.assert_allclose(with_cb["loss"], without["loss"], rtol=1e-6)
    assert with_cb["kd_collapsed"] == [0.0] * 4 and with_cb["kd_unhealthy"] == [0.0] * 4
    assert len(cb.seconds) == 4
    assert cb.best_epoch == int(np.argmax(with_cb["kd_balanced_accuracy"]))


def test_callback_every_n_epochs() -> None:
    x, y = _blobs([100, 100], sep=6.0, seed=3)
    cb = kerasdoctor.DoctorCallback((x, y), every=2, log=lambda m: None)
    _run(cb, x, y, epochs=4, lr=0.1)
    assert sorted(cb.reports) == [1, 3]


def test_stopping_restores_the_best_epochs_weights() -> None:
    model, cb, hist, weights, messages, (xv, yv) = _blow_up()
    bacc = hist["kd_balanced_accuracy"]
    healthy = [e for e, u in enumerate(hist["kd_unhealthy"]) if not u]
    best = max(healthy, key=lambda e: bacc[e])
    last = len(bacc) - 1
    print(
        f"\nkd_balanced_accuracy {np.round(bacc, 3).tolist()}, "
        f"val_accuracy {np.round(hist['val_accuracy'], 3).tolist()}; "
        f"best epoch {best + 1}, stopped at epoch {last + 1}"
    )
    assert cb.stopped_epoch == last < 9  # stopped, not run to the end
    assert cb.best_epoch == best == cb.restored_epoch
    assert bacc[best] > bacc[last] + 0.2  # the collapse cost a lot; restoring is worth it
    for now, then in zip(model.get_weights(), weights.by_epoch[best], strict=True):
        np.testing.assert_array_equal(now, then)
    # the model scores what the best epoch scored, not what the last one did
    after = kerasdoctor.diagnose(model, xv, yv).metrics.balanced_accuracy
    assert after == pytest.approx(bacc[best]) and after == pytest.approx(max(bacc))
    _, val_acc = model.evaluate(xv, yv, verbose=0)
    assert val_acc == pytest.approx(hist["val_accuracy"][best], abs=1e-6)
    assert val_acc > hist["val_accuracy"][last]
    assert f"restored the weights of epoch {best + 1}" in messages[-1]


def test_restore_can_be_turned_off_and_can_monitor_val_loss() -> None:
    model, cb, hist, weights, _, _ = _blow_up(restore_best_weights=False)
    assert cb.restored_epoch is None
    for now, then in zip(model.get_weights(), weights.by_epoch[cb.stopped_epoch], strict=True):
        np.testing.assert_array_equal(now, then)

    model, cb, hist, weights, _, _ = _blow_up(monitor="val_loss")
    healthy = [e for e, u in enumerate(hist["kd_unhealthy"]) if not u]
    best = min(healthy, key=lambda e: hist["val_loss"][e])
    assert cb.mode == "min" and cb.restored_epoch == best
    for now, then in zip(model.get_weights(), weights.by_epoch[best], strict=True):
        np.testing.assert_array_equal(now, then)


def test_collapse_and_missing_classes_are_logged_apart() -> None:
    _, cb, hist, _, _, _ = _blow_up()
    rows = list(zip(hist["kd_collapsed"], hist["kd_missing_classes"], hist["kd_unhealthy"]))
    # in this run: epoch 1, the rare class not learned yet (missing, no collapse); epoch 4,
    # the rate jump sends every prediction to one class; epoch 5, one class still missing
    assert (1.0, 2.0, 1.0) in rows
    assert (0.0, 1.0, 1.0) in rows  # a missing class alone is no collapse, but unhealthy
    for epoch, report in cb.reports.items():
        assert hist["kd_collapsed"][epoch] == float(
            report.finding("prediction-collapse") is not None
        )
        missing = report.finding("missing-classes")
        assert hist["kd_missing_classes"][epoch] == (
            missing.evidence["n_missing"] if missing is not None else 0
        )


def _check_fixture(name: str, **options: Any) -> tuple[Any, list[str], dict[str, float]]:
    """One epoch-end check of a fixture model, as fit would call it."""
    import keras

    with np.load(fixture_path(f"{name}.npz")) as d:
        x, y = d["x"], d["y"]
    model = keras.saving.load_model(fixture_path(f"{name}.keras"))
    messages: list[str] = []
    cb = kerasdoctor.DoctorCallback((x, y), log=messages.append, **options)
    cb.set_model(model)
    logs: dict[str, float] = {}
    cb.on_epoch_end(0, logs)
    return cb, messages, logs


def test_imbalance_advice_is_class_weights_to_paste() -> None:
    import keras

    with np.load(fixture_path("collapsed.npz")) as d:
        x, y = d["x"], d["y"]
    y_train = np.concatenate([y, y[y == 0]])  # the training labels differ from validation
    cb, messages, _ = _check_fixture("collapsed", train_labels=y_train)
    assert cb.reports[0].root_cause.id == "class-imbalance"
    text = messages[0]
    expected = python_line(class_weights(y_train))
    assert "computed from the training labels (train_labels" in text
    assert expected in text and "model.fit(..., class_weight=class_weight)" in text
    assert "ARRAYS" not in text and "kerasdoctor fix" not in text
    # the printed line runs and is what model.fit takes
    scope: dict[str, Any] = {}
    exec(expected, scope)  # noqa: S102
    assert scope["class_weight"] == pytest.approx(cb.class_weight)
    assert cb.class_weight_source == "train_labels"
    model = keras.saving.load_model(fixture_path("collapsed.keras"))
    model.fit(x, y, epochs=1, verbose=0, class_weight=scope["class_weight"])

    cb, messages, _ = _check_fixture("collapsed")
    assert "computed from the validation labels" in messages[0]
    assert python_line(class_weights(y)) in messages[0]
    assert cb.class_weight_source == "validation_labels"


@pytest.mark.parametrize("name", ["model_dead_relu", "data_raw_pixels"])
def test_other_causes_get_their_own_first_fix(name: str) -> None:
    cb, messages, logs = _check_fixture(name, train_labels=np.array([0, 0, 1]))
    root = cb.reports[0].root_cause
    assert root is not None and root.id != "class-imbalance"
    text = messages[0]
    assert f"most likely cause: {root.id}" in text
    assert root.fixes[0].summary in text
    for line in (root.fixes[0].code or "").splitlines():
        assert line in text
    assert "class_weight" not in text and cb.class_weight is None
    assert "ARRAYS" not in text and "IN-MEMORY MODEL" not in text
    assert logs["kd_collapsed"] == 1.0 and logs["kd_unhealthy"] == 1.0


def test_missing_class_without_collapse() -> None:
    # a ReLU head: one class of five never predicted, the rest spread out
    _, _, logs = _check_fixture("model_relu_head")
    assert logs["kd_collapsed"] == 0.0
    assert logs["kd_missing_classes"] >= 1.0 and logs["kd_unhealthy"] == 1.0


def test_gates_use_the_shared_vocabulary() -> None:
    x, y = _blobs([200, 200, 200], sep=6.0, seed=2)
    messages: list[str] = []
    cb = kerasdoctor.DoctorCallback(
        (x, y),
        on_collapse="stop",
        patience=1,
        min_recall=0.999,
        start_from_epoch=2,
        log=messages.append,
    )
    hist = _run(cb, x, y, epochs=6, lr=0.1).history
    # the gate fails from the first epoch, but counts only from epoch 3 on
    assert hist["kd_unhealthy"][:3] == [1.0, 1.0, 1.0] and cb.stopped_epoch == 2
    assert hist["kd_collapsed"] == [0.0, 0.0, 0.0]
    assert "quality-gate" in messages[0]

    cb = kerasdoctor.DoctorCallback(
        (x, y), min_balanced_accuracy=0.5, fail_on="warning", log=lambda m: None
    )
    assert cb.gates == {"min_balanced_accuracy": 0.5} and cb.fail_on == "warning"


def test_fail_on_never_logs_but_never_stops() -> None:
    x, y = _blobs([570, 30], sep=0.5, seed=1)
    messages: list[str] = []
    cb = kerasdoctor.DoctorCallback(
        (x, y), on_collapse="stop", patience=1, fail_on="never", log=messages.append
    )
    hist = _run(cb, x, y, epochs=3, lr=0.05).history
    assert len(hist["loss"]) == 3 and cb.stopped_epoch is None
    assert hist["kd_unhealthy"] == [0.0] * 3 and hist["kd_collapsed"] == [1.0] * 3
    assert len(messages) == 3  # the sick epochs are still said


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"fail_on": "sometimes"}, "fail_on must be one of"),
        ({"min_recall": 1.5}, "min_recall must be between 0 and 1"),
        ({"monitor": "kd_dominant_share"}, "pass mode="),
        ({"mode": "up"}, "mode must be"),
        ({"on_collapse": "panic"}, "on_collapse"),
        ({"start_from_epoch": -1}, "start_from_epoch"),
    ],
)
def test_bad_settings_fail_before_training(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        kerasdoctor.DoctorCallback((np.zeros((4, 6)), np.array([0, 1, 0, 1])), **options)
