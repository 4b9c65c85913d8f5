"""`fix --oversample/--undersample` for every data source a user trains from (issue 19, 6):
an image folder becomes a new folder of links, a CSV/TSV and a Parquet file a new table of the
same format, and the input is never written to."""

from __future__ import annotations

import collections
import gzip
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli

from kerasdoctor.dataspec import DataSpec
from kerasdoctor.sources import read_labels

COUNTS = {"cat": 12, "dog": 4, "fox": 2}


def _one_error_line(r: Any) -> str:
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("kerasdoctor: error: "), lines
    assert "Traceback" not in r.stderr and r.stdout == ""
    return lines[0]


def _tree_sha(root: Path) -> dict[str, str]:
    """Every entry under root: a file by its content, a folder by its name."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def _photos(tmp_path: Path) -> Path:
    """Real PNGs in class subfolders, 12/4/2, one of them in a nested folder."""
    from PIL import Image

    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for name, n in COUNTS.items():
        for i in range(n):
            folder = root / name / ("nested" if name == "cat" and i == 0 else "")
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}{i:02d}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def _counts(path: Path, **opts: Any) -> list[int]:
    return np.bincount(read_labels(path, DataSpec.of(opts), seed=0).y).tolist()


# ---------------------------------------------------------------- image folders


def test_oversampled_image_folder_is_a_folder_of_links_keras_reads(tmp_path: Path) -> None:
    data = _photos(tmp_path)
    before = _tree_sha(data)
    out = tmp_path / "balanced"
    r = run_cli("fix", "--oversample", str(data), "--output", str(out), "-f", "json")
    assert r.exit_code == 0, r.stderr
    res = r.json()
    assert res["format"] == "image-folder" and res["written_as"] == "links"
    assert res["class_names"] == ["cat", "dog", "fox"]
    assert res["label_counts_before"] == [12, 4, 2]
    assert res["label_counts_after"] == [12, 12, 12]
    assert res["n_samples_before"] == 18 and res["n_samples_after"] == 36
    assert res["distinct_samples"] == 18
    assert "not duplicated on disk" in res["note"]
    assert sorted(os.listdir(out)) == ["cat", "dog", "fox"]  # a clean root
    links = [Path(dp) / f for dp, _, fs in os.walk(out) for f in fs]
    assert len(links) == 36
    for link in links:
        assert link.is_symlink() and os.path.isabs(os.readlink(link))
        target = Path(os.readlink(link))
        assert data.resolve() in target.resolve().parents
        assert target.parent.name in ("nested", link.parent.name)
        assert link.suffix == ".png"
    assert {e["link"] for e in res["files"]} == {str(p) for p in links}
    for e in res["files"]:
        assert os.path.realpath(e["link"]) == os.path.realpath(e["source"])
        assert Path(e["source"]).is_relative_to(data / e["class"])
    assert any("__copy" in p.name for p in out.joinpath("fox").iterdir())
    # read back as diagnose reads it, and as Keras does
    assert _counts(out) == [12, 12, 12]
    from kerasdoctor._keras import keras

    ds = keras().utils.image_dataset_from_directory(
        str(out), image_size=(8, 8), batch_size=64, shuffle=False
    )
    assert ds.class_names == ["cat", "dog", "fox"]
    ys = np.concatenate([y.numpy() for _, y in ds])
    assert np.bincount(ys).tolist() == [12, 12, 12]
    assert _tree_sha(data) == before
    assert sorted(os.listdir(tmp_path)) == ["balanced", "photos"]  # no temporary left


@pytest.mark.unit
def test_undersampled_image_folder_renders_a_table(tmp_path: Path) -> None:
    data = _photos(tmp_path)
    out = tmp_path / "under"
    out.mkdir()  # an existing EMPTY folder is fine
    r = run_cli(
        "fix", "--undersample", str(data), "-o", str(out), "--seed", "3", "--image-size", "8x8"
    )
    assert r.exit_code == 0, r.stderr
    assert "fox" in r.stdout and "symbolic links" in r.stdout
    assert _counts(out) == [2, 2, 2]
    assert not any("__copy" in f for _, _, fs in os.walk(out) for f in fs)


@pytest.mark.unit
def test_image_folder_falls_back_to_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _photos(tmp_path)
    out = tmp_path / "copied"

    def no_links(*_: Any, **__: Any) -> None:
        raise OSError("symbolic links are not supported here")

    monkeypatch.setattr(os, "symlink", no_links)
    r = run_cli("fix", "--oversample", str(data), "-o", str(out), "-f", "json")
    assert r.exit_code == 0, r.stderr
    res = r.json()
    assert res["written_as"] == "copies" and "copied" in res["note"]
    files = [Path(dp) / f for dp, _, fs in os.walk(out) for f in fs]
    assert len(files) == 36 and not any(p.is_symlink() for p in files)
    for e in res["files"]:
        assert Path(e["link"]).read_bytes() == Path(e["source"]).read_bytes()
    assert _counts(out) == [12, 12, 12]


@pytest.mark.unit
def test_image_folder_output_must_be_a_new_folder_outside_the_input(tmp_path: Path) -> None:
    data = _photos(tmp_path)
    before = _tree_sha(data)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    cases = [
        (full, "not empty"),
        (data / "balanced", "inside the input"),
        (data / "cat", "inside the input"),
        (data, "never overwrites"),
        (tmp_path / "balanced.npz", "directory name"),
        (tmp_path / "no" / "balanced", "does not exist"),
    ]
    for out, expected in cases:
        line = _one_error_line(run_cli("fix", "--oversample", str(data), "-o", str(out)))
        assert expected in line, (out, line)
    assert _tree_sha(data) == before
    assert (full / "keep.txt").read_text() == "mine" and sorted(os.listdir(full)) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["full", "photos"]
    assert "does not apply" in _one_error_line(
        run_cli("fix", "--oversample", str(data), "-o", str(tmp_path / "b"), "--label-column", "y")
    )


# ---------------------------------------------------------------- CSV / TSV


def _csv(
    tmp_path: Path, name: str = "train.csv", delim: str = ",", end: str = "\n", label: str = "label"
) -> Path:
    """An id column, numbers written as the user wrote them, a quoted cell with the delimiter
    and a line break in it, a string label column; 12/4/2 rows, CRLF or LF."""
    labels = ["spam"] * 12 + ["ham"] * 4 + ["eggs"] * 2
    rows = [f"id{delim}x1{delim}note{delim}{label}"]
    for i, lab in enumerate(labels):
        note = f'"a{delim} b\nc"' if i == 5 else ("  padded " if i % 3 else "007")
        rows.append(f"{i:03d}{delim}{1.10 + i:.2f}0{delim}{note}{delim}{lab}")
    path = tmp_path / name
    text = end.join(rows) + end
    if name.endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(text.encode())
    else:
        path.write_bytes(text.encode())
    return path


def _rows_by_id(text: str, end: str) -> tuple[str, dict[str, str], list[str]]:
    """(header, raw row by id, ids in order): rows split at the line end outside quotes."""
    parts = text.split(end)
    assert parts[-1] == ""
    header, rows = parts[0], []
    for part in parts[1:-1]:
        if rows and rows[-1].count('"') % 2:  # inside a quoted cell
            rows[-1] += end + part
        else:
            rows.append(part)
    ids = [r.split(",")[0].split("\t")[0] for r in rows]
    return header, dict(zip(ids, rows)), ids


@pytest.mark.unit
@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_oversampled_csv_keeps_every_cell_byte_for_byte(tmp_path: Path, end: str) -> None:
    data = _csv(tmp_path, end=end)
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    out = tmp_path / "balanced.csv"
    r = run_cli(
        "fix", "--oversample", str(data), "-o", str(out), "-f", "json", "--drop-columns", "id"
    )
    assert r.exit_code == 0, r.stderr
    res = r.json()
    assert res["format"] == "csv" and res["label_column"] == "label"
    assert res["class_names"] == ["eggs", "ham", "spam"]
    assert res["label_counts_before"] == [2, 4, 12]
    assert res["label_counts_after"] == [12, 12, 12]
    assert "every column is kept" in res["note"] and "files" not in res
    h0, orig, _ = _rows_by_id(data.read_bytes().decode(), end)
    h1, _, ids = _rows_by_id(out.read_bytes().decode(), end)
    assert h1 == h0 and len(ids) == 36
    new_text = out.read_bytes().decode()
    assert new_text == h0 + end + "".join(orig[i] + end for i in ids)  # every byte a row's
    assert set(ids) == set(orig)  # every original row kept
    labs = [orig[i].rsplit(",", 1)[1] for i in ids]
    assert labs != sorted(labs)  # shuffled, not ordered by class
    assert _counts(out) == [12, 12, 12]
    assert hashlib.sha256(data.read_bytes()).hexdigest() == sha


@pytest.mark.unit
def test_undersampled_tsv_gz_with_label_column_and_class_names(tmp_path: Path) -> None:
    data = _csv(tmp_path, "train.tsv.gz", delim="\t", label="kind")
    out = tmp_path / "under.tsv.gz"
    r = run_cli(
        "fix",
        "--undersample",
        str(data),
        "-o",
        str(out),
        "--label-column",
        "kind",
        "--class-names",
        "spam,ham,eggs",
        "--feature-columns",
        "x1",
    )
    assert r.exit_code == 0, r.stderr
    assert "columns kept" in r.stdout and "spam" in r.stdout
    text = gzip.decompress(out.read_bytes()).decode()
    _, orig, _ = _rows_by_id(gzip.decompress(data.read_bytes()).decode(), "\n")
    header, rows, ids = _rows_by_id(text, "\n")
    assert header == "id\tx1\tnote\tkind" and len(ids) == 6 and len(set(ids)) == 6
    assert all(rows[i] == orig[i] for i in ids)
    assert _counts(out, label_column="kind", class_names="spam,ham,eggs") == [2, 2, 2]


@pytest.mark.unit
def test_csv_output_must_keep_the_format_and_not_be_the_input(tmp_path: Path) -> None:
    data = _csv(tmp_path)
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    for out, expected in [
        (tmp_path / "b.parquet", "ending in"),
        (tmp_path / "b.tsv", "tab-separated"),
        (data, "never overwrites"),
    ]:
        line = _one_error_line(run_cli("fix", "--oversample", str(data), "-o", str(out)))
        assert expected in line, line
    assert "--image-size does not apply" in _one_error_line(
        run_cli(
            "fix", "--oversample", str(data), "-o", str(tmp_path / "b.csv"), "--image-size", "8x8"
        )
    )
    assert hashlib.sha256(data.read_bytes()).hexdigest() == sha
    assert sorted(os.listdir(tmp_path)) == ["train.csv"]


# ---------------------------------------------------------------- Parquet, .npy


@pytest.mark.unit
def test_oversampled_parquet_takes_whole_rows(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    labels = ["spam"] * 12 + ["ham"] * 4 + ["eggs"] * 2
    table = pa.table(
        {
            "id": pa.array([f"r{i}" for i in range(18)]),  # not numeric: no --drop-columns needed
            "x1": pa.array(np.arange(18) * 0.5),
            "label": pa.array(labels),
        }
    )
    data = tmp_path / "train.parquet"
    pq.write_table(table, data)
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    out = tmp_path / "balanced.parquet"
    r = run_cli("fix", "--oversample", str(data), "-o", str(out), "-f", "json")
    assert r.exit_code == 0, r.stderr
    res = r.json()
    assert res["format"] == "parquet" and res["label_counts_after"] == [12, 12, 12]
    assert res["columns"] == ["id", "x1", "label"]
    new = pq.read_table(out)
    assert new.schema == table.schema and new.num_rows == 36
    orig = {row["id"]: row for row in table.to_pylist()}
    for row in new.to_pylist():
        assert row == orig[row["id"]]
    assert set(new.column("id").to_pylist()) == set(orig)
    assert _counts(out, drop_columns="id") == [12, 12, 12]
    assert hashlib.sha256(data.read_bytes()).hexdigest() == sha
    line = _one_error_line(run_cli("fix", "--oversample", str(data), "-o", str(tmp_path / "b.csv")))
    assert "Parquet" in line


@pytest.mark.unit
def test_npy_and_misapplied_flags_are_refused_in_one_line(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((6, 2)))
    np.save(tmp_path / "y.npy", np.arange(6) % 2)
    line = _one_error_line(
        run_cli(
            "fix",
            "--oversample",
            str(tmp_path / "x.npy"),
            "--labels",
            str(tmp_path / "y.npy"),
            "-o",
            str(tmp_path / "o.npy"),
        )
    )
    assert ".npz" in line and "image-folder" in line
    np.savez(tmp_path / "d.npz", x=np.zeros((6, 2)), y=np.arange(6) % 2)
    line = _one_error_line(
        run_cli(
            "fix",
            "--undersample",
            str(tmp_path / "d.npz"),
            "-o",
            str(tmp_path / "o.npz"),
            "--label-column",
            "y",
        )
    )
    assert "--label-column does not apply" in line
    assert not (tmp_path / "o.npy").exists() and not (tmp_path / "o.npz").exists()
    r = run_cli(
        "fix", "--undersample", str(tmp_path / "d.npz"), "-o", str(tmp_path / "o.npz"), "-f", "json"
    )
    assert r.exit_code == 0 and r.json()["format"] == "npz"
    assert collections.Counter(np.load(tmp_path / "o.npz")["y"].tolist()) == {0: 3, 1: 3}


@pytest.mark.unit
def test_suggested_oversample_command_fits_each_kind_of_data(tmp_path: Path) -> None:
    """The class-imbalance finding's `fix --oversample ... --output X` names an output of the
    kind the command writes for that data, and that command, run literally on the training
    folder, works; kinds it cannot rewrite get no command."""
    import shlex

    from kerasdoctor.checks.base import Context

    def name(data: str) -> str | None:
        return Context(
            evidence=None,
            facts=None,
            class_names=[],  # type: ignore[arg-type]
            data_path=shlex.quote(data),
        ).resampled_name

    assert name("val.npz") == "balanced.npz" and name("v.csv.gz") == "balanced.csv.gz"
    assert name("v.tsv") == "balanced.tsv" and name("v.parquet") == "balanced.parquet"
    assert name("x.npy") is None
    photos = _photos(tmp_path)
    assert name(str(photos)) == "balanced/"
    tfdata = tmp_path / "saved_ds"
    tfdata.mkdir()
    (tfdata / "dataset_spec.pb").write_bytes(b"")
    assert name(str(tfdata)) is None
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("fix", "--oversample", str(photos), "--output", str(out / "balanced/"))
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert len(set(_counts(out / "balanced"))) == 1
