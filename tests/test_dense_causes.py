"""Model-level causes in dense and multi-label diagnoses (issue 16, "the rest as they apply";
kerasdoctor/task_causes.py): inputs prepared differently from training, BatchNorm statistics,
a softmax on one unit, each found by re-running the model on a bounded sample and scoring the
task's own balanced accuracy (over positions, or macro over labels).

Fixtures (fixtures/recipes_dense_causes.py): dense_preproc_raw (BatchNorm U-Net trained on
x / 255, evaluated on raw pixels), dense_softmax_one (Conv2D(1, softmax) under binary
cross-entropy), dense_bn_short (BatchNorm U-Net after 75 steps at momentum 0.99), ml_unscaled
(multi-label head trained on standardised features, evaluated raw). Quiet cases: collapsed
models whose cause is elsewhere (the pixel prior, a threshold), and healthy models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import fixture_path, run_cli

from kerasdoctor.experiments import ExperimentResult, TaskExperiments, restores
from kerasdoctor.task_causes import DenseTask, MultiLabelTask

_JSON: dict[str, Any] = {}
MODEL_CAUSES = {"preprocessing-mismatch", "batchnorm-statistics", "single-unit-softmax"}


def diagnosis(name: str) -> Any:
    if name not in _JSON:
        res = run_cli(
            "diagnose",
            fixture_path(f"{name}.keras"),
            fixture_path(f"{name}.npz"),
            "--format",
            "json",
        )
        _JSON[name] = (res.exit_code, res.json())
    return _JSON[name]


def _finding(r: Any, fid: str) -> Any:
    return next(f for f in r["findings"] if f["id"] == fid)


def test_raw_pixels_into_a_model_trained_on_scaled_ones() -> None:
    code, r = diagnosis("dense_preproc_raw")
    assert code == 1 and r["root_cause"] == "preprocessing-mismatch"
    collapse = _finding(r, "prediction-collapse")
    # the collapse is onto a shape class, not the majority background
    assert collapse["evidence"]["class"] != "background"
    assert collapse["evidence"]["others_lost"] > 0.5
    f = _finding(r, "preprocessing-mismatch")
    exp = f["evidence"]["experiment"]
    assert f["evidence"]["transform"] == "x / 255.0"
    # back to what the model scores on scaled images (0.76 measured by the recipe)
    assert exp["balanced_accuracy_before"] < 0.5 < 0.7 < exp["balanced_accuracy_after"]
    # first the repair inside the model (fix.task_repair), then the data's preparation
    assert f["fixes"][0]["command"].endswith(
        "--cause preprocessing-mismatch --output dense_preproc_raw_repaired.keras"
    )
    assert "x = x / 255.0" in f["fixes"][1]["code"]
    # re-estimated BatchNorm statistics absorb the scale too: context, not the cause
    bn = _finding(r, "batchnorm-statistics")
    assert bn["severity"] == "info" and not bn["fixes"]
    assert r["chain"][0] == "preprocessing-mismatch"


def test_softmax_on_one_unit_segmenter() -> None:
    code, r = diagnosis("dense_softmax_one")
    assert code == 1 and r["root_cause"] == "single-unit-softmax"
    f = _finding(r, "single-unit-softmax")
    exp = f["evidence"]["experiment"]
    assert f["evidence"]["rescued"] is True
    assert exp["balanced_accuracy_before"] == pytest.approx(0.5)
    assert exp["balanced_accuracy_after"] > 0.8
    assert "--cause single-unit-softmax" in f["fixes"][0]["command"]
    assert "sigmoid" in f["fixes"][1]["code"]
    assert _finding(r, "prediction-collapse")["evidence"]["predicted_share"] == 1.0


def test_batchnorm_statistics_of_a_short_training() -> None:
    code, r = diagnosis("dense_bn_short")
    assert code == 1 and r["root_cause"] == "batchnorm-statistics"
    exp = _finding(r, "batchnorm-statistics")["evidence"]["experiment"]
    assert exp["balanced_accuracy_after"] - exp["balanced_accuracy_before"] >= 0.2
    assert "preprocessing-mismatch" not in {f["id"] for f in r["findings"]}


@pytest.mark.parametrize("name", ["dense_unet_collapsed", "dense_binary_collapsed"])
def test_quiet_when_the_cause_is_elsewhere(name: str) -> None:
    """Symptoms, so the experiments run (and are logged), but none restores the model."""
    _, r = diagnosis(name)
    assert not MODEL_CAUSES & {f["id"] for f in r["findings"]}
    keys = {e.get("key", "") for e in r.get("experiments", [])}
    assert any(k.startswith("preprocess:") for k in keys)
    outcomes = {c["id"]: c["status"] for c in r["checks"]}
    assert outcomes["preprocessing-mismatch"] == "passed"


@pytest.mark.parametrize("name", ["dense_unet_ok", "tag_ok"])
def test_healthy_models_run_no_experiment(name: str) -> None:
    code, r = diagnosis(name)
    assert code == 0 and r["findings"] == []
    assert not any(e.get("key", "").startswith("preprocess:") for e in r.get("experiments", []))


def test_ignored_causes_are_not_run(tmp_path: Any) -> None:
    cfg = tmp_path / "kd.toml"
    cfg.write_text('[tool.kerasdoctor]\nignore = {"single-unit-softmax" = "known"}\n')
    res = run_cli(
        "diagnose",
        fixture_path("dense_softmax_one.keras"),
        fixture_path("dense_softmax_one.npz"),
        "--format",
        "json",
        "--config",
        str(cfg),
    )
    r = res.json()
    assert "single-unit-softmax" not in {f["id"] for f in r["findings"]}
    outcomes = {c["id"]: c["status"] for c in r["checks"]}
    assert outcomes["single-unit-softmax"] == "skipped"


# -- the scoring and the bar, without a model


@pytest.mark.unit
def test_dense_task_scores_balanced_accuracy_over_counted_positions() -> None:
    y = np.array([[[0, 0], [1, 2]], [[0, 1], [1, 1]]])
    counted = np.ones_like(y, bool)
    counted[1, 1, 1] = False  # not counted: its wrong answer must not matter
    raw = np.zeros((*y.shape, 3), np.float32)
    raw[..., 0] = 1.0  # everything predicted class 0 ...
    raw[0, 1, 0] = [0, 1, 0]  # ... but one class-1 position right
    t = DenseTask(y, counted, 3, 3, "softmax")
    total = t.tally(np.arange(2), raw)
    # recall: class 0 2/2, class 1 1/3, class 2 0/1
    assert t.score(total) == pytest.approx((1 + 1 / 3 + 0) / 3)


@pytest.mark.unit
def test_multilabel_task_scores_macro_balanced_accuracy() -> None:
    y = np.array([[1, 0], [0, 0], [1, 1], [0, 1]], np.float32)
    raw = np.array([[0.9, 0.1], [0.2, 0.1], [0.4, 0.8], [0.1, 0.2]], np.float32)
    t = MultiLabelTask(y, "sigmoid")
    # label 0: tpr 1/2, tnr 2/2 -> 0.75; label 1: tpr 1/2, tnr 2/2 -> 0.75
    assert t.score(t.tally(np.arange(4), raw)) == pytest.approx(0.75)


@pytest.mark.unit
def test_restore_bar() -> None:
    """The one rule (experiments.restores), as the dense and multi-label causes use it: no
    row-noise term, so only the gain floor and the share of the error removed."""

    def trial(before: float, after: float) -> ExperimentResult:
        return ExperimentResult("k", "w", before, after, 64)

    assert restores(trial(0.40, 0.90), 0.10, 0.5)
    assert not restores(trial(0.40, 0.55), 0.10, 0.5)  # a nudge: removes 25% of the error
    assert not restores(trial(0.95, 0.99), 0.10, 0.5)  # below the gain floor
    assert not restores(trial(0.40, 0.90), 0.10, 0.5, noise_bar=0.6)  # a single-label bar


class _Scores:
    """A stand-in for the predictor: the 'model' outputs its input as its scores."""

    def run_batch(self, part: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(part[0], np.float32)]


def _service(budget_s: float = 120.0) -> TaskExperiments:
    # 20 rows, 2 labels; every score 0.2 x the label, so nothing is predicted on: 0.5
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 5, np.float32)
    task = MultiLabelTask(y, "sigmoid")
    return TaskExperiments(None, None, [0.2 * y], task, budget_s=budget_s, predictor=_Scores())


@pytest.mark.unit
def test_task_experiments_run_through_the_one_service() -> None:
    """A dense or multi-label re-run is a typed ExperimentResult of the one experiment
    service: a cure gives its after-figure, a transform that fails is recorded as failed
    with its reason, and every result is logged for the report."""
    exps = _service()
    assert exps.before == pytest.approx(0.5) and exps.rows == 20
    cured = exps.inputs(
        "preprocess:x:x5",
        "inputs 'x' transformed as x * 5.0",
        "X * 5.0",
        lambda part: [part[0] * 5.0],
    )
    assert isinstance(cured, ExperimentResult) and cured.ok and cured.code == "X * 5.0"
    assert cured.after == pytest.approx(1.0) and exps.restores(cured, 0.10, 0.5)

    def broken(part: list[np.ndarray]) -> list[np.ndarray]:
        raise ValueError("channel 9 does not exist")

    failed = exps.inputs("preprocess:x:bad", "a transform that fails", "X[..., 9]", broken)
    assert not failed.ok and failed.after is None and not exps.restores(failed, 0.10, 0.5)
    assert failed.error == "ValueError: channel 9 does not exist"
    log = exps.results()
    assert [e.key for e in log] == ["preprocess:x:x5", "preprocess:x:bad"]
    assert log[1] is failed and log[1].after is None
    assert "seconds" in log[1].to_dict(timing=True) and "seconds" not in log[1].to_dict()


@pytest.mark.unit
def test_task_experiments_stop_at_the_budget() -> None:
    """Once the time budget is spent, every further experiment is recorded as skipped for
    time (never run, never dropped from the log)."""
    exps = _service(budget_s=1e-9)
    first = exps.rerun("sigmoid-rescue", "the model re-run", lambda part: part[0] * 5.0)
    assert first.ok and exps.spent_s >= exps.budget_s
    ran: list[int] = []

    def counted(part: list[np.ndarray]) -> list[np.ndarray]:
        ran.append(1)
        return part

    later = exps.inputs("preprocess:x:x1", "inputs unchanged", "X", counted)
    assert not ran and later.after is None
    assert later.error == "skipped: the 1e-09 s budget is spent"
    assert [r.key for r in exps.results()] == ["sigmoid-rescue", "preprocess:x:x1"]


def test_multilabel_features_left_unstandardised() -> None:
    code, r = diagnosis("ml_unscaled")
    assert code == 1 and r["root_cause"] == "preprocessing-mismatch"
    f = _finding(r, "preprocessing-mismatch")
    exp = f["evidence"]["experiment"]
    assert r["metrics"]["task"] == "multilabel"
    assert exp["balanced_accuracy_before"] == pytest.approx(0.5, abs=0.01)
    assert exp["balanced_accuracy_after"] > 0.85  # the model's own figure on standardised rows
    assert f["evidence"]["transform"].startswith("(x - np.array(")
    # no per-label threshold cure was measured, so no class-imbalance story is told
    assert "class-imbalance" not in {g["id"] for g in r["findings"]}


def test_multilabel_threshold_model_blames_no_model_defect() -> None:
    _, r = diagnosis("ml_collapsed")
    assert r["root_cause"] == "decision-threshold"
    assert not MODEL_CAUSES & {f["id"] for f in r["findings"]}


def test_untrained_tagger_with_one_tag_per_row_is_dense_and_at_chance(tmp_path: Any) -> None:
    """(N, T) 0/1 tags with exactly one 1 per row look one-hot; a model whose output has
    positions makes them per-token labels. Untrained, it scores chance: never healthy."""
    import keras

    t = 12
    inp = keras.Input((t,), dtype="int32")
    h = keras.layers.Embedding(50, 8)(inp)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.save(tmp_path / "tagger.keras")
    rng = np.random.default_rng(0)
    y = np.zeros((200, t), np.int64)
    y[np.arange(200), rng.integers(0, t, 200)] = 1
    np.savez(tmp_path / "tags.npz", x=rng.integers(1, 50, (200, t)), y=y)
    res = run_cli(
        "diagnose", str(tmp_path / "tagger.keras"), str(tmp_path / "tags.npz"), "--format", "json"
    )
    r = res.json()
    assert res.exit_code == 1 and r["metrics"]["task"] == "dense"
    chance = _finding(r, "chance-level")
    assert chance["evidence"]["balanced_accuracy"] <= chance["evidence"]["bound"]
    assert chance["evidence"]["chance"] == 0.5


@pytest.mark.parametrize(
    "name", ["dense_unet_ok", "tag_ok", "ml_ok", "ml_collapsed", "dense_bn_short"]
)
def test_chance_level_quiet_on_models_with_signal(name: str) -> None:
    _, r = diagnosis(name)
    assert "chance-level" not in {f["id"] for f in r["findings"]}
