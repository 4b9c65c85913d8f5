"""Fuzzing: random and malformed .npz contents and random model bytes never crash kerasdoctor.

Every case must end with exit 0/1 (diagnosed) or 2 (one clear stderr line), never a traceback,
never exit 3. The number of cases run is printed at the end of the session (see conftest).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from conftest import fixture_path, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli_errors import fifo_watchdog

CASES = {"count": 0}
FUZZ = settings(
    max_examples=int(os.environ.get("KD_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)

DTYPES = ["float32", "float64", "float16", "int8", "int64", "uint8", "bool", "U3", "object"]


@st.composite
def arrays(draw: st.DrawFn, n_default: int) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.sampled_from([n_default, n_default, 0, 1, n_default + 3]))
    rank = draw(st.integers(0, 3))
    shape = tuple([n] + [draw(st.sampled_from([0, 1, 3, 8])) for _ in range(max(rank - 1, 0))])
    if rank == 0:
        shape = ()
    size = int(np.prod(shape)) if shape else 1
    raw = draw(
        st.lists(
            st.floats(allow_nan=True, allow_infinity=True, width=32),
            min_size=min(size, 64),
            max_size=min(size, 64),
        )
    )
    base = np.resize(np.array(raw or [0.0], dtype=np.float64), size).reshape(shape)
    if dtype == "object":
        return np.array([{"k": 1}] * max(size, 1), dtype=object)[:size].reshape(shape)
    if dtype == "U3":
        return base.astype(str).astype("U3")
    if dtype == "bool":
        return np.nan_to_num(base) > 0
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.nan_to_num(base), info.min, info.max).astype(dtype)
    with np.errstate(over="ignore"):
        return base.astype(dtype)


@st.composite
def npz_contents(draw: st.DrawFn) -> dict[str, np.ndarray]:
    n = draw(st.sampled_from([1, 5, 40]))
    out: dict[str, np.ndarray] = {}
    if draw(st.booleans()):
        out["x"] = draw(arrays(n))
    else:  # a plausible x, so the labels and the rest get exercised too
        out["x"] = np.random.default_rng(0).normal(size=(n, 8)).astype("float32")
    if draw(st.integers(0, 9)) > 0:
        out["y"] = draw(st.one_of(arrays(n), st.just(np.arange(n) % 3)))
    if draw(st.booleans()):
        out["class_names"] = draw(st.one_of(arrays(3), st.just(np.array(["a", "b", "c"]))))
    if draw(st.booleans()):
        out[draw(st.sampled_from(["x0", "extra", "features"]))] = draw(arrays(n))
    return out


def _check(result, what: str) -> None:  # type: ignore[no-untyped-def]
    CASES["count"] += 1
    CASES[result.exit_code] = CASES.get(result.exit_code, 0) + 1
    text = result.stdout + result.stderr
    assert "Traceback" not in text, (what, text)
    assert result.exit_code in (0, 1, 2), (what, result.exit_code, text)
    if result.exit_code == 2:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("kerasdoctor: error: "), (what, lines)


@FUZZ
@given(npz_contents())
def test_random_npz_contents(contents: dict[str, np.ndarray]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.npz"
        np.savez(path, **contents)
        _check(
            run_cli("diagnose", fixture_path("healthy.keras"), str(path), "-f", "json"),
            f"diagnose {sorted((k, v.dtype.str, v.shape) for k, v in contents.items())}",
        )
        _check(run_cli("fix", "--class-weights", str(path), "-f", "json"), "fix")


@FUZZ
@given(st.binary(min_size=0, max_size=2048), st.sampled_from([".keras", ".h5", ".npz"]))
def test_random_bytes_as_files(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"junk{suffix}"
        path.write_bytes(data)
        if suffix == ".npz":
            _check(run_cli("diagnose", fixture_path("healthy.keras"), str(path)), "npz bytes")
            _check(run_cli("fix", "--class-weights", str(path)), "fix npz bytes")
        else:
            _check(run_cli("diagnose", str(path), fixture_path("healthy.npz")), "model bytes")


@FUZZ
@given(st.binary(min_size=16, max_size=4096))
def test_zip_and_hdf5_headers_with_junk(tail: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, head in (("m.keras", b"PK\x03\x04"), ("m.h5", b"\x89HDF\r\n\x1a\n")):
            path = Path(tmp) / name
            path.write_bytes(head + tail)
            _check(run_cli("diagnose", str(path), fixture_path("healthy.npz")), name)


# -- hostile files (issue 18): each kind of damage gets its own message, and the input file
# is never written to


def _hostile(args: tuple[str, ...], what: str, *fragments: str) -> None:
    """Run, check the fuzz contract, then that the one line names this damage."""
    r = run_cli(*args)
    _check(r, what)
    assert r.exit_code == 2, (what, r.exit_code, r.stderr)
    for fragment in fragments:
        assert fragment in r.stderr, (what, fragment, r.stderr)


def _unchanged(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before, f"{path} was modified"


KERAS_BYTES = Path(fixture_path("healthy.keras")).read_bytes()
H5_BYTES = Path(fixture_path("legacy_keras2.h5")).read_bytes()


@FUZZ
@given(st.integers(2, len(KERAS_BYTES) - 1))
def test_truncated_keras_archive(size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cut.keras"
        path.write_bytes(KERAS_BYTES[:size])
        _hostile(
            ("diagnose", str(path), fixture_path("healthy.npz")),
            f"keras cut at {size}",
            "not a complete .keras archive (truncated or corrupt",
            f"{size:,} bytes",
        )
        _unchanged(path, KERAS_BYTES[:size])


@FUZZ
@given(st.integers(8, len(H5_BYTES) - 1))
def test_truncated_h5(size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cut.h5"
        path.write_bytes(H5_BYTES[:size])
        _hostile(
            ("diagnose", str(path), fixture_path("legacy_keras2.npz")),
            f"h5 cut at {size}",
            "not a complete HDF5 file (truncated or corrupt",
            f"{size:,} bytes",
        )
        _unchanged(path, H5_BYTES[:size])


@FUZZ
@given(st.sampled_from([".keras", ".h5", ".hdf5"]))
def test_zero_length_model(suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"empty{suffix}"
        path.write_bytes(b"")
        _hostile(
            ("diagnose", str(path), fixture_path("healthy.npz")),
            f"empty {suffix}",
            "is empty (0 bytes)",
        )


@FUZZ
@given(
    st.binary(min_size=1, max_size=64).filter(lambda b: not b.startswith((b"PK", b"\x89H"))),
    st.sampled_from([".keras", ".h5"]),
)
def test_wrong_magic_model(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"magic{suffix}"
        path.write_bytes(data)
        expected = "not a .keras archive" if suffix == ".keras" else "not an HDF5 file"
        _hostile(
            ("diagnose", str(path), fixture_path("healthy.npz")),
            f"magic {data[:8]!r}",
            expected,
            "first bytes",
            f"{len(data):,} bytes",
        )
        _unchanged(path, data)


# Callables outside Keras, as a config can name them: (module, name)
FOREIGN = [
    ("os", "system"),
    ("subprocess", "Popen"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "__import__"),
    ("shutil", "rmtree"),
    ("pickle", "loads"),
    ("posix", "system"),
    ("ctypes", "CDLL"),
    ("numpy", "load"),
    ("os.path", "join"),
]


def _place(config: dict, where: str, module: str, name: str) -> None:  # type: ignore[type-arg]
    layer = config["config"]["layers"][1]
    if where == "layer":
        layer.update(module=module, class_name=name, registered_name=name)
    elif where == "dotted-layer":  # the Keras 2 spelling, no "module"
        layer.pop("module", None)
        layer["class_name"] = f"{module}.{name}"
    elif where == "activation":
        layer["config"]["activation"] = {
            "module": module,
            "class_name": "function",
            "config": name,
            "registered_name": name,
        }
    else:  # an initializer, nested deeper
        layer["config"]["kernel_initializer"] = {
            "module": module,
            "class_name": name,
            "config": {},
            "registered_name": None,
        }


@FUZZ
@given(
    st.sampled_from(FOREIGN),
    st.sampled_from(["layer", "dotted-layer", "activation", "initializer"]),
    st.sampled_from([".keras", ".h5"]),
)
def test_config_naming_a_callable_outside_keras(
    target: tuple[str, str], where: str, suffix: str
) -> None:
    import json
    import zipfile

    import h5py

    module, name = target
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"hostile{suffix}"
        if suffix == ".keras":
            with zipfile.ZipFile(fixture_path("healthy.keras")) as src:
                members = {n: src.read(n) for n in src.namelist()}
            config = json.loads(members["config.json"])
            _place(config, where, module, name)
            members["config.json"] = json.dumps(config).encode()
            with zipfile.ZipFile(path, "w") as zf:
                for member, data in members.items():
                    zf.writestr(member, data)
        else:
            path.write_bytes(H5_BYTES)
            with h5py.File(path, "r+") as f:
                config = json.loads(f.attrs["model_config"])
                _place(config, where, module, name)
                f.attrs["model_config"] = json.dumps(config)
        before = path.read_bytes()
        data = "healthy.npz" if suffix == ".keras" else "legacy_keras2.npz"
        r = run_cli("diagnose", str(path), fixture_path(data))
        _check(r, f"{module}.{name} as {where} in {suffix}")
        assert r.exit_code == 2
        assert f"names {module}.{name} as " in r.stderr, r.stderr
        assert "kerasdoctor refuses to load it" in r.stderr
        assert "--custom-objects" not in r.stderr
        _unchanged(path, before)


def _special_files(tmp: Path) -> list[tuple[str, str]]:
    """(path, what the message must call it) for each kind of special file."""
    import socket

    fifo = tmp / "pipe"
    os.mkfifo(fifo)
    sock = tmp / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    s.close()  # the socket file stays
    zero = tmp / "zero"
    zero.symlink_to("/dev/zero")
    return [
        (str(fifo), "is a named pipe (FIFO)"),
        (str(sock), "is a socket"),
        (str(zero), "(a symbolic link to /dev/zero) is a character device"),
        ("/dev/null", "is a character device"),
        ("/dev/urandom", "is a character device"),
    ]


@FUZZ
@given(
    st.sampled_from(["", ".npz", ".keras", ".h5", ".csv", ".npy", ".parquet"]),
    st.sampled_from(["MODEL", "DATA"]),
)
def test_special_files_are_named_before_any_read(suffix: str, role: str) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:  # AF_UNIX paths are short
        base = Path(tmp)
        for path, what in _special_files(base):
            if path.startswith(str(base)) and suffix:
                renamed = path + suffix
                os.rename(path, renamed)
                path = renamed
            if role == "MODEL":
                args = ("diagnose", path, fixture_path("healthy.npz"))
            else:
                args = ("diagnose", fixture_path("healthy.keras"), path)
            fifos = [Path(path)] if "named pipe" in what else []
            with fifo_watchdog(*fifos) as opened:
                _hostile(
                    args,
                    f"{role} {path}",
                    f"{role}: {path}",
                    what,
                    "not a regular file or a directory",
                )
            assert not opened, f"{path} was opened"


# -- .npz members whose .npy header claims a shape its data cannot fill: one line naming the
# member and the claim, found from the header and the archive's directory, before numpy
# allocates the claimed size


def _npy_member(shape: str, descr: str = "<f4", body: bytes = b"\0" * 64) -> bytes:
    """An .npy member written by hand: its header says `shape`, whatever the body holds."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + body


def _npz_with(path: Path, members: dict[str, bytes]) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for key, data in members.items():
            zf.writestr(f"{key}.npy", data)


def _saved(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


HUGE = st.one_of(st.integers(2**31, 2**80), st.sampled_from([10**12, 2**32, 2**62, 2**63]))
SMALL = st.integers(1, 12)


@st.composite
def absurd_shapes(draw: st.DrawFn) -> tuple[str, str]:
    """(the shape as the header writes it, the message's fragment for it)"""
    dims = draw(st.lists(st.one_of(HUGE, SMALL), min_size=1, max_size=4))
    if draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = draw(st.integers(-(2**63), -1))
        return str(tuple(dims)), "which is not a shape (corrupt)"
    if all(d < 2**31 for d in dims):
        dims[0] = draw(HUGE)
    return str(tuple(dims)), "bytes of data (truncated or corrupt)"


@FUZZ
@given(absurd_shapes(), st.sampled_from(["x", "y"]), st.sampled_from(["<f4", "<i8", "|u1"]))
def test_npz_member_claiming_an_absurd_shape(shape: tuple[str, str], key: str, descr: str) -> None:
    import contextlib
    import time
    import tracemalloc

    from kerasdoctor.errors import InputError
    from kerasdoctor.load import read_npz

    claimed, fragment = shape
    x, y = np.zeros((10, 8), np.float32), np.arange(10) % 3
    members = {"x": _saved(x), "y": _saved(y)}
    members[key] = _npy_member(claimed, descr)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "claims.npz"
        _npz_with(path, members)
        _hostile(
            ("diagnose", fixture_path("healthy.keras"), str(path)),
            f"{key} claims {claimed}",
            f"DATA: {path}: array '{key}' claims shape",
            fragment,
        )
        # and without allocating what the header claims (numpy tracks its arrays' memory)
        tracemalloc.start()
        start = time.monotonic()
        with contextlib.suppress(InputError):
            read_npz(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 16 * 2**20, f"{claimed}: {peak:,} bytes allocated"
        assert time.monotonic() - start < 2.0


@FUZZ
@given(st.sampled_from(["(3.5,)", "('a',)", "(None,)", "[10]", "10"]))
def test_npz_member_header_that_is_no_shape(claimed: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "noshape.npz"
        _npz_with(path, {"x": _npy_member(claimed), "y": _saved(np.arange(10) % 3)})
        _hostile(
            ("diagnose", fixture_path("healthy.keras"), str(path)),
            f"x shape {claimed}",
            f"DATA: {path}: array 'x' has an unreadable .npy header",
        )


# -- CSV with ragged rows: one line naming the row and both field counts


@FUZZ
@given(st.integers(1, 40), st.data())
def test_csv_with_a_ragged_row(n_rows: int, data: st.DataObject) -> None:
    width = 9  # the healthy model's 8 features and the label
    bad = data.draw(st.integers(1, n_rows), label="ragged row")
    fields = data.draw(st.integers(2, 15).filter(lambda k: k != width), label="its fields")
    rows = [",".join([f"f{i}" for i in range(8)] + ["label"])]
    for n in range(1, n_rows + 1):
        k = fields if n == bad else width
        rows.append(",".join(f"{(n * 7 + j) % 5 - 2}.5" for j in range(k - 1)) + f",{n % 3}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ragged.csv"
        path.write_text("\n".join(rows) + "\n")
        _hostile(
            ("diagnose", fixture_path("healthy.keras"), str(path), "--label-column", "label"),
            f"row {bad} of {n_rows} with {fields} fields",
            f"DATA: {path}: row {bad} has {fields} fields but the header has {width}",
        )


def _odd_mode_images(root: Path) -> dict[str, Path]:
    """One image per PIL mode a camera, scanner or editor writes besides 8-bit RGB."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8), "RGB")
    out = {
        "palette": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
        "cmyk": rgb.convert("CMYK"),
        "grey16": Image.fromarray(rng.integers(0, 65536, (10, 12), dtype=np.uint16)),
        "rgba": rgb.convert("RGBA"),
        "bilevel": rgb.convert("1"),
    }
    paths = {}
    root.mkdir(parents=True, exist_ok=True)
    for name, img in out.items():
        suffix = ".jpg" if name == "cmyk" else ".png"  # PNG has no CMYK; JPEG does
        paths[name] = root / f"{name}{suffix}"
        img.save(paths[name])
    return paths


def test_images_in_other_modes_read_as_keras_reads_them(tmp_path: Path) -> None:
    """Palette, CMYK, 16-bit grey, RGBA and 1-bit files are converted exactly as
    keras.utils.load_img converts them (what image_dataset_from_directory trains on)."""
    import keras

    from kerasdoctor.sources import load_image

    for name, path in _odd_mode_images(tmp_path).items():
        for channels, mode in ((3, "rgb"), (1, "grayscale"), (4, "rgba")):
            ours = load_image(str(path), (10, 12), channels)
            theirs = np.asarray(keras.utils.load_img(path, color_mode=mode), np.float32)
            theirs = theirs[:, :, None] if theirs.ndim == 2 else theirs
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{name} as {mode}")


def test_an_image_that_does_not_decode_is_one_line(tmp_path: Path) -> None:
    """A file with an image suffix whose body is cut off is named, with exit 2."""
    paths = _odd_mode_images(tmp_path / "src")
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for p in paths.values():
            (tmp_path / "data" / cls / p.name).write_bytes(p.read_bytes())
    bad = tmp_path / "data" / "b" / "palette.png"
    bad.write_bytes(bad.read_bytes()[:40])  # header only
    r = run_cli(
        "diagnose", fixture_path("scn_bgr.keras"), str(tmp_path / "data"), "--image-size", "16x16"
    )
    assert r.exit_code == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "palette.png" in lines[0] and "cannot read this image" in lines[0]
