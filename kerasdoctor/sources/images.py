"""A folder of class subfolders of images, read as keras.utils.image_dataset_from_directory
reads it (class names, file order, the seeded shuffle, the bilinear resize)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.errors import InputError
from kerasdoctor.load import (
    LoadedModel,
    _first_line,
    _fmt_shape,
    decode_labels,
    refuse_special_file,
)
from kerasdoctor.sources.interface import (
    IMAGE_FORMATS,
    ArrayBound,
    Bound,
    Source,
    _single_input,
)


class ImageRows:
    """The images of a folder as an array-like: indexing decodes and resizes just those files,
    as Keras's image loader does (nothing is cached)."""

    def __init__(self, paths: list[str], size: tuple[int, int], channels: int) -> None:
        self.paths = paths
        self.size = size
        self.channels = channels
        self.shape = (len(paths), size[0], size[1], channels)
        self.dtype = np.dtype(np.float32)
        self.ndim = 4

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: Any) -> np.ndarray:
        rows = (
            range(*idx.indices(len(self.paths)))
            if isinstance(idx, slice)
            else (np.asarray(idx, dtype=np.int64).reshape(-1).tolist())
        )
        out = np.empty((len(rows), *self.shape[1:]), np.float32)
        for j, i in enumerate(rows):
            out[j] = load_image(self.paths[i], self.size, self.channels)
        return out


def load_image(path: str, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as float32 (height, width, channels) in its own value range (0-255 for 8-bit
    files): decoded and color-converted as keras.utils.load_img / Keras's PIL loader does, then
    resized like tf.image.resize(method="bilinear"), what image_dataset_from_directory uses."""
    from PIL import Image, UnidentifiedImageError

    refuse_special_file(path, "DATA")  # a FIFO among the images would block Image.open
    try:
        with Image.open(path) as opened:
            img: Any = opened
            if channels == 1:
                if img.mode not in ("L", "I;16", "I"):
                    img = img.convert("L")
            elif channels == 3:
                if img.mode != "RGB":
                    img = img.convert("RGB")
            elif img.mode != "RGBA":
                img = img.convert("RGBA")
            a = np.asarray(img, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"DATA: {path}: cannot read this image ({_first_line(exc)})") from exc
    if a.ndim == 2:
        a = a[:, :, None]
    return resize_bilinear(a, size)


def resize_bilinear(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) -> (h, w, C), bilinear with half-pixel centres and no antialiasing: the
    arithmetic of TensorFlow's resize_bilinear (what tf.image.resize and keras.ops.image.resize
    use by default), so pixels match what the model saw in training."""
    h, w = size
    if a.shape[0] == h and a.shape[1] == w:
        return a

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(
            n_in / n_out
        ) - np.float32(0.5)
        lo = np.floor(src)
        frac = (src - lo).astype(np.float32)
        lo_i = np.clip(lo, 0, n_in - 1).astype(np.int64)
        hi_i = np.clip(np.ceil(src), 0, n_in - 1).astype(np.int64)
        return lo_i, hi_i, frac

    y0, y1, fy = axis(a.shape[0], h)
    x0, x1, fx = axis(a.shape[1], w)
    fx3 = fx[None, :, None]
    top = a[y0][:, x0] + (a[y0][:, x1] - a[y0][:, x0]) * fx3
    bottom = a[y1][:, x0] + (a[y1][:, x1] - a[y1][:, x0]) * fx3
    out: np.ndarray = (top + (bottom - top) * fy[:, None, None]).astype(np.float32)
    return out


class ImageFolderSource(Source):
    """A folder of class subfolders of images, read the way
    keras.utils.image_dataset_from_directory reads it: class names are the sorted subfolder
    names (hidden ones skipped), files are listed per class in sorted walk order, and the list
    is shuffled with the seed as Keras does (a folder is ordered by class by construction;
    shuffling keeps the sorted-labels check about the user's data, not the folder layout)."""

    kind = "images"

    def __init__(self, path: Path, image_size: tuple[int, int] | None, seed: int) -> None:
        self.path = str(path)
        self.image_size = image_size
        try:
            entries = sorted(os.listdir(path))
        except OSError as exc:
            raise InputError(
                f"DATA: cannot read the directory {path} ({_first_line(exc)})"
            ) from exc
        classes = [e for e in entries if (path / e).is_dir() and not e.startswith(".")]
        if not classes:
            images = [e for e in entries if e.lower().endswith(IMAGE_FORMATS)]
            holds = f"{len(images)} images and no subfolders" if images else "no subfolders"
            raise InputError(
                f"DATA: {path} is a directory but neither a folder of class subfolders of "
                f"images nor a tf.data.Dataset.save directory (it holds {holds}); put the "
                "images of each class in a subfolder named after the class"
            )
        paths: list[str] = []
        labels: list[int] = []
        for ci, name in enumerate(classes):
            found = _list_images(path / name)
            if not found:
                raise InputError(
                    f"DATA: class folder {path / name} holds no images "
                    f"({', '.join(IMAGE_FORMATS)}); remove it or add its images"
                )
            paths.extend(found)
            labels.extend([ci] * len(found))
        # keras.utils.dataset_utils.index_directory's shuffle, with the same seed
        np.random.RandomState(seed).shuffle(paths)
        y = np.asarray(labels, dtype=np.int64)
        np.random.RandomState(seed).shuffle(y)
        self.paths = paths
        self.labels = decode_labels(y, list(classes), where=f"DATA: {path}")

    def bind(self, lm: LoadedModel) -> Bound:
        spec = _single_input(lm, self.path, "an image folder")
        shape = spec.shape
        if len(shape) != 4 or shape[-1] not in (1, 3, 4):
            raise InputError(
                f"DATA: {self.path} holds images (height, width, channels with 1, 3 or 4 "
                f"channels) but model input '{spec.name}' expects {_fmt_shape(shape)}"
            )
        h, w, c = shape[1], shape[2], int(shape[3] or 3)
        if self.image_size is not None:
            if (h is not None and h != self.image_size[0]) or (
                w is not None and w != self.image_size[1]
            ):
                raise InputError(
                    f"--image-size {self.image_size[0]}x{self.image_size[1]} does not match "
                    f"model input '{spec.name}' {_fmt_shape(shape)}"
                )
            h, w = self.image_size
        if h is None or w is None:
            raise InputError(
                f"DATA: model input '{spec.name}' {_fmt_shape(shape)} takes any image size; "
                "give the size the model was trained on with --image-size HEIGHTxWIDTH"
            )
        rows = ImageRows(self.paths, (int(h), int(w)), c)
        return ArrayBound(self.path, [rows], self.labels)


def _list_images(folder: Path) -> list[str]:
    """Image files under a class folder, in keras.utils.dataset_utils.iter_valid_files order."""
    out: list[str] = []
    for root, _, files in sorted(os.walk(folder), key=lambda t: t[0]):
        out.extend(
            os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_FORMATS)
        )
    return out
