"""chance-level: balanced accuracy within the binomial bound of a label-blind guesser."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import HEALTHY_FIXTURES, diagnose_fixture

from kerasdoctor.experiments import chance_margin
from kerasdoctor.findings import Severity

ID = "chance-level"


def _finding(model: str, **options: object) -> object:
    report = diagnose_fixture(f"{model}.keras", f"{model}.npz", **options)
    return report.finding(ID)


@pytest.mark.unit
def test_the_bound_is_a_95_percent_bound_for_a_label_blind_guesser() -> None:
    """Simulated guessers that hand out classes in fixed shares, ignoring the labels: the
    balanced accuracy exceeds 1/K + margin in about 5% of draws, whatever the class sizes."""
    rng = np.random.default_rng(0)
    for support, share in [
        ([500, 400, 50], [0.6, 0.3, 0.1]),
        ([30, 30], [0.5, 0.5]),
        ([200, 20, 20, 5], [0.25, 0.25, 0.25, 0.25]),
    ]:
        support_a, share_a = np.array(support), np.array(share)
        y = np.repeat(np.arange(support_a.size), support_a)
        bar = 1 / support_a.size + chance_margin(support_a, share_a)
        over = 0
        for _ in range(4000):
            pred = rng.choice(support_a.size, size=y.size, p=share_a)
            rec = [(pred[y == c] == c).mean() for c in range(support_a.size)]
            over += float(np.mean(rec)) > bar
        assert 0.025 < over / 4000 < 0.075, (support, over / 4000)


def test_fires_on_images_and_labels_shuffled_apart() -> None:
    report = diagnose_fixture("scn_shuffled.keras", "scn_shuffled.npz")
    f = report.finding(ID)
    assert f is not None and f.severity is Severity.ERROR
    assert report.verdict == "sick"  # a model at chance is never healthy
    assert f.evidence["balanced_accuracy"] <= f.evidence["bound"]
    assert f.evidence["chance"] == pytest.approx(1 / 3)


def test_fires_below_the_majority_baseline_without_a_collapse() -> None:
    # two classes, both predicted, 55.6% balanced accuracy on a few hundred rows
    f = _finding("scn_norm_double")
    assert f is not None and f.evidence["predicted_counts"][0] > 0
    assert f.evidence["predicted_counts"][1] > 0


@pytest.mark.parametrize(("model", "data"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_models_including_a_mediocre_one(model: str, data: str) -> None:
    assert diagnose_fixture(model, data).finding(ID) is None


def test_z_threshold_both_sides() -> None:
    f = _finding("scn_shuffled")
    bal, chance, margin = (f.evidence[k] for k in ("balanced_accuracy", "chance", "margin"))
    z_at = (bal - chance) / (margin / 1.645)  # the z at which the bound meets the model
    assert z_at > 0
    assert _finding("scn_shuffled", thresholds={ID: {"z": z_at * 1.05}}) is not None
    assert _finding("scn_shuffled", thresholds={ID: {"z": z_at * 0.95}}) is None


def test_min_samples_threshold_both_sides() -> None:
    n = int(sum(_finding("scn_shuffled").evidence["label_counts"]))
    assert _finding("scn_shuffled", thresholds={ID: {"min_samples": n}}) is not None
    assert _finding("scn_shuffled", thresholds={ID: {"min_samples": n + 1}}) is None
