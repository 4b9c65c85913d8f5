"""Segmentation folders (issue 16): `kerasdoctor diagnose MODEL FOLDER` with FOLDER/images/ and
FOLDER/masks/ matched by file name, read as dense labels and diagnosed by kerasdoctor.dense.

The real fixture is fixtures/seg_folder (12 RGB PNGs and palette PNG masks, classes 0
background, 1 disc, 2 square, 3 bar) with fixtures/seg_folder.keras; the other folders are
written here from the fixture's pixels in the layouts users have (grey 0..K-1, grey 0/255,
sorted grey levels, RGB colours, JPEG images, _mask names, void 255). Every diagnosis of a
folder must give the figures of the same arrays diagnosed from an .npz.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fixture_path, run_cli
from PIL import Image

from kerasdoctor.seg_folder import resize_nearest, voc_colormap
from kerasdoctor.sources import load_image

MODEL = "seg_folder.keras"  # (N, 32, 32, 3) 0-255 images -> (N, 32, 32, 4) softmax
BINARY = "dense_binary_collapsed.keras"  # the same images -> (N, 32, 32, 1) sigmoid


def _fixture() -> tuple[list[Path], np.ndarray, np.ndarray]:
    """The fixture's image paths, images (N, 32, 32, 3) uint8 and masks (N, 32, 32) indices."""
    root = Path(fixture_path("seg_folder"))
    paths = sorted((root / "images").glob("*.png"))
    x = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    y = np.stack([np.asarray(Image.open(root / "masks" / p.name)) for p in paths])
    return paths, x, y


def _tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _folder(
    root: Path,
    x: np.ndarray,
    masks: list[Image.Image],
    image_ext: str = ".png",
    mask_name: str = "{i:03d}.png",
    mask_dir: str = "masks",
) -> Path:
    (root / "images").mkdir(parents=True)
    (root / mask_dir).mkdir()
    for i, (img, m) in enumerate(zip(x, masks)):
        Image.fromarray(img, "RGB").save(root / "images" / f"{i:03d}{image_ext}", quality=95)
        m.save(root / mask_dir / mask_name.format(i=i))
    return root


def _palette(a: np.ndarray, colours: list[tuple[int, int, int]]) -> Image.Image:
    m = Image.fromarray(a.astype(np.uint8), "L").convert("P")
    m.putpalette([c for rgb in colours for c in rgb] + [0] * (768 - 3 * len(colours)))
    return m


def _json(*args: str) -> tuple[int, Any, str]:
    r = run_cli("diagnose", *args, "--format", "json")
    return r.exit_code, (r.json() if r.stdout.strip() else None), r.stderr


def _npz_twin(
    tmp_path: Path, model: str, images: list[str], y: np.ndarray, *extra: str, **arrays: np.ndarray
) -> Any:
    """The same arrays from an .npz: images read by the image-folder loader, y as given."""
    x = np.stack([load_image(p, (32, 32), 3) for p in images])
    path = tmp_path / "twin.npz"
    np.savez(path, x=x, y=y, **arrays)
    code, r, err = _json(fixture_path(model), str(path), *extra)
    assert code in (0, 1), err
    return r


def _one_line_error(code: int, err: str, *fragments: str) -> str:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("kerasdoctor: error: "), err
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ the real fixture


def test_fixture_folder_is_diagnosed_as_dense(tmp_path: Path) -> None:
    root = Path(fixture_path("seg_folder"))
    before = _tree_hash(root)
    code, r, err = _json(fixture_path(MODEL), str(root))
    assert code == 0, err
    assert _tree_hash(root) == before  # nothing written into the user's folder
    m = r["metrics"]
    assert m["task"] == "dense"
    assert m["positions"] == 12 * 32 * 32
    assert m["accuracy"] == pytest.approx(0.9798, abs=1e-4)
    assert m["mean_iou"] == pytest.approx(0.6037, abs=1e-4)
    masks = r["data"]["masks"]
    assert masks["dir"] == "masks" and masks["kind"] == "palette"
    assert masks["mapping"] == "palette" and masks["matched"] == 12 and masks["void"] is None
    assert [c["value"] for c in masks["classes"]] == [0, 1, 2, 3]
    assert masks["classes"][1]["color"] == [230, 25, 75]
    assert [c["pixels"] for c in masks["classes"]] == r["data"]["label_counts"]
    assert sum(c["pixels"] for c in masks["classes"]) == 12 * 32 * 32
    # the same arrays from an .npz give the same figures
    paths, _, y = _fixture()
    twin = _npz_twin(tmp_path, MODEL, [str(p) for p in paths], y)
    assert twin["metrics"] == r["metrics"]
    assert [f["id"] for f in twin["findings"]] == [f["id"] for f in r["findings"]]
    assert twin["data"]["inputs"] == r["data"]["inputs"]


def test_fixture_folder_renders_the_mask_mapping() -> None:
    args = (
        fixture_path(MODEL),
        fixture_path("seg_folder"),
        "--class-names",
        "background,disc,square,bar",
    )
    table = run_cli("diagnose", *args)
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    head = next(ln for ln in lines if ln.startswith("masks: masks/"))
    assert "12 matched" in head and "the palette index is the class" in head
    assert any("class 1 disc" in ln and "index 1 (#e6194b)" in ln for ln in lines)
    md = run_cli("diagnose", *args, "--format", "markdown")
    assert md.exit_code == 0
    assert "**Masks:** masks/" in md.stdout
    assert "- class 3 bar ← index 3 (\\#0082c8) 170 px" in md.stdout  # "#" escaped
    r = run_cli("diagnose", *args, "--format", "json").json()
    assert r["data"]["class_names"] == ["background", "disc", "square", "bar"]
    assert [c["name"] for c in r["data"]["masks"]["classes"]] == r["data"]["class_names"]


def test_library_api_reads_the_folder() -> None:
    import kerasdoctor

    report = kerasdoctor.diagnose(fixture_path(MODEL), fixture_path("seg_folder"))
    assert report.metrics.task == "dense"
    assert report.data.masks.kind == "palette"
    assert report.metrics.positions == 12 * 32 * 32
    import keras  # a model in memory takes the same route

    model = keras.saving.load_model(fixture_path(MODEL))
    again = kerasdoctor.diagnose(model, fixture_path("seg_folder"))
    assert again.metrics == report.metrics
    assert again.data.masks == report.data.masks


@pytest.mark.unit
def test_data_kind_and_flags() -> None:
    from kerasdoctor.sources import data_kind

    folder = fixture_path("seg_folder")
    assert data_kind(folder) == "segmentation"
    r = run_cli("diagnose", fixture_path(MODEL), folder, "--label-column", "y")
    _one_line_error(r.exit_code, r.stderr, "--label-column does not apply", "a segmentation folder")


def test_not_a_dense_model() -> None:
    r = run_cli("diagnose", fixture_path("healthy.keras"), fixture_path("seg_folder"))
    _one_line_error(r.exit_code, r.stderr, "is a segmentation folder", "outputs (N, 3)")


@pytest.mark.unit
def test_per_sample_commands_refuse_it(tmp_path: Path) -> None:
    r = run_cli("fix", "--class-weights", fixture_path("seg_folder"))
    _one_line_error(r.exit_code, r.stderr, "is a segmentation folder", "per-pixel masks")


# ------------------------------------------------------------------ layouts users have


def test_grey_indices_and_jpeg_images(tmp_path: Path) -> None:
    _, x, y = _fixture()
    root = _folder(tmp_path / "d", x, [Image.fromarray(m, "L") for m in y], image_ext=".jpg")
    before = _tree_hash(root)
    code, r, err = _json(fixture_path(MODEL), str(root))
    assert code in (0, 1), err
    assert _tree_hash(root) == before
    masks = r["data"]["masks"]
    assert (masks["kind"], masks["mapping"]) == ("grey", "values")
    assert [c["value"] for c in masks["classes"]] == [0, 1, 2, 3]
    jpgs = sorted(str(p) for p in (root / "images").glob("*.jpg"))
    twin = _npz_twin(tmp_path, MODEL, jpgs, y)
    assert twin["metrics"] == r["metrics"]


def test_grey_levels_are_sorted_into_classes(tmp_path: Path) -> None:
    _, x, y = _fixture()
    levels = np.array([0, 85, 170, 255], np.uint8)
    root = _folder(tmp_path / "d", x, [Image.fromarray(levels[m], "L") for m in y])
    code, r, err = _json(fixture_path(MODEL), str(root))
    assert code in (0, 1), err
    masks = r["data"]["masks"]
    assert (masks["kind"], masks["mapping"]) == ("grey", "sorted")
    assert [c["value"] for c in masks["classes"]] == [0, 85, 170, 255]
    assert r["data"]["label_counts"] == np.bincount(y.ravel(), minlength=4).tolist()
    twin = _npz_twin(tmp_path, MODEL, sorted(str(p) for p in (root / "images").glob("*")), y)
    assert twin["metrics"] == r["metrics"]


def test_binary_0_255_masks_for_one_sigmoid_unit(tmp_path: Path) -> None:
    _, x, y = _fixture()
    fg = (y > 0).astype(np.uint8)
    root = _folder(
        tmp_path / "d", x, [Image.fromarray(m * 255, "L") for m in fg], mask_name="{i:03d}_mask.png"
    )
    code, r, err = _json(fixture_path(BINARY), str(root))
    assert code in (0, 1), err
    masks = r["data"]["masks"]
    assert (masks["kind"], masks["mapping"], masks["suffix"]) == ("grey", "sorted", "_mask")
    assert [(c["index"], c["value"]) for c in masks["classes"]] == [(0, 0), (1, 255)]
    assert masks["classes"][1]["pixels"] == int(fg.sum())
    twin = _npz_twin(tmp_path, BINARY, sorted(str(p) for p in (root / "images").glob("*")), fg)
    assert twin["metrics"] == r["metrics"]


def test_rgb_colour_masks_sorted(tmp_path: Path) -> None:
    _, x, y = _fixture()
    # colours whose (r, g, b) order is the class order: black, then increasing red
    colours = np.array([(0, 0, 0), (90, 10, 10), (160, 200, 0), (250, 0, 250)], np.uint8)
    root = _folder(tmp_path / "d", x, [Image.fromarray(colours[m], "RGB") for m in y])
    code, r, err = _json(fixture_path(MODEL), str(root))
    assert code in (0, 1), err
    masks = r["data"]["masks"]
    assert (masks["kind"], masks["mapping"]) == ("rgb", "sorted")
    assert [c["value"] for c in masks["classes"]] == colours.tolist()
    twin = _npz_twin(tmp_path, MODEL, sorted(str(p) for p in (root / "images").glob("*")), y)
    assert twin["metrics"] == r["metrics"]


def test_rgb_voc_colours_by_the_voc_colormap(tmp_path: Path) -> None:
    _, x, y = _fixture()
    voc = voc_colormap().astype(np.uint8)
    root = _folder(tmp_path / "d", x, [Image.fromarray(voc[m], "RGB") for m in y])
    code, r, err = _json(fixture_path(MODEL), str(root))
    assert code in (0, 1), err
    masks = r["data"]["masks"]
    assert (masks["kind"], masks["mapping"]) == ("rgb", "voc")
    assert masks["classes"][2]["value"] == [0, 128, 0]  # sorted colours would make it class 1
    assert r["data"]["label_counts"] == np.bincount(y.ravel(), minlength=4).tolist()


def test_rgb_files_with_grey_pixels_are_grey_masks(tmp_path: Path) -> None:
    _, x, y = _fixture()
    root = _folder(tmp_path / "d", x, [Image.fromarray(m, "L").convert("RGB") for m in y])
    code, r, err = _json(fixture_path(MODEL), str(root))
    assert code in (0, 1), err
    assert (r["data"]["masks"]["kind"], r["data"]["masks"]["mapping"]) == ("grey", "values")
    assert r["data"]["label_counts"] == np.bincount(y.ravel(), minlength=4).tolist()


def test_void_255_needs_ignore_label(tmp_path: Path) -> None:
    _, x, y = _fixture()
    voided = y.copy()
    voided[:, 0, :] = 255  # a void border row, as Pascal VOC draws around objects
    colours = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200)]
    root = _folder(tmp_path / "d", x, [_palette(m, colours) for m in voided])
    code, _, err = _json(fixture_path(MODEL), str(root))
    _one_line_error(code, err, "masks/000.png", "palette index 255", "--ignore-label 255")
    code, r, err = _json(fixture_path(MODEL), str(root), "--ignore-label", "255")
    assert code in (0, 1), err
    masks = r["data"]["masks"]
    assert masks["void"] == 255 and masks["void_pixels"] == 12 * 32
    assert r["data"]["ignore_label"] == 255
    assert r["data"]["positions_excluded"] == 12 * 32
    assert r["metrics"]["positions"] == 12 * 31 * 32
    paths = sorted(str(p) for p in (root / "images").glob("*"))
    twin = _npz_twin(tmp_path, MODEL, paths, voided, "--ignore-label", "255")
    assert twin["metrics"] == r["metrics"]


def test_grey_indices_with_255_ask_for_ignore_label(tmp_path: Path) -> None:
    _, x, y = _fixture()
    voided = y.copy()
    voided[:, :, 0] = 255
    root = _folder(tmp_path / "d", x, [Image.fromarray(m, "L") for m in voided])
    code, _, err = _json(fixture_path(MODEL), str(root))
    _one_line_error(code, err, "value 255", "--ignore-label 255")


def test_masks_resized_to_the_output_with_nearest(tmp_path: Path) -> None:
    """Images and masks of 64x64 for a 32x32 model: images as the image folder reads them,
    masks by nearest neighbour only (no value between two classes appears)."""
    _, x, y = _fixture()
    big_x = x.repeat(2, axis=1).repeat(2, axis=2)
    big_y = y.repeat(2, axis=1).repeat(2, axis=2)
    big_y[:, 1::2, 1::2] = np.roll(big_y, 1, axis=2)[:, 1::2, 1::2]  # odd pixels moved
    levels = np.array([0, 85, 170, 255], np.uint8)
    root = _folder(tmp_path / "d", big_x, [Image.fromarray(levels[m], "L") for m in big_y])
    code, r, err = _json(fixture_path(MODEL), str(root))
    assert code in (0, 1), err
    masks = r["data"]["masks"]
    assert masks["size"] == [32, 32] and masks["resized"] is True
    assert masks["mapping"] == "sorted"
    small = np.stack([resize_nearest(m, (32, 32)) for m in big_y])
    assert r["data"]["label_counts"] == np.bincount(small.ravel(), minlength=4).tolist()
    paths = sorted(str(p) for p in (root / "images").glob("*"))
    twin = _npz_twin(tmp_path, MODEL, paths, small)
    assert twin["metrics"] == r["metrics"]


def test_resize_nearest_is_tensorflows() -> None:
    import tensorflow as tf

    a = np.random.default_rng(0).integers(0, 7, size=(37, 53)).astype(np.int32)
    for size in ((32, 32), (16, 24), (64, 100), (37, 53), (5, 81)):
        want = tf.image.resize(a[:, :, None], size, method="nearest").numpy()[:, :, 0]
        np.testing.assert_array_equal(resize_nearest(a, size), want)


def test_image_size_flag_must_match_the_model(tmp_path: Path) -> None:
    r = run_cli(
        "diagnose", fixture_path(MODEL), fixture_path("seg_folder"), "--image-size", "64x64"
    )
    _one_line_error(r.exit_code, r.stderr, "--image-size 64x64 does not match")


# ------------------------------------------------------------------ unusable folders


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A 4-pair folder of the fixture's first images and grey index masks."""
    _, x, y = _fixture()
    return _folder(tmp_path / "d", x[:4], [Image.fromarray(m, "L") for m in y[:4]])


@pytest.mark.unit
def test_image_without_mask(small: Path) -> None:
    (small / "masks" / "002.png").unlink()
    code, _, err = _json(fixture_path(MODEL), str(small))
    _one_line_error(code, err, "1 image of 4 has no mask", "images/002.png")


@pytest.mark.unit
def test_mask_without_image(small: Path) -> None:
    Image.fromarray(np.zeros((32, 32), np.uint8), "L").save(small / "masks" / "099.png")
    code, _, err = _json(fixture_path(MODEL), str(small))
    _one_line_error(code, err, "1 mask has no image", "masks/099.png")


def test_mask_of_another_size(small: Path) -> None:
    Image.fromarray(np.zeros((16, 32), np.uint8), "L").save(small / "masks" / "001.png")
    code, _, err = _json(fixture_path(MODEL), str(small))
    _one_line_error(code, err, "masks/001.png is 32x16", "images/001.png is 32x32")


def test_truncated_mask(small: Path) -> None:
    path = small / "masks" / "003.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    code, _, err = _json(fixture_path(MODEL), str(small))
    _one_line_error(code, err, "masks/003.png", "cannot read this mask")


def test_more_values_than_classes(small: Path) -> None:
    noisy = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32) % 9  # 9 values, 4 classes
    Image.fromarray(noisy * 20, "L").save(small / "masks" / "001.png")
    code, _, err = _json(fixture_path(MODEL), str(small))
    _one_line_error(code, err, "masks/001.png", "distinct grey values", "4 classes")


@pytest.mark.unit
def test_two_images_of_one_name(small: Path) -> None:
    Image.fromarray(np.zeros((32, 32, 3), np.uint8), "RGB").save(small / "images" / "000.jpg")
    code, _, err = _json(fixture_path(MODEL), str(small))
    _one_line_error(code, err, "images/000.jpg", "images/000.png", "keep one")


def test_mixed_grey_and_rgb_masks(small: Path) -> None:
    Image.fromarray(np.full((32, 32, 3), (200, 10, 10), np.uint8), "RGB").save(
        small / "masks" / "003.png"
    )
    code, _, err = _json(fixture_path(MODEL), str(small))
    _one_line_error(code, err, "is a grey mask", "masks/003.png", "an RGB mask")


# ------------------------------------------------------------------ sampling, model sizes


def test_sample_reads_only_the_sampled_pairs(tmp_path: Path) -> None:
    code, r, err = _json(fixture_path(MODEL), fixture_path("seg_folder"), "--sample", "5")
    assert code in (0, 1), err
    assert r["data"]["n_samples"] == 5 and r["data"]["sampled_from"] == 12
    assert (r["data"]["masks"]["matched"], r["data"]["masks"]["pairs"]) == (5, 12)
    paths, _, y = _fixture()
    twin = _npz_twin(tmp_path, MODEL, [str(p) for p in paths], y, "--sample", "5")
    assert twin["metrics"] == r["metrics"]
    assert twin["data"]["sampled_from"] == 12


def _save_model(path: Path, size: int | None, pool: bool = False) -> str:
    import keras

    inputs = keras.Input((size, size, 3))
    h = keras.layers.Rescaling(1 / 255)(inputs)
    if pool:
        h = keras.layers.AveragePooling2D(2)(h)
    outputs = keras.layers.Conv2D(4, 1, activation="softmax")(h)
    keras.Model(inputs, outputs).save(path)
    return str(path)


def test_output_smaller_than_the_input(tmp_path: Path) -> None:
    """A model whose output is at half resolution: the masks are resized (nearest) to it."""
    model = _save_model(tmp_path / "pool.keras", 32, pool=True)
    code, r, err = _json(model, fixture_path("seg_folder"))
    assert code in (0, 1), err
    assert r["data"]["masks"]["size"] == [16, 16] and r["data"]["masks"]["resized"] is True
    assert r["metrics"]["positions"] == 12 * 16 * 16
    paths, _, y = _fixture()
    small = np.stack([resize_nearest(m, (16, 16)) for m in y])
    twin = _npz_twin(tmp_path, model, [str(p) for p in paths], small)
    assert twin["metrics"] == r["metrics"]


def test_model_of_any_size(tmp_path: Path) -> None:
    """(None, None, 3) input: one image size in the folder is used as it is; mixed sizes need
    --image-size."""
    model = _save_model(tmp_path / "fcn.keras", None)
    code, r, err = _json(model, fixture_path("seg_folder"))
    assert code in (0, 1), err
    assert r["data"]["masks"]["size"] == [32, 32] and r["data"]["masks"]["resized"] is False
    _, x, y = _fixture()
    root = _folder(tmp_path / "d", x[:3], [Image.fromarray(m, "L") for m in y[:3]])
    Image.fromarray(x[3].repeat(2, 0).repeat(2, 1), "RGB").save(root / "images" / "003.png")
    Image.fromarray(y[3].repeat(2, 0).repeat(2, 1), "L").save(root / "masks" / "003.png")
    code, _, err = _json(model, str(root))
    _one_line_error(code, err, "takes any image size", "--image-size")
    code, r, err = _json(model, str(root), "--image-size", "32x32")
    assert code in (0, 1), err
    assert r["data"]["label_counts"] == np.bincount(y[:4].ravel(), minlength=4).tolist()
