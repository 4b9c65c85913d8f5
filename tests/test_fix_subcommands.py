"""`fix` modes as subcommands (contract v2, "fix subcommands"): `fix MODE ...` is the same
command as the flag form `fix --MODE ...`, byte for byte, and the help shows the subcommands."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import fixture_path, run_cli

MODES = [
    ("class-weights", ["fix_rare_class.npz"], ["-f", "json"]),
    ("output-bias", ["fix_rare_class.npz"], ["-f", "json"]),
    ("threshold", ["model_threshold.keras", "model_threshold.npz"], ["-f", "json"]),
]


@pytest.mark.parametrize(("mode", "paths", "extra"), MODES, ids=[m[0] for m in MODES])
def test_subcommand_is_the_flag_form(mode: str, paths: list[str], extra: list[str]) -> None:
    args = [fixture_path(p) for p in paths] + extra
    flag = run_cli("fix", f"--{mode}", *args)
    sub = run_cli("fix", mode, *args)
    assert flag.exit_code == 0, flag.stderr
    assert (sub.exit_code, sub.stdout, sub.stderr) == (flag.exit_code, flag.stdout, flag.stderr)


def test_subcommand_writing_a_file(tmp_path: Path) -> None:
    data = fixture_path("fix_rare_class.npz")
    sub = run_cli("fix", "oversample", data, "--output", tmp_path / "a.npz", "--seed", "3")
    flag = run_cli("fix", "--oversample", data, "--output", tmp_path / "b.npz", "--seed", "3")
    assert sub.exit_code == flag.exit_code == 0, sub.stderr + flag.stderr
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_help_shows_the_subcommands_and_their_errors_name_them() -> None:
    text = run_cli("fix", "--help").stdout
    for mode in ("class-weights", "output-bias", "threshold", "oversample", "retrain", "repair"):
        assert f"fix {mode} " in text
    wrong = run_cli("fix", "repair", fixture_path("fix_rare_class.npz"))
    assert wrong.exit_code == 2 and "takes MODEL DATA" in wrong.stderr
