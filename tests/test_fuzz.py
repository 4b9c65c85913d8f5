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
FUZZ = settings(max_examples=int(os.environ.get("KD_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=list(HealthCheck), derandomize=True)

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
    raw = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32),
                        min_size=min(size, 64), max_size=min(size, 64)))
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
        _check(run_cli("diagnose", fixture_path("healthy.keras"), str(path), "-f", "json"),
               f"diagnose {sorted((k, v.dtype.str, v.shape) for k, v in contents.items())}")
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
        _hostile(("diagnose", str(path), fixture_path("healthy.npz")), f"keras cut at {size}",
                 "not a complete .keras archive (truncated or corrupt", f"{size:,} bytes")
        _unchanged(path, KERAS_BYTES[:size])


@FUZZ
@given(st.integers(8, len(H5_BYTES) - 1))
def test_truncated_h5(size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cut.h5"
        path.write_bytes(H5_BYTES[:size])
        _hostile(("diagnose", str(path), fixture_path("legacy_keras2.npz")), f"h5 cut at {size}",
                 "not a complete HDF5 file (truncated or corrupt", f"{size:,} bytes")
        _unchanged(path, H5_BYTES[:size])


@FUZZ
@given(st.sampled_from([".keras", ".h5", ".hdf5"]))
def test_zero_length_model(suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"empty{suffix}"
        path.write_bytes(b"")
        _hostile(("diagnose", str(path), fixture_path("healthy.npz")), f"empty {suffix}",
                 "is empty (0 bytes)")


@FUZZ
@given(st.binary(min_size=1, max_size=64).filter(lambda b: not b.startswith((b"PK", b"\x89H"))),
       st.sampled_from([".keras", ".h5"]))
def test_wrong_magic_model(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"magic{suffix}"
        path.write_bytes(data)
        expected = "not a .keras archive" if suffix == ".keras" else "not an HDF5 file"
        _hostile(("diagnose", str(path), fixture_path("healthy.npz")), f"magic {data[:8]!r}",
                 expected, "first bytes", f"{len(data):,} bytes")
        _unchanged(path, data)


# Callables outside Keras, as a config can name them: (module, name)
FOREIGN = [("os", "system"), ("subprocess", "Popen"), ("builtins", "eval"), ("builtins", "exec"),
           ("builtins", "__import__"), ("shutil", "rmtree"), ("pickle", "loads"),
           ("posix", "system"), ("ctypes", "CDLL"), ("numpy", "load"), ("os.path", "join")]


def _place(config: dict, where: str, module: str, name: str) -> None:  # type: ignore[type-arg]
    layer = config["config"]["layers"][1]
    if where == "layer":
        layer.update(module=module, class_name=name, registered_name=name)
    elif where == "dotted-layer":  # the Keras 2 spelling, no "module"
        layer.pop("module", None)
        layer["class_name"] = f"{module}.{name}"
    elif where == "activation":
        layer["config"]["activation"] = {"module": module, "class_name": "function",
                                         "config": name, "registered_name": name}
    else:  # an initializer, nested deeper
        layer["config"]["kernel_initializer"] = {"module": module, "class_name": name,
                                                 "config": {}, "registered_name": None}


@FUZZ
@given(st.sampled_from(FOREIGN), st.sampled_from(["layer", "dotted-layer", "activation",
                                                   "initializer"]),
       st.sampled_from([".keras", ".h5"]))
def test_config_naming_a_callable_outside_keras(target: tuple[str, str], where: str,
                                                suffix: str) -> None:
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
    return [(str(fifo), "is a named pipe (FIFO)"), (str(sock), "is a socket"),
            (str(zero), "(a symbolic link to /dev/zero) is a character device"),
            ("/dev/null", "is a character device"), ("/dev/urandom", "is a character device")]


@FUZZ
@given(st.sampled_from(["", ".npz", ".keras", ".h5", ".csv", ".npy", ".parquet"]),
       st.sampled_from(["MODEL", "DATA"]))
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
                _hostile(args, f"{role} {path}", f"{role}: {path}", what,
                         "not a regular file or a directory")
            assert not opened, f"{path} was opened"
