"""Segmentation folders (issue 16): DATA/images/ and DATA/masks/, each image matched to its
mask by file name, read as dense labels (N, H, W) and diagnosed by kerasdoctor.dense.

The layout: a directory holding `images/` and `masks/` (or, when there is no `masks/`, exactly
one of `labels/` / `annotations/` that holds mask image files: a YOLO `labels/` of .txt files
or a COCO `annotations/` of .json files is not a mask folder). Files are matched by their path
under the two folders less the suffix (images/a/000.jpg <-> masks/a/000.png); masks named
`000_mask.png`, `000_seg.png`, ... (one suffix shared by every mask) match `000.jpg` too.

Masks become class indices, and the rule used is written into the report (data["masks"]):
- palette ("P") PNGs: the palette index is the class;
- grey masks ("L", "I", "1"): values already in 0..K-1 are the classes; otherwise, when there
  are at most K distinct values over all the masks (K = 2 for one sigmoid unit), the sorted
  values are the classes (0/255 -> 0/1, 0/50/100 -> 0/1/2);
- RGB masks: colours of the palette of the folder's first palette mask, if it has one; else
  colours of the Pascal VOC colormap when every colour is one of its first K; else the sorted
  colours (black first). RGB masks whose every colour is grey are read as grey masks.
--ignore-label V marks the value V as void before the mapping: palette index V, grey value V,
and for RGB masks the palette's (or VOC's) colour V, or (V, V, V) for sorted colours.

Images are read and resized as the image-folder source reads them (sources.load_image: the
model's input size, or --image-size); masks are resized with TensorFlow's nearest-neighbour
arithmetic (bilinear would invent classes on the edges) to the model's output size. Images are
decoded lazily, batch by batch; masks are read once and held as one byte per position (four
for RGB or 16-bit masks while reading). Nothing is written into DATA.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.errors import InputError
from kerasdoctor.findings import Report
from kerasdoctor.load import LoadedModel, _first_line, _fmt_shape, refuse_special_file
from kerasdoctor.sections import MaskClass, MasksInfo, MaskValue
from kerasdoctor.sources import (
    IMAGE_FORMATS,
    Bound,
    ImageRows,
    Source,
    parse_columns,
    parse_image_size,
)

IMAGES_DIR = "images"
MASK_DIRS = ("masks", "labels", "annotations")  # masks/ first; the others only with masks in
MASK_FORMATS = (".png", ".bmp", ".gif", ".tif", ".tiff", ".jpg", ".jpeg")
# mask file names that carry a suffix after the image's name (000.jpg <-> 000_mask.png):
# Carvana "_mask", ISIC "_segmentation", CamVid "_L", and the usual others
MASK_SUFFIXES = (
    "_mask",
    "-mask",
    "_masks",
    "_seg",
    "_segmentation",
    "_label",
    "_labels",
    "_gt",
    "_anno",
    "_annotation",
    "_L",
)
SHOWN = 6  # values quoted in an error message
_FAMILY = {"palette": "a palette mask", "grey": "a grey mask", "rgb": "an RGB mask"}


# ------------------------------------------------------------------ detection and pairing


def _holds_files(folder: Path, suffixes: Sequence[str]) -> bool:
    for _root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(f.lower().endswith(tuple(suffixes)) and not f.startswith(".") for f in files):
            return True
    return False


def mask_dirs(p: Path) -> list[str]:
    """The candidate mask folders of p: masks/ alone when it exists, else those of labels/ and
    annotations/ that hold mask image files."""
    if (p / MASK_DIRS[0]).is_dir():
        return [MASK_DIRS[0]]
    return [d for d in MASK_DIRS[1:] if (p / d).is_dir() and _holds_files(p / d, MASK_FORMATS)]


def is_seg_folder(path: str | os.PathLike[str]) -> bool:
    """A directory holding images/ and a mask folder (masks/, labels/, annotations/)."""
    p = Path(path)
    try:
        return p.is_dir() and (p / IMAGES_DIR).is_dir() and bool(mask_dirs(p))
    except OSError:
        return False


def _list(folder: Path, suffixes: Sequence[str], what: str) -> dict[str, str]:
    """name under folder less its suffix -> path, for the files with these suffixes."""
    out: dict[str, str] = {}
    for root, dirs, files in sorted(os.walk(folder), key=lambda t: t[0]):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if f.startswith(".") or not f.lower().endswith(tuple(suffixes)):
                continue
            full = os.path.join(root, f)
            key = Path(os.path.relpath(full, folder)).with_suffix("").as_posix()
            if key in out:
                raise InputError(
                    f"DATA: {out[key]} and {full} are two {what} named '{key}'; "
                    f"keep one of them (files are matched by name)"
                )
            out[key] = full
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _has(n: int) -> str:
    return "has" if n == 1 else "have"


@dataclass(frozen=True)
class Layout:
    """The matched files of a segmentation folder, in sorted name order."""

    path: str
    mask_dir: str  # "masks", "labels" or "annotations"
    images: tuple[str, ...]
    masks: tuple[str, ...]
    suffix: str | None  # the suffix stripped from every mask name, if any


def pair_files(path: str | os.PathLike[str]) -> Layout:
    """images/ and the mask folder listed and matched by name; every image needs its mask and
    every mask its image (one line naming the first file that has none)."""
    p = Path(path)
    dirs = mask_dirs(p)
    if len(dirs) != 1:
        raise InputError(
            f"DATA: {p} holds images/ and both {dirs[0]}/ and {dirs[1]}/ with mask "
            f"files; which holds the masks is ambiguous: name it masks/"
        )
    mask_dir = dirs[0]
    try:
        images = _list(p / IMAGES_DIR, IMAGE_FORMATS, "images")
        masks = _list(p / mask_dir, MASK_FORMATS, "masks")
    except OSError as exc:
        raise InputError(f"DATA: cannot read the directory {p} ({_first_line(exc)})") from exc
    if not images:
        raise InputError(f"DATA: {p / IMAGES_DIR} holds no images ({', '.join(IMAGE_FORMATS)})")
    if not masks:
        raise InputError(f"DATA: {p / mask_dir} holds no masks ({', '.join(MASK_FORMATS)})")
    suffix = None
    if set(masks) != set(images):
        for suf in MASK_SUFFIXES:
            if all(k.endswith(suf) for k in masks):
                stripped = {k[: -len(suf)]: v for k, v in masks.items()}
                if len(set(stripped) & set(images)) > len(set(masks) & set(images)):
                    masks, suffix = stripped, suf
                break
    lonely = sorted(set(images) - set(masks))
    orphans = sorted(set(masks) - set(images))
    problems = []
    if lonely:
        problems.append(
            f"{_count(len(lonely), 'image')} of {len(images)} {_has(len(lonely))} no mask in "
            f"{p / mask_dir} (first: "
            f"{images[lonely[0]]}, no {p / mask_dir / lonely[0]}"
            f"{suffix or ''}.png or other mask file of that name)"
        )
    if orphans:
        problems.append(
            f"{_count(len(orphans), 'mask')} {_has(len(orphans))} no image in "
            f"{p / IMAGES_DIR} (first: "
            f"{masks[orphans[0]]})"
        )
    if problems:
        raise InputError(
            f"DATA: {p}: " + "; ".join(problems) + "; images and masks are "
            "matched by file name (images/000.jpg <-> masks/000.png)"
        )
    keys = sorted(images)
    return Layout(
        str(p), mask_dir, tuple(images[k] for k in keys), tuple(masks[k] for k in keys), suffix
    )


# ------------------------------------------------------------------ the source


class SegFolderSource(Source):
    """DATA that is a segmentation folder: matched and checked without the model; diagnosed by
    `diagnose` (kerasdoctor.core routes it here). Commands that read one label per sample
    refuse it in one line."""

    kind = "segmentation"

    def __init__(self, path: Path, opts: Any) -> None:
        self.path = str(path)
        self.image_size = parse_image_size(getattr(opts, "image_size", None))
        names = getattr(opts, "class_names", None)
        self.class_names = parse_columns(names, "--class-names") if names is not None else None
        self.layout = pair_files(path)

    def _refuse(self) -> InputError:
        from kerasdoctor.load import DenseLabels  # fix --threshold / --repair read it as dense

        return DenseLabels(
            f"DATA: {self.path} is a segmentation folder ({IMAGES_DIR}/ and "
            f"{self.layout.mask_dir}/): its labels are per-pixel masks, not one label per "
            f"image; `kerasdoctor diagnose MODEL {self.path}` diagnoses a per-pixel model on it"
        )

    def bind(self, lm: LoadedModel) -> Bound:
        raise self._refuse()

    @property
    def labels(self) -> Any:
        raise self._refuse()

    def diagnose(self, lm: LoadedModel, opts: Any) -> Report:
        return diagnose_folder(lm, self, opts)


# ------------------------------------------------------------------ reading masks


def resize_nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, ...) -> (h, w, ...) by the arithmetic of TensorFlow's resize_nearest_neighbor
    with half-pixel centres (tf.image.resize(method="nearest")): source index
    min(floor((i + 0.5) * in / out), in - 1). Values are copied, never blended."""
    h, w = size
    if a.shape[0] == h and a.shape[1] == w:
        return a

    def axis(n_in: int, n_out: int) -> np.ndarray:
        src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(n_in / n_out)
        out: np.ndarray = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        return out

    out: np.ndarray = a[axis(a.shape[0], h)][:, axis(a.shape[1], w)]
    return out


def _read_mask(path: str) -> tuple[str, np.ndarray, list[int] | None]:
    """(family, codes, palette) of one mask as stored: palette indices ("palette"), grey values
    ("grey") or RGB colours packed as r << 16 | g << 8 | b ("rgb")."""
    from PIL import Image, UnidentifiedImageError

    refuse_special_file(path, "DATA")
    palette = None
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode in ("P", "PA"):
                a = np.asarray(img)
                a = a[..., 0] if a.ndim == 3 else a
                palette = list(img.getpalette() or [])
                family = "palette"
            elif mode in ("1", "L", "LA", "I", "F") or mode.startswith("I;16"):
                a = np.asarray(img.getchannel("L") if mode == "LA" else img)
                family = "grey"
            else:
                rgb = np.asarray(img.convert("RGB")).astype(np.int32)
                a = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
                family = "rgb"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"DATA: {path}: cannot read this mask ({_first_line(exc)})") from exc
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise InputError(
                f"DATA: {path}: the mask holds non-integer values; masks hold "
                "class values (integers)"
            )
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu" or a.ndim != 2:
        raise InputError(f"DATA: {path}: unsupported mask ({mode}, shape {a.shape})")
    if a.size and (a.min() < -(2**31) or a.max() >= 2**31):
        raise InputError(f"DATA: {path}: mask values beyond 32 bits")
    return family, a, palette


def _distinct(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return np.flatnonzero(np.bincount(a.ravel(), minlength=256))
    return np.unique(a)


def _rgb(code: int) -> list[int]:
    return [(code >> 16) & 255, (code >> 8) & 255, code & 255]


def _pack(rgb: Sequence[int]) -> int:
    return (int(rgb[0]) << 16) | (int(rgb[1]) << 8) | int(rgb[2])


def _hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def voc_colormap(n: int = 256) -> np.ndarray:
    """The Pascal VOC colormap (n, 3): class 1 (128, 0, 0), 2 (0, 128, 0), ..., 255 (224,
    224, 192), the void colour of its masks."""
    cmap = np.zeros((n, 3), np.int64)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def _values_text(values: Sequence[Any], family: str) -> str:
    shown = [str(tuple(_rgb(int(v)))) if family == "rgb" else str(int(v)) for v in values]
    return ", ".join(shown[:SHOWN]) + (", ..." if len(shown) > SHOWN else "")


@dataclass
class _Masks:
    y: np.ndarray  # (N, h, w) class indices; void positions hold `sentinel`
    valid: np.ndarray | None  # (N, h, w) True where the position counts; None: all do
    info: MasksInfo


def read_masks(
    layout: Layout,
    rows: Sequence[int],
    size: tuple[int, int],
    image_sizes: Sequence[tuple[int, int]],
    k: int,
    void: int | None,
    names: Sequence[str],
) -> _Masks:
    """The masks of `rows`, checked against their images' sizes, resized (nearest) to `size`,
    mapped to class indices 0..k-1 by one rule for the whole folder; the rule in `info`."""
    n = len(rows)
    h, w = size
    raw: np.ndarray = np.zeros((n, h, w), np.uint8)  # codes at the model's resolution
    family_of: list[str] = []
    seen: dict[str, dict[int, int]] = {"palette": {}, "grey": {}, "rgb": {}}  # code -> first j
    palette0: tuple[int, list[int]] | None = None  # (row, palette) of the first palette mask
    resized = False
    for j, i in enumerate(rows):
        path = layout.masks[i]
        family, a, palette = _read_mask(path)
        if a.shape != image_sizes[j]:
            ih, iw = image_sizes[j]
            raise InputError(
                f"DATA: {path} is {a.shape[1]}x{a.shape[0]} (width x height) but "
                f"its image {layout.images[i]} is {iw}x{ih}; a mask must have its "
                "image's size"
            )
        if family == "palette" and palette0 is None:
            palette0 = (j, palette or [])
        union = seen[family]
        for v in _distinct(a).tolist():
            union.setdefault(int(v), j)
        if len(union) > k + 3:  # more values than classes, whatever is void
            raise _too_many(layout, rows, family, union, k, void, path)
        small = resize_nearest(a, size)
        resized = resized or small.shape != a.shape
        if raw.dtype == np.uint8 and (small.dtype != np.uint8 or family == "rgb"):
            raw = raw.astype(np.int32)  # once: wider codes (16-bit grey, packed RGB)
        raw[j] = small
        family_of.append(family)
    stored = list(family_of)  # how each mask's codes are stored in raw
    families = set(family_of)
    if (
        "rgb" in families
        and "palette" not in families
        and all(_rgb(c)[0] == _rgb(c)[1] == _rgb(c)[2] for c in seen["rgb"])
    ):
        # RGB files holding grey pixels only: grey masks saved as RGB
        for c, j in sorted(seen["rgb"].items(), key=lambda t: t[1]):
            seen["grey"].setdefault(c & 255, j)
        seen["rgb"] = {}
        family_of = ["grey" if f == "rgb" else f for f in family_of]
        families = set(family_of)
    if "grey" in families and len(families) > 1:
        other = next(f for f in family_of if f != "grey")
        ga, gb = family_of.index("grey"), family_of.index(other)
        raise InputError(
            f"DATA: {layout.masks[rows[ga]]} is a grey mask but "
            f"{layout.masks[rows[gb]]} is {_FAMILY[other]}; save every mask alike"
        )
    kind = "palette" if "palette" in families else families.pop()
    tables, info = _mapping(layout, rows, seen, kind, k, void, palette0, names)
    sentinel = 255 if k < 255 else -1
    ydtype = np.uint8 if k < 255 else np.int32
    y = raw if raw.dtype == ydtype else np.empty((n, h, w), ydtype)
    pixels = np.zeros(k, np.int64)
    void_pixels = 0
    for j in range(n):
        keys, targets = tables[family_of[j]]
        codes = raw[j] & 255 if stored[j] != family_of[j] else raw[j]  # RGB read as grey
        t = targets[np.searchsorted(keys, codes)]
        y[j] = np.where(t < 0, sentinel, t)
        void_pixels += int((t < 0).sum())
        pixels += np.bincount(t[t >= 0].ravel(), minlength=k)[:k]
    del raw
    valid = (y != sentinel) if void_pixels else None
    classes = tuple(
        MaskClass(
            index=int(row["index"]),
            name=str(row["name"]),
            value=_mask_value(row["value"]),
            pixels=int(pixels[row["index"]]),
            color=None if row.get("color") is None else tuple(int(v) for v in row["color"]),
        )
        for row in info["classes"]
    )
    typed = MasksInfo(
        dir=info["dir"],
        kind=info["kind"],
        mapping=info["mapping"],
        rule=info["rule"],
        matched=info["matched"],
        pairs=info["pairs"],
        suffix=info["suffix"],
        classes=classes,
        void=_mask_value(info["void"]),
        pixels_total=int(pixels.sum()),
        void_pixels=void_pixels,
        size=(int(h), int(w)),
        resized=bool(resized),
    )
    return _Masks(y, valid, typed)


def _mask_value(value: Any) -> MaskValue:
    """A mask value as the report holds it: an int, an RGB tuple, or None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return int(value)


def _too_many(
    layout: Layout,
    rows: Sequence[int],
    family: str,
    union: Mapping[int, int],
    k: int,
    void: int | None,
    path: str,
) -> InputError:
    values = sorted(v for v in union if v != void)
    what = {"palette": "palette indices", "grey": "grey values", "rgb": "colours"}[family]
    hint = ""
    if path.lower().endswith((".jpg", ".jpeg")):
        hint = "; JPEG compression blurs mask values: save masks as PNG"
    elif family == "rgb":
        hint = "; anti-aliased or resized masks blend colours: masks need exact class colours"
    elif void is None:
        hint = "; if one value marks void pixels, pass --ignore-label V"
    return InputError(
        f"DATA: {path}: the masks hold {len(values)}+ distinct {what} "
        f"({_values_text(values, family)}) but the model has {k} classes{hint}"
    )


def _mapping(
    layout: Layout,
    rows: Sequence[int],
    seen: Mapping[str, Mapping[int, int]],
    kind: str,
    k: int,
    void: int | None,
    palette0: tuple[int, list[int]] | None,
    names: Sequence[str],
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """One lookup table (sorted codes -> class, -1 void) per mask family, and the report's
    description of the rule."""
    tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    where = {f: {c: layout.masks[rows[j]] for c, j in s.items()} for f, s in seen.items()}
    classes: list[dict[str, Any]] = [
        {"index": i, "name": str(names[i]), "value": None} for i in range(k)
    ]
    void_value: Any = void
    voc = voc_colormap()

    def bad(family: str, code: int, why: str) -> InputError:
        shown = str(tuple(_rgb(code))) if family == "rgb" else str(code)
        what = {"palette": "palette index", "grey": "value", "rgb": "colour"}[family]
        return InputError(f"DATA: {where[family][code]} holds {what} {shown}, {why}")

    def table(pairs: Mapping[int, int]) -> tuple[np.ndarray, np.ndarray]:
        keys = np.array(sorted(pairs), np.int64)
        return keys, np.array([pairs[c] for c in sorted(pairs)], np.int64)

    rule: str
    if kind == "palette":
        pal_colours = palette0[1] if palette0 is not None else []
        mapped: dict[int, int] = {}
        for c in sorted(seen["palette"]):
            if c == void:
                mapped[c] = -1
            elif c >= k:
                hint = (
                    "; if it marks void pixels (as 255 does in Pascal VOC), pass "
                    f"--ignore-label {c}"
                    if void is None and c == 255
                    else ""
                )
                raise bad("palette", c, f"but the model has {k} classes (0..{k - 1}){hint}")
            else:
                mapped[c] = c
        tables["palette"] = table(mapped)
        for row in classes:
            i = row["index"]
            row["value"] = i
            if len(pal_colours) >= 3 * (i + 1):
                row["color"] = pal_colours[3 * i : 3 * i + 3]
        rule = "the palette index is the class"
        if seen["rgb"]:  # RGB masks beside palette masks: their colours by that palette
            assert palette0 is not None
            lookup: dict[int, int] = {}
            for i in range(len(pal_colours) // 3):
                lookup.setdefault(_pack(pal_colours[3 * i : 3 * i + 3]), i)
            first = layout.masks[rows[palette0[0]]]
            rgb_map: dict[int, int] = {}
            for c in seen["rgb"]:
                if c not in lookup:
                    raise bad(
                        "rgb",
                        c,
                        f"which is not a colour of the palette of {first} "
                        "(RGB masks beside palette masks are read by that palette)",
                    )
                i = lookup[c]
                if i == void:
                    rgb_map[c] = -1
                elif i >= k:
                    raise bad(
                        "rgb",
                        c,
                        f"palette index {i} in {first}, but the model has {k} classes (0..{k - 1})",
                    )
                else:
                    rgb_map[c] = i
            tables["rgb"] = table(rgb_map)
            rule += f"; RGB masks by the colours of the palette of {first}"
        mapping = "palette"
    elif kind == "grey":
        values = sorted(seen["grey"])
        rest = [v for v in values if v != void]
        if (
            void is None
            and 255 in values
            and k < 255
            and all(0 <= v < k for v in values if v != 255)
            and any(0 < v < k for v in values if v != 255)
        ):
            raise bad(
                "grey",
                255,
                f"beside class indices {_values_text(rest[:-1], 'grey')}: 255 "
                "marks void pixels in VOC-style masks; pass --ignore-label "
                f"255 (the model has {k} classes, 0..{k - 1})",
            )
        if all(0 <= v < k for v in rest):
            mapping, rule = "values", "the grey value is the class"
            order = {v: v for v in rest}
            for row in classes:
                row["value"] = row["index"]
        elif len(rest) <= k:
            mapping = "sorted"
            rule = f"the {len(rest)} grey values, sorted, are classes 0..{len(rest) - 1}" + (
                f" (classes {len(rest)}..{k - 1} appear in no mask)" if len(rest) < k else ""
            )
            order = {v: i for i, v in enumerate(rest)}
            for v, i in order.items():
                classes[i]["value"] = int(v)
        else:
            raise _too_many(layout, rows, "grey", seen["grey"], k, void, where["grey"][rest[k]])
        if void is not None and void in seen["grey"]:
            order[void] = -1
        tables["grey"] = table(order)
    else:  # rgb, no palette mask
        colours = sorted(seen["rgb"])
        voc_codes = [_pack(c) for c in voc.tolist()]
        voc_void = voc_codes[void] if void is not None and 0 <= void < 256 else None
        if all(c in voc_codes[:k] or c == voc_void for c in colours):
            mapping, rule = "voc", "the colours of the Pascal VOC colormap, class by class"
            void_code = voc_void
            order = {c: voc_codes.index(c) for c in colours if c != void_code}
            for row in classes:
                row["value"] = _rgb(voc_codes[row["index"]])
        else:
            void_code = _pack((void, void, void)) if void is not None and 0 <= void < 256 else None
            rest = [c for c in colours if c != void_code]
            if len(rest) > k:
                raise _too_many(layout, rows, "rgb", seen["rgb"], k, None, where["rgb"][rest[k]])
            mapping = "sorted"
            rule = (
                f"the {len(rest)} colours, sorted by (red, green, blue), are classes "
                f"0..{len(rest) - 1}"
                + (f" (classes {len(rest)}..{k - 1} appear in no mask)" if len(rest) < k else "")
            )
            order = {c: i for i, c in enumerate(rest)}
            for c, i in order.items():
                classes[i]["value"] = _rgb(c)
        void_value = _rgb(void_code) if void_code is not None else None
        if void_code is not None and void_code in seen["rgb"]:
            order[void_code] = -1
        tables["rgb"] = table(order)
    info: dict[str, Any] = {
        "dir": layout.mask_dir,
        "kind": kind,
        "mapping": mapping,
        "rule": rule,
        "matched": len(rows),
        "pairs": len(layout.images),
        "suffix": layout.suffix,
        "classes": classes,
        "void": void_value,
    }
    return tables, info


# ------------------------------------------------------------------ the diagnosis


def _image_size(path: str) -> tuple[int, int]:
    """(height, width) of an image from its header."""
    from PIL import Image, UnidentifiedImageError

    refuse_special_file(path, "DATA")
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"DATA: {path}: cannot read this image ({_first_line(exc)})") from exc
    return int(h), int(w)


def _fmt(shape: Sequence[Any]) -> str:
    return "(N, " + ", ".join("?" if d is None else str(d) for d in shape[1:]) + ")"


@dataclass(frozen=True)
class FolderData:
    """A segmentation folder read for a per-pixel model: the images as an array-like decoded
    on demand, the masks as class indices with the positions that count, the mapping."""

    arrays: dict[str, Any]  # {"x": ImageRows}
    y: np.ndarray  # (N, H, W) class indices at the model's output size
    valid: np.ndarray | None  # (N, H, W) bool: the positions that count; None: every one
    names: list[str]
    info: MasksInfo  # how mask values became classes (report.data.masks)
    indices: np.ndarray | None  # the rows --sample kept, None for all


def diagnose_folder(lm: LoadedModel, src: SegFolderSource, opts: Any) -> Report:
    """The dense diagnosis of a per-pixel model on a segmentation folder, with the masks'
    mapping in report.data.masks."""
    from kerasdoctor.dense import diagnose_loaded

    fd = read_folder(lm, src, opts)
    inner = copy.copy(opts)  # the mapping has applied these already
    inner.sample, inner.class_names, inner.ignore_label = None, None, None
    report = diagnose_loaded(lm, src.path, fd.arrays, fd.y, fd.valid, fd.names, inner)
    data = replace(report.data, ignore_label=getattr(opts, "ignore_label", None), masks=fd.info)
    if fd.indices is not None:
        data = replace(data, sampled_from=len(src.layout.images), seed=opts.seed)
    return replace(report, data=data)


def read_folder(lm: LoadedModel, src: SegFolderSource, opts: Any) -> FolderData:
    """The folder's images and masks for this per-pixel model (what `diagnose` and the fix
    modes that read dense labels share): masks mapped to classes and resized to the output."""
    from kerasdoctor.dense import is_dense_output
    from kerasdoctor.multilabel import _sample_indices

    layout = src.layout
    out = tuple(lm.output_shape)
    where = f"DATA: {src.path} is a segmentation folder ({IMAGES_DIR}/ and {layout.mask_dir}/)"
    if not is_dense_output(lm):
        raise InputError(
            f"{where}, one class per pixel, but MODEL {lm.path} outputs {_fmt(out)}, one "
            f"prediction per image; diagnose a model whose output is per pixel (N, H, W, K), or "
            "give a classifier a folder of class subfolders"
        )
    if len(out) != 4:
        raise InputError(
            f"{where}, one class per pixel, but MODEL {lm.path} outputs "
            f"{_fmt(out)}; a per-pixel model outputs (N, H, W, K)"
        )
    if out[-1] is None:
        raise InputError(f"MODEL: the output {_fmt(out)} has no fixed class axis")
    k = 2 if out[-1] == 1 else int(out[-1])
    if len(lm.inputs) != 1:
        raise InputError(
            f"{where}; it feeds one model input, but the model has "
            f"{len(lm.inputs)} ({', '.join(s.name for s in lm.inputs)})"
        )
    spec = lm.inputs[0]
    shape = tuple(spec.shape)
    if len(shape) != 4 or shape[-1] not in (1, 3, 4):
        raise InputError(
            f"{where}; its images (height, width, 1, 3 or 4 channels) do not fit "
            f"model input '{spec.name}' {_fmt_shape(shape)}"
        )
    names = list(src.class_names) if src.class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise InputError(f"--class-names: {len(names)} names for the model's {k} classes")
    rows = list(range(len(layout.images)))
    indices = _sample_indices(len(rows), opts)  # --sample: read only the sampled pairs
    if indices is not None:
        rows = [int(i) for i in indices]
    image_sizes = [_image_size(layout.images[i]) for i in rows]
    h, w = shape[1], shape[2]
    if src.image_size is not None:
        if (h is not None and h != src.image_size[0]) or (w is not None and w != src.image_size[1]):
            raise InputError(
                f"--image-size {src.image_size[0]}x{src.image_size[1]} does not "
                f"match model input '{spec.name}' {_fmt_shape(shape)}"
            )
        h, w = src.image_size
    if h is None or w is None:
        if len(set(image_sizes)) != 1:
            a, b = sorted(set(image_sizes))[:2]
            ia, ib = (layout.images[rows[image_sizes.index(s)]] for s in (a, b))
            raise InputError(
                f"DATA: model input '{spec.name}' {_fmt_shape(shape)} takes any image size and "
                f"the images differ ({ia} is {a[1]}x{a[0]}, {ib} is {b[1]}x{b[0]}); give the "
                "size the model was trained on with --image-size HEIGHTxWIDTH"
            )
        h, w = image_sizes[0]  # one size for all: the images as they are
    mask_size = (int(out[1] if out[1] is not None else h), int(out[2] if out[2] is not None else w))
    void = getattr(opts, "ignore_label", None)
    masks = read_masks(layout, rows, mask_size, image_sizes, k, void, names)
    x = ImageRows([layout.images[i] for i in rows], (int(h), int(w)), int(shape[3] or 3))
    arrays: dict[str, Any] = {"x": x}  # an array-like: images decoded batch by batch
    return FolderData(arrays, masks.y, masks.valid, names, masks.info, indices)


# ------------------------------------------------------------------ rendering help


def mask_lines(masks: MasksInfo, limit: int = 20) -> list[str]:
    """data.masks as text: a headline (the rule), the void value, then one line per class
    (up to `limit`; the rest in one line), for the table and Markdown reports."""
    kind = masks.kind
    fam = {"palette": "palette masks", "grey": "grey masks", "rgb": "RGB masks"}.get(
        str(kind), str(kind)
    )
    suffix = f", mask names end in {masks.suffix}" if masks.suffix else ""
    void = masks.void
    void_txt = (
        "none"
        if void is None
        else f"{_value_text(void, kind)} ({masks.void_pixels:,} px, not counted)"
    )
    size = masks.size
    at = f" at {size[0]}x{size[1]}" if len(size) == 2 else ""
    matched, pairs = masks.matched, masks.pairs
    of = f" (a sample of {pairs})" if pairs != matched else ""
    head = (
        f"masks: {masks.dir}/ · {matched} matched to their images by name{of}"
        f"{suffix} · {fam}: {masks.rule}"
    )
    rows = list(masks.classes)
    lines = [head, f"  void: {void_txt} · pixels counted{at}"]

    def label(r: MaskClass) -> str:
        name = str(r.name)
        return f"class {r.index}" + ("" if name == str(r.index) else f" {name}")

    width = max((len(label(r)) for r in rows), default=0)
    values = [_value_text(r.value, kind, r.color) for r in rows]
    vwidth = max((len(v) for v in values[:limit]), default=0)
    for r, v in zip(rows[:limit], values):
        lines.append(f"  {label(r):<{width}} ← {v:<{vwidth}}  {r.pixels:>9,} px")
    if len(rows) > limit:
        lines.append(
            "  " + " · ".join(f"{r.index} ← {_value_text(r.value, kind)}" for r in rows[limit:])
        )
    return lines


def _value_text(value: Any, kind: Any, color: Any = None) -> str:
    if value is None:
        return "no mask value"
    if isinstance(value, (list, tuple)):
        return f"colour {_hex(value)} {tuple(value)}"
    if kind == "palette":
        return f"index {value}" + (f" ({_hex(color)})" if color else "")
    return f"value {value}"
