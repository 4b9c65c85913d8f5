"""The data-side causes: each fires on a real fixture built for it, stays quiet on the healthy
ones, and each threshold is tested on both sides with Evidence built from real numbers."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from conftest import HEALTHY_FIXTURES, diagnose_fixture, fixture_path

from kerasdoctor.checks import (
    class_imbalance,
    input_scale,
    input_scale_mismatch,
    label_permutation,
    nonfinite_inputs,
    preprocessing_mismatch,
    run_symptoms,
    sorted_labels,
)
from kerasdoctor.checks._data import JudgedInput
from kerasdoctor.checks.base import Context, NotApplicable
from kerasdoctor.experiments import balanced_accuracy, noise_bound
from kerasdoctor.findings import Severity
from kerasdoctor.model_facts import ModelFacts, Normalizer
from kerasdoctor.probe import Evidence, InputStats, Moments, OutputStats

MY_IDS = (
    "class-imbalance",
    "input-scale",
    "input-scale-mismatch",
    "nonfinite-inputs",
    "sorted-labels",
    "label-permutation",
    "preprocessing-mismatch",
)
HEALTHY = [
    *HEALTHY_FIXTURES,
]


# ------------------------------------------------------------------ building Evidence by hand


def stats(name: str, x: np.ndarray, integral: bool | None = None) -> InputStats:
    """InputStats of an array, accumulated exactly as the probe does (per last-axis feature)."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1, 1) if x.ndim == 1 else x.reshape(-1, x.shape[-1])
    m = Moments.empty(flat.shape[1])
    m.update(flat)
    if integral is None:
        fin = flat[np.isfinite(flat)]
        integral = bool(np.all(fin == np.round(fin)))
    return InputStats(name, tuple(x.shape[1:]), "float32", m, integral)


def context(
    conf: np.ndarray | list[list[int]],
    inputs: list[InputStats] | None = None,
    normalizers: dict[str, Normalizer | None] | None = None,
    consumers: dict[str, tuple[str, ...]] | None = None,
    constant: bool = False,
    n_outputs: int | None = None,
    overrides: dict[str, dict[str, float]] | None = None,
    y_true: np.ndarray | None = None,
) -> Context:
    """A Context whose predictions follow the confusion matrix (rows labels, cols predictions).

    Probabilities vary from row to row (so constant-output stays quiet) unless `constant`.
    """
    conf = np.asarray(conf, dtype=np.int64)
    k = conf.shape[0]
    yt, yp = [], []
    for i in range(k):
        for j in range(k):
            yt += [i] * int(conf[i, j])
            yp += [j] * int(conf[i, j])
    y, p = np.array(yt, np.int64), np.array(yp, np.int64)
    if y_true is not None:  # rows in this order; only for a perfect (diagonal) model
        assert np.all(conf == np.diag(np.diag(conf)))
        assert np.array_equal(np.bincount(y_true, minlength=k), np.diag(conf))
        y = p = np.asarray(y_true, np.int64)
    n = y.size
    rng = np.random.default_rng(0)
    probs = 0.5 * np.eye(k)[p] + 0.5 * rng.dirichlet(np.ones(k), n)
    if constant:
        probs = np.tile(probs[:1], (n, 1))
    pm = Moments.empty(k)
    pm.update(probs)
    inputs = inputs or [stats("x", rng.normal(size=(n, 4)))]
    ev = Evidence(
        n_samples=n,
        n_classes=k,
        y_true=y,
        y_pred=p,
        confusion=conf,
        output=OutputStats("softmax", pm, pm),
        inputs=inputs,
    )
    facts = ModelFacts(
        format="keras",
        n_outputs=n_outputs or k,
        head="softmax",
        head_layer="head",
        head_axis_size=k,
        loss=None,
        loss_from_logits=None,
        loss_config=None,
        compiled=False,
        optimizer=None,
        optimizer_iterations=None,
        input_normalizers=normalizers or {st.name: None for st in inputs},
        input_consumers=consumers or {st.name: ("Dense",) for st in inputs},
    )
    ctx = Context(ev, facts, [str(i) for i in range(k)], overrides=overrides or {})
    run_symptoms(ctx)  # phase 1: cause checks receive the symptom findings
    return ctx


GOOD = [[90, 5, 5], [5, 90, 5], [5, 5, 90]]  # a working 3-class model
COLLAPSED = [[300, 0, 0], [300, 0, 0], [300, 0, 0]]  # everything called class 0


def one(findings: list[Any]) -> Any:
    assert len(findings) == 1, findings
    return findings[0]


# ------------------------------------------------------------------ quiet on healthy fixtures


@pytest.mark.parametrize(("model", "data"), HEALTHY)
def test_quiet_on_healthy_fixtures(model: str, data: str) -> None:
    report = diagnose_fixture(model, data)
    mine = [f for f in report.findings if f.id in MY_IDS]
    assert not report.errors
    if model == "healthy_imbalanced.keras":  # 500/400/50, every class learned: context only
        f = one(mine)
        assert f.id == "class-imbalance" and f.severity is Severity.INFO
        assert f.evidence["predictions_follow_prior"] is False
    else:
        assert mine == [], [(f.id, f.severity.value, f.title) for f in mine]


# ------------------------------------------------------------------ class-imbalance


def test_imbalance_fires_as_root_on_collapsed_fixture() -> None:
    report = diagnose_fixture("collapsed.keras", "collapsed.npz")
    f = report.finding("class-imbalance")
    assert f is not None and f.severity is Severity.ERROR  # orange (120) is never predicted
    assert f.evidence["rare_classes"] == [1, 2]
    assert {r["class"] for r in f.evidence["under_predicted"]} == {1, 2}
    assert f.evidence["over_predicted_class"] == 0
    assert report.root_cause is not None and report.root_cause.id == "class-imbalance"
    commands = [fx.command for fx in f.fixes if fx.command]
    assert any(c.startswith("kerasdoctor fix --class-weights ") for c in commands)
    assert any("--oversample" in c and "--output balanced.npz" in c for c in commands)
    assert any(
        c.startswith("kerasdoctor fix --retrain ") and "collapsed_fixed.keras" in c
        for c in commands
    )
    # the features separate the dropped classes: the repair comes first; an output-bias
    # initialisation (for a head about to train) is no advice for this trained model
    assert commands[0].startswith("kerasdoctor fix --repair ") and "--cause class-imbalance" \
        in commands[0] and "collapsed_repaired.keras" in commands[0]
    assert not any("--output-bias" in c for c in commands)
    assert any(fx.code and "FocalCrossentropy" in fx.code for fx in f.fixes)


def test_imbalance_fires_on_binary_model_that_never_predicts_the_rare_class() -> None:
    f = diagnose_fixture("data_rare_binary.keras", "data_rare_binary.npz").finding(
        "class-imbalance"
    )
    assert f is not None and f.severity is Severity.ERROR
    assert f.evidence["imbalance_ratio"] == pytest.approx(19.0)
    assert any(fx.code and "BinaryFocalCrossentropy" in fx.code for fx in f.fixes)


def _imbalanced(common: int, rare: int, rare_predicted: int) -> list[list[int]]:
    """Two classes; the rare one gets `rare_predicted` predictions, all correct, the rest of
    its samples go to the common class, which the model always gets right."""
    return [[common, 0], [rare - rare_predicted, rare_predicted]]


def test_imbalance_ratio_threshold_both_sides() -> None:
    assert class_imbalance.SPEC.thresholds["min_ratio"].value == 3.0
    fired = one(class_imbalance.run(context(_imbalanced(300, 100, 40))))  # 3.0:1
    assert fired.severity is Severity.WARNING
    assert class_imbalance.run(context(_imbalanced(299, 100, 40))) == []  # 2.99:1


def test_imbalance_under_ratio_threshold_both_sides() -> None:
    at = one(class_imbalance.run(context(_imbalanced(1000, 100, 50))))  # half its share
    assert at.severity is Severity.WARNING and at.evidence["predictions_follow_prior"]
    above = one(class_imbalance.run(context(_imbalanced(1000, 100, 51))))
    assert above.severity is Severity.INFO and not above.evidence["predictions_follow_prior"]


def test_imbalance_error_when_rare_class_never_predicted_min_support_both_sides() -> None:
    never = one(class_imbalance.run(context(_imbalanced(1000, 5, 0))))
    assert never.severity is Severity.ERROR
    tiny = one(class_imbalance.run(context(_imbalanced(1000, 4, 0))))  # too few to judge
    assert tiny.severity is Severity.INFO


def test_imbalance_is_not_the_cause_when_a_common_class_is_dropped_too() -> None:
    conf = [[1000, 0, 0], [1000, 0, 0], [100, 0, 0]]  # the common class 1 is lost as well
    f = one(class_imbalance.run(context(conf)))
    assert f.severity is Severity.INFO
    assert f.evidence["under_predicted_common_classes"] == [1]


def test_imbalance_is_not_the_cause_when_the_surplus_goes_to_a_rare_class() -> None:
    conf = [[300, 0, 300], [0, 20, 80], [0, 0, 100]]  # rare class 2 swallows the others
    f = one(class_imbalance.run(context(conf)))
    assert f.severity is Severity.INFO


def test_imbalance_is_context_when_the_output_is_constant() -> None:
    conf = _imbalanced(1000, 100, 0)  # the same counts as an error above...
    assert one(class_imbalance.run(context(conf))).severity is Severity.ERROR
    frozen = one(class_imbalance.run(context(conf, constant=True)))  # ...but a dead network
    assert frozen.severity is Severity.INFO and frozen.evidence["output_constant"]


def test_imbalance_quiet_on_balanced_labels_even_when_collapsed() -> None:
    assert class_imbalance.run(context(COLLAPSED)) == []


# ------------------------------------------------------------------ input-scale


def test_input_scale_fires_on_unnormalised_tabular_fixture() -> None:
    report = diagnose_fixture("data_tabular_thousands.keras", "data_tabular_thousands.npz")
    f = report.finding("input-scale")
    assert f is not None and f.severity is Severity.ERROR  # the output froze
    row = one(f.evidence["inputs"])
    x = np.load(fixture_path("data_tabular_thousands.npz"))["x"].astype(np.float64)
    assert row["rms"] == pytest.approx(float(np.sqrt((x**2).mean())), rel=1e-6)
    assert "magnitude" in row["reasons"] and not row["raw_pixels"]
    assert "constant-output" in f.evidence["symptoms"]
    code = f.fixes[0].code
    assert code is not None and "np.array([" in code and "(x - mean) / std" in code
    assert report.root_cause is not None and report.root_cause.id == "input-scale"


def test_input_scale_names_raw_pixels() -> None:
    f = diagnose_fixture("data_raw_pixels.keras", "data_raw_pixels.npz").finding("input-scale")
    assert f is not None and f.severity is not Severity.INFO
    row = one(f.evidence["inputs"])
    assert row["raw_pixels"] and row["integral"] and row["max"] <= 255
    assert f.fixes[0].code is not None and "/ 255.0" in f.fixes[0].code


def test_input_scale_flags_only_the_unscaled_input_of_a_multi_input_model() -> None:
    f = diagnose_fixture("data_multi_scale.keras", "data_multi_scale.npz").finding("input-scale")
    assert f is not None and f.severity is Severity.WARNING
    assert [r["input"] for r in f.evidence["inputs"]] == ["depth"]


def _signs(n: int, f: int, scale: np.ndarray | float, seed: int = 0) -> np.ndarray:
    """+-scale per feature in a checkerboard (n even): every feature has mean exactly 0 and
    RMS exactly scale[j], so thresholds can be tested right at their value. `seed` shifts
    the pattern by a row."""
    sign = (-1.0) ** (np.arange(n)[:, None] + np.arange(f)[None, :] + seed)
    return sign * np.asarray(scale, dtype=np.float64)


def test_input_scale_magnitude_threshold_both_sides() -> None:
    assert input_scale.SPEC.thresholds["max_rms"].value == 10.0
    n = int(np.sum(GOOD))
    at = one(input_scale.run(context(GOOD, [stats("x", _signs(n, 4, 10.0))])))
    assert at.severity is Severity.INFO  # the predictions are fine: a risk, not the failure
    assert at.evidence["inputs"][0]["rms"] == pytest.approx(10.0)
    assert input_scale.run(context(GOOD, [stats("x", _signs(n, 4, 9.9))])) == []


def test_input_scale_spread_threshold_both_sides() -> None:
    n = int(np.sum(GOOD))
    # one feature at 100 among 119 at 1: the pooled RMS stays 9.2 (below max_rms)
    wide = _signs(n, 120, np.r_[1.0, 100.0, np.ones(118)])
    f = one(input_scale.run(context(GOOD, [stats("x", wide)])))
    row = f.evidence["inputs"][0]
    assert row["reasons"] == ["feature-spread"] and row["feature_spread"] == 100.0
    assert row["largest_features"][0]["feature"] == 1
    narrow = _signs(n, 120, np.r_[1.0, 99.0, np.ones(118)])
    assert input_scale.run(context(GOOD, [stats("x", narrow)])) == []


def test_input_scale_severity_follows_the_symptoms() -> None:
    n = int(np.sum(COLLAPSED))
    big = [stats("x", _signs(n, 4, 50.0))]
    assert one(input_scale.run(context(COLLAPSED, big))).severity is Severity.WARNING
    frozen = context(COLLAPSED, big, constant=True)
    assert one(input_scale.run(frozen)).severity is Severity.ERROR


def test_input_scale_skips_inputs_the_model_normalises_or_reads_as_indices() -> None:
    n = int(np.sum(COLLAPSED))
    big = [stats("x", _signs(n, 4, 50.0))]
    rescaled = {"x": Normalizer("rescaling", "Rescaling", {"scale": 0.02, "offset": 0.0})}
    assert input_scale.run(context(COLLAPSED, big, normalizers=rescaled)) == []
    tokens = {"x": ("Embedding",)}
    assert input_scale.run(context(COLLAPSED, big, consumers=tokens)) == []


# ------------------------------------------------------------------ input-scale-mismatch


def test_scale_mismatch_fires_on_rgb_plus_depth_fixture() -> None:
    report = diagnose_fixture("data_multi_scale.keras", "data_multi_scale.npz")
    f = report.finding("input-scale-mismatch")
    assert f is not None and f.severity is Severity.WARNING
    assert f.evidence["largest_input"] == "depth" and f.evidence["smallest_input"] == "rgb"
    assert f.evidence["ratio"] > 1000
    assert {r["input"] for r in f.evidence["inputs"]} == {"rgb", "depth"}
    assert "norm_depth.adapt(depth_train)" in (f.fixes[0].code or "")
    assert report.root_cause is not None and report.root_cause.id == "input-scale-mismatch"


def test_scale_mismatch_ratio_threshold_both_sides() -> None:
    assert input_scale_mismatch.SPEC.thresholds["max_ratio"].value == 100.0
    n = int(np.sum(GOOD))
    at = [stats("a", _signs(n, 2, 1.0)), stats("b", _signs(n, 2, 100.0, seed=1))]
    f = one(input_scale_mismatch.run(context(GOOD, at)))
    assert f.evidence["ratio"] == pytest.approx(100.0) and f.severity is Severity.INFO
    below = [stats("a", _signs(n, 2, 1.0)), stats("b", _signs(n, 2, 99.0, seed=1))]
    assert input_scale_mismatch.run(context(GOOD, below)) == []


def test_scale_mismatch_counts_the_models_own_rescaling() -> None:
    n = int(np.sum(GOOD))
    ins = [stats("a", _signs(n, 2, 1.0)), stats("b", _signs(n, 2, 1000.0, seed=1))]
    rescaled = {"a": None, "b": Normalizer("r", "Rescaling", {"scale": 0.001, "offset": 0.0})}
    assert input_scale_mismatch.run(context(GOOD, ins, normalizers=rescaled)) == []
    ji = JudgedInput(1, ins[1], rescaled["b"])
    assert input_scale_mismatch.effective_rms(ji) == pytest.approx(1.0)
    assert input_scale_mismatch.run(context(GOOD, ins)) != []  # without it: 1000x


def test_scale_mismatch_needs_several_inputs() -> None:
    n = int(np.sum(GOOD))
    with pytest.raises(NotApplicable, match="fewer than two inputs"):  # skipped, not passed
        input_scale_mismatch.run(context(GOOD, [stats("x", _signs(n, 2, 1e4))]))


# ------------------------------------------------------------------ nonfinite-inputs


def test_nonfinite_inputs_fires_on_nan_fixture_with_exact_counts() -> None:
    report = diagnose_fixture("data_nan.keras", "data_nan.npz")
    f = report.finding("nonfinite-inputs")
    assert f is not None and f.severity is Severity.ERROR
    x = np.load(fixture_path("data_nan.npz"))["x"]
    row = one(f.evidence["inputs"])
    assert row["n_nan"] == int(np.isnan(x).sum()) and row["n_inf"] == int(np.isinf(x).sum())
    assert row["features"][0]["feature"] == 2  # the column that lost its values
    bad_rows = int((~np.isfinite(x)).any(axis=1).sum())
    assert row["rows_affected_at_least"] <= bad_rows <= row["rows_affected_at_most"]
    assert report.root_cause is not None and report.root_cause.id == "nonfinite-inputs"


def test_nonfinite_inputs_one_value_is_enough() -> None:
    n = int(np.sum(GOOD))
    x = np.random.default_rng(0).normal(size=(n, 3))
    assert nonfinite_inputs.run(context(GOOD, [stats("x", x)])) == []
    x[7, 1] = np.inf
    f = one(nonfinite_inputs.run(context(GOOD, [stats("x", x)])))
    assert f.severity is Severity.ERROR and f.evidence["n_nonfinite"] == 1
    assert f.evidence["inputs"][0]["features"] == [{"feature": 1, "n_nan": 0, "n_inf": 1}]


# ------------------------------------------------------------------ sorted-labels


def test_sorted_labels_fires_on_sorted_fixture() -> None:
    f = diagnose_fixture("data_sorted.keras", "data_sorted.npz").finding("sorted-labels")
    assert f is not None and f.severity is Severity.INFO
    assert f.evidence["runs"] == 3
    assert f.evidence["tail_label_counts"] == [0, 0, 120]  # validation_split=0.2: all grape
    assert f.evidence["never_trained_classes"] == []  # 80 grapes remain before the cut


def test_sorted_labels_names_classes_validation_split_would_never_train_on() -> None:
    y = np.repeat([0, 1, 2], [100, 100, 50])  # the last 20% (50 rows) is all of class 2
    f = one(sorted_labels.run(context([[100, 0, 0], [0, 100, 0], [0, 0, 50]], y_true=y)))
    assert f.evidence["never_trained_classes"] == [2]
    assert f.evidence["tail_label_counts"] == [0, 0, 50]


def test_expected_runs_matches_random_orders() -> None:
    counts = np.array([30, 20, 10])
    y = np.repeat(np.arange(3), counts)
    rng = np.random.default_rng(0)
    sims = [1 + np.count_nonzero(np.diff(rng.permutation(y))) for _ in range(4000)]
    assert sorted_labels.expected_runs(counts) == pytest.approx(np.mean(sims), rel=0.01)


def _runs(n_per_class: int, runs: int) -> np.ndarray:
    """Two classes of n_per_class rows each, in exactly `runs` alternating blocks."""
    blocks0, blocks1 = (runs + 1) // 2, runs // 2
    size0 = np.diff(np.linspace(0, n_per_class, blocks0 + 1).astype(int))
    size1 = np.diff(np.linspace(0, n_per_class, blocks1 + 1).astype(int))
    out: list[int] = []
    for i in range(runs):
        out += [i % 2] * int(size0[i // 2] if i % 2 == 0 else size1[i // 2])
    return np.array(out)


def test_sorted_labels_runs_threshold_both_sides() -> None:
    # 50 + 50 rows: E[R] = 1 + 99 * (1 - 4900/9900) = 51, so the bar is 25.5 runs
    conf = [[50, 0], [0, 50]]
    at = one(sorted_labels.run(context(conf, y_true=_runs(50, 25))))
    assert at.evidence["runs"] == 25 and at.evidence["expected_runs"] == pytest.approx(51.0)
    assert sorted_labels.run(context(conf, y_true=_runs(50, 26))) == []


def test_sorted_labels_min_samples_both_sides() -> None:
    assert one(sorted_labels.run(context([[25, 0], [0, 25]], y_true=np.repeat([0, 1], 25))))
    assert sorted_labels.run(context([[25, 0], [0, 24]], y_true=np.repeat([0, 1], [25, 24]))) == []


def test_sorted_labels_quiet_on_one_class() -> None:
    assert sorted_labels.run(context([[100, 0], [0, 0]])) == []


# ------------------------------------------------------------------ label-permutation


def test_label_permutation_fires_on_alphabetical_class_order() -> None:
    report = diagnose_fixture("data_permuted.keras", "data_permuted.npz")
    f = report.finding("label-permutation")
    assert f is not None and f.severity is Severity.ERROR
    assert f.evidence["output_unit_to_label"] == [0, 2, 1]
    assert f.evidence["class_names_in_model_order"] == ["apple", "orange", "grape"]
    assert f.evidence["accuracy_relabelled"] == pytest.approx(1.0)
    assert report.root_cause is not None and report.root_cause.id == "label-permutation"


@pytest.mark.parametrize(
    ("model", "data"),
    [
        ("collapsed.keras", "collapsed.npz"),
        ("data_multi_scale.keras", "data_multi_scale.npz"),
        ("data_tabular_thousands.keras", "data_tabular_thousands.npz"),
    ],
)
def test_label_permutation_quiet_on_merely_bad_models(model: str, data: str) -> None:
    assert diagnose_fixture(model, data).finding("label-permutation") is None


def test_label_permutation_error_removed_threshold_both_sides() -> None:
    assert label_permutation.SPEC.thresholds["min_error_removed"].value == 0.5
    inverted = [[300, 700], [700, 300]]  # 30% -> 70%: removes 0.4/0.7 = 57% of the error
    f = one(label_permutation.run(context(inverted, n_outputs=1)))
    assert f.evidence["error_removed"] == pytest.approx(0.4 / 0.7)
    assert f.fixes[0].command and "fix --repair" in f.fixes[0].command  # measured: repair first
    assert "> 0.5" in (f.fixes[1].code or "")
    weak = [[350, 650], [650, 350]]  # 35% -> 65%: removes 46%
    assert label_permutation.run(context(weak, n_outputs=1)) == []


def test_label_permutation_noise_threshold_both_sides() -> None:
    # fully inverted, but on 4 vs 2 samples per class: noise 0.25 (bar 0.75) vs 0.35 (1.06)
    assert one(label_permutation.run(context([[0, 4], [4, 0]])))
    assert label_permutation.run(context([[0, 2], [2, 0]])) == []


def test_label_permutation_quiet_on_spread_out_errors() -> None:
    rng = np.random.default_rng(1)
    noisy = rng.integers(20, 40, size=(5, 5))  # a near-random model, best matching by chance
    assert label_permutation.run(context(noisy)) == []
    assert label_permutation.run(context(COLLAPSED)) == []
    assert label_permutation.run(context(GOOD)) == []


# ------------------------------------------------------------------ preprocessing-mismatch


def test_preprocessing_sweep_finds_the_missing_division_by_255() -> None:
    report = diagnose_fixture("data_raw_pixels.keras", "data_raw_pixels.npz")
    f = report.finding("preprocessing-mismatch")
    assert f is not None and f.severity is Severity.ERROR
    best = f.evidence["restoring_transform"]
    assert best["transform"] == "/255" and best["balanced_accuracy"] > 0.9
    assert f.evidence["sweep"]["baseline_balanced_accuracy"] < 0.4
    assert f.fixes[0].command and "--cause preprocessing-mismatch" in f.fixes[0].command
    assert f.fixes[1].code == "x = x / 255.0"
    assert report.root_cause is not None and report.root_cause.id == "preprocessing-mismatch"


def test_preprocessing_double_rescaling_found_statically_and_by_the_sweep() -> None:
    f = diagnose_fixture("data_double_rescale.keras", "data_double_rescale.npz").finding(
        "preprocessing-mismatch"
    )
    assert f is not None and f.severity is Severity.ERROR
    static = one(f.evidence["static"])
    assert static["kind"] == "rescaling" and static["scale"] == pytest.approx(1 / 255)
    assert static["range_ratio"] < 0.01
    assert f.evidence["restoring_transform"]["transform"] == "x255"


def test_preprocessing_normalization_adapted_on_other_data() -> None:
    report = diagnose_fixture("data_norm_other.keras", "data_norm_other.npz")
    f = report.finding("preprocessing-mismatch")
    assert f is not None and f.severity is Severity.ERROR  # the output is constant
    static = one(f.evidence["static"])
    assert static["kind"] == "normalization"
    assert static["median_std_after_layer"] < 0.1  # standardised data / raw-data std
    # the data arrives standardised: undoing that with the layer's own adapted mean and
    # variance hands the model what it was trained on, and the experiment shows it
    assert "Normalization statistics" in f.evidence["restoring_transform"]["description"]
    exp = f.evidence["experiment"]
    assert exp["balanced_accuracy_after"] - exp["balanced_accuracy_before"] > 0.3
    assert report.root_cause is not None and report.root_cause.id == "preprocessing-mismatch"


@pytest.mark.parametrize(
    ("model", "data"),
    [
        ("data_multi_scale.keras", "data_multi_scale.npz"),  # trained on this data: the
        ("data_tabular_thousands.keras", "data_tabular_thousands.npz"),  # sweep only nudges
        ("collapsed.keras", "collapsed.npz"),
    ],
)
def test_preprocessing_quiet_on_models_trained_on_the_data(model: str, data: str) -> None:
    assert diagnose_fixture(model, data).finding("preprocessing-mismatch") is None


def _sweep(base: float, best: float, noise: float = 0.0) -> dict[str, Any]:
    trial = {"transform": "/255", "inputs": ["x"], "balanced_accuracy": best, "code": "x"}
    return {"baseline_balanced_accuracy": base, "noise": noise, "trials": [trial]}


def test_preprocessing_restoring_thresholds_both_sides() -> None:
    spec = preprocessing_mismatch.SPEC.thresholds
    args = (spec["min_gain"].value, spec["noise_z"].value, spec["min_error_removed"].value)
    assert args == (0.10, 3.0, 0.5)
    restore = preprocessing_mismatch.restoring_transform
    # min_error_removed: 0.5 -> 0.75 removes exactly half the error; 0.74 does not
    assert restore(_sweep(0.5, 0.75), *args) is not None
    assert restore(_sweep(0.5, 0.74), *args) is None
    # min_gain: 0.75 -> 0.875 is a 0.125 gain; 0.875 -> 0.9375 only 0.0625 (half the error)
    assert restore(_sweep(0.75, 0.875), *args) is not None
    assert restore(_sweep(0.875, 0.9375), *args) is None
    # noise: the same 0.125 gain is not enough when 3 x noise is 0.15
    assert restore(_sweep(0.75, 0.875, noise=0.041), *args) is not None
    assert restore(_sweep(0.75, 0.875, noise=0.05), *args) is None


def _judged(x: np.ndarray, norm: Normalizer) -> JudgedInput:
    return JudgedInput(0, stats("x", x), norm)


def test_rescaling_range_threshold_both_sides() -> None:
    r = Normalizer("rescaling", "Rescaling", {"scale": 1 / 255, "offset": 0.0})
    lin = np.linspace(0, 1, 100)[:, None]
    assert preprocessing_mismatch.rescaling_mismatch(_judged(lin, r), 10) is not None  # [0,1]
    assert preprocessing_mismatch.rescaling_mismatch(_judged(lin * 25.5, r), 10) is not None
    assert preprocessing_mismatch.rescaling_mismatch(_judged(lin * 26, r), 10) is None
    assert preprocessing_mismatch.rescaling_mismatch(_judged(lin * 255, r), 10) is None
    assert preprocessing_mismatch.rescaling_mismatch(_judged(lin * 2549, r), 10) is None
    assert preprocessing_mismatch.rescaling_mismatch(_judged(lin * 2550, r), 10) is not None


def test_normalization_thresholds_both_sides() -> None:
    layer = Normalizer(
        "norm", "Normalization", {"mean": np.array([100.0]), "variance": np.array([400.0])}
    )
    z = np.tile([1.0, -1.0], 200)[:, None]  # mean exactly 0, std exactly 1

    def test(x: np.ndarray) -> Any:
        return preprocessing_mismatch.normalization_mismatch(_judged(x, layer), 10, 3)

    assert test(100 + 20 * z) is None  # the data the layer was adapted on
    standardised = test(z)  # already standardised: std 1/20 after the layer
    assert standardised is not None and standardised["median_std_after_layer"] == 0.05
    assert test(160 + 20 * z) is not None  # 3 std away
    assert test(159 + 20 * z) is None
    assert test(100 + 2.0 * z) is not None  # std 0.1 after the layer
    assert test(100 + 2.1 * z) is None


def test_balanced_accuracy_and_its_noise() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    bal = balanced_accuracy(y, np.array([0, 0, 1, 1, 1, 1]), 2)
    assert bal == pytest.approx(0.75)
    # the noise of a difference of two balanced accuracies, every recall at the worst 0.5
    assert noise_bound(np.bincount(y)) == pytest.approx(
        np.sqrt(2) * 0.5 * np.sqrt(1 / 4 + 1 / 2) / 2)


# ------------------------------------------------------------------ every finding is usable


@pytest.mark.parametrize(
    "name",
    [
        "data_raw_pixels",
        "data_double_rescale",
        "data_multi_scale",
        "data_tabular_thousands",
        "data_norm_other",
        "data_nan",
        "data_permuted",
        "data_sorted",
        "data_rare_binary",
    ],
)
def test_findings_are_complete_and_serialisable(name: str) -> None:
    report = diagnose_fixture(f"{name}.keras", f"{name}.npz")
    mine = [f for f in report.findings if f.id in MY_IDS]
    assert mine and not report.errors
    for f in mine:
        d = f.to_dict()
        json.dumps(d, allow_nan=False)
        assert d["title"] and d["detail"] and d["evidence"] and d["fixes"]
        assert all(fx["command"] or fx["code"] for fx in d["fixes"])


def test_specs_document_every_threshold() -> None:
    for mod in (
        class_imbalance,
        input_scale,
        input_scale_mismatch,
        nonfinite_inputs,
        sorted_labels,
        label_permutation,
        preprocessing_mismatch,
    ):
        text = mod.SPEC.explain()
        for name, t in mod.SPEC.thresholds.items():
            assert name in mod.SPEC.measures, (mod.SPEC.id, name)
            assert len(t.why) > 40 and name in text
