"""The single pass: accumulators merge exactly, so shards give the same Evidence as one run."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fixture_path

from kerasdoctor.evidence import Moments
from kerasdoctor.load import bind_inputs, load_model, read_npz
from kerasdoctor.model_facts import read_facts
from kerasdoctor.predictor import Predictor
from kerasdoctor.probe import (
    ProbeLayout,
    ProbeState,
    array_batches,
    run_probe,
    sample_keys,
)


@pytest.mark.unit
def test_moments_merge_equals_one_pass() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(loc=1000.0, scale=3.0, size=(5000, 4))
    x[17, 2] = np.nan
    whole = Moments.empty(4)
    whole.update(x)
    parts = [Moments.empty(4) for _ in range(3)]
    for part, chunk in zip(parts, np.array_split(x, [1234, 1235])):
        part.update(chunk)
    merged = parts[2]
    merged.merge(parts[0])
    merged.merge(parts[1])
    finite = np.where(np.isfinite(x), x, np.nan)
    np.testing.assert_allclose(merged.mean, np.nanmean(finite, axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.var, np.nanvar(finite, axis=0), rtol=1e-9)
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-12)
    assert merged.n_nan.tolist() == [0, 0, 1, 0]


@pytest.mark.unit
def test_sample_keys_are_uniform_and_seeded() -> None:
    keys = sample_keys(np.arange(100_000), seed=1)
    assert keys.min() >= 0.0 and keys.max() < 1.0
    assert abs(keys.mean() - 0.5) < 0.01
    assert not np.array_equal(keys[:100], sample_keys(np.arange(100), seed=2))
    assert np.array_equal(keys[:100], sample_keys(np.arange(100), seed=1))


@pytest.mark.parametrize("fixture", ["collapsed", "model_batchnorm", "multi_input"])
def test_sharded_states_merge_to_the_single_run(fixture: str) -> None:
    lm = load_model(fixture_path(f"{fixture}.keras"))
    raw = read_npz(fixture_path(f"{fixture}.npz"))
    arrays = bind_inputs(raw, lm)
    predictor = Predictor(lm, read_facts(lm))
    y = raw.labels.y
    single = run_probe(predictor, array_batches(arrays, y, 128), seed=5)
    # three shards of uneven size, merged in a scrambled order
    cuts = [0, 301, 302, len(y)]
    states = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        st = ProbeState(ProbeLayout.of(predictor), seed=5)
        for xs, yy, rows in array_batches([arr[a:b] for arr in arrays], y[a:b], 64):
            st.update(xs, yy, predictor.run_batch(xs), rows + a)
        states.append(st)
    merged = states[2].merge(states[0]).merge(states[1]).finish()
    assert merged.n_samples == single.n_samples
    assert np.array_equal(merged.confusion, single.confusion)
    assert np.array_equal(merged.y_true, single.y_true)
    assert np.array_equal(merged.y_pred, single.y_pred)
    assert np.array_equal(merged.sample_index, single.sample_index)
    for a_in, b_in in zip(merged.sample_inputs, single.sample_inputs):
        assert np.array_equal(a_in, b_in)
    for st_m, st_s in zip(merged.inputs, single.inputs):
        np.testing.assert_allclose(st_m.moments.mean, st_s.moments.mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(st_m.moments.m2, st_s.moments.m2, rtol=1e-9, atol=1e-9)
    for act_m, act_s in zip(merged.activations, single.activations):
        assert np.array_equal(act_m.active_count, act_s.active_count)
    for bn_m, bn_s in zip(merged.bn_inputs, single.bn_inputs):
        np.testing.assert_allclose(bn_m.moments.var, bn_s.moments.var, rtol=1e-9)


def test_sample_is_bounded_and_stratified() -> None:
    lm = load_model(fixture_path("collapsed.keras"))
    raw = read_npz(fixture_path("collapsed.npz"))
    arrays = bind_inputs(raw, lm)
    y = raw.labels.y
    ev = run_probe(Predictor(lm, read_facts(lm)), array_batches(arrays, y, 100), seed=0)
    counts = np.bincount(ev.y_true[ev.sample_index], minlength=3)
    # 2048 rows for 3 classes: up to 682 each, so every row of the two small classes
    assert counts.tolist() == [682, 120, 60]
    assert ev.sample_inputs[0].shape == (counts.sum(), 8)
    assert np.array_equal(ev.sample_inputs[0], arrays[0][ev.sample_index])
