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
