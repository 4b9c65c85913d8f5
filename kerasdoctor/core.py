"""Orchestration: load -> facts -> one probe pass -> checks -> ranking -> Report."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kerasdoctor.errors import InputError
from kerasdoctor.findings import LoggedExperiment, Report

if TYPE_CHECKING:
    from kerasdoctor.dataspec import DataSpec
    from kerasdoctor.sections import InputSummary

# The quality gates (the quality-gate check) and the policy, named alike in the CLI
# (--min-recall), [tool.kerasdoctor] (min_recall), diagnose() and assert_healthy() (min_recall=).
GATES = ("min_recall", "min_balanced_accuracy")
FAIL_ON_DEFAULT = "error"  # the CLI's --fail-on default, and everyone else's
# Options that say how to read DATA from a path (the CLI's DATA, or diagnose(model, "data.csv")):
# they have no meaning for arrays already in memory.
DATA_PATH_OPTIONS = (
    "labels",
    "label_column",
    "feature_columns",
    "drop_columns",
    "image_size",
    "x_key",
    "y_key",
)


@dataclass
class Options:
    """Settings of one diagnosis; the CLI, the config file and the API fill these, under the
    same names (`--min-recall`, `min_recall = 0.8`, `min_recall=0.8`)."""

    batch_size: int | None = None
    sample: int | None = None
    seed: int = 0
    x_key: str | None = None
    y_key: str = "y"
    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    ignore: Mapping[str, str] = field(default_factory=dict)  # finding id -> reason
    # quality gates in [0, 1]; `gates={"min_recall": 0.8}` is the older spelling of the same
    # thing, merged into `gates` (what the quality-gate check reads) by __post_init__
    min_recall: float | None = None
    min_balanced_accuracy: float | None = None
    gates: Mapping[str, float] = field(default_factory=dict)
    # the policy: a finding at or above this severity fails (the CLI's exit code 1,
    # kerasdoctor.testing.assert_healthy); diagnose() returns every finding either way
    fail_on: str = FAIL_ON_DEFAULT
    unsafe: bool = False
    custom_objects: dict[str, Any] | None = None
    output_name: str | None = None
    class_names: Sequence[str] | None = None  # in index order; a "a,b,c" string for a path
    progress: Callable[[int, int], None] | None = None
    only: frozenset[str] | None = None  # run just these check ids (the training callback)
    # other data sources (kerasdoctor.sources): .npy labels, table columns, image size
    labels: str | None = None  # y.npy next to DATA = x.npy
    label_column: str | None = None  # .csv / .parquet
    feature_columns: Sequence[str] | str | None = None  # .csv / .parquet, in model order
    # .csv / .parquet: columns that are not features (an id, a timestamp); the features are
    # then every other column but the labels, in file order
    drop_columns: Sequence[str] | str | None = None
    image_size: tuple[int, int] | str | None = None  # image folder, for models of any size
    # issue 16: True forces the multi-label diagnosis (kerasdoctor.multilabel), False refuses
    # multi-hot labels as before, None picks it when y is multi-hot (N, K)
    multi_label: bool | None = None
    # issue 16: dense outputs (kerasdoctor.dense): positions whose label is this value do not count
    ignore_label: int | None = None

    def __post_init__(self) -> None:
        from kerasdoctor.policy import FAIL_ON

        merged = {str(k): v for k, v in dict(self.gates or {}).items()}
        unknown = sorted(set(merged) - set(GATES))
        if unknown:
            raise InputError(
                f"gates: unknown gate '{unknown[0]}'; the gates are "
                f"{', '.join(GATES)} (also accepted as keywords of their own)"
            )
        for name in GATES:
            value = getattr(self, name)
            if value is not None and name in merged and _number(merged[name]) != _number(value):
                raise InputError(
                    f"{name}={value!r} and gates={{'{name}': {merged[name]!r}}} "
                    "disagree; give it once"
                )
            if value is None:
                value = merged.get(name)
            if value is None:
                continue
            v = _number(value)
            if v is None or not 0 <= v <= 1:
                raise InputError(f"{name} must be a number in [0, 1], got {value!r}")
            merged[name] = v
            setattr(self, name, v)
        self.gates = merged
        if self.fail_on not in FAIL_ON:
            raise InputError(f"fail_on must be one of {', '.join(FAIL_ON)}, got {self.fail_on!r}")

    @classmethod
    def from_keywords(
        cls, keywords: Mapping[str, Any], where: str = "kerasdoctor.diagnose()"
    ) -> Options:
        """Options from keyword arguments; an unknown one is a TypeError that names the
        accepted ones (and the closest, for a typo or a CLI spelling like 'min-recall')."""
        import difflib

        accepted = [f.name for f in fields(cls)]
        for key in keywords:
            if key in accepted:
                continue
            close = difflib.get_close_matches(str(key).replace("-", "_"), accepted, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise TypeError(
                f"{where} got an unexpected keyword argument '{key}'{hint}; "
                f"accepted: {', '.join(accepted)}"
            )
        return cls(**keywords)


def _number(value: Any) -> float | None:
    """A gate's value as a float; None for what is not a number (bools included)."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def diagnose_paths(
    model_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    options: Options | None = None,
) -> Report:
    """Diagnose a saved model on DATA (what `kerasdoctor diagnose` runs): .npz, .npy with
    labels, .csv/.parquet, an image folder or a saved tf.data directory (kerasdoctor.sources)."""
    from kerasdoctor.dataspec import DataSpec
    from kerasdoctor.load import load_model
    from kerasdoctor.sources import open_source

    opts = options or Options()
    refuse_swapped(model_path, data_path)
    # issue 16 (routing only): multi-hot labels in an .npz, or --multi-label, go to
    # kerasdoctor.multilabel; everything else is read and diagnosed as before
    from kerasdoctor.load import DenseLabels, MultiHotLabels  # DenseLabels: issue 16 (dense)
    from kerasdoctor.multilabel import is_npz_path

    raw = None
    dense_labels: InputError | None = None  # issue 16: labels a dense model may explain
    if not (opts.multi_label and is_npz_path(data_path)):
        try:
            # cheap errors first (labels read where cheap)
            raw = open_source(data_path, DataSpec.of(opts), seed=opts.seed)
        except DenseLabels as exc:  # issue 16: (N, H, W) / (N, T) labels in an .npz
            if opts.multi_label or not is_npz_path(data_path):
                raise
            # without its traceback: the frames of the failed read hold the arrays it read,
            # a second copy of the data for the whole dense diagnosis
            dense_labels = exc.with_traceback(None)
        except MultiHotLabels as exc:
            if opts.multi_label is False or not is_npz_path(data_path):
                raise
            dense_labels = exc.with_traceback(None)  # issue 16: or 0/1 tags (N, T) of a dense model
    if opts.multi_label and raw is not None:
        raise InputError(
            f"--multi-label reads DATA from an .npz (x, y multi-hot (N, K)) or "
            f"in-memory arrays; {data_path} is not an .npz"
        )
    lm = load_model(
        model_path,
        unsafe=opts.unsafe,
        custom_objects=opts.custom_objects,
        output_name=opts.output_name,
    )
    if dense_labels is not None:  # issue 16: a rank >= 3 output -> kerasdoctor.dense
        from kerasdoctor.dense import diagnose_npz as diagnose_dense
        from kerasdoctor.dense import is_dense_output

        if is_dense_output(lm):
            return diagnose_dense(lm, data_path, opts)
        if isinstance(dense_labels, DenseLabels):
            raise dense_labels
    elif raw is not None and is_npz_path(data_path):
        from kerasdoctor.dense import diagnose_npz as diagnose_dense
        from kerasdoctor.dense import is_dense_output

        # issue 16: 0/1 tags (N, T) with one 1 per row read as one-hot, by a model whose
        # output has positions that the labels fit: they are per-position labels
        if is_dense_output(lm) and _npz_labels_fit(data_path, opts.y_key, lm):
            return diagnose_dense(lm, data_path, opts)
    if raw is None:
        from kerasdoctor.multilabel import diagnose_npz

        return diagnose_npz(lm, data_path, opts)
    return _diagnose(lm, raw, opts)


MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
DATA_SUFFIXES = (".npz", ".npy", ".csv", ".parquet", ".pq")


def refuse_swapped(
    model_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    command: str = "kerasdoctor diagnose MODEL DATA",
) -> None:
    """A model given as DATA next to data given as MODEL: say so, instead of the error the
    data reader would give about a zip that holds config.json and model.weights.h5."""
    model_p, data_p = Path(model_path), Path(data_path)

    def is_model(p: Path) -> bool:
        return p.suffix.lower() in MODEL_SUFFIXES or (
            p.is_dir() and (p / "saved_model.pb").exists()
        )

    if is_model(data_p) and not is_model(model_p):
        what = (
            f"a table or arrays ({model_p.suffix})"
            if model_p.suffix.lower() in DATA_SUFFIXES
            else "not a model"
        )
        raise InputError(
            f"MODEL and DATA look swapped: DATA {str(data_p)!r} is a Keras model "
            f"and MODEL {str(model_p)!r} is {what}; the order is {command}"
        )


def diagnose_arrays(model: Any, x: Any, y: Any, mask: Any = None, **kwargs: Any) -> Report:
    """Diagnose a Keras model object (or a path) on in-memory arrays; `mask` marks the
    positions of dense labels that count."""
    from kerasdoctor.load import from_keras_model, load_model

    opts = Options(**kwargs)
    if isinstance(model, (str, os.PathLike)):
        lm = load_model(
            model,
            unsafe=opts.unsafe,
            custom_objects=opts.custom_objects,
            output_name=opts.output_name,
        )
    else:
        lm = from_keras_model(model, output_name=opts.output_name)
    # issue 16 (routing only): multi-hot y (or multi_label=True) -> kerasdoctor.multilabel
    # issue 16: a rank >= 3 output with (N, H, W) / (N, T) labels -> kerasdoctor.dense
    from kerasdoctor.dense import diagnose_arrays as diagnose_dense
    from kerasdoctor.dense import labels_fit
    from kerasdoctor.multilabel import diagnose_arrays as diagnose_multilabel
    from kerasdoctor.multilabel import is_multi_hot

    if not opts.multi_label and labels_fit(y, tuple(lm.output_shape)):
        return diagnose_dense(lm, x, y, opts, mask=mask)
    if mask is not None:
        raise InputError(
            "mask marks the positions that count in a dense model's labels (y "
            "(N, H, W) or (N, T) for an output (N, H, W, K) or (N, T, K)); this "
            "model and these labels are not dense"
        )
    if opts.multi_label or (opts.multi_label is None and is_multi_hot(y)):
        return diagnose_multilabel(lm, x, y, opts)
    return _diagnose(lm, raw_arrays(x, y, opts), opts)


def raw_arrays(x: Any, y: Any, opts: Options) -> Any:
    """In-memory (x, y) as the RawData an .npz would give: x an array, a dict by input name
    or a list (one per input); y labels in any encoding of the contract."""
    from kerasdoctor.load import RawData, decode_labels

    names = list(opts.class_names) if opts.class_names is not None else None
    labels = decode_labels(np.asarray(y), names, where="y")
    if labels.y.shape[0] == 0:
        raise InputError("y holds no samples")
    if isinstance(x, Mapping):
        arrays = {str(k): np.asarray(v) for k, v in x.items()}
    elif isinstance(x, (list, tuple)):
        arrays = {f"x{i}": np.asarray(v) for i, v in enumerate(x)}
    else:
        arrays = {"x": np.asarray(x)}
    return RawData("<arrays>", arrays, labels)


def _diagnose(lm: Any, raw: Any, opts: Options) -> Report:
    import warnings

    from kerasdoctor.seg_folder import SegFolderSource

    if isinstance(raw, SegFolderSource):  # issue 16: images/ + masks/ -> kerasdoctor.dense
        return raw.diagnose(lm, opts)

    # Library warnings (e.g. Keras's "softmax over an axis of size 1") describe exactly what
    # the checks report as findings; printed raw they would only be noise around the report.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _diagnose_quietly(lm, raw, opts)


def _diagnose_quietly(lm: Any, raw: Any, opts: Options) -> Report:
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.probe import Predictor, default_batch_size, run_probe
    from kerasdoctor.sources import ArraySource, Source

    source = raw if isinstance(raw, Source) else ArraySource(raw)
    bound = source.bind(lm)  # inputs matched to the model, shapes checked
    facts = read_facts(lm)
    known = bound.labels  # every label, when the source decodes them before the pass
    n_total = bound.n_rows
    indices = None
    if opts.sample is not None:
        from kerasdoctor.sampling import sample_indices

        if n_total is None and opts.sample > 0:
            raise InputError(
                f"--sample needs the number of samples before the pass; {bound.path} does not "
                "record it (save the dataset unbatched, or drop --sample)"
            )
        indices = sample_indices(n_total or 0, opts.sample, opts.seed)
    if opts.batch_size is not None and opts.batch_size <= 0:
        raise InputError(f"--batch-size must be positive, got {opts.batch_size}")
    n_classes = class_count_hint(
        known.width if known else None, known.class_names if known else None, facts
    )
    if known is not None:
        y = known.y if indices is None else known.y[indices]
        n_classes = max(n_classes, int(y.max()) + 1)  # metrics.class_count with the labels
    predictor = Predictor(lm, facts)
    batch_size = int(opts.batch_size or default_batch_size(bound.templates))
    try:
        ev = run_probe(
            predictor,
            bound.batches(batch_size, indices),
            n_total=int(indices.shape[0]) if indices is not None else n_total,
            n_classes=n_classes,
            seed=opts.seed,
            batch_size=batch_size,
            progress=opts.progress,
        )
    except InputError:
        raise
    except (ValueError, TypeError) as exc:  # the model refuses this data
        text = str(exc).strip().splitlines()
        raise InputError(
            f"MODEL: {lm.path} failed to run on {bound.path}: "
            f"{text[0] if text else type(exc).__name__}"
        ) from exc
    if ev.n_samples == 0:
        raise InputError(f"DATA: {bound.path} holds no samples")
    labels = bound.label_info()  # a streamed source knows its label encoding only now
    return build_report(
        lm,
        facts,
        predictor,
        ev,
        data_path=bound.path,
        class_names=labels.class_names,
        label_encoding=labels.encoding,
        opts=opts,
        sampled_from=n_total if indices is not None else None,
    )


def _npz_labels_fit(data_path: str | os.PathLike[str], y_key: str, lm: Any) -> bool:
    """Whether the .npz's labels have the shape of a dense model's positions (only the
    labels are read)."""
    import numpy as np

    from kerasdoctor.dense import labels_fit

    try:
        with np.load(data_path, allow_pickle=False) as z:
            y = z[y_key] if y_key in z.files else None
    except Exception:  # the single-label read already succeeded: keep that reading
        return False
    return y is not None and labels_fit(y, tuple(lm.output_shape))


def class_count_hint(width: int | None, class_names: Sequence[str] | None, facts: Any) -> int:
    """Classes known before the labels are counted: one-hot width, class names, output units
    (metrics.class_count; the pass adds the labels)."""
    from kerasdoctor.metrics import class_count

    return class_count(width, class_names, facts.n_outputs)


def build_report(
    lm: Any,
    facts: Any,
    predictor: Any,
    ev: Any,
    *,
    data_path: str,
    class_names: Sequence[str] | None,
    label_encoding: str,
    opts: Options,
    sampled_from: int | None = None,
    shards: int | None = None,
) -> Report:
    """Evidence -> checks -> ranking -> Report; shared by the .npz run and the Beam pipeline
    (`sampled_from`: the rows --sample drew from; `shards`: a sharded run's shard count)."""
    from kerasdoctor import __version__
    from kerasdoctor.checks import run_checks
    from kerasdoctor.checks.base import Context
    from kerasdoctor.diagnosis import rank
    from kerasdoctor.experiments import Experiments
    from kerasdoctor.metrics import class_names_for, compute_metrics
    from kerasdoctor.sections import DataSection, ModelInput, ModelSection, int_tuple

    names = class_names_for(ev.n_classes, class_names)
    sample_inputs = ev.sample_inputs
    ctx = Context(
        evidence=ev,
        facts=facts,
        class_names=names,
        model_path=_shell_path(lm.path),
        data_path=_shell_path(data_path),
        data_args=data_arguments(data_path, opts),
        label_encoding=label_encoding,
        overrides=opts.thresholds,
        experiments=Experiments(predictor, ev, seed=opts.seed),
        sample_inputs=sample_inputs,
        input_names=[s.name for s in lm.inputs],
        input_dtypes=[str(s.dtype) for s in lm.inputs],
        gates=opts.gates,
    )
    run = run_checks(ctx, skip=opts.ignore, only=opts.only)
    findings, errors = run.findings, run.errors
    ordered, chain = rank(findings)
    metrics = compute_metrics(ev.confusion, names)
    model_info = ModelSection(
        path=lm.path,
        format=lm.format,
        inputs=tuple(ModelInput(s.name, tuple(s.shape)) for s in lm.inputs),
        output=lm.output_name,
        n_outputs=facts.n_outputs,
        head=ev.output.head_used if facts.head == "unknown" else facts.head,
        loss=facts.loss,
        loss_from_logits=facts.loss_from_logits,
        optimizer_iterations=facts.optimizer_iterations,
        notes=tuple(lm.notes) + tuple(ev.notes),
    )
    # what the HTML report plots per input: from the pass and its bounded sample
    inputs = [
        value_summary(st, sample_inputs[i] if i < len(sample_inputs) else None)
        for i, st in enumerate(ev.inputs)
    ]
    data_info = DataSection(
        path=data_path,
        n_samples=ev.n_samples,
        n_classes=ev.n_classes,
        class_names=tuple(names),
        label_counts=int_tuple(ev.label_counts),
        label_encoding=label_encoding,
        inputs=tuple(inputs),
        sampled_from=sampled_from,
        seed=opts.seed if sampled_from is not None else None,
        shards=shards,
    )
    return Report(
        model=model_info,
        data=data_info,
        metrics=metrics,
        findings=tuple(ordered),
        errors=tuple(errors),
        experiments=tuple(LoggedExperiment(r) for r in ctx.experiments.results())
        if ctx.experiments
        else (),
        chain=tuple(chain),
        outcomes=tuple(run.outcomes),
        ignored=dict(opts.ignore),
        version=__version__,
        fail_on=opts.fail_on,
    )


def data_arguments(data_path: str, opts: Options | DataSpec) -> str:
    """DATA as a kerasdoctor command line takes it: the path plus every flag that says how to
    read it (--labels, --label-column, ..., --ignore-label, --multi-label), shell-quoted, so
    suggested commands can be pasted (a diagnosis's Options, or fix's DataSpec)."""
    from kerasdoctor.dataspec import DataSpec

    return DataSpec.of(opts).to_args(data_path)


def _shell_path(path: str) -> str:
    """A path as the user would paste it into a shell (dataspec.shell_path)."""
    from kerasdoctor.dataspec import shell_path

    return shell_path(path)


# Per-input value summaries for the reports (HTML histograms): small and fixed in size.
HIST_BINS = 40
HIST_MAX_VALUES = 4_000_000  # enough for a smooth histogram, bounded in time
MAX_FEATURES_SHOWN = 256


def value_summary(st: Any, values: np.ndarray | None) -> InputSummary:
    """One input's statistics from the pass (`st`, an evidence.InputStats) with, given the
    bounded sample's `values`, a histogram of them over the whole pass's [min, max] and each
    feature's typical magnitude (RMS) from the pass: what makes a scale problem visible."""
    from kerasdoctor.sections import Histogram, InputSummary, int_tuple

    mean, std, lo, hi = st.moments.pooled()
    info = InputSummary(
        name=st.name, shape=tuple(st.shape), dtype=st.dtype, mean=mean, std=std, min=lo, max=hi
    )
    if values is None:
        return info
    m = st.moments
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(np.where(m.count > 0, m.m2 / np.maximum(m.count, 1), np.nan) + m.mean**2)
    info = replace(
        info,
        feature_rms=tuple(float(v) for v in rms[:MAX_FEATURES_SHOWN]),
        n_features=int(m.n_features),
    )
    finite = np.isfinite(m.min) & np.isfinite(m.max)
    a = np.asarray(values)
    if not finite.any() or a.dtype.kind not in "biuf" or a.size == 0:
        return info
    lo, hi = float(m.min[finite].min()), float(m.max[finite].max())
    if hi <= lo:  # a constant input: one visible bar around its value
        lo, hi = lo - 0.5, hi + 0.5
    per_row = max(1, a.size // a.shape[0])
    rows = min(a.shape[0], max(1, HIST_MAX_VALUES // per_row))
    if rows < a.shape[0]:  # evenly spread rows: the sample is sorted by position in the data
        a = a[np.linspace(0, a.shape[0] - 1, rows).astype(np.int64)]
    counts, _ = np.histogram(a.astype(np.float64, copy=False), bins=HIST_BINS, range=(lo, hi))
    return replace(
        info, histogram=Histogram(lo=lo, hi=hi, counts=int_tuple(counts), n_rows=int(rows))
    )
