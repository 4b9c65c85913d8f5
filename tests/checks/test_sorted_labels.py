"""sorted-labels: rows ordered by class (far fewer label runs than a shuffle gives), and the
classes a validation_split tail would never train on."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import (
    assert_complete_and_serialisable,
    assert_quiet,
    assert_thresholds_documented,
    context,
    one,
)
from conftest import HEALTHY_FIXTURES, diagnose_fixture

from kerasdoctor.checks import sorted_labels
from kerasdoctor.findings import Severity

ID = "sorted-labels"


@pytest.mark.parametrize(("model", "data"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model: str, data: str) -> None:
    assert_quiet(diagnose_fixture(model, data), ID)


def test_sorted_labels_fires_on_sorted_fixture() -> None:
    f = diagnose_fixture("data_sorted.keras", "data_sorted.npz").finding("sorted-labels")
    assert f is not None and f.severity is Severity.INFO
    assert f.evidence["runs"] == 3
    assert f.evidence["tail_label_counts"] == [0, 0, 120]  # validation_split=0.2: all grape
    assert f.evidence["never_trained_classes"] == []  # 80 grapes remain before the cut


@pytest.mark.unit
def test_sorted_labels_names_classes_validation_split_would_never_train_on() -> None:
    y = np.repeat([0, 1, 2], [100, 100, 50])  # the last 20% (50 rows) is all of class 2
    f = one(sorted_labels.run(context([[100, 0, 0], [0, 100, 0], [0, 0, 50]], y_true=y)))
    assert f.evidence["never_trained_classes"] == [2]
    assert f.evidence["tail_label_counts"] == [0, 0, 50]


@pytest.mark.unit
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


@pytest.mark.unit
def test_sorted_labels_runs_threshold_both_sides() -> None:
    # 50 + 50 rows: E[R] = 1 + 99 * (1 - 4900/9900) = 51, so the bar is 25.5 runs
    conf = [[50, 0], [0, 50]]
    at = one(sorted_labels.run(context(conf, y_true=_runs(50, 25))))
    assert at.evidence["runs"] == 25 and at.evidence["expected_runs"] == pytest.approx(51.0)
    assert sorted_labels.run(context(conf, y_true=_runs(50, 26))) == []


@pytest.mark.unit
def test_sorted_labels_min_samples_both_sides() -> None:
    assert one(sorted_labels.run(context([[25, 0], [0, 25]], y_true=np.repeat([0, 1], 25))))
    assert sorted_labels.run(context([[25, 0], [0, 24]], y_true=np.repeat([0, 1], [25, 24]))) == []


@pytest.mark.unit
def test_sorted_labels_quiet_on_one_class() -> None:
    assert sorted_labels.run(context([[100, 0], [0, 0]])) == []


@pytest.mark.parametrize("name", ["data_sorted"])
def test_findings_are_complete_and_serialisable(name: str) -> None:
    assert_complete_and_serialisable(diagnose_fixture(f"{name}.keras", f"{name}.npz"), ID)


@pytest.mark.unit
def test_spec_documents_every_threshold() -> None:
    assert_thresholds_documented(sorted_labels.SPEC)
