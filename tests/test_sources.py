"""Data sources: every format gives the same diagnosis as the .npz of the same rows, labels
decode as in an .npz, images load as Keras loads them, and bad input is one exit-2 line."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fixture_path, run_cli
from test_cli_errors import _assert_one_line_error

from kerasdoctor.core import Options, diagnose_paths
from kerasdoctor.errors import InputError
from kerasdoctor.sources import (
    IMAGE_FORMATS,
    ImageFolderSource,
    ImageRows,
    LabelStream,
    NpyRows,
    rebatch,
    resize_bilinear,
)


def _summary(report: Any) -> tuple[Any, ...]:
    return (
        [(f.id, f.severity.value) for f in report.findings],
        report.metrics.confusion_matrix,
        report.data.n_samples,
    )


def _input_stats(report: Any) -> list[tuple[float, ...]]:
    return [(i.mean, i.std, i.min, i.max) for i in report.data.inputs]


def _same_diagnosis(a: Any, b: Any) -> None:
    assert _summary(a) == _summary(b)
    np.testing.assert_allclose(_input_stats(a), _input_stats(b), rtol=1e-6)


@pytest.fixture(scope="module")
def collapsed() -> dict[str, np.ndarray]:
    with np.load(fixture_path("collapsed.npz")) as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="module")
def collapsed_npz_report() -> Any:
    return diagnose_paths(fixture_path("collapsed.keras"), fixture_path("collapsed.npz"))


# ------------------------------------------------------------------ .npy pairs


def test_npy_pair_gives_the_npz_diagnosis(
    tmp_path: Path, collapsed: dict[str, np.ndarray], collapsed_npz_report: Any
) -> None:
    np.save(tmp_path / "x.npy", collapsed["x"])
    np.save(tmp_path / "y.npy", collapsed["y"])
    r = diagnose_paths(
        fixture_path("collapsed.keras"), tmp_path / "x.npy", Options(labels=str(tmp_path / "y.npy"))
    )
    _same_diagnosis(r, collapsed_npz_report)
    assert "missing-classes" in [f.id for f in r.findings]
    # --sample draws the same rows from either format
    a = diagnose_paths(
        fixture_path("collapsed.keras"),
        tmp_path / "x.npy",
        Options(labels=str(tmp_path / "y.npy"), sample=300, seed=4),
    )
    b = diagnose_paths(
        fixture_path("collapsed.keras"), fixture_path("collapsed.npz"), Options(sample=300, seed=4)
    )
    _same_diagnosis(a, b)
    assert a.data.sampled_from == 980


@pytest.mark.unit
def test_npy_rows_reads_slices_and_index_arrays_like_numpy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, arr in {
        "c.npy": rng.normal(size=(50, 3, 4)).astype(np.float32),
        "big_endian.npy": rng.integers(0, 1000, (40, 5)).astype(">i4"),
        "fortran.npy": np.asfortranarray(rng.normal(size=(30, 6))),
        "flat.npy": rng.normal(size=37),
    }.items():
        np.save(tmp_path / name, arr)
        rows = NpyRows(tmp_path / name)
        assert rows.shape == arr.shape and rows.dtype == arr.dtype and len(rows) == len(arr)
        np.testing.assert_array_equal(rows[7:23], arr[7:23])
        np.testing.assert_array_equal(rows[:], arr)
        idx = np.array([0, 1, 2, 9, 10, 25, len(arr) - 1])
        np.testing.assert_array_equal(rows[idx], arr[idx])
        np.testing.assert_array_equal(rows[np.zeros(0, np.int64)], arr[:0])
        rows.close()


@pytest.mark.unit
def test_npy_rows_refuses_truncated_and_object_files(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((100, 8), np.float32))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-100])
    with pytest.raises(InputError, match="truncated"):
        NpyRows(tmp_path / "cut.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(InputError, match="Python objects"):
        NpyRows(tmp_path / "obj.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(InputError, match="not a readable .npy"):
        NpyRows(tmp_path / "junk.npy")


def test_npy_errors_are_one_line(tmp_path: Path, collapsed: dict[str, np.ndarray]) -> None:
    m = fixture_path("collapsed.keras")
    np.save(tmp_path / "x.npy", collapsed["x"])
    np.save(tmp_path / "y.npy", collapsed["y"][:-5])
    np.save(tmp_path / "y_nan.npy", np.where(np.arange(980) == 3, np.nan, 1.0))
    x = str(tmp_path / "x.npy")
    _assert_one_line_error(run_cli("diagnose", m, x), "--labels y.npy")
    _assert_one_line_error(
        run_cli("diagnose", m, x, "--labels", str(tmp_path / "y.npy")), "975", "980 rows"
    )
    _assert_one_line_error(
        run_cli("diagnose", m, x, "--labels", str(tmp_path / "y_nan.npy")), "NaN/Inf labels"
    )
    _assert_one_line_error(
        run_cli("diagnose", m, x, "--labels", str(tmp_path / "none.npy")),
        "--labels",
        "no such file",
    )
    _assert_one_line_error(
        run_cli("diagnose", m, fixture_path("collapsed.npz"), "--labels", x),
        "--labels does not apply",
    )
    np.save(tmp_path / "y_ok.npy", collapsed["y"])
    _assert_one_line_error(
        run_cli(
            "diagnose", fixture_path("multi_input.keras"), x, "--labels", str(tmp_path / "y_ok.npy")
        ),
        "feeds one model input",
        "rgb",
    )


# ------------------------------------------------------------------ tables


def _write_csv(path: Path, header: list[str], rows: Any, delimiter: str = ",") -> None:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="") as fh:  # type: ignore[operator]
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)


def _table_rows(x: np.ndarray, labels: Any) -> list[list[Any]]:
    return [[repr(float(v)) for v in row] + [lab] for row, lab in zip(x, labels)]


@pytest.mark.parametrize(
    ("name", "delimiter"), [("t.csv", ","), ("t.csv.gz", ";"), ("t.tsv", "\t")]
)
def test_csv_gives_the_npz_diagnosis(
    tmp_path: Path,
    collapsed: dict[str, np.ndarray],
    collapsed_npz_report: Any,
    name: str,
    delimiter: str,
) -> None:
    header = [f"f{i}" for i in range(8)] + ["label"]
    _write_csv(tmp_path / name, header, _table_rows(collapsed["x"], collapsed["y"]), delimiter)
    r = diagnose_paths(fixture_path("collapsed.keras"), tmp_path / name)
    _same_diagnosis(r, collapsed_npz_report)
    assert r.data.label_encoding == "index"


def test_csv_feature_columns_pick_and_order_the_inputs(
    tmp_path: Path, collapsed: dict[str, np.ndarray], collapsed_npz_report: Any
) -> None:
    # columns shuffled in the file, an unrelated text column, labels first and named 'species'
    order = [3, 0, 7, 1, 6, 2, 5, 4]
    header = ["species", "note"] + [f"f{i}" for i in order]
    rows = [
        [int(lab), "ok"] + [repr(float(row[i])) for i in order]
        for row, lab in zip(collapsed["x"], collapsed["y"])
    ]
    _write_csv(tmp_path / "t.csv", header, rows)
    r = diagnose_paths(
        fixture_path("collapsed.keras"),
        tmp_path / "t.csv",
        Options(label_column="species", feature_columns=",".join(f"f{i}" for i in range(8))),
    )
    _same_diagnosis(r, collapsed_npz_report)
    # every other column is 9 features for a model of 8: a clear refusal
    m, t = fixture_path("collapsed.keras"), str(tmp_path / "t.csv")
    _assert_one_line_error(
        run_cli("diagnose", m, t, "--label-column", "species"),
        "9 feature column(s) (note, f3,",
        "expects (None, 8)",
        "--feature-columns",
    )
    # a text column among the chosen features
    _assert_one_line_error(
        run_cli(
            "diagnose",
            m,
            t,
            "--label-column",
            "species",
            "--feature-columns",
            "f0,f1,f2,f3,f4,f5,f6,note",
        ),
        "row 1, column 'note' holds 'ok', not a number",
    )


def test_csv_string_labels_decode_like_an_npz(
    tmp_path: Path, collapsed: dict[str, np.ndarray]
) -> None:
    names = collapsed["class_names"]
    header = [f"f{i}" for i in range(8)] + ["y"]
    _write_csv(tmp_path / "t.csv", header, _table_rows(collapsed["x"], names[collapsed["y"]]))
    np.savez(tmp_path / "s.npz", x=collapsed["x"], y=names[collapsed["y"]])
    a = diagnose_paths(fixture_path("collapsed.keras"), tmp_path / "t.csv")
    b = diagnose_paths(fixture_path("collapsed.keras"), tmp_path / "s.npz")
    _same_diagnosis(a, b)
    assert list(a.data.class_names) == sorted(names.tolist()) == list(b.data.class_names)
    assert a.data.label_encoding == "string"
    # --class-names gives the model's class order: then it is the original .npz's diagnosis
    c = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        str(tmp_path / "t.csv"),
        "--class-names",
        ",".join(names),
        "--format",
        "json",
    ).json()
    base = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        fixture_path("collapsed.npz"),
        "--format",
        "json",
    ).json()
    assert c["data"]["class_names"] == names.tolist() == base["data"]["class_names"]
    assert c["metrics"]["confusion_matrix"] == base["metrics"]["confusion_matrix"]
    assert [f["id"] for f in c["findings"]] == [f["id"] for f in base["findings"]]
    _assert_one_line_error(
        run_cli(
            "diagnose",
            fixture_path("collapsed.keras"),
            str(tmp_path / "t.csv"),
            "--class-names",
            "apple,orange",
        ),
        "labels not in class_names: grape",
    )
    _assert_one_line_error(
        run_cli(
            "diagnose",
            fixture_path("collapsed.keras"),
            fixture_path("collapsed.npz"),
            "--class-names",
            "a,b,c",
        ),
        "--class-names does not apply",
    )


def test_csv_missing_cells_are_nan_and_reported(
    tmp_path: Path, collapsed: dict[str, np.ndarray]
) -> None:
    rows = _table_rows(collapsed["x"], collapsed["y"])
    for i in range(0, 980, 7):
        rows[i][2] = ""
    _write_csv(tmp_path / "t.csv", [f"f{i}" for i in range(8)] + ["label"], rows)
    r = diagnose_paths(fixture_path("collapsed.keras"), tmp_path / "t.csv")
    nonfinite = [f for f in r.findings if f.id == "nonfinite-inputs"]
    assert nonfinite and nonfinite[0].evidence  # 140 NaN cells in column f2


def test_csv_errors_are_one_line(tmp_path: Path, collapsed: dict[str, np.ndarray]) -> None:
    m = fixture_path("collapsed.keras")
    x, y = collapsed["x"][:20], collapsed["y"][:20]
    header = [f"f{i}" for i in range(8)] + ["cls"]
    _write_csv(tmp_path / "nolabel.csv", header, _table_rows(x, y))
    _assert_one_line_error(
        run_cli("diagnose", m, str(tmp_path / "nolabel.csv")), "--label-column", "cls"
    )
    _assert_one_line_error(
        run_cli("diagnose", m, str(tmp_path / "nolabel.csv"), "--label-column", "kind"),
        "no label column 'kind'",
    )
    _assert_one_line_error(
        run_cli(
            "diagnose",
            m,
            str(tmp_path / "nolabel.csv"),
            "--label-column",
            "cls",
            "--feature-columns",
            "f0,f1,zz",
        ),
        "no column 'zz'",
    )
    rows = _table_rows(x, y)
    rows[5] = rows[5][:-2]
    _write_csv(tmp_path / "ragged.csv", [f"f{i}" for i in range(8)] + ["label"], rows)
    _assert_one_line_error(
        run_cli("diagnose", m, str(tmp_path / "ragged.csv")), "row 6 has 7 fields", "header has 9"
    )
    rows = _table_rows(x, y)
    rows[3][-1] = ""
    _write_csv(tmp_path / "gap.csv", [f"f{i}" for i in range(8)] + ["label"], rows)
    _assert_one_line_error(run_cli("diagnose", m, str(tmp_path / "gap.csv")), "row 4 has no label")
    _write_csv(tmp_path / "narrow.csv", ["a", "b", "label"], [[1, 2, 0], [3, 4, 1]])
    _assert_one_line_error(
        run_cli("diagnose", m, str(tmp_path / "narrow.csv")), "expects (None, 8)"
    )
    (tmp_path / "empty.csv").write_text("")
    _assert_one_line_error(run_cli("diagnose", m, str(tmp_path / "empty.csv")), "empty")
    (tmp_path / "header.csv").write_text("a,b,label\n")
    _assert_one_line_error(run_cli("diagnose", m, str(tmp_path / "header.csv")), "no samples")
    _assert_one_line_error(
        run_cli("diagnose", m, fixture_path("collapsed.npz"), "--label-column", "y"),
        "--label-column does not apply",
    )


def test_parquet_gives_the_npz_diagnosis(
    tmp_path: Path, collapsed: dict[str, np.ndarray], collapsed_npz_report: Any
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    cols: dict[str, Any] = {f"f{i}": collapsed["x"][:, i] for i in range(8)}
    cols["label"] = collapsed["y"]
    pq.write_table(pa.table(cols), tmp_path / "t.parquet", row_group_size=300)
    r = diagnose_paths(fixture_path("collapsed.keras"), tmp_path / "t.parquet")
    _same_diagnosis(r, collapsed_npz_report)
    cols["label"] = collapsed["class_names"][collapsed["y"]]
    cols["text"] = np.array(["a"] * 980)
    pq.write_table(pa.table(cols), tmp_path / "s.parquet")
    _assert_one_line_error(
        run_cli("diagnose", fixture_path("collapsed.keras"), str(tmp_path / "s.parquet")),
        "column 'text'",
        "numeric",
    )
    r = diagnose_paths(
        fixture_path("collapsed.keras"),
        tmp_path / "s.parquet",
        Options(feature_columns=[f"f{i}" for i in range(8)]),
    )
    assert list(r.data.class_names) == sorted(collapsed["class_names"].tolist())


# ------------------------------------------------------------------ tf.data


@pytest.mark.parametrize("batched", [False, True])
def test_saved_tf_dataset_gives_the_npz_diagnosis(
    tmp_path: Path, batched: bool, collapsed: dict[str, np.ndarray], collapsed_npz_report: Any
) -> None:
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((collapsed["x"], collapsed["y"]))
    (ds.batch(100) if batched else ds).save(str(tmp_path / "ds"))
    r = diagnose_paths(fixture_path("collapsed.keras"), tmp_path / "ds")
    _same_diagnosis(r, collapsed_npz_report)
    assert r.data.label_encoding == "index"
    sampled = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        str(tmp_path / "ds"),
        "--sample",
        "100",
        "--format",
        "json",
    )
    if batched:  # the number of rows is not recorded for a batched dataset
        _assert_one_line_error(sampled, "--sample needs the number of samples")
    else:
        assert sampled.exit_code in (0, 1) and sampled.json()["data"]["n_samples"] == 100


def test_saved_tf_dataset_with_dict_inputs_one_hot_labels_and_weights(tmp_path: Path) -> None:
    import tensorflow as tf

    with np.load(fixture_path("multi_input.npz")) as d:
        rgb, depth, y = d["rgb"], d["depth"], d["y"]
    onehot = np.eye(3, dtype=np.float32)[y]
    ds = tf.data.Dataset.from_tensor_slices(
        ({"depth": depth, "rgb": rgb}, onehot, np.ones(len(y), np.float32))
    )
    ds.save(str(tmp_path / "ds"))
    base = diagnose_paths(fixture_path("multi_input.keras"), fixture_path("multi_input.npz"))
    names = base.data.class_names
    r = diagnose_paths(
        fixture_path("multi_input.keras"), tmp_path / "ds", Options(class_names=",".join(names))
    )
    assert _summary(r) == _summary(base)
    assert r.data.label_encoding == "one-hot"
    assert r.data.class_names == names


def test_saved_tf_dataset_errors(tmp_path: Path) -> None:
    import tensorflow as tf

    x = np.zeros((10, 8), np.float32)
    tf.data.Dataset.from_tensor_slices(x).save(str(tmp_path / "nolabels"))
    _assert_one_line_error(
        run_cli("diagnose", fixture_path("healthy.keras"), str(tmp_path / "nolabels")), "(x, y)"
    )
    tf.data.Dataset.from_tensor_slices((np.zeros((10, 5), np.float32), np.zeros(10, int))).save(
        str(tmp_path / "narrow")
    )
    _assert_one_line_error(
        run_cli("diagnose", fixture_path("healthy.keras"), str(tmp_path / "narrow")),
        "axis 1: 5 != 8",
    )
    tf.data.Dataset.from_tensor_slices((x, np.array(["a", "b"] * 5))).save(
        str(tmp_path / "strings")
    )
    _assert_one_line_error(
        run_cli("diagnose", fixture_path("healthy.keras"), str(tmp_path / "strings")), "strings"
    )
    tf.data.Dataset.from_tensor_slices((x[:0], np.zeros(0, np.int64))).save(str(tmp_path / "empty"))
    _assert_one_line_error(
        run_cli("diagnose", fixture_path("healthy.keras"), str(tmp_path / "empty")),
        "holds no samples",
    )


@pytest.mark.unit
def test_label_stream_reports_the_encoding_of_all_batches() -> None:
    s = LabelStream("labels")
    assert s.decode(np.array([0, 1, 1])).tolist() == [0, 1, 1]
    assert s.result().encoding == "binary"
    s.decode(np.array([2, 0]))
    assert s.result().encoding == "index"  # as decode_labels says of [0, 1, 1, 2, 0]
    with pytest.raises(InputError, match="negative"):
        s.decode(np.array([-1]))


# ------------------------------------------------------------------ images


def _image_folder(root: Path, x: np.ndarray, y: np.ndarray, names: Any) -> Path:
    from PIL import Image

    for i, (img, c) in enumerate(zip(x, y)):
        d = root / str(names[c])
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.squeeze()).save(d / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def terrain_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data_raw_pixels.npz's 0-255 images as PNGs in one folder per class."""
    with np.load(fixture_path("data_raw_pixels.npz")) as d:
        return _image_folder(tmp_path_factory.mktemp("terrain"), d["x"], d["y"], d["class_names"])


def test_image_folder_gives_the_npz_diagnosis(terrain_folder: Path) -> None:
    # a model trained on [0, 1] images, fed the folder's 0-255 pixels: the classic bug
    r = diagnose_paths(fixture_path("data_raw_pixels.keras"), terrain_folder)
    base = diagnose_paths(
        fixture_path("data_raw_pixels.keras"), fixture_path("data_raw_pixels.npz")
    )
    assert _summary(r) == _summary(base)
    assert "input-scale" in [f.id for f in r.findings]
    assert r.data.class_names == ("grass", "road", "water")
    # a model with Rescaling(1/255) inside, trained on 0-255 pixels: healthy on the folder
    ok = diagnose_paths(fixture_path("data_double_rescale.keras"), terrain_folder)
    assert [f for f in ok.findings if f.severity.value in ("error", "warning")] == []
    assert ok.metrics.accuracy > 0.9


def test_image_folder_order_and_pixels_match_keras(tmp_path: Path) -> None:
    import keras
    from keras.src.utils.dataset_utils import index_directory
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("b_cat", "a_dog"):
        (tmp_path / c / "sub").mkdir(parents=True)
        for i in range(4):
            h, w = rng.integers(5, 40, 2)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                tmp_path / c / f"rgb{i}.png"
            )
            Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(
                tmp_path / c / "sub" / f"gray{i}.PNG"
            )
        (tmp_path / c / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    paths, labels, names = index_directory(
        str(tmp_path), "inferred", formats=IMAGE_FORMATS, shuffle=True, seed=3, verbose=False
    )
    src = ImageFolderSource(tmp_path, None, seed=3)
    assert src.paths == paths and src.labels.y.tolist() == list(labels)
    assert src.labels.class_names == names == ["a_dog", "b_cat"]
    for mode, channels in (("rgb", 3), ("rgba", 4), ("grayscale", 1)):
        for size in ((8, 8), (17, 23), (64, 48)):
            ds = keras.utils.image_dataset_from_directory(
                tmp_path,
                image_size=size,
                color_mode=mode,
                shuffle=False,
                batch_size=64,
                verbose=False,
            )
            kx = np.asarray(next(iter(ds))[0])
            ours = ImageRows(list(ds.file_paths), size, channels)[:]
            diff = np.abs(kx - ours)
            if mode == "grayscale":
                # files already grayscale: identical; RGB files converted to gray: TensorFlow's
                # decoder and PIL (Keras's other loader, ours) weigh R, G, B slightly differently
                gray = np.array(["gray" in p for p in ds.file_paths])
                assert diff[gray].max() == 0.0 and diff.max() <= 1.0
            else:
                assert diff.max() == 0.0, (mode, size)


@pytest.mark.unit
def test_resize_keeps_constant_images_constant_and_same_size_untouched() -> None:
    a = np.full((13, 7, 3), 42.0, np.float32)
    assert np.all(resize_bilinear(a, (31, 5)) == 42.0)
    b = np.random.default_rng(0).random((6, 6, 1)).astype(np.float32)
    assert resize_bilinear(b, (6, 6)) is b


def test_image_folder_errors(tmp_path: Path, terrain_folder: Path) -> None:
    from PIL import Image

    m = fixture_path("data_raw_pixels.keras")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    _assert_one_line_error(
        run_cli("diagnose", m, str(tmp_path / "flat")),
        "is a directory",
        "1 images and no subfolders",
    )
    for c in ("cats", "dogs"):
        (tmp_path / "empty" / c).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "empty" / "cats" / "a.png")
    _assert_one_line_error(run_cli("diagnose", m, str(tmp_path / "empty")), "dogs holds no images")
    (tmp_path / "bad" / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "bad" / "cats" / "a.png")
    (tmp_path / "bad" / "cats" / "b.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    _assert_one_line_error(
        run_cli("diagnose", m, str(tmp_path / "bad")), "b.jpg", "cannot read this image"
    )
    _assert_one_line_error(
        run_cli("diagnose", fixture_path("healthy.keras"), str(terrain_folder)),
        "holds images",
        "expects (None, 8)",
    )
    _assert_one_line_error(
        run_cli("diagnose", m, str(terrain_folder), "--image-size", "16x16"),
        "--image-size 16x16 does not match",
    )
    _assert_one_line_error(
        run_cli("diagnose", m, str(terrain_folder), "--image-size", "big"), "HEIGHTxWIDTH"
    )


def test_image_folder_for_a_model_of_any_size(tmp_path: Path, terrain_folder: Path) -> None:
    import keras

    with np.load(fixture_path("data_raw_pixels.npz")) as d:
        x, y = d["x"].astype(np.float32) / 255.0, d["y"]
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 3))
    h = keras.layers.Rescaling(1.0 / 255)(inp)
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x * 255.0, y, epochs=15, batch_size=32, verbose=0)
    model.save(tmp_path / "any.keras")
    m = str(tmp_path / "any.keras")
    _assert_one_line_error(run_cli("diagnose", m, str(terrain_folder)), "--image-size")
    r = run_cli("diagnose", m, str(terrain_folder), "--image-size", "8x8", "--format", "json")
    assert r.exit_code in (0, 1), r.stderr
    assert r.json()["data"]["inputs"][0]["shape"] == [8, 8, 3]
    assert r.json()["data"]["n_samples"] == 600


# ------------------------------------------------------------------ plumbing


@pytest.mark.unit
def test_rebatch_recuts_chunks_and_keeps_selected_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(103, 2))
    y = np.arange(103)
    sizes = [1, 10, 31, 7, 54]
    cuts = np.cumsum([0, *sizes])
    chunks = [([x[a:b]], y[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    out = list(rebatch(iter(chunks), 16))
    assert [len(b[1]) for b in out] == [16] * 6 + [7]
    np.testing.assert_array_equal(np.concatenate([b[0][0] for b in out]), x)
    np.testing.assert_array_equal(np.concatenate([b[2] for b in out]), np.arange(103))
    idx = np.array([0, 5, 11, 12, 40, 41, 99])
    out = list(rebatch(iter(chunks), 4, idx))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in out]), idx)
    np.testing.assert_array_equal(np.concatenate([b[2] for b in out]), np.arange(7))
    np.testing.assert_array_equal(np.concatenate([b[0][0] for b in out]), x[idx])


def test_unknown_data_is_refused_by_content(tmp_path: Path, collapsed: dict[str, Any]) -> None:
    m = fixture_path("collapsed.keras")
    (tmp_path / "data.bin").write_bytes(b"\x00\x01 random bytes")
    _assert_one_line_error(
        run_cli("diagnose", m, str(tmp_path / "data.bin")), "unsupported data file"
    )
    # an .npz under another name is still an .npz
    np.savez(tmp_path / "data.npz", x=collapsed["x"], y=collapsed["y"])
    (tmp_path / "data.npz").rename(tmp_path / "data.archive")
    r = run_cli("diagnose", m, str(tmp_path / "data.archive"), "--format", "json")
    assert r.exit_code == 1 and r.json()["data"]["n_samples"] == 980


def test_jpeg_pixels_are_within_a_few_levels_of_keras(tmp_path: Path) -> None:
    import keras
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:60, 0:80]
    (tmp_path / "a").mkdir()
    for i in range(4):
        img = np.stack([(xx * 3 + i * 20) % 256, (yy * 4) % 256, ((xx + yy) * 2) % 256], -1)
        img = np.clip(img + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / "a" / f"{i}.jpg", quality=90)
    ds = keras.utils.image_dataset_from_directory(
        tmp_path, image_size=(32, 32), shuffle=False, verbose=False
    )
    diff = np.abs(np.asarray(next(iter(ds))[0]) - ImageRows(list(ds.file_paths), (32, 32), 3)[:])
    # TensorFlow's JPEG decoder and PIL's use different inverse DCTs: a few levels of 255
    assert diff.mean() < 2.0 and diff.max() <= 8.0
