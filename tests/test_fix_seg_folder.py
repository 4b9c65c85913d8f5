"""fix --threshold and fix --repair on a segmentation folder (issue 16): the commands that
`diagnose` suggests for a folder run as printed, and read the folder as the diagnosis did.

The folder is fixtures/dense_binary_collapsed.npz written out as PNG images and grey 0/1 masks
(lossless: the images are uint8), so every figure must equal the .npz run's."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import fixture_path, run_cli

NAME = "dense_binary_collapsed"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("seg") / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    d = np.load(fixture_path(f"{NAME}.npz"))
    for i, (x, y) in enumerate(zip(d["x"], d["y"])):
        Image.fromarray(x).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(y.astype(np.uint8)).save(root / "masks" / f"{i:03d}.png")
    return root


def test_threshold_on_a_folder_equals_the_npz(folder: Path) -> None:
    model = fixture_path(f"{NAME}.keras")
    on_npz = run_cli("fix", "--threshold", model, fixture_path(f"{NAME}.npz"), "-f", "json")
    on_dir = run_cli("fix", "--threshold", model, str(folder), "-f", "json")
    assert on_npz.exit_code == on_dir.exit_code == 0, on_dir.stderr
    a, b = on_npz.json(), on_dir.json()
    assert a["threshold"] == b["threshold"]
    for key in ("before", "after"):  # the .npz names its classes, the folder's are 0 and 1
        for ca, cb in zip(a[key]["per_class"], b[key]["per_class"]):
            assert {**ca, "name": None} == {**cb, "name": None}, key
        assert a[key]["balanced_accuracy"] == b[key]["balanced_accuracy"], key
    assert b["after"]["balanced_accuracy"] > 0.85  # measured 0.500 -> 0.881


def test_the_suggested_repair_runs_as_printed(folder: Path, tmp_path: Path) -> None:
    res = run_cli("diagnose", fixture_path(f"{NAME}.keras"), str(folder), "-f", "json")
    assert res.exit_code == 1, res.stderr
    report = res.json()
    assert report["root_cause"] == "decision-threshold"
    commands = [f["command"] for f in report["findings"][0]["fixes"] if f.get("command")] + [
        f["command"] for g in report["findings"] for f in g["fixes"] if f.get("command")
    ]
    repair = next(c for c in commands if "fix --repair" in c)
    args = shlex.split(repair)
    assert args[:3] == ["kerasdoctor", "fix", "--repair"] and str(folder) in args
    fixed = tmp_path / args[args.index("--output") + 1]  # as printed, but not into the repo
    args[args.index("--output") + 1] = str(fixed)
    out = run_cli(*args[1:], "-f", "json")
    assert out.exit_code == 0, out.stderr
    r = out.json()
    assert r["repaired"] is True and r["cause"] == "decision-threshold"
    assert r["after"]["balanced_accuracy"] > r["before"]["balanced_accuracy"] + 0.3
    assert fixed.exists()


def test_label_only_modes_still_refuse_a_folder(folder: Path) -> None:
    res = run_cli("fix", "--class-weights", str(folder))
    assert res.exit_code == 2
    assert "segmentation folder" in res.stderr and len(res.stderr.strip().splitlines()) == 1
