"""Every unusable input: exit 2 and one clear line on stderr, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import fixture_path, run_cli


def _assert_one_line_error(r, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("kerasdoctor: error: ")
    assert "Traceback" not in r.stderr + r.stdout
    for frag in fragments:
        assert frag in lines[0], lines[0]


def _npz(tmp_path: Path, name: str = "d.npz", **arrays) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


HEALTHY = "healthy.keras"


def _x(n: int = 10, width: int = 8) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, width)).astype("float32")


@pytest.mark.unit
def test_missing_model_path(tmp_path: Path) -> None:
    r = run_cli("diagnose", str(tmp_path / "nope.keras"), fixture_path("healthy.npz"))
    _assert_one_line_error(r, "MODEL", "no such file")


@pytest.mark.unit
def test_missing_data_path(tmp_path: Path) -> None:
    r = run_cli("diagnose", fixture_path(HEALTHY), str(tmp_path / "nope.npz"))
    _assert_one_line_error(r, "DATA", "no such file")


@pytest.mark.unit
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_file_that_is_not_a_model(tmp_path: Path, suffix: str) -> None:
    bad = tmp_path / f"model{suffix}"
    bad.write_bytes(b"this is not a model at all" * 10)
    r = run_cli("diagnose", str(bad), fixture_path("healthy.npz"))
    _assert_one_line_error(r, "MODEL", str(bad))


@pytest.mark.unit
def test_zip_that_is_not_a_keras_archive(tmp_path: Path) -> None:
    bad = tmp_path / "model.keras"
    import zipfile

    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("hello.txt", "not a model")
    r = run_cli("diagnose", str(bad), fixture_path("healthy.npz"))
    _assert_one_line_error(r, "MODEL", "cannot load")


@pytest.mark.unit
def test_unknown_model_suffix(tmp_path: Path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"x")
    _assert_one_line_error(
        run_cli("diagnose", str(bad), fixture_path("healthy.npz")), "unsupported model file"
    )


@pytest.mark.unit
def test_corrupt_npz(tmp_path: Path) -> None:
    good = Path(fixture_path("healthy.npz")).read_bytes()
    bad = tmp_path / "cut.npz"
    bad.write_bytes(good[: len(good) // 2])
    _assert_one_line_error(
        run_cli("diagnose", fixture_path(HEALTHY), str(bad)), "not a readable .npz"
    )


@pytest.mark.unit
def test_npz_without_labels(tmp_path: Path) -> None:
    path = _npz(tmp_path, x=_x())
    _assert_one_line_error(run_cli("diagnose", fixture_path(HEALTHY), path), "no 'y' array")


def test_wrong_input_width(tmp_path: Path) -> None:
    path = _npz(tmp_path, x=_x(width=5), y=np.zeros(10, int))
    _assert_one_line_error(
        run_cli("diagnose", fixture_path(HEALTHY), path), "expects (None, 8)", "axis 1: 5 != 8"
    )


def test_length_mismatch(tmp_path: Path) -> None:
    path = _npz(tmp_path, x=_x(n=12), y=np.zeros(10, int))
    _assert_one_line_error(
        run_cli("diagnose", fixture_path(HEALTHY), path), "12 rows", "labels have 10"
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("y", "fragment"),
    [(np.array([0.0, np.nan] * 5), "NaN/Inf labels"), (np.array([0, -1] * 5), "negative labels")],
)
def test_bad_labels(tmp_path: Path, y: np.ndarray, fragment: str) -> None:
    path = _npz(tmp_path, x=_x(), y=y)
    _assert_one_line_error(run_cli("diagnose", fixture_path(HEALTHY), path), fragment)


@pytest.mark.unit
def test_no_samples(tmp_path: Path) -> None:
    path = _npz(tmp_path, x=_x(n=0), y=np.zeros(0, int))
    _assert_one_line_error(run_cli("diagnose", fixture_path(HEALTHY), path), "no samples")


def test_multi_input_model_with_a_missing_input(tmp_path: Path) -> None:
    with np.load(fixture_path("multi_input.npz")) as d:
        path = _npz(tmp_path, rgb=d["rgb"], y=d["y"])
    r = run_cli("diagnose", fixture_path("multi_input.keras"), path)
    _assert_one_line_error(r, "model input 'depth'")


@pytest.mark.unit
def test_directory_where_a_data_file_is_expected(tmp_path: Path) -> None:
    _assert_one_line_error(
        run_cli("diagnose", fixture_path(HEALTHY), str(tmp_path)), "is a directory"
    )


@pytest.mark.unit
def test_directory_that_is_not_a_savedmodel(tmp_path: Path) -> None:
    _assert_one_line_error(
        run_cli("diagnose", str(tmp_path), fixture_path("healthy.npz")),
        "not a TensorFlow SavedModel",
    )


def test_bad_option_values() -> None:
    m, d = fixture_path(HEALTHY), fixture_path("healthy.npz")
    _assert_one_line_error(run_cli("diagnose", m, d, "--batch-size", "0"), "--batch-size")
    _assert_one_line_error(run_cli("diagnose", m, d, "--sample", "-3"), "--sample")
    _assert_one_line_error(run_cli("explain", "no-such-check"), "unknown finding id")


def test_help_checks_and_explain_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from kerasdoctor.cli import app\n"
        "r = CliRunner()\n"
        "for args in (['--help'], ['diagnose', '--help'], ['fix', '--help'], ['checks'],"
        " ['explain', 'missing-classes']):\n"
        "    assert r.invoke(app, args).exit_code == 0, args\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'sklearn', 'scipy', 'matplotlib')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# -- hostile model files (issue 18, item 1): each gets its own line, not "File not found"


@pytest.mark.unit
def test_truncated_keras_archive_says_so_with_its_size(tmp_path: Path) -> None:
    good = Path(fixture_path(HEALTHY)).read_bytes()
    bad = tmp_path / "half.keras"
    bad.write_bytes(good[: len(good) // 2])
    r = run_cli("diagnose", str(bad), fixture_path("healthy.npz"))
    _assert_one_line_error(
        r, "not a complete .keras archive", "truncated or corrupt", f"{len(good) // 2:,} bytes"
    )
    assert "File not found" not in r.stderr


@pytest.mark.unit
def test_truncated_h5_says_how_long_it_should_be(tmp_path: Path) -> None:
    good = Path(fixture_path("legacy_keras2.h5")).read_bytes()
    bad = tmp_path / "half.h5"
    bad.write_bytes(good[: len(good) // 2])
    _assert_one_line_error(
        run_cli("diagnose", str(bad), fixture_path("legacy_keras2.npz")),
        "not a complete HDF5 file",
        f"{len(good) // 2:,} bytes",
        f"its header says {len(good):,} bytes",
    )


def test_corrupt_member_of_a_keras_archive(tmp_path: Path) -> None:
    data = bytearray(Path(fixture_path(HEALTHY)).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 200] = bytes(b ^ 0xFF for b in data[middle : middle + 200])
    bad = tmp_path / "flipped.keras"
    bad.write_bytes(bytes(data))
    _assert_one_line_error(
        run_cli("diagnose", str(bad), fixture_path("healthy.npz")),
        "not a complete .keras archive",
        "Bad CRC-32",
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("suffix", "expected"), [(".keras", "a .keras archive"), (".h5", "an HDF5 file")]
)
def test_zero_length_model_file(tmp_path: Path, suffix: str, expected: str) -> None:
    bad = tmp_path / f"empty{suffix}"
    bad.write_bytes(b"")
    _assert_one_line_error(
        run_cli("diagnose", str(bad), fixture_path("healthy.npz")),
        "is empty (0 bytes)",
        f"expected {expected}",
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("name", "head", "fragments"),
    [
        ("gif.keras", b"GIF89a", ("not a .keras archive", "first bytes 47 49 46 38 39 61")),
        ("hdf5.keras", b"\x89HDF\r\n\x1a\n", ("not a .keras archive", "name it .h5")),
        ("zip.h5", b"PK\x03\x04", ("not an HDF5 file", "name it .keras")),
        ("png.h5", b"\x89PNG\r\n\x1a\n", ("not an HDF5 file", "first bytes 89 50 4e 47")),
    ],
)
def test_wrong_magic_model_file(
    tmp_path: Path, name: str, head: bytes, fragments: tuple[str, ...]
) -> None:
    bad = tmp_path / name
    bad.write_bytes(head + b"\0" * 100)
    _assert_one_line_error(run_cli("diagnose", str(bad), fixture_path("healthy.npz")), *fragments)


# -- configs that name Python callables outside Keras (item 2): refused, never advised


def _keras_with(tmp_path: Path, name: str, mutate) -> Path:  # type: ignore[no-untyped-def]
    import json
    import zipfile

    with zipfile.ZipFile(fixture_path(HEALTHY)) as src:
        members = {n: src.read(n) for n in src.namelist()}
    config = json.loads(members["config.json"])
    mutate(config["config"]["layers"][1])
    members["config.json"] = json.dumps(config).encode()
    out = tmp_path / name
    with zipfile.ZipFile(out, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return out


def _h5_with(tmp_path: Path, name: str, mutate) -> Path:  # type: ignore[no-untyped-def]
    import json
    import shutil

    import h5py

    out = tmp_path / name
    shutil.copy(fixture_path("legacy_keras2.h5"), out)
    with h5py.File(out, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        mutate(config["config"]["layers"][1])
        f.attrs["model_config"] = json.dumps(config)
    return out


def _os_system_layer(layer: dict) -> None:  # type: ignore[type-arg]
    layer.update(module="os", class_name="system", registered_name="system")


def _eval_activation(layer: dict) -> None:  # type: ignore[type-arg]
    layer["config"]["activation"] = {
        "module": "builtins",
        "class_name": "function",
        "config": "eval",
        "registered_name": "eval",
    }


def _popen_initializer(layer: dict) -> None:  # type: ignore[type-arg]
    layer["config"]["kernel_initializer"] = {
        "module": "subprocess",
        "class_name": "Popen",
        "config": {},
        "registered_name": None,
    }


def _dotted_keras2_layer(layer: dict) -> None:  # type: ignore[type-arg]
    layer["class_name"] = "os.system"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("maker", "mutate", "fragments"),
    [
        (_keras_with, _os_system_layer, ("names os.system as a layer", "not a Keras layer")),
        (_keras_with, _eval_activation, ("names builtins.eval as an activation",)),
        (_keras_with, _popen_initializer, ("names subprocess.Popen",)),
        (_h5_with, _os_system_layer, ("names os.system as a layer",)),
        (_h5_with, _dotted_keras2_layer, ("names os.system as a layer",)),
    ],
    ids=["keras-layer", "keras-activation", "keras-initializer", "h5-layer", "h5-dotted"],
)
def test_config_naming_a_callable_outside_keras_is_refused(
    tmp_path: Path,
    maker,
    mutate,
    fragments: tuple[str, ...],  # type: ignore[no-untyped-def]
) -> None:
    suffix = ".keras" if maker is _keras_with else ".h5"
    model = maker(tmp_path, f"hostile{suffix}", mutate)
    data = "healthy.npz" if suffix == ".keras" else "legacy_keras2.npz"
    r = run_cli("diagnose", str(model), fixture_path(data))
    _assert_one_line_error(r, *fragments, "kerasdoctor refuses to load it")
    assert "--custom-objects" not in r.stderr


def test_a_real_custom_layer_still_gets_the_custom_objects_advice(tmp_path: Path) -> None:
    def custom(layer: dict) -> None:  # type: ignore[type-arg]
        layer.update(module="my_layers", class_name="MyDense", registered_name="Custom>MyDense")

    model = _keras_with(tmp_path, "custom.keras", custom)
    _assert_one_line_error(
        run_cli("diagnose", str(model), fixture_path("healthy.npz")),
        "'MyDense'",
        "--custom-objects",
    )


@pytest.mark.unit
def test_custom_objects_do_not_let_a_foreign_callable_in(tmp_path: Path) -> None:
    """A --custom-objects file that re-exports os.system offers only what it defines, and
    the model naming os.system is refused before anything is looked up."""
    mod = tmp_path / "layers_mod.py"
    mod.write_text("from os import system  # noqa\n\ndef helper():\n    return 1\n")
    from kerasdoctor.load import load_custom_objects

    assert set(load_custom_objects(mod)) == {"helper"}
    model = _keras_with(tmp_path, "hostile.keras", _os_system_layer)
    r = run_cli("diagnose", str(model), fixture_path("healthy.npz"), "--custom-objects", str(mod))
    _assert_one_line_error(r, "names os.system", "refuses to load it")


def test_a_module_named_in_the_config_is_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the --custom-objects path is imported; a module a config names, even one on
    sys.path, is not (its import would run its code)."""
    marker = tmp_path / "imported"
    (tmp_path / "kd_canary_layers.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Canary:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    def canary(layer: dict) -> None:  # type: ignore[type-arg]
        layer.update(module="kd_canary_layers", class_name="Canary", registered_name="Canary")

    model = _keras_with(tmp_path, "canary.keras", canary)
    r = run_cli("diagnose", str(model), fixture_path("healthy.npz"))
    assert r.exit_code == 2, r.stderr
    assert not marker.exists()


# -- special files as DATA or MODEL (item 3): named before any read


@contextmanager
def fifo_watchdog(*paths: Path) -> Iterator[list[str]]:
    """While kerasdoctor runs, a thread that would open each FIFO for writing, and close it,
    as soon as a reader opened it: a regression then reads EOF and fails its test with a
    wrong message instead of hanging the suite. The list names the FIFOs that were read."""
    import threading

    stop = threading.Event()
    opened: list[str] = []

    def unblock() -> None:
        while not stop.wait(0.2):
            for path in paths:
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:  # no reader: as it should be
                    continue
                opened.append(str(path))
                os.close(fd)

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    try:
        yield opened
    finally:
        stop.set()
        thread.join()


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pipe.npz"
    os.mkfifo(path)
    with fifo_watchdog(path, path.with_name("pipe")) as opened:
        yield path
    assert not opened, "kerasdoctor opened the FIFO for reading"


@pytest.mark.unit
def test_fifo_as_data(fifo: Path) -> None:
    _assert_one_line_error(
        run_cli("diagnose", fixture_path(HEALTHY), str(fifo)),
        f"DATA: {fifo} is a named pipe (FIFO)",
        "not a regular file",
    )
    _assert_one_line_error(run_cli("fix", "--class-weights", str(fifo)), "named pipe (FIFO)")


@pytest.mark.unit
def test_fifo_as_data_without_a_suffix(fifo: Path) -> None:
    plain = fifo.with_name("pipe")
    fifo.rename(plain)
    _assert_one_line_error(
        run_cli("diagnose", fixture_path(HEALTHY), str(plain)), "named pipe (FIFO)"
    )


@pytest.mark.unit
def test_fifo_as_model(tmp_path: Path) -> None:
    path = tmp_path / "pipe.keras"
    os.mkfifo(path)
    with fifo_watchdog(path) as opened:
        r = run_cli("diagnose", str(path), fixture_path("healthy.npz"))
    _assert_one_line_error(r, f"MODEL: {path} is a named pipe (FIFO)")
    assert not opened


@pytest.mark.unit
@pytest.mark.parametrize("role", ["MODEL", "DATA"])
def test_symlink_to_dev_zero(tmp_path: Path, role: str) -> None:
    link = tmp_path / ("zero.keras" if role == "MODEL" else "zero.npz")
    link.symlink_to("/dev/zero")
    args = (
        (str(link), fixture_path("healthy.npz"))
        if role == "MODEL"
        else (fixture_path(HEALTHY), str(link))
    )
    r = run_cli("diagnose", *args)
    _assert_one_line_error(
        r, f"{role}: {link} (a symbolic link to /dev/zero) is a character device"
    )
    assert "pickle" not in r.stderr


@pytest.mark.unit
def test_character_device_as_data() -> None:
    _assert_one_line_error(
        run_cli("diagnose", fixture_path(HEALTHY), "/dev/null"),
        "DATA: /dev/null is a character device",
    )


@pytest.mark.unit
def test_socket_as_data() -> None:
    import socket
    import tempfile

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:  # AF_UNIX paths are short
        path = os.path.join(tmp, "s.npz")
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(path)
            _assert_one_line_error(run_cli("diagnose", fixture_path(HEALTHY), path), "is a socket")
        finally:
            sock.close()


def test_fifo_among_the_images_of_a_folder(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / cls / "0.png")
    os.mkfifo(tmp_path / "b" / "1.png")
    with fifo_watchdog(tmp_path / "b" / "1.png") as opened:
        r = run_cli("diagnose", fixture_path("data_raw_pixels.keras"), str(tmp_path))
    _assert_one_line_error(r, f"DATA: {tmp_path / 'b' / '1.png'} is a named pipe (FIFO)")
    assert not opened
