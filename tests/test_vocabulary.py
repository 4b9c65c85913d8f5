"""One vocabulary: every `diagnose` option that belongs in a config file has the same name on
the command line (--min-recall), in [tool.kerasdoctor] (min_recall) and in the API
(min_recall=), the same default everywhere, and --drop-columns works end to end."""

from __future__ import annotations

import csv
import inspect
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from conftest import fixture_path, run_cli
from test_cli_errors import _assert_one_line_error

import kerasdoctor
from kerasdoctor.cli import app
from kerasdoctor.config import Config, _parse, load_config
from kerasdoctor.core import Options, data_arguments
from kerasdoctor.errors import InputError
from kerasdoctor.sources import parse_columns, parse_image_size
from kerasdoctor.testing import assert_healthy

# Options of `kerasdoctor diagnose` that do not belong in a config file, and why. Every other
# option must be accepted under its own name by [tool.kerasdoctor] and by kerasdoctor.diagnose().
NOT_IN_CONFIG = {
    "format": "how to show one run's report, not how to judge the model",
    "output": "where one run writes its report",
    "reports": "extra report files of one run (--report FORMAT=FILE)",
    "config": "names the config file itself",
    # running code stored in or next to the model is consented to per command, never inherited
    # from a file found in a parent folder; the API takes both (custom_objects as a dict)
    "unsafe": "runs Python code stored in the model file: typed per run",
    "custom_objects": "imports a .py file: typed per run",
    # Beam: a sharded run is started from the command line (the API diagnoses one process's
    # data; kerasdoctor.beam.pipeline.diagnose_shards takes the pipeline arguments)
    "runner": "the Beam runner of a sharded run",
    "pipeline_options": "Beam pipeline options of a sharded run",
}
# Options the API takes too, although they stay out of the config file (see above).
API_ONLY = ("unsafe", "custom_objects")
ARGUMENTS = ("model", "data")  # MODEL and DATA: what to diagnose, never a setting

# One value per option, as each place spells it: (CLI value, TOML value, API value,
# kind of DATA it applies to, the value every spelling must come to).
SAMPLES: dict[str, tuple[str, str, Any, str, Any]] = {
    "fail_on": ("warning", '"warning"', "warning", "npz", "warning"),
    "min_recall": ("0.8", "0.8", 0.8, "npz", 0.8),
    "min_balanced_accuracy": ("0.7", "0.7", 0.7, "npz", 0.7),
    "batch_size": ("64", "64", 64, "npz", 64),
    "sample": ("100", "100", 100, "npz", 100),
    "seed": ("7", "7", 7, "npz", 7),
    "output_name": ("head", '"head"', "head", "npz", "head"),
    "multi_label": (None, "true", True, "npz", True),  # a switch: the flag takes no value
    "ignore_label": ("255", "255", 255, "npz", 255),  # issue 16: dense labels
    "x_key": ("a", '"a"', "a", "npz", "a"),
    "y_key": ("lab", '"lab"', "lab", "npz", "lab"),
    "labels": ("y.npy", '"y.npy"', "y.npy", "npy", "y.npy"),
    "label_column": ("target", '"target"', "target", "csv", "target"),
    "feature_columns": ("a,b", '["a", "b"]', ["a", "b"], "csv", ["a", "b"]),
    "drop_columns": ("id,ts", '["id", "ts"]', ("id", "ts"), "csv", ["id", "ts"]),
    "class_names": ("cat,dog", '"cat,dog"', ["cat", "dog"], "csv", ["cat", "dog"]),
    "image_size": ("32x48", "[32, 48]", (32, 48), "images", (32, 48)),
}
DATA_FILES = {"npz": "data.npz", "npy": "x.npy", "csv": "data.csv", "images": "images"}


def _normal(name: str, value: Any) -> Any:
    """One spelling of a value: columns as a list, an image size as a pair, a path resolved."""
    if value is None:
        return None
    if name in ("feature_columns", "drop_columns", "class_names"):
        return parse_columns(value)
    if name == "image_size":
        return parse_image_size(value)
    if name == "labels":
        return Path(value).resolve()
    return value


def _diagnose_params() -> list[Any]:
    """The parameters of `kerasdoctor diagnose`, as Typer builds it from cli/diagnose.py."""
    group: Any = typer.main.get_command(app)
    return list(group.commands["diagnose"].params)


class _Captured(Exception):
    pass


@pytest.fixture
def captured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Options]:
    """The Options each diagnosis is started with (the run itself stops there), in a folder
    with DATA of every kind and no pyproject.toml above it that would count."""
    seen: list[Options] = []

    def fake(model: Any, data: Any, options: Options | None = None) -> Any:
        seen.append(options or Options())
        raise InputError("captured")

    monkeypatch.setattr("kerasdoctor.core.diagnose_paths", fake)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    for name in DATA_FILES.values():
        if name == "images":
            (tmp_path / name / "cat").mkdir(parents=True)
        else:
            (tmp_path / name).write_bytes(b"")
    return seen


def _via_cli(seen: list[Options], data: str, *args: str) -> Options:
    res = run_cli("diagnose", fixture_path("healthy.keras"), data, *args)
    assert res.exit_code == 2 and "captured" in res.stderr, res.stderr
    return seen.pop()


def _via_config(seen: list[Options], tmp_path: Path, data: str, body: str) -> Options:
    cfg = tmp_path / "kd.toml"
    cfg.write_text(f"[tool.kerasdoctor]\n{body}\n", encoding="utf-8")
    return _via_cli(seen, data, "--config", str(cfg))


def _via_api(seen: list[Options], data: str, **kwargs: Any) -> Options:
    with pytest.raises(InputError, match="captured"):
        kerasdoctor.diagnose(fixture_path("healthy.keras"), data, **kwargs)
    return seen.pop()


@pytest.mark.unit
def test_every_diagnose_option_has_one_name_in_cli_config_and_api(
    tmp_path: Path, captured: list[Options]
) -> None:
    params = _diagnose_params()
    names = {p.name for p in params}
    # the exclusion lists name real options: a renamed flag cannot hide behind a stale entry
    assert set(NOT_IN_CONFIG) | set(ARGUMENTS) <= names
    assert {p.name for p in params if p.param_type_name == "argument"} == set(ARGUMENTS)
    shared = [p for p in params if p.name not in NOT_IN_CONFIG and p.name not in ARGUMENTS]
    assert {p.name for p in shared} == set(SAMPLES), (
        "a new diagnose option: give it a sample value here (it is then checked in the config "
        "and the API), or say in NOT_IN_CONFIG why it does not belong in a config file"
    )
    option_fields = {f for f in inspect.signature(Options).parameters}
    for p in shared:
        name = p.name
        assert name is not None and p.param_type_name == "option"
        # the same name: --min-recall on the command line, min_recall in the file and the API
        assert "--" + name.replace("_", "-") in p.opts, (name, p.opts)
        assert name in option_fields, name
        cli_value, toml_value, api_value, kind, want = SAMPLES[name]
        data = DATA_FILES[kind]
        want = _normal(name, want)
        flag = (p.opts[0],) if cli_value is None else (p.opts[0], cli_value)  # a switch or not
        from_cli = _via_cli(captured, data, *flag)
        from_file = _via_config(captured, tmp_path, data, f"{name} = {toml_value}")
        from_api = _via_api(captured, data, **{name: api_value})
        for where, opts in (("CLI", from_cli), ("config", from_file), ("API", from_api)):
            assert _normal(name, getattr(opts, name)) == want, (name, where)
        # and left out, each place gives the same default
        defaults = [
            _normal(name, getattr(o, name))
            for o in (
                _via_cli(captured, data),
                _via_config(captured, tmp_path, data, ""),
                _via_api(captured, data),
                Options(),
            )
        ]
        assert defaults.count(defaults[0]) == len(defaults), (name, defaults)


@pytest.mark.unit
def test_options_kept_out_of_the_config_are_refused_there_and_the_api_takes_some() -> None:
    accepted = {f for f in inspect.signature(Options).parameters}
    for name in NOT_IN_CONFIG:
        with pytest.raises(InputError, match=f"unknown setting '{name}'"):
            _parse({name: "x"}, "kd.toml")
        assert (name in accepted) == (name in API_ONLY), name


@pytest.mark.unit
def test_the_gates_reach_the_quality_gate_check_under_every_spelling(
    tmp_path: Path, captured: list[Options]
) -> None:
    want = {"min_recall": 0.8, "min_balanced_accuracy": 0.7}
    gates = [
        _via_cli(captured, "data.npz", "--min-recall", "0.8", "--min-balanced-accuracy", "0.7"),
        _via_config(
            captured, tmp_path, "data.npz", "min_recall = 0.8\nmin_balanced_accuracy = 0.7"
        ),
        _via_api(captured, "data.npz", min_recall=0.8, min_balanced_accuracy=0.7),
        _via_api(captured, "data.npz", gates=want),  # the older spelling, still accepted
        _via_api(captured, "data.npz", gates={"min_recall": 0.8}, min_balanced_accuracy=0.7),
    ]
    for opts in gates:
        assert dict(opts.gates) == want
        assert (opts.min_recall, opts.min_balanced_accuracy) == (0.8, 0.7)
    # a flag overrides the file's value
    over = _via_config(captured, tmp_path, "data.npz", "min_recall = 0.5")
    assert over.min_recall == 0.5
    res = run_cli(
        "diagnose",
        fixture_path("healthy.keras"),
        "data.npz",
        "--config",
        str(tmp_path / "kd.toml"),
        "--min-recall",
        "0.9",
    )
    assert res.exit_code == 2 and captured.pop().gates == {"min_recall": 0.9}


@pytest.mark.unit
def test_one_default_for_fail_on_everywhere(captured: list[Options]) -> None:
    cli_default = _via_cli(captured, "data.npz").fail_on
    assert cli_default == "error"
    assert Options().fail_on == Config().fail_on == cli_default
    assert inspect.signature(assert_healthy).parameters["fail_on"].default == cli_default


@pytest.mark.unit
def test_unknown_or_bad_keywords_are_clear_errors() -> None:
    d = np.load(fixture_path("healthy.npz"))
    model = fixture_path("healthy.keras")
    with pytest.raises(TypeError) as info:
        kerasdoctor.diagnose(model, d["x"], d["y"], min_recal=0.8)
    text = str(info.value)
    assert "unexpected keyword argument 'min_recal'" in text
    assert "did you mean 'min_recall'" in text
    assert "accepted: " in text and "min_balanced_accuracy" in text and "fail_on" in text
    with pytest.raises(TypeError, match="assert_healthy.*'fail_policy'.*accepted: "):
        assert_healthy(model, d["x"], d["y"], fail_policy="error")
    for kwargs, message in [
        ({"min_recall": 1.5}, "min_recall must be a number in [0, 1]"),
        ({"min_recall": "high"}, "min_recall must be a number in [0, 1]"),
        ({"fail_on": "sometimes"}, "fail_on must be one of error, warning, info, never"),
        ({"gates": {"min_acc": 0.5}}, "unknown gate 'min_acc'"),
        ({"gates": {"min_recall": 0.5}, "min_recall": 0.8}, "disagree"),
        ({"label_column": "y"}, "label_column says how to read DATA from a path"),
        ({"drop_columns": "id"}, "drop_columns says how to read DATA from a path"),
    ]:
        with pytest.raises(InputError) as err:
            kerasdoctor.diagnose(model, d["x"], d["y"], **kwargs)
        assert message in str(err.value), (kwargs, str(err.value))
    with pytest.raises(TypeError, match="needs y"):
        kerasdoctor.diagnose(model, d["x"])
    with pytest.raises(TypeError, match="leave y out"):
        kerasdoctor.diagnose(model, fixture_path("healthy.npz"), d["y"])


# ------------------------------------------------------------------ real runs


def test_min_recall_in_the_api_matches_the_cli() -> None:
    model, data = fixture_path("collapsed.keras"), fixture_path("collapsed.npz")
    cli = run_cli("diagnose", model, data, "--min-recall", "0.8", "-f", "json")
    assert cli.exit_code == 1
    cli_gate = next(f for f in cli.json()["findings"] if f["id"] == "quality-gate")
    d = np.load(data)
    names = d["class_names"].tolist()
    api = kerasdoctor.diagnose(model, d["x"], d["y"], class_names=names, min_recall=0.8)
    gate = api.finding("quality-gate")
    assert gate is not None and gate.to_dict()["evidence"] == cli_gate["evidence"]
    with pytest.raises(AssertionError) as info:
        assert_healthy(model, d["x"], d["y"], class_names=names, min_recall=0.8)
    assert "quality-gate (error)" in info.value.args[0].splitlines()[0]


def test_a_warning_fails_only_at_fail_on_warning_in_the_api_and_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the collapsed model with its errors ignored: one warning (low-recall) remains
    errors = ["prediction-collapse", "chance-level", "missing-classes", "class-imbalance"]
    ignore = {cid: "this test looks at the warning only" for cid in errors}
    model, data = fixture_path("collapsed.keras"), fixture_path("collapsed.npz")
    d = np.load(data)
    report = assert_healthy(model, d["x"], d["y"], ignore=ignore)  # the default: "error"
    assert [f.severity.value for f in report.findings] == ["warning"]
    with pytest.raises(AssertionError, match="low-recall \\(warning\\)"):
        assert_healthy(model, d["x"], d["y"], ignore=ignore, fail_on="warning")
    table = ", ".join(f'"{cid}" = "this test looks at the warning only"' for cid in errors)
    (tmp_path / "pyproject.toml").write_text(f"[tool.kerasdoctor]\nignore = {{{table}}}\n")
    monkeypatch.chdir(tmp_path)
    assert run_cli("diagnose", model, data, "-f", "json").exit_code == 0
    assert run_cli("diagnose", model, data, "-f", "json", "--fail-on", "warning").exit_code == 1


def _csv_with_id(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """The rows of an .npz as a table a user exports: an id first, the features, the label."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id"] + [f"f{i}" for i in range(x.shape[1])] + ["y"])
        for i, (row, lab) in enumerate(zip(x, y)):
            w.writerow([f"r{i:05d}"] + [repr(float(v)) for v in row] + [int(lab)])


def _summary(report: dict[str, Any]) -> Any:
    return (
        [(f["id"], f["severity"]) for f in report["findings"]],
        report["metrics"]["confusion_matrix"],
        report["data"]["n_samples"],
    )


def test_drop_columns_end_to_end_through_the_cli_and_its_suggested_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fixture_path("collapsed.keras")
    base = run_cli("diagnose", model, fixture_path("collapsed.npz"), "-f", "json").json()
    d = np.load(fixture_path("collapsed.npz"))
    _csv_with_id(tmp_path / "data.csv", d["x"], d["y"])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    res = run_cli(
        "diagnose", model, "data.csv", "--label-column", "y", "--drop-columns", "id", "-f", "json"
    )
    assert res.exit_code == 1, res.stderr
    report = res.json()
    assert _summary(report) == _summary(base)
    # every suggested command reads the table the same way, and runs as printed (here the
    # table stands in for the training data the class weights are learnt from)
    commands = [
        fx["command"]
        for f in report["findings"]
        for fx in f["fixes"]
        if fx["command"] and fx["command"].startswith("kerasdoctor fix ")
    ]
    assert commands and all("--label-column y --drop-columns id" in c for c in commands)
    weights_cmd = next(shlex.split(c) for c in commands if "--class-weights" in c)
    at = weights_cmd.index("--class-weights") + 1
    weights_cmd[at] = "data.csv"
    fixed = run_cli(*weights_cmd[1:], "--format", "json")
    assert fixed.exit_code == 0, fixed.stderr
    weights = run_cli("fix", "--class-weights", fixture_path("collapsed.npz"), "-f", "json")
    assert fixed.json()["class_weight"] == weights.json()["class_weight"]
    # without it the id is one feature too many, and the error says how to leave it out
    _assert_one_line_error(
        run_cli("diagnose", model, "data.csv", "--label-column", "y"),
        "9 feature column(s) (id, f0,",
        "--drop-columns",
    )


def test_data_settings_in_the_config_drive_a_real_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fixture_path("collapsed.keras")
    d = np.load(fixture_path("collapsed.npz"))
    _csv_with_id(tmp_path / "data.csv", d["x"], d["y"])
    (tmp_path / "pyproject.toml").write_text(
        '[tool.kerasdoctor]\nlabel_column = "y"\ndrop_columns = ["id"]\nmin_recall = 0.8\n'
        'class_names = ["apple", "orange", "grape"]\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    res = run_cli("diagnose", model, "data.csv", "-f", "json")
    assert res.exit_code == 1, res.stderr
    from_file = res.json()
    flags = run_cli(
        "diagnose",
        model,
        "data.csv",
        "-f",
        "json",
        "--label-column",
        "y",
        "--drop-columns",
        "id",
        "--min-recall",
        "0.8",
        "--class-names",
        "apple,orange,grape",
    ).json()
    assert _summary(from_file) == _summary(flags)
    assert "quality-gate" in [f["id"] for f in from_file["findings"]]
    assert from_file["data"]["class_names"] == d["class_names"].tolist()
    # the same settings as diagnose() keywords, with DATA given as a path
    api = kerasdoctor.diagnose(
        model,
        "data.csv",
        label_column="y",
        drop_columns=["id"],
        min_recall=0.8,
        class_names=["apple", "orange", "grape"],
    )
    assert _summary(api.to_dict()) == _summary(from_file)
    # the file's table settings are left out for an .npz; the same flag is refused
    npz = run_cli("diagnose", model, fixture_path("collapsed.npz"), "-f", "json")
    assert npz.exit_code == 1 and "quality-gate" in [f["id"] for f in npz.json()["findings"]]
    _assert_one_line_error(
        run_cli("diagnose", model, fixture_path("collapsed.npz"), "--drop-columns", "id"),
        "--drop-columns does not apply",
    )


def test_an_in_memory_model_reads_data_from_a_path(tmp_path: Path) -> None:
    import keras

    model = keras.saving.load_model(fixture_path("healthy.keras"))
    d = np.load(fixture_path("healthy.npz"))
    _csv_with_id(tmp_path / "data.csv", d["x"], d["y"])
    report = kerasdoctor.diagnose(model, tmp_path / "data.csv", label_column="y", drop_columns="id")
    arrays = kerasdoctor.diagnose(model, d["x"], d["y"])
    assert report.verdict == arrays.verdict == "healthy"
    assert report.metrics.confusion_matrix == arrays.metrics.confusion_matrix


def test_parquet_drop_columns(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    d = np.load(fixture_path("healthy.npz"))
    cols: dict[str, Any] = {
        "id": [f"r{i}" for i in range(len(d["y"]))],
        "when": np.arange(len(d["y"]), dtype=np.int64),
    }
    cols.update({f"f{i}": d["x"][:, i] for i in range(d["x"].shape[1])})
    cols["label"] = d["y"]
    pq.write_table(pa.table(cols), tmp_path / "t.parquet")
    model = fixture_path("healthy.keras")
    res = run_cli(
        "diagnose", model, str(tmp_path / "t.parquet"), "--drop-columns", "id,when", "-f", "json"
    )
    assert res.exit_code == 0, res.stderr
    base = run_cli("diagnose", model, fixture_path("healthy.npz"), "-f", "json").json()
    assert _summary(res.json()) == _summary(base)
    _assert_one_line_error(
        run_cli("diagnose", model, str(tmp_path / "t.parquet"), "--drop-columns", "when"),
        "column 'id' has type string",
        "--drop-columns",
    )


@pytest.mark.unit
def test_drop_columns_errors_are_one_line(tmp_path: Path) -> None:
    d = np.load(fixture_path("healthy.npz"))
    _csv_with_id(tmp_path / "t.csv", d["x"][:20], d["y"][:20])
    m, t = fixture_path("healthy.keras"), str(tmp_path / "t.csv")
    _assert_one_line_error(
        run_cli("diagnose", m, t, "--drop-columns", "nope"),
        "has no column 'nope' for --drop-columns",
    )
    _assert_one_line_error(
        run_cli("diagnose", m, t, "--drop-columns", "id,y", "--label-column", "y"),
        "--drop-columns includes the label column 'y'",
    )
    _assert_one_line_error(
        run_cli("diagnose", m, t, "--drop-columns", "id", "--feature-columns", "f0,f1"),
        "give one of them",
    )
    _assert_one_line_error(
        run_cli("diagnose", m, t, "--drop-columns", " , "), "--drop-columns is empty"
    )


@pytest.mark.unit
def test_data_arguments_give_back_every_data_option() -> None:
    opts = Options(label_column="y", drop_columns=["id", "ts"], class_names=("a", "b"))
    assert data_arguments("t.csv", opts) == (
        "t.csv --label-column y --drop-columns id,ts --class-names a,b"
    )
    opts = Options(feature_columns="f0,f1", label_column="target")
    assert data_arguments("t.csv", opts) == ("t.csv --label-column target --feature-columns f0,f1")
    assert data_arguments("imgs", Options(image_size=(32, 48))) == "imgs --image-size 32x48"
    assert data_arguments("d.npz", Options(x_key="a", y_key="lab")) == (
        "d.npz --x-key a --y-key lab"
    )


@pytest.mark.unit
def test_config_file_data_settings_parse_as_the_cli_spells_them(tmp_path: Path) -> None:
    f = tmp_path / "kd.toml"
    f.write_text(
        '[tool.kerasdoctor]\nlabels = "data/y.npy"\nfeature_columns = "a, b"\n'
        'image_size = "224x224"\nseed = 3\n',
        encoding="utf-8",
    )
    cfg = load_config(f)
    assert cfg.labels == str(tmp_path / "data" / "y.npy")  # from the file's folder
    assert cfg.feature_columns == ("a", "b") and cfg.image_size == (224, 224)
    assert cfg.settings()["seed"] == 3 and cfg.settings(seed=5)["seed"] == 5
