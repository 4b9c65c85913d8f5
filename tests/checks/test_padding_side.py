"""padding-side: token sequences padded on the other side than the recurrent model was
trained on (pad_sequences "pre" vs TextVectorization / hand-written "post"), confirmed by
re-running the model with the padding moved."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _helpers import (
    assert_complete_and_serialisable,
    assert_quiet,
    assert_thresholds_documented,
    only,
    override,
)
from conftest import HEALTHY_FIXTURES, diagnose_fixture

from kerasdoctor.checks.padding_side import SPEC, move_padding, padding_runs, restored
from kerasdoctor.findings import Severity

ID = "padding-side"


def _post() -> Any:
    return diagnose_fixture("seq_pad_post.keras", "seq_pad_post.npz")


def test_fires_on_post_padded_sequences_for_a_pre_padded_model() -> None:
    report = _post()
    assert_complete_and_serialisable(report, ID)
    f = only(report, ID)
    assert f.severity is Severity.ERROR
    assert report.root_cause is not None and report.root_cause.id == ID
    exp = f.evidence["experiment"]
    assert set(exp) >= {"what", "balanced_accuracy_before", "balanced_accuracy_after", "rows"}
    # measured: every row called 'returns' (chance, 1/3); padded "pre" again: all right
    assert exp["balanced_accuracy_before"] == pytest.approx(1 / 3, abs=1e-6)
    assert exp["balanced_accuracy_after"] > 0.95 and exp["rows"] == 600
    assert f.evidence["recall_before"] == [0.0, 0.0, 1.0]
    assert min(f.evidence["recall_after"]) > 0.9
    tok = f.evidence["inputs"][0]
    assert tok["side"] == "post" and tok["post_rows"] == 600 and tok["pre_rows"] == 0
    assert 'padding="pre"' in f.fixes[0].code and "mask_zero=True" in f.fixes[1].code


def test_quiet_on_the_same_model_fed_data_padded_as_trained() -> None:
    assert_quiet(diagnose_fixture("seq_pad_ok.keras", "seq_pad_ok.npz"), ID)


@pytest.mark.parametrize(
    ("model", "data"),
    [
        *HEALTHY_FIXTURES,
        ("degen_text_some_blank.keras", "degen_text_some_blank.npz"),  # "post", pooled
        ("scn_tokens_unfit.keras", "scn_tokens_unfit.npz"),  # collapsed, not by padding
        ("collapsed.keras", "collapsed.npz"),
    ],
)
def test_quiet_on_other_fixtures(model: str, data: str) -> None:
    assert_quiet(diagnose_fixture(model, data), ID)


def test_min_gain_decides_at_the_measured_gain() -> None:
    gain = only(_post(), ID).evidence["gain"]
    assert (
        only(
            diagnose_fixture(
                "seq_pad_post.keras", "seq_pad_post.npz", **override(ID, min_gain=gain - 0.01)
            ),
            ID,
        )
        is not None
    )
    assert (
        only(
            diagnose_fixture(
                "seq_pad_post.keras", "seq_pad_post.npz", **override(ID, min_gain=gain + 0.01)
            ),
            ID,
        )
        is None
    )


def test_thresholds_are_documented() -> None:
    assert_thresholds_documented(SPEC)


# ------------------------------------------------------------------ without TensorFlow


def test_padding_runs_and_moving_them() -> None:
    x = np.array(
        [[5, 6, 7, 0, 0], [8, 0, 0, 0, 0], [9, 9, 9, 9, 9], [3, 0, 4, 0, 0], [0, 0, 0, 0, 0]]
    )
    runs = padding_runs(x)
    assert runs["post_rows"] == 2 and runs["pre_rows"] == 0 and runs["side"] == "post"
    assert runs["share"] == pytest.approx(0.4) and runs["post_median_run"] == 3.0
    moved = move_padding(x, "post")
    assert moved.tolist() == [
        [0, 0, 5, 6, 7],
        [0, 0, 0, 0, 8],
        [9, 9, 9, 9, 9],
        [3, 0, 4, 0, 0],
        [0, 0, 0, 0, 0],
    ]  # a 0 inside: not padding
    assert padding_runs(moved)["side"] == "pre"
    assert move_padding(moved, "pre")[:2].tolist() == x[:2].tolist()


def _exp(before: float, after: float, rows: int = 600, sample_rows: int = 600) -> dict[str, object]:
    return {
        "what": "moving the padding",
        "balanced_accuracy_before": before,
        "balanced_accuracy_after": after,
        "rows": rows,
        "sample_rows": sample_rows,
    }


def test_decision_thresholds_on_built_evidence() -> None:
    t = {k: v.value for k, v in SPEC.thresholds.items()}
    args = (t["min_gain"], t["noise_z"], t["min_error_removed"])
    noise = 0.03  # 3 classes of 200: sqrt(2) x 0.5 sqrt(3/200) / 3
    # the fixture: chance to all right
    assert restored(_exp(1 / 3, 1.0), noise, *args) is not None
    # min_gain: the bar is max(0.10, 3 x 0.03); a gain of 0.09 is below it, 0.11 above
    assert restored(_exp(0.85, 0.94), noise, *args) is None
    assert restored(_exp(0.85, 0.96), noise, *args) is not None
    # noise_z: on a small sample (noise 0.05) a gain of 0.14 is within 3 standard errors
    assert restored(_exp(0.80, 0.94), 0.05, *args) is None
    assert restored(_exp(0.80, 0.96), 0.05, *args) is not None
    # screened on fewer rows: the noise grows by sqrt(sample / rows)
    assert restored(_exp(0.80, 0.96, rows=150, sample_rows=600), 0.05, *args) is None
    # min_error_removed: 0.34 -> 0.50 gains 16 points but leaves most of the error
    assert restored(_exp(0.34, 0.50), noise, *args) is None
    assert restored(_exp(0.34, 0.70), noise, *args) is not None
    # a failed experiment decides nothing
    assert restored(_exp(0.34, float("nan")), noise, *args) is None
