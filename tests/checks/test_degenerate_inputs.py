"""degenerate-inputs: fires on blank token rows, identical rows and constant features; quiet on
healthy data that merely holds some of them; each threshold on both sides; the token counts of
the pass merge exactly across shards."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import HEALTHY_FIXTURES, diagnose_fixture, fixture_path

from kerasdoctor.findings import Finding, Severity

ID = "degenerate-inputs"


def _finding(report: Any) -> Finding | None:
    found: Finding | None = report.finding(ID)
    return found


def _row(f: Finding, name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = f.evidence["inputs"]
    return next(r for r in rows if r["input"] == name)


def _diagnose_data(fixture: str, **arrays: np.ndarray) -> Any:
    """The fixture's model on its own data with some arrays replaced (made degenerate)."""
    import kerasdoctor

    data = dict(np.load(fixture_path(f"{fixture}.npz")))
    data.update(arrays)
    names = [str(c) for c in data.pop("class_names")]
    y = data.pop("y")
    x = data["x"] if list(data) == ["x"] else data
    return kerasdoctor.diagnose(fixture_path(f"{fixture}.keras"), x, y, class_names=names)


# ------------------------------------------------------------------ fires


def test_fires_on_a_tokenizer_that_was_never_fit() -> None:
    report = diagnose_fixture("scn_tokens_unfit.keras", "scn_tokens_unfit.npz")
    f = _finding(report)
    assert f is not None and f.severity is Severity.ERROR
    tokens = _row(f, "tokens")
    assert tokens["reasons"] == ["blank-tokens"]
    assert tokens["blank_rows"] == tokens["token_rows"] == 300
    assert tokens["distinct_ids"] == 2 and tokens["max_id"] == 1
    assert "300 of 300 rows of input 'tokens' hold only ids 0/1 (padding/OOV)" in f.detail
    # the sample: 10 distinct sequences (OOV runs of different lengths), near chance
    assert f.evidence["sample"]["distinct_rows"] == 10
    assert f.evidence["sample"]["lift"] < 0.25
    assert report.root_cause is not None and report.root_cause.id == ID
    assert any(fx.code and ".adapt(" in fx.code for fx in f.fixes)


def test_fires_on_identical_rows() -> None:
    x = np.load(fixture_path("healthy.npz"))["x"]
    report = _diagnose_data("healthy", x=np.repeat(x[:1], len(x), axis=0))
    f = _finding(report)
    assert f is not None and f.severity is Severity.ERROR
    assert f.evidence["identical_rows"] is True
    assert f.evidence["sample"]["distinct_rows"] == 1
    assert f.evidence["sample"]["lift"] == pytest.approx(0.0)
    assert "is the same in every one of 600 rows" in f.title
    assert report.root_cause is not None and report.root_cause.id == ID


def test_fires_on_rows_drawn_from_a_small_pool() -> None:
    """Rows vary, but only 30 distinct ones, unrelated to the labels: no feature is
    constant, the ceiling on the sample is what catches it."""
    x = np.load(fixture_path("healthy.npz"))["x"]
    pool = np.random.default_rng(0).integers(0, 30, len(x))
    f = _finding(_diagnose_data("healthy", x=x[pool]))
    assert f is not None and f.severity is Severity.ERROR
    assert _row(f, "features")["reasons"] == []
    assert f.evidence["identical_rows"] is True
    assert f.evidence["sample"]["distinct_rows"] == 30
    assert "The rows do not vary" in f.title


def test_fires_on_a_constant_input_beside_one_that_varies() -> None:
    """A depth camera that sends zeros: 'depth' is constant, 'rgb' varies (rows distinct)."""
    depth = np.load(fixture_path("multi_input.npz"))["depth"]
    report = _diagnose_data("multi_input", depth=np.zeros_like(depth))
    f = _finding(report)
    assert f is not None and f.severity is Severity.ERROR
    assert _row(f, "depth")["reasons"] == ["constant-features"]
    assert _row(f, "rgb")["reasons"] == []
    assert f.evidence["identical_rows"] is False
    assert "Input 'depth' is the same in every one of 600 rows" in f.title


# ------------------------------------------------------------------ quiet


QUIET = [
    *HEALTHY_FIXTURES,
    ("scn_dead_ok.keras", "scn_dead_ok.npz"),
    ("scn_mediocre.keras", "scn_mediocre.npz"),
    # 15% of the rows are all OOV (another language): a healthy text model
    ("degen_text_some_blank.keras", "degen_text_some_blank.npz"),
    # one constant column of nine (a schema version), standardised to 0: healthy
    ("degen_constant_column.keras", "degen_constant_column.npz"),
]


@pytest.mark.parametrize(("model", "data"), QUIET)
def test_quiet_on_healthy_data(model: str, data: str) -> None:
    assert _finding(diagnose_fixture(model, data)) is None


def test_real_token_ids_are_counted_and_not_blank() -> None:
    f = _finding(
        diagnose_fixture(
            "data_tokens.keras", "data_tokens.npz", thresholds={ID: {"min_blank_share": 0.0}}
        )
    )
    assert f is not None and f.severity is Severity.INFO  # healthy: context at most
    tokens = _row(f, "tokens")
    assert tokens["blank_rows"] == 0 and tokens["token_rows"] == 600
    assert tokens["distinct_ids"] > 100


# ------------------------------------------------------------------ thresholds


def test_min_blank_share_on_both_sides() -> None:
    """degen_text_some_blank: 43 of 300 rows (14.3%) hold only OOV/padding."""
    fixture = ("degen_text_some_blank.keras", "degen_text_some_blank.npz")
    fired = _finding(diagnose_fixture(*fixture, thresholds={ID: {"min_blank_share": 0.14}}))
    assert fired is not None and fired.severity is Severity.INFO  # the model is healthy
    row = _row(fired, "tokens")
    assert row["reasons"] == ["blank-tokens"] and row["blank_rows"] == 43
    assert _finding(diagnose_fixture(*fixture, thresholds={ID: {"min_blank_share": 0.15}})) is None


def test_min_constant_share_on_both_sides() -> None:
    """degen_constant_column: 1 of 9 features (11.1%) is constant."""
    fixture = ("degen_constant_column.keras", "degen_constant_column.npz")
    fired = _finding(diagnose_fixture(*fixture, thresholds={ID: {"min_constant_share": 0.11}}))
    assert fired is not None and fired.severity is Severity.INFO
    row = _row(fired, "features")
    assert row["reasons"] == ["constant-features"] and row["constant_features"] == 1
    assert row["constant_values"] == [{"feature": 8, "value": 0.0}]
    quiet = diagnose_fixture(*fixture, thresholds={ID: {"min_constant_share": 0.12}})
    assert _finding(quiet) is None


def test_max_ceiling_lift_on_both_sides() -> None:
    """scn_tokens_unfit with the blank-token rule off: the sample's ceiling lift is 0.172."""
    fixture = ("scn_tokens_unfit.keras", "scn_tokens_unfit.npz")
    off = {"min_blank_share": 1.01}
    fired = _finding(diagnose_fixture(*fixture, thresholds={ID: {**off, "max_ceiling_lift": 0.18}}))
    assert fired is not None and fired.severity is Severity.ERROR
    assert fired.evidence["identical_rows"] is True
    assert _row(fired, "tokens")["reasons"] == []
    assert fired.evidence["sample"]["lift"] == pytest.approx(0.1718, abs=1e-3)
    quiet = diagnose_fixture(*fixture, thresholds={ID: {**off, "max_ceiling_lift": 0.17}})
    assert _finding(quiet) is None


# ------------------------------------------------------------------ the accumulator


@pytest.mark.unit
def test_token_stats_count_blank_rows_and_ids() -> None:
    from kerasdoctor.evidence import TOKEN_ID_CAP, TokenStats

    t = TokenStats()
    t.update(np.array([[1, 0, 0], [0, 0, 0], [5, 1, 0]], np.int32))
    t.update(np.array([[1.0, np.nan, 0.0], [1.9, 0.0, 0.0], [-2.0, 7.0, 3e30]]))
    # blank: [1 0 0], [0 0 0] and [1.9 0 0] (an Embedding truncates 1.9 to the OOV id 1);
    # a row holding NaN is not blank
    assert (t.rows, t.blank_rows) == (6, 3)
    assert np.flatnonzero(t.seen).tolist() == [0, 1, 5, 7]
    assert t.n_distinct == 4 and t.max_id == 7
    assert t.out_of_range == 3  # NaN, -2 and 3e30 are no ids
    assert t.seen.size <= TOKEN_ID_CAP


def test_token_stats_merge_like_one_pass() -> None:
    from kerasdoctor.load import bind_inputs, load_model, read_npz
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.predictor import Predictor
    from kerasdoctor.probe import ProbeLayout, ProbeState, array_batches, run_probe

    for fixture, name in (("data_tokens", "tokens"), ("scn_tokens_unfit", "tokens")):
        lm = load_model(fixture_path(f"{fixture}.keras"))
        raw = read_npz(fixture_path(f"{fixture}.npz"))
        arrays = bind_inputs(raw, lm)
        predictor = Predictor(lm, read_facts(lm))
        assert ProbeLayout.of(predictor).token_inputs == [name]
        y = raw.labels.y
        single = run_probe(predictor, array_batches(arrays, y, 128)).inputs[0].tokens
        cuts = [0, 7, 151, len(y)]
        states = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            st = ProbeState(ProbeLayout.of(predictor))
            for xs, yy, rows in array_batches([arr[a:b] for arr in arrays], y[a:b], 50):
                st.update(xs, yy, predictor.run_batch(xs), rows + a)
            states.append(st)
        merged = states[2].merge(states[0]).merge(states[1]).finish().inputs[0].tokens
        assert single is not None and merged is not None
        assert (merged.rows, merged.blank_rows, merged.out_of_range) == (
            single.rows,
            single.blank_rows,
            single.out_of_range,
        )
        assert np.array_equal(merged.seen, single.seen)


def test_value_inputs_get_no_token_stats() -> None:
    from kerasdoctor.load import load_model
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.predictor import Predictor
    from kerasdoctor.probe import ProbeLayout

    lm = load_model(fixture_path("healthy.keras"))
    assert ProbeLayout.of(Predictor(lm, read_facts(lm))).token_inputs == []
