"""Issue 16, item 5: dense and multi-label models on sharded data give the single run's report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import diagnose_fixture, fixture_path

from kerasdoctor.errors import InputError

RTOL = 1e-9


def _close(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            _close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-12), (where, a, b)
    else:
        assert a == b, (where, a, b)


def _without_paths(x: Any, paths: tuple[str, ...]) -> Any:
    """Fix commands name DATA: the .npz in one run, the pattern in the other."""
    if isinstance(x, dict):
        return {k: _without_paths(v, paths) for k, v in x.items()}
    if isinstance(x, list):
        return [_without_paths(v, paths) for v in x]
    if isinstance(x, str):
        for p in paths:
            x = x.replace(p, "DATA")
    return x


@pytest.mark.parametrize(
    "name, task",
    [("tag_collapsed", "dense"), ("dense_unet_collapsed", "dense"), ("ml_collapsed", "multilabel")],
)
def test_sharded_run_equals_the_single_run(tmp_path: Path, name: str, task: str) -> None:
    pytest.importorskip("apache_beam", reason="the [beam] extra is not installed")
    from kerasdoctor.beam.convert import convert_npz
    from kerasdoctor.beam.pipeline import diagnose_shards
    from kerasdoctor.core import Options

    m = convert_npz(fixture_path(f"{name}.npz"), tmp_path, shards=3, fmt="npz")
    assert m.label_encoding == ("multi-hot" if task == "multilabel" else "dense")
    pattern = str(tmp_path / "shard-*.npz")
    single = diagnose_fixture(f"{name}.keras", f"{name}.npz").to_dict()
    sharded = diagnose_shards(fixture_path(f"{name}.keras"), pattern, Options()).to_dict()
    assert sharded["metrics"]["task"] == task
    assert sharded["data"].pop("shards") == 3
    paths = (f"'{pattern}'", pattern, str(fixture_path(f"{name}.npz")), f"fixtures/{name}.npz")
    single, sharded = _without_paths(single, paths), _without_paths(sharded, paths)
    assert single["metrics"] == sharded["metrics"]  # counts, confusion, AUCs: exactly
    for key in ("findings", "verdict", "root_cause", "chain", "experiments", "checks", "data"):
        _close(single[key], sharded[key], key)
    if name == "tag_collapsed":  # the mask travelled with the shards
        assert sharded["data"]["positions_excluded"] > 0


@pytest.mark.unit
def test_dense_labels_refuse_tfrecord_shards(tmp_path: Path) -> None:
    from kerasdoctor.beam.convert import convert_npz

    with pytest.raises(InputError, match="sharded as .npz only"):
        convert_npz(fixture_path("tag_collapsed.npz"), tmp_path, shards=3)


@pytest.mark.unit
def test_npz_shards_keep_labels_and_mask(tmp_path: Path) -> None:
    from kerasdoctor.beam.convert import convert_npz

    convert_npz(fixture_path("tag_collapsed.npz"), tmp_path, shards=3, fmt="npz")
    parts = [np.load(p) for p in sorted(tmp_path.glob("shard-*.npz"))]
    with np.load(fixture_path("tag_collapsed.npz")) as src:
        for key in ("x", "y", "mask"):
            assert np.array_equal(np.concatenate([p[key] for p in parts]), src[key])


def test_sharded_html_draws_sample_masks(tmp_path: Path) -> None:
    """The HTML of a sharded dense run draws samples as the single run does, chosen among the
    rows of the bounded sample: each drawn sample's true mask is its row's label."""
    pytest.importorskip("apache_beam", reason="the [beam] extra is not installed")
    import re

    from kerasdoctor.beam.convert import convert_npz
    from kerasdoctor.beam.pipeline import diagnose_shards
    from kerasdoctor.core import Options
    from kerasdoctor.render import render

    name = "dense_unet_collapsed"
    convert_npz(fixture_path(f"{name}.npz"), tmp_path, shards=3, fmt="npz")
    report = diagnose_shards(
        fixture_path(f"{name}.keras"), str(tmp_path / "shard-*.npz"), Options()
    )
    single = diagnose_fixture(f"{name}.keras", f"{name}.npz")
    assert len(report.samples) == len(single.samples) == 6
    y = np.load(fixture_path(f"{name}.npz"))["y"]
    for s in report.samples:
        assert np.array_equal(s.true, y[s.row][:: s.stride, :: s.stride])
        assert s.image is not None and s.pred.shape == s.true.shape
    # a collapsed model loses foreground: the first drawn sample is one of the worst
    assert [s.why for s in report.samples][:1] == ["worst"]
    html = render(report, "html")
    assert len(re.findall(r"<tr data-sample=", html)) == 6
