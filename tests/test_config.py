"""[tool.kerasdoctor] configuration: discovery, validation, ignores and thresholds end to end."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import diagnose_fixture, fixture_path, run_cli

from kerasdoctor.config import Config, find_pyproject, load_config
from kerasdoctor.errors import InputError

COLLAPSED = (fixture_path("collapsed.keras"), fixture_path("collapsed.npz"))
HEALTHY = (fixture_path("healthy.keras"), fixture_path("healthy.npz"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ discovery and parsing


@pytest.mark.unit
def test_pyproject_is_found_from_a_subdirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "x"\n\n[tool.kerasdoctor]\nfail_on = "warning"\nmin_recall = 0.5\n'
        'ignore = {"low-recall" = "class 3 is known to be hard"}\n\n'
        "[tool.kerasdoctor.thresholds.low-recall]\nmin_gap = 0.4\n",
    )
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_pyproject() == tmp_path / "pyproject.toml"
    cfg = load_config()
    assert cfg.fail_on == "warning"
    assert cfg.min_recall == 0.5 and cfg.min_balanced_accuracy is None
    assert cfg.ignore == {"low-recall": "class 3 is known to be hard"}
    assert cfg.thresholds == {"low-recall": {"min_gap": 0.4}}
    assert cfg.source == str(tmp_path / "pyproject.toml")


@pytest.mark.unit
def test_no_file_or_no_table_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    if find_pyproject() is None:  # nothing above tmp_path either
        assert load_config() == Config()
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n[tool.ruff]\nline-length = 100\n')
    assert load_config() == Config()


@pytest.mark.unit
def test_explicit_config_file_with_top_level_settings(tmp_path: Path) -> None:
    f = write(tmp_path / "kd.toml", 'fail_on = "info"\nmin_balanced_accuracy = 0.8\n')
    cfg = load_config(f)
    assert cfg.fail_on == "info" and cfg.min_balanced_accuracy == 0.8
    g = write(tmp_path / "kd2.toml", '[kerasdoctor]\nfail_on = "never"\n')
    assert load_config(g).fail_on == "never"


@pytest.mark.unit
def test_gates_flags_override_the_file() -> None:
    cfg = Config(min_recall=0.5, min_balanced_accuracy=0.7)
    assert cfg.gates() == {"min_recall": 0.5, "min_balanced_accuracy": 0.7}
    assert cfg.gates(0.9, None) == {"min_recall": 0.9, "min_balanced_accuracy": 0.7}
    assert cfg.gates(0.0, 0.1) == {"min_recall": 0.0, "min_balanced_accuracy": 0.1}
    assert Config().gates() == {}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('ignore = {"low-recall" = ""}', "needs a reason"),
        ('ignore = {"low-recall" = "   "}', "needs a reason"),
        ('ignore = ["low-recall"]', "must map finding ids to reasons"),
        ('ignore = {"no-such-check" = "x"}', "unknown finding 'no-such-check'"),
        ('fail_on = "sometimes"', "fail_on must be one of"),
        ('fail-on = "warning"', "did you mean 'fail_on'"),
        ("min_recall = 1.5", "min_recall must be a number in [0, 1]"),
        ('min_recall = "high"', "min_recall must be a number in [0, 1]"),
        ("[tool.kerasdoctor.thresholds.low-recall]\nno_such = 1", "has no threshold 'no_such'"),
        ('[tool.kerasdoctor.thresholds.low-recall]\nmin_gap = "x"', "must be a number"),
        ("[tool.kerasdoctor.thresholds.nope]\nx = 1", "unknown check 'nope'"),
        ("thresholds = 3", "thresholds must be a table"),
        # data and run settings: the CLI's names, checked as strictly as the rest
        ('label-column = "y"', "did you mean 'label_column'"),
        ('drop-columns = ["id"]', "did you mean 'drop_columns'"),
        ("label_column = 3", "label_column must be a non-empty string"),
        ("drop_columns = []", "drop_columns must be a list of names"),
        ("feature_columns = [1, 2]", "feature_columns must be a list of names"),
        ('image_size = "big"', "image_size must be HEIGHTxWIDTH"),
        ("image_size = [224]", "image_size must be HEIGHTxWIDTH"),
        ("batch_size = 0", "batch_size must be a whole number >= 1"),
        ("seed = 1.5", "seed must be a whole number >= 0"),
        ("unsafe = true", "unknown setting 'unsafe'"),
    ],
)
def test_bad_settings_are_one_clear_error(tmp_path: Path, body: str, message: str) -> None:
    f = write(tmp_path / "pyproject.toml", f"[tool.kerasdoctor]\n{body}\n")
    with pytest.raises(InputError) as exc:
        load_config(f)
    assert message in str(exc.value)
    assert str(f) in str(exc.value)


@pytest.mark.unit
def test_cli_reports_config_errors_as_exit_2(tmp_path: Path) -> None:
    res = run_cli("diagnose", *HEALTHY, "--config", str(tmp_path / "missing.toml"))
    assert res.exit_code == 2
    assert "no such file" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    bad = write(tmp_path / "bad.toml", "[tool.kerasdoctor\nfail_on = ")
    res = run_cli("diagnose", *HEALTHY, "--config", str(bad))
    assert res.exit_code == 2 and "not valid TOML" in res.stderr
    empty = write(tmp_path / "empty.toml", "[tool.other]\nx = 1\n")
    res = run_cli("diagnose", *HEALTHY, "--config", str(empty))
    assert res.exit_code == 2 and "no [tool.kerasdoctor] table" in res.stderr


# ------------------------------------------------------------------ end to end


def test_ignore_skips_the_check_and_every_format_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = "orange is retired next release"
    write(
        tmp_path / "pyproject.toml",
        f'[tool.kerasdoctor]\nignore = {{"missing-classes" = "{reason}"}}\n',
    )
    monkeypatch.chdir(tmp_path)
    res = run_cli("diagnose", *COLLAPSED, "--format", "json")
    report = res.json()
    ids = [f["id"] for f in report["findings"]]
    assert "missing-classes" not in ids
    assert "prediction-collapse" in ids  # the other checks still ran
    assert report["ignored"] == {"missing-classes": reason}
    for fmt in ("table", "markdown", "html"):
        out = tmp_path / f"report.{fmt}"
        res = run_cli("diagnose", *COLLAPSED, "--format", fmt, "--output", str(out))
        text = out.read_text(encoding="utf-8")
        assert "missing-classes" in text and reason in text, fmt
    res = run_cli("diagnose", *COLLAPSED, "--format", "junit")
    skipped = ET.fromstring(res.stdout).find(".//testcase[@name='missing-classes']/skipped")
    assert skipped is not None and reason in skipped.get("message", "")


def test_fail_on_from_the_file_and_the_flag_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "pyproject.toml", '[tool.kerasdoctor]\nfail_on = "never"\n')
    monkeypatch.chdir(tmp_path)
    assert run_cli("diagnose", *COLLAPSED, "--format", "json").exit_code == 0
    assert run_cli("diagnose", *COLLAPSED, "--format", "json", "--fail-on", "error").exit_code == 1
    # an explicit --config wins over the pyproject.toml found from the working directory
    other = write(tmp_path / "strict.toml", '[tool.kerasdoctor]\nfail_on = "warning"\n')
    assert run_cli("diagnose", *COLLAPSED, "--config", str(other), "-f", "json").exit_code == 1


def test_thresholds_from_the_file_reach_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = diagnose_fixture("collapsed.keras", "collapsed.npz").finding("low-recall")
    assert default is not None, "low-recall fires on the collapsed fixture with the defaults"
    flagged = default.evidence["classes"][0]
    # the check judges the recall's upper confidence bound against the others' median
    gap = flagged["others_median_recall"] - flagged["recall_upper_bound"]
    # just above the measured gap the check must stay quiet; just below it must still fire
    write(
        tmp_path / "pyproject.toml",
        f"[tool.kerasdoctor.thresholds.low-recall]\nmin_gap = {gap + 0.01:.6f}\n",
    )
    monkeypatch.chdir(tmp_path)
    loud = [
        f["id"]
        for f in run_cli("diagnose", *COLLAPSED, "-f", "json").json()["findings"]
        if f["severity"] != "info"
    ]
    assert "low-recall" not in loud
    write(
        tmp_path / "pyproject.toml",
        f"[tool.kerasdoctor.thresholds.low-recall]\nmin_gap = {gap - 0.01:.6f}\n",
    )
    loud = [
        f["id"]
        for f in run_cli("diagnose", *COLLAPSED, "-f", "json").json()["findings"]
        if f["severity"] != "info"
    ]
    assert "low-recall" in loud
