"""kerasdoctor: why does my Keras classifier predict only one class?

Public API: ``diagnose(model, x, y) -> Report``, ``repair(model, x, y) -> (model,
RepairReport)``, ``DoctorCallback``, ``Report``, ``Finding``,
``Severity``; ``kerasdoctor.testing.assert_healthy`` for pytest. Importing this package is
cheap; TensorFlow is imported on the first diagnosis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kerasdoctor.errors import InputError
from kerasdoctor.findings import CheckError, Finding, Fix, Kind, Report, Severity

__version__ = "0.1.0"

__all__ = [
    "CheckError",
    "DoctorCallback",
    "Finding",
    "Fix",
    "InputError",
    "Kind",
    "RepairReport",
    "Report",
    "Severity",
    "__version__",
    "diagnose",
    "repair",
]

if TYPE_CHECKING:
    import numpy as np

    from kerasdoctor.callback import DoctorCallback
    from kerasdoctor.fix.repair_result import RepairReport


def diagnose(model: Any, x: Any, y: np.ndarray | Any = None, **options: Any) -> Report:
    """Diagnose a Keras classifier on (x, y); the same checks and ranking as the CLI.

    ``model`` is a Keras model or a path (.keras, .h5, SavedModel directory); ``x`` an array,
    or a dict (by input name) or list of arrays for a multi-input model; ``y`` labels in any
    encoding of the contract. Or leave ``y`` out and give ``x`` as DATA, a path read as
    `kerasdoctor diagnose MODEL DATA` reads it (.npz, x.npy, .csv, .parquet, an image
    folder, a tf.data directory).

    The options are the CLI's and [tool.kerasdoctor]'s, by the same names:
    ``min_recall``, ``min_balanced_accuracy`` (quality gates: the quality-gate finding);
    ``fail_on`` (default "error", as the CLI: the severity that fails; it decides the CLI's
    exit code and kerasdoctor.testing.assert_healthy, while the Report holds every finding
    whatever it says); ``batch_size``, ``sample``, ``seed``, ``output_name``,
    ``class_names``, ``thresholds``, ``ignore``, ``unsafe``, ``custom_objects`` (a dict);
    and, for DATA given as a path: ``labels``, ``label_column``, ``feature_columns``,
    ``drop_columns``, ``image_size``, ``x_key``, ``y_key``. A dense model (per-pixel or
    per-token output) takes ``y`` (N, H, W) / (N, T) with ``ignore_label`` or ``mask``, an
    array of the labels' shape, nonzero where a position counts (void and padding do not); a
    multi-label one a multi-hot ``y`` (``multi_label=True`` forces it).
    ``gates={"min_recall": 0.8}`` is the older spelling of the gates. An unknown keyword is a
    TypeError naming the accepted ones; a value out of range is an InputError. Unlike the
    CLI, diagnose() reads no configuration file: pass the settings as keywords.

    >>> import numpy as np, kerasdoctor
    >>> d = np.load("fixtures/collapsed.npz")
    >>> report = kerasdoctor.diagnose("fixtures/collapsed.keras", d["x"], d["y"])
    >>> report.verdict
    'sick'
    >>> "missing-classes" in [f.id for f in report.findings]
    True
    >>> gated = kerasdoctor.diagnose("fixtures/collapsed.keras", "fixtures/collapsed.npz",
    ...                              min_recall=0.8)
    >>> gated.finding("quality-gate").evidence["min_recall"]
    0.8
    """
    return _diagnose(model, x, y, options, "kerasdoctor.diagnose()")


def repair(
    model: Any, x: Any, y: Any, *, cause: str | None = None, seed: int = 0, **options: Any
) -> tuple[Any, RepairReport]:
    """Cure the diagnosed root cause inside the model, without retraining, as
    ``kerasdoctor fix --repair`` does: the repair is fitted on one seeded, stratified half of
    (x, y) and kept only when it beats sampling noise on the other half.

    Returns ``(repaired_model, report)``: a new Keras model made of standard layers (the
    given one is never changed), or the given model itself when nothing was repaired;
    ``report`` is a RepairReport (``repaired``, ``cause``, ``repair``, ``why``, ``before``,
    ``after``, ``gain``, ``instead``, ``to_dict()``; ``outcome`` is the typed RepairResult
    they are read from). ``cause`` picks another cause of the diagnosis than its root; the
    other keywords are diagnose()'s.

    >>> import numpy as np, kerasdoctor
    >>> d = np.load("fixtures/data_permuted.npz")
    >>> fixed, rep = kerasdoctor.repair("fixtures/data_permuted.keras", d["x"], d["y"])
    >>> rep.repaired, rep.cause
    (True, 'label-permutation')
    >>> rep.after["balanced_accuracy"] > 0.95
    True
    """
    from kerasdoctor.fix.repair import repair_arrays

    return repair_arrays(model, x, y, cause=cause, seed=seed, **options)


def _diagnose(model: Any, x: Any, y: Any, options: dict[str, Any], where: str) -> Report:
    """diagnose() for it and assert_healthy: the keywords checked, then arrays or a path."""
    import os

    from kerasdoctor.core import DATA_PATH_OPTIONS, Options, diagnose_arrays

    options = dict(options)
    mask = options.pop("mask", None)  # dense labels: the positions that count (issue 16)
    opts = Options.from_keywords(options, where)
    is_path = isinstance(x, (str, os.PathLike))
    if y is None:
        if mask is not None:
            raise TypeError(
                f"{where}: mask= goes with x and y given as arrays; an .npz "
                "given as DATA brings its own 'mask' array"
            )
        if not is_path:
            raise TypeError(
                f"{where} needs y, the labels, unless x is DATA given as a path "
                "(an .npz, a .csv, ...) that holds them"
            )
        return _diagnose_path(model, x, opts)
    if is_path:
        raise TypeError(
            f"{where}: x is a path ({x!s}); DATA read from a path brings its own "
            "labels, so leave y out (say which column holds them with "
            "label_column=..., or give labels='y.npy' for an x.npy)"
        )
    default = Options()
    given = [k for k in DATA_PATH_OPTIONS if getattr(opts, k) != getattr(default, k)]
    if given:
        raise InputError(
            f"{given[0]} says how to read DATA from a path, not arrays: give x as "
            f"the path and leave y out, e.g. diagnose(model, 'data.csv', "
            f"{given[0]}=...)"
        )
    return diagnose_arrays(model, x, y, mask=mask, **options)


def _diagnose_path(model: Any, data: Any, opts: Any) -> Report:
    """DATA from a path, for a model given as a path (what the CLI runs) or in memory."""
    import os

    from kerasdoctor.core import diagnose_paths

    if isinstance(model, (str, os.PathLike)):
        return diagnose_paths(model, data, opts)
    from kerasdoctor.core import _diagnose as run
    from kerasdoctor.dataspec import DataSpec
    from kerasdoctor.load import from_keras_model
    from kerasdoctor.sources import open_source

    # cheap errors first, as diagnose_paths does
    source = open_source(data, DataSpec.of(opts), seed=opts.seed)
    return run(from_keras_model(model, output_name=opts.output_name), source, opts)


def __getattr__(name: str) -> Any:
    # DoctorCallback subclasses keras.callbacks.Callback: import Keras only when asked for it.
    if name == "DoctorCallback":
        from kerasdoctor.callback import DoctorCallback

        return DoctorCallback
    if name == "RepairReport":
        from kerasdoctor.fix.repair_result import RepairReport

        return RepairReport
    raise AttributeError(f"module 'kerasdoctor' has no attribute {name!r}")
