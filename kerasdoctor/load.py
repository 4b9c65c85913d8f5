"""Loading: models (.keras, .h5, SavedModel) and .npz datasets, validated into typed objects.

Everything unusable raises InputError with one line naming the file and the problem.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.errors import InputError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


# -------------------------------------------------------------------------- paths

_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def refuse_special_file(path: str | os.PathLike[str], role: str) -> None:
    """MODEL and DATA are regular files or directories. Say so, from stat() alone, before
    anything opens the path: reading a FIFO blocks until a writer comes, /dev/zero never ends,
    a socket cannot be opened. A missing path is left to the caller to report."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except (OSError, ValueError):
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    what = next((name for test, name in _SPECIAL_KINDS if test(mode)), "a special file")
    link = f" (a symbolic link to {os.path.realpath(p)})" if p.is_symlink() else ""
    raise InputError(
        f"{role}: {p}{link} is {what}, not a regular file or a directory; "
        f"kerasdoctor reads {role} from files and directories only: save it to a "
        "file first"
    )


# --------------------------------------------------------------------------- data


@dataclass
class Labels:
    """Labels decoded to class indices, whatever their encoding in the file."""

    y: np.ndarray  # int64 class indices, shape (N,)
    encoding: str  # "index" | "one-hot" | "binary" | "bool" | "soft" | "string"
    width: int | None = None  # K of a one-hot / soft encoding
    class_names: list[str] | None = None


@dataclass
class RawData:
    """An .npz read and checked, inputs not yet matched to a model."""

    path: str
    arrays: dict[str, np.ndarray]  # the candidate input arrays, by key
    labels: Labels
    refused: dict[str, str] = field(default_factory=dict)  # key -> why it cannot be used

    @property
    def n_samples(self) -> int:
        return int(self.labels.y.shape[0])


def _fmt_shape(shape: Sequence[Any]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def read_npz(
    path: str | os.PathLike[str], *, x_key: str | None = None, y_key: str = "y"
) -> RawData:
    """Read an .npz per the contract: `y`, input arrays, optional `class_names`."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"DATA: no such file: {p}")
    refuse_special_file(p, "DATA")
    if p.is_dir():
        raise InputError(f"DATA: {p} is a directory; expected an .npz file")
    arrays: dict[str, np.ndarray] = {}
    refused: dict[str, str] = {}
    try:
        with np.load(p, allow_pickle=False) as npz:
            keys = list(npz.files)
            for k in keys:
                damage = _npz_member_damage(npz, k)
                if damage is not None:
                    refused[k] = damage
                    continue
                try:
                    arrays[k] = npz[k]
                except ValueError:  # object arrays need pickle: refused on purpose
                    refused[k] = (
                        f"array '{k}' holds Python objects, which kerasdoctor does not "
                        "unpickle; save it with a numeric or string dtype"
                    )
                except MemoryError:
                    refused[k] = (
                        f"array '{k}' does not fit in memory; save it as x.npy and pass "
                        "it with --labels y.npy, which is read in row chunks"
                    )
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise InputError(f"DATA: {p} is not a readable .npz archive ({_first_line(exc)})") from exc
    if y_key in refused:
        raise InputError(f"DATA: {p}: {refused[y_key]}")
    if y_key not in arrays:
        raise InputError(
            f"DATA: {p} has no '{y_key}' array for the labels "
            f"(found: {', '.join(keys) or 'nothing'})"
        )
    class_names = arrays.pop("class_names", None)
    names: list[str] | None = None
    if class_names is not None:
        if class_names.ndim != 1:
            raise InputError(f"DATA: {p}: 'class_names' must be 1-D, got {class_names.shape}")
        names = [str(n) for n in class_names.tolist()]
    labels = decode_labels(arrays.pop(y_key), names, where=f"DATA: {p}: '{y_key}'")
    if labels.y.shape[0] == 0:
        raise InputError(f"DATA: {p} holds no samples ('{y_key}' is empty)")
    if x_key is not None:
        if x_key in refused:
            raise InputError(f"DATA: {p}: {refused[x_key]}")
        if x_key not in arrays:
            raise InputError(f"DATA: {p} has no '{x_key}' array (found: {', '.join(keys)})")
        arrays = {"x": arrays[x_key]}
    return RawData(str(p), arrays, labels, refused)


def _npz_member_damage(npz: Any, key: str) -> str | None:
    """What is wrong with an .npz member, from its .npy header and the archive's directory
    alone: a shape that is no shape, or one its data cannot fill (numpy would allocate the
    claimed size before finding out). None when it looks whole, or is not an .npy member."""
    from numpy.lib import format as npy_format

    name = key if key in npz.zip.namelist() else f"{key}.npy"
    with npz.zip.open(name) as fh:
        try:
            version = npy_format.read_magic(fh)
        except ValueError:
            return None  # not an .npy member: numpy hands back its bytes, as before
        readers = {
            (1, 0): npy_format.read_array_header_1_0,
            (2, 0): npy_format.read_array_header_2_0,
        }
        if version not in readers:
            return None
        try:
            shape, _, dtype = readers[version](fh)
        except ValueError as exc:
            return f"array '{key}' has an unreadable .npy header ({_first_line(exc)})"
        held = npz.zip.getinfo(name).file_size - fh.tell()
    if dtype.hasobject:
        return None  # refused with its own message when it is read
    if any(d < 0 for d in shape):
        return f"array '{key}' claims shape {_fmt_shape(shape)}, which is not a shape (corrupt)"
    claimed = dtype.itemsize
    for d in shape:
        claimed *= d
    if claimed > held:
        return (
            f"array '{key}' claims shape {_fmt_shape(shape)} of {dtype} ({claimed:,} bytes) "
            f"but holds {max(held, 0):,} bytes of data (truncated or corrupt)"
        )
    return None


def check_input_array(a: np.ndarray, key: str, n: int, where: str) -> None:
    """An input array must be numeric and have one row per label."""
    if a.ndim == 0 or a.shape[0] != n:
        got = "a scalar" if a.ndim == 0 else f"{a.shape[0]} rows"
        raise InputError(f"DATA: {where}: array '{key}' has {got} but the labels have {n}")
    if a.dtype.kind not in "biuf":
        raise InputError(
            f"DATA: {where}: array '{key}' has dtype {a.dtype}; model inputs must be numeric"
        )
    if any(d == 0 for d in a.shape[1:]):
        raise InputError(f"DATA: {where}: array '{key}' has an empty axis {_fmt_shape(a.shape)}")


def decode_labels(y: np.ndarray, class_names: list[str] | None, where: str = "y") -> Labels:
    """Turn any label encoding of the contract into int64 class indices."""
    y = np.asarray(y)
    if y.ndim == 0:
        raise InputError(f"{where} is a scalar; expected one label per sample")
    if y.dtype.kind in "US":
        return _decode_string_labels(y, class_names, where)
    if y.dtype.kind not in "biuf":
        raise InputError(f"{where} has dtype {y.dtype}; labels must be integers, bool or one-hot")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim > 2:  # issue 16: DenseLabels, which core routes to kerasdoctor.dense
        raise DenseLabels(f"{where} has shape {y.shape}; expected (N,) or (N, K)")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y)
        if bad.any():
            rows = np.argwhere(bad)[:, 0]
            raise InputError(
                f"{where} has {int(bad.sum())} NaN/Inf labels (first at row {int(rows[0])})"
            )
    if y.dtype.kind == "b":
        return Labels(y.astype(np.int64).reshape(-1), "bool", class_names=class_names)
    if y.ndim == 2:
        return _decode_2d_labels(y, class_names, where)
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        frac = np.argwhere(y != np.round(y))[:, 0]
        raise InputError(
            f"{where} holds non-integer labels (e.g. {y[frac[0]]!r} at row {int(frac[0])}); "
            "expected class indices"
        )
    if y.size and y.min() < 0:
        row = int(np.argmin(y))
        raise InputError(f"{where} has negative labels (e.g. {y[row]!r} at row {row})")
    yi = y.astype(np.int64)
    enc = "binary" if yi.size and yi.max() <= 1 else "index"
    return Labels(yi, enc, class_names=class_names)


def _decode_2d_labels(y: np.ndarray, names: list[str] | None, where: str) -> Labels:
    k = y.shape[1]
    if y.size and y.min() < 0:
        # issue 16: (N, T) tags with a negative void label: DenseLabels (kerasdoctor.dense)
        raise DenseLabels(f"{where} is 2-D with negative values; expected one-hot rows")
    sums = y.sum(axis=1)
    if np.all(np.isin(y, (0, 1))) and np.all(sums == 1):
        return Labels(np.argmax(y, axis=1).astype(np.int64), "one-hot", k, names)
    if np.allclose(sums, 1.0, atol=1e-3):  # label smoothing / soft labels: the argmax is the class
        return Labels(np.argmax(y, axis=1).astype(np.int64), "soft", k, names)
    bad = int(np.argmax(np.abs(sums - 1)))
    if is_multi_hot(y):  # issue 16: core routes these to kerasdoctor.multilabel
        raise MultiHotLabels(
            f"{where} is multi-hot {y.shape} (row {bad} sums to {sums[bad]:g}): multi-label "
            "targets are read by `kerasdoctor diagnose` from an .npz (or by diagnose() from "
            "arrays); the other commands (fix, shard) and data sources take single-label "
            "targets only"
        )
    raise DenseLabels(  # issue 16: maybe (N, T) tags; core routes them to kerasdoctor.dense
        f"{where} is 2-D {y.shape} but row {bad} is not one-hot (sums to {sums[bad]:g}); "
        "multi-label targets are not supported"
    )


class DenseLabels(InputError):
    """Labels that are not (N,) or one-hot (N, K): (N, H, W) masks or (N, T) tags; kerasdoctor.core
    catches this to diagnose a model with a rank >= 3 output as dense (issue 16)."""


class MultiHotLabels(InputError):
    """Labels that are multi-hot (N, K): not single-label; kerasdoctor.core catches this to
    diagnose them as multi-label (issue 16)."""


def is_multi_hot(y: np.ndarray) -> bool:
    """(N, K) with K >= 2, every value 0 or 1, and not every row summing to exactly 1."""
    if y.ndim != 2 or y.shape[1] < 2 or y.shape[0] == 0 or y.dtype.kind not in "biuf":
        return False
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        return False
    return bool(np.isin(y, (0, 1)).all() and not np.all(y.sum(axis=1) == 1))


def _decode_string_labels(y: np.ndarray, names: list[str] | None, where: str) -> Labels:
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1:
        raise InputError(f"{where} holds strings with shape {y.shape}; expected (N,)")
    values = [str(v) for v in y.tolist()]
    if names is None:
        names = sorted(set(values))
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(values) - set(index))
    if unknown:
        raise InputError(f"{where} has labels not in class_names: {', '.join(unknown[:5])}")
    return Labels(np.array([index[v] for v in values], dtype=np.int64), "string", None, names)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# -------------------------------------------------------------------------- model


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, its shape (batch axis first, None where free), its dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    alias: str | None = None  # the raw Keras name when `name` was made stable


@dataclass
class LoadedModel:
    """A model ready to predict: a Keras model, or a SavedModel's serving signature."""

    path: str
    format: str  # "keras" | "h5" | "savedmodel" | "object"
    inputs: list[InputSpec]
    output_name: str
    output_shape: tuple[int | None, ...]
    keras_model: Any = None  # the Keras model (None for a SavedModel)
    output_index: int = 0  # which of keras_model.outputs is diagnosed
    signature: Callable[..., Any] | None = None  # SavedModel serving function
    signature_keys: list[str] = field(default_factory=list)
    compiled: bool = False
    notes: list[str] = field(default_factory=list)
    handle: Any = None  # keeps a restored SavedModel alive while its signature is used


def load_model(
    path: str | os.PathLike[str],
    *,
    unsafe: bool = False,
    custom_objects: dict[str, Any] | None = None,
    output_name: str | None = None,
) -> LoadedModel:
    """Load a .keras, .h5 or SavedModel from disk; never modifies the file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"MODEL: no such file or directory: {p}")
    refuse_special_file(p, "MODEL")
    if p.is_dir():
        if not (p / "saved_model.pb").exists() and not (p / "saved_model.pbtxt").exists():
            raise InputError(
                f"MODEL: {p} is a directory but not a TensorFlow SavedModel (no saved_model.pb)"
            )
        return _load_savedmodel(p, output_name)
    suffix = p.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise InputError(
            f"MODEL: {p}: unsupported model file '{suffix or p.name}'; "
            "expected .keras, .h5 or a SavedModel directory"
        )
    fmt = "keras" if suffix == ".keras" else "h5"
    _sniff_model_file(p, fmt)
    from kerasdoctor._keras import keras

    k = keras()
    notes: list[str] = []
    model = None
    compiled = True
    try:
        model = _keras_load(k, p, compile=True, unsafe=unsafe, custom_objects=custom_objects)
    except Exception as exc:  # compile-time deserialisation (custom loss...) can fail alone
        _raise_if_corrupt(p, fmt, exc)
        msg = _first_line(exc)
        missing = _missing_custom_class(exc)
        if missing and custom_objects is None:
            raise InputError(
                f"MODEL: {p} uses a custom class or function '{missing}' that Keras does not "
                "know; pass the module that defines it with --custom-objects module.py"
            ) from exc
        if _is_unsafe_error(msg):
            raise InputError(
                f"MODEL: {p} contains a Lambda layer (Python code); loading it runs code from "
                "the file. If you trust it, re-run with --unsafe"
            ) from exc
        if _is_custom_object_error(msg):
            raise InputError(
                f"MODEL: {p} uses a custom layer or function Keras does not know ({msg}); "
                "pass the module that defines it with --custom-objects module.py"
            ) from exc
        try:
            model = _keras_load(k, p, compile=False, unsafe=unsafe, custom_objects=custom_objects)
            compiled = False
            notes.append(f"the saved compile settings could not be restored ({msg})")
        except Exception as exc2:
            _raise_if_corrupt(p, fmt, exc2)
            raise InputError(f"MODEL: cannot load {p}: {_first_line(exc2)}") from exc2
    return from_keras_model(model, str(p), fmt, output_name, compiled=compiled, notes=notes)


def _keras_load(
    k: Any, p: Path, *, compile: bool, unsafe: bool, custom_objects: dict[str, Any] | None
) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return k.saving.load_model(
            p, compile=compile, safe_mode=not unsafe, custom_objects=custom_objects
        )


def _raise_if_corrupt(p: Path, fmt: str, exc: BaseException) -> None:
    """A damaged member (bad CRC, cut HDF5 inside the archive) found while Keras reads it."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, zipfile.BadZipFile) or re.search(
            r"Bad CRC-32|truncated file|File not found: filepath", str(cur)
        ):
            kind = ".keras archive" if fmt == "keras" else "HDF5 file"
            raise InputError(
                f"MODEL: {p} is not a complete {kind} (truncated or corrupt; "
                f"{p.stat().st_size:,} bytes): {_first_line(cur)}"
            ) from exc
        cur = cur.__cause__ or cur.__context__


def _is_unsafe_error(msg: str) -> bool:
    return "safe_mode" in msg or "unsafe" in msg.lower() and "lambda" in msg.lower()


def _missing_custom_class(exc: BaseException) -> str | None:
    """The class Keras could not locate, searched through the whole exception chain."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        found = re.search(r"Could not locate (?:class|function) '?([\w.>]+)", str(cur))
        if found:
            return found.group(1)
        cur = cur.__cause__ or cur.__context__
    return None


def _is_custom_object_error(msg: str) -> bool:
    return bool(re.search(r"Unknown (layer|object|loss|activation|metric)|custom_objects", msg))


ZIP_MAGIC = b"PK"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_FORMAT_NAMES = {"keras": "a .keras archive (a zip file)", "h5": "an HDF5 file"}


def _sniff_model_file(p: Path, fmt: str) -> None:
    """Reject files that are not whole models before Keras gives an obscure error (or, for a
    truncated .keras, "File not found"), and configs that name Python callables outside
    Keras. Reads the file only; never writes to it."""
    size = p.stat().st_size
    if size == 0:
        raise InputError(f"MODEL: {p} is empty (0 bytes); expected {_FORMAT_NAMES[fmt]}")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputError(f"MODEL: cannot read {p}: {_first_line(exc)}") from exc
    if fmt == "keras" and not head.startswith(ZIP_MAGIC):
        hint = "; it is an HDF5 file: name it .h5" if head == HDF5_MAGIC else ""
        raise InputError(
            f"MODEL: {p} is not a .keras archive: it does not start as a zip file "
            f"does (first bytes {_show_bytes(head)}; {size:,} bytes){hint}"
        )
    if fmt == "h5" and head != HDF5_MAGIC:
        hint = (
            "; it is a zip file, as .keras models are: name it .keras"
            if head.startswith(ZIP_MAGIC)
            else ""
        )
        raise InputError(
            f"MODEL: {p} is not an HDF5 file: it does not start as one does "
            f"(first bytes {_show_bytes(head)}; {size:,} bytes){hint}"
        )
    config = _read_keras_config(p, size) if fmt == "keras" else _read_h5_config(p, size)
    if config is not None:
        _refuse_foreign_callables(p, config)


def _show_bytes(head: bytes) -> str:
    return " ".join(f"{b:02x}" for b in head) or "none"


def _read_keras_config(p: Path, size: int) -> Any:
    """The parsed config.json of a .keras archive; a truncated archive has no zip directory."""
    import json

    try:
        with zipfile.ZipFile(p) as zf:
            if "config.json" not in zf.namelist():
                raise InputError(
                    f"MODEL: cannot load {p}: it is a zip archive without "
                    "config.json, so not a .keras model"
                )
            text = zf.read("config.json")
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise InputError(
            f"MODEL: {p} is not a complete .keras archive (truncated or corrupt; "
            f"{size:,} bytes): {_first_line(exc)}"
        ) from exc
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(
            f"MODEL: {p} is not a valid .keras archive: its config.json is not "
            f"JSON ({_first_line(exc)})"
        ) from exc


def _read_h5_config(p: Path, size: int) -> Any:
    """The parsed model_config of an .h5 model; None for a weights-only file (Keras says so)."""
    import json

    try:
        import h5py
    except ImportError:  # Keras will say what it needs
        return None
    try:
        with h5py.File(p, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as exc:
        claimed = re.search(r"stored_eof = (\d+)", str(exc))
        detail = (
            f"; its header says {int(claimed.group(1)):,} bytes"
            if claimed
            else f": {_first_line(exc)}"
        )
        raise InputError(
            f"MODEL: {p} is not a complete HDF5 file (truncated or corrupt; {size:,} bytes{detail})"
        ) from exc
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    except (ValueError, RecursionError) as exc:
        raise InputError(f"MODEL: {p}: its model_config is not JSON ({_first_line(exc)})") from exc


# Modules that never define Keras layers: Python's standard library (os, subprocess,
# builtins...) and numpy. A config naming one of them is hostile or broken, not a custom layer.
_FOREIGN_PACKAGES = (set(sys.stdlib_module_names) - {"__main__"}) | {"numpy"}


def foreign_callable(config: Any) -> tuple[str, str] | None:
    """The first object in a model config that names a callable outside Keras, as
    (module.name, its role there), or None. Keras itself does not import such modules, but
    its error would read like a missing custom layer and invite --custom-objects."""
    import builtins

    stack: list[tuple[Any, str]] = [(config, "model")]
    while stack:
        node, role = stack.pop()
        if isinstance(node, list):
            stack.extend((item, role) for item in node)
            continue
        if not isinstance(node, dict):
            continue
        found = _named_callable(node)
        if found is not None:
            module, name = found
            top = module.split(".")[0]
            if (top == "builtins" and hasattr(builtins, name)) or (
                top != "builtins" and top in _FOREIGN_PACKAGES
            ):
                return f"{module}.{name}", role
        for key, value in node.items():
            stack.append((value, "layer" if key == "layers" else _role(key, role)))
    return None


def _role(key: str, parent: str) -> str:
    if key in ("activation", "recurrent_activation"):
        return "activation"
    if key == "config":  # a layer's own config stays that layer's
        return parent
    return "object"


def _named_callable(node: dict[str, Any]) -> tuple[str, str] | None:
    """(module, name) that a serialised Keras object points at, when it names a module."""
    cls = node.get("class_name")
    if not isinstance(cls, str):
        return None
    module = node.get("module")
    name = cls
    if cls == "function" and isinstance(node.get("config"), str):
        name = node["config"]  # Keras 3 stores a function as class "function", config its name
    if not isinstance(module, str) or not module:
        if "." not in name:
            return None
        module, name = name.rsplit(".", 1)  # the Keras 2 spelling of a qualified name
    return module, name


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _refuse_foreign_callables(p: Path, config: Any) -> None:
    found = foreign_callable(config)
    if found is None:
        return
    dotted, role = found
    top = dotted.split(".")[0]
    origin = "Python's standard library" if top in sys.stdlib_module_names else "not Keras"
    raise InputError(
        f"MODEL: {p}: the model's config names {dotted} as {_article(role)} {role}, which is "
        f"not a Keras {role} ({top} is {origin}); kerasdoctor refuses to load it"
    )


def from_keras_model(
    model: Any,
    path: str = "<in-memory model>",
    fmt: str = "object",
    output_name: str | None = None,
    *,
    compiled: bool | None = None,
    notes: list[str] | None = None,
) -> LoadedModel:
    """Wrap an in-memory Keras model (the library API uses this directly)."""
    try:
        inputs = list(model.inputs)
        outputs = list(model.outputs)
    except (AttributeError, ValueError) as exc:
        raise InputError(
            f"MODEL: {path}: the model has no defined inputs/outputs (build or call it first)"
        ) from exc
    if not inputs or not outputs:
        raise InputError(f"MODEL: {path}: the model has no defined inputs/outputs")
    raw_names = [_tensor_name(t, i) for i, t in enumerate(inputs)]
    stable = _stable_names(raw_names)
    specs = [
        InputSpec(name, tuple(t.shape), str(getattr(t, "dtype", "float32")), alias=raw)
        for name, raw, t in zip(stable, raw_names, inputs)
    ]
    out_names = [_output_name(model, t, i) for i, t in enumerate(outputs)]
    index = _choose_output(out_names, output_name, path)
    if compiled is None:
        compiled = (
            getattr(model, "compiled", False) or getattr(model, "optimizer", None) is not None
        )
    return LoadedModel(
        path=path,
        format=fmt,
        inputs=specs,
        output_name=out_names[index],
        output_shape=tuple(outputs[index].shape),
        keras_model=model,
        output_index=index,
        compiled=bool(compiled),
        notes=list(notes or []),
    )


def _tensor_name(t: Any, i: int) -> str:
    name = getattr(t, "name", None) or f"input_{i}"
    return str(name).split(":")[0]


_AUTO_NAME = re.compile(r"^(keras_tensor|input_layer|input)(_\d+)?$")


def _stable_names(names: list[str]) -> list[str]:
    """Drop the process-wide counter Keras appends to auto-generated names (keras_tensor_24),
    so reports do not depend on what the process built before; kept when that would clash."""
    stripped = [_AUTO_NAME.sub(r"\1", n) for n in names]
    return stripped if len(set(stripped)) == len(stripped) else names


def _output_name(model: Any, t: Any, i: int) -> str:
    names = getattr(model, "output_names", None)
    if names and len(names) > i:
        return str(names[i])
    from kerasdoctor.keras_graph import producer

    layer = producer(t)
    return str(layer.name) if layer is not None else f"output_{i}"


def _choose_output(names: list[str], wanted: str | None, path: str) -> int:
    if wanted is not None:
        if wanted not in names:
            raise InputError(
                f"MODEL: {path} has no output named '{wanted}' (outputs: {', '.join(names)})"
            )
        return names.index(wanted)
    if len(names) > 1:
        raise InputError(
            f"MODEL: {path} has {len(names)} outputs ({', '.join(names)}); "
            "choose the classifier head with --output-name"
        )
    return 0


def _load_savedmodel(p: Path, output_name: str | None) -> LoadedModel:
    from kerasdoctor._keras import keras

    backend = keras().backend.backend()  # quiet TensorFlow import
    if backend != "tensorflow":
        raise InputError(
            f"MODEL: {p} is a TensorFlow SavedModel, which runs only on the TensorFlow "
            f"backend (this run uses KERAS_BACKEND={backend}); run it with "
            "KERAS_BACKEND=tensorflow, or diagnose the .keras file of the same model"
        )
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(p))
    except Exception as exc:
        raise InputError(f"MODEL: cannot load SavedModel {p}: {_first_line(exc)}") from exc
    sigs = getattr(loaded, "signatures", {})
    if "serving_default" not in sigs:
        raise InputError(f"MODEL: SavedModel {p} has no 'serving_default' signature")
    fn = sigs["serving_default"]
    _, kw = fn.structured_input_signature
    keys = list(kw.keys())
    specs = [InputSpec(k, tuple(kw[k].shape.as_list()), kw[k].dtype.name) for k in keys]
    outs = fn.structured_outputs
    out_names = list(outs.keys())
    idx = _choose_output(out_names, output_name, str(p))
    name = out_names[idx]
    return LoadedModel(
        path=str(p),
        format="savedmodel",
        inputs=specs,
        output_name=name,
        output_shape=tuple(outs[name].shape.as_list()),
        signature=fn,
        signature_keys=keys,
        compiled=False,
        notes=["SavedModel: layers, loss and weights are not inspected, only predictions"],
        keras_model=None,
        handle=loaded,
    )


# ------------------------------------------------------------------ binding inputs


def input_keys(
    available: Sequence[str], specs: Sequence[InputSpec], where: str, noun: str = "array"
) -> list[str]:
    """Which stored arrays feed the model inputs, one key per input: `x` (or the input's name,
    or `x0`, or the only array) for one input; the input's name or `x0, x1, ...` for several.
    The .npz, tf.data and sharded sources all choose this way."""
    have = list(available)
    if len(specs) == 1:
        spec = specs[0]
        for key in ("x", spec.name, spec.alias or spec.name, "x0"):
            if key in have:
                return [key]
        if len(have) == 1:
            return [have[0]]
        raise InputError(
            f"DATA: {where} has no 'x' {noun} for the model's input "
            f"'{spec.name}' (found: {', '.join(map(str, have)) or 'nothing'})"
        )
    keys = []
    for i, spec in enumerate(specs):
        for key in (spec.name, spec.alias or spec.name, f"x{i}"):
            if key in have:
                keys.append(key)
                break
        else:
            expected = ", ".join(f"'{s.name}'" for s in specs)
            raise InputError(
                f"DATA: {where} has no {noun} for model input '{spec.name}' (the model's "
                f"inputs are {expected}; name them so, or x0, x1, ...; "
                f"found: {', '.join(map(str, have))})"
            )
    return keys


def bind_inputs(raw: RawData, model: LoadedModel) -> list[np.ndarray]:
    """Match the .npz arrays to the model inputs (by name, or x / x0, x1, ...) and check shapes."""
    specs = model.inputs
    arrays: dict[str, Any] = dict(raw.arrays)
    arrays.update({k: None for k in raw.refused})
    chosen = [(key, arrays[key]) for key in input_keys(list(arrays), specs, raw.path)]
    bound = []
    for (key, arr), spec in zip(chosen, specs):
        if arr is None:
            raise InputError(f"DATA: {raw.path}: {raw.refused[key]}")
        check_input_array(arr, key, raw.n_samples, raw.path)
        bound.append(_fit_shape(arr, spec, key, raw.path, model))
    return bound


def _fit_shape(arr: np.ndarray, spec: InputSpec, key: str, path: str, model: LoadedModel) -> Any:
    want = spec.shape[1:]
    got = arr.shape[1:]
    if len(want) == len(got) + 1 and want[0] is None:
        # Keras 2-era Sequential saved with input_dim can come back as (None, None, F):
        # feed each sample as a length-1 sequence instead of failing.
        note = (
            f"input '{spec.name}' expects {_fmt_shape(spec.shape)}; data {_fmt_shape(arr.shape)} "
            "is fed with an extra axis of length 1"
        )
        if note not in model.notes:
            model.notes.append(note)
        return _ExpandedView(arr, axis=1)
    if len(want) != len(got):
        raise InputError(
            f"DATA: {path}: array '{key}' has shape {_fmt_shape(arr.shape)} but model input "
            f"'{spec.name}' expects {_fmt_shape(spec.shape)}"
        )
    for ax, (w, g) in enumerate(zip(want, got), start=1):
        if w is not None and w != g:
            raise InputError(
                f"DATA: {path}: array '{key}' has shape {_fmt_shape(arr.shape)} but model input "
                f"'{spec.name}' expects {_fmt_shape(spec.shape)} (axis {ax}: {g} != {w})"
            )
    return arr


class _ExpandedView:
    """Array-like that inserts a length-1 axis when indexed along the first axis."""

    def __init__(self, base: np.ndarray, axis: int) -> None:
        self.base = base
        self.axis = axis
        shape = list(base.shape)
        shape.insert(axis, 1)
        self.shape = tuple(shape)
        self.dtype = base.dtype
        self.ndim = base.ndim + 1

    def __len__(self) -> int:
        return int(self.base.shape[0])

    def __getitem__(self, idx: Any) -> np.ndarray:
        return np.expand_dims(self.base[idx], self.axis)


def load_custom_objects(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Import a Python file and return its public classes and functions by name.

    Used by --custom-objects: Keras needs the classes of custom layers, losses or activations
    to rebuild a model. This runs the file's code, as importing any module does.
    """
    import importlib.util
    import inspect

    p = Path(path)
    refuse_special_file(p, "--custom-objects")
    if not p.is_file() or p.suffix != ".py":
        raise InputError(f"--custom-objects: {p} is not a Python file")
    spec = importlib.util.spec_from_file_location(f"kerasdoctor_custom_{p.stem}", p)
    if spec is None or spec.loader is None:
        raise InputError(f"--custom-objects: cannot import {p}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise InputError(f"--custom-objects: importing {p} failed: {_first_line(exc)}") from exc
    return {
        name: obj
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }
