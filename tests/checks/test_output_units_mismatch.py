"""output-units-mismatch: fewer output units than label classes, so some classes can never
be predicted."""

from __future__ import annotations

import pytest
from _helpers import assert_quiet, model, only
from conftest import HEALTHY_FIXTURES, diagnose_fixture

ID = "output-units-mismatch"


@pytest.mark.parametrize(("model_file", "data_file"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model_file: str, data_file: str) -> None:
    assert_quiet(diagnose_fixture(model_file, data_file), ID)


def test_collapsed_fixture_blames_no_model_defect() -> None:
    f = only(diagnose_fixture("collapsed.keras", "collapsed.npz"), ID)
    assert f is None or f.severity.value == "info"


def test_fewer_units_than_classes_is_an_error() -> None:
    f = only(model("units_fewer"), "output-units-mismatch")
    assert f is not None and f.severity.value == "error"
    assert f.evidence["unreachable_classes"] == [2]
    assert f.evidence["unreachable_samples"] == 200


def test_one_unit_for_three_classes_is_an_error() -> None:
    f = only(model("bce_multiclass"), "output-units-mismatch")
    assert f is not None and f.evidence["units"] == 1
    assert f.evidence["classes_the_head_can_output"] == 2
