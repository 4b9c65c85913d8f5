"""What the fix modes share: loading, guarding the input files, stratified splits, scoring."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.dataspec import DataSpec
from kerasdoctor.errors import InputError
from kerasdoctor.fix.results import ClassRecall, Summary
from kerasdoctor.load import LoadedModel, RawData
from kerasdoctor.model_facts import ModelFacts


def n_classes_of(raw: RawData, n_outputs: int | None = None) -> int:
    """K: the widest of the one-hot width, class_names, the model's units and the labels
    (metrics.class_count)."""
    from kerasdoctor.metrics import class_count

    return class_count(raw.labels.width, raw.labels.class_names, n_outputs, int(raw.labels.y.max()))


def names_for(raw: RawData, k: int) -> list[str]:
    from kerasdoctor.metrics import class_names_for

    return class_names_for(k, raw.labels.class_names)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when both paths name the same file or directory (links and '..' resolved)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def refuse_overwrite(output: Path, inputs: Sequence[tuple[str, str]]) -> None:
    """Exit 2 rather than write over a file the command reads (what, path) pairs."""
    for what, path in inputs:
        if same_file(output, path):
            raise InputError(
                f"--output {output} is the input {what}; kerasdoctor never overwrites its "
                "inputs: choose a new file name"
            )
        # a SavedModel is a directory: writing inside it would corrupt it just the same
        if Path(path).is_dir() and Path(path).resolve() in Path(output).resolve().parents:
            raise InputError(f"--output {output} lies inside the input {what} {path}")


def read_labels_raw(data_path: str, spec: DataSpec, seed: int = 0) -> RawData:
    """The labels of any DATA kind, as a RawData without inputs."""
    from kerasdoctor.load import RawData
    from kerasdoctor.sources import read_labels

    return RawData(str(data_path), {}, read_labels(data_path, spec, seed=seed))


@dataclass
class ModelData:
    """A model and its data, bound together for the modes that run the model."""

    lm: LoadedModel
    facts: ModelFacts
    raw: RawData
    arrays: list[Any]  # one per model input, rows aligned with raw.labels.y
    # what each row is, where the data has names for its rows (an image folder's files)
    row_names: list[str] | None = None


def load_model_and_data(
    model_path: str,
    data_path: str,
    *,
    spec: DataSpec | None = None,
    seed: int = 0,
    unsafe: bool = False,
    output_name: str | None = None,
) -> ModelData:
    """Model and data in memory; DATA of any kind `diagnose` reads, as `spec` says (non-.npz
    data is read once through its source: these modes train or sweep on all of it anyway)."""
    from kerasdoctor.load import load_model
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.sources import open_source

    src = open_source(data_path, spec or DataSpec(), seed=seed)  # cheap errors first
    lm = load_model(model_path, unsafe=unsafe, output_name=output_name)
    return _bind(src, lm, read_facts(lm), data_path)


def bind_arrays(lm: LoadedModel, raw: RawData) -> ModelData:
    """In-memory data (RawData) bound to lm's inputs, for the library's repair()."""
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.sources import ArraySource

    return _bind(ArraySource(raw), lm, read_facts(lm), raw.path)


def load_more_data(
    md: ModelData, data_path: str, spec: DataSpec, seed: int = 0, what: str = "EVAL_DATA"
) -> ModelData:
    """Other data (e.g. EVAL_DATA) read for md's model, its class indices made md's."""
    from kerasdoctor.sources import open_source

    other = _bind(open_source(data_path, spec, seed=seed), md.lm, md.facts, data_path)
    other.raw.labels = _labels_as(md.raw, other.raw, what)
    return other


def _bind(src: Any, lm: LoadedModel, facts: ModelFacts, data_path: str) -> ModelData:
    from kerasdoctor.load import Labels, RawData
    from kerasdoctor.sources import ArraySource, ImageFolderSource

    bound = src.bind(lm)
    # an image folder names its rows: one file each, in the order they are read
    row_names = list(src.paths) if isinstance(src, ImageFolderSource) else None
    if isinstance(src, ArraySource):
        return ModelData(lm, facts, src.raw, list(bound.arrays), row_names)
    parts: list[list[np.ndarray]] = [[] for _ in lm.inputs]
    ys: list[np.ndarray] = []
    for xs, y, _ in bound.batches(4096):
        for part, x in zip(parts, xs):
            part.append(np.asarray(x))
        ys.append(np.asarray(y))
    arrays = [np.concatenate(p) for p in parts]
    info = bound.label_info()
    labels = Labels(np.concatenate(ys), info.encoding, info.width, info.class_names)
    raw = RawData(str(data_path), {s.name: a for s, a in zip(lm.inputs, arrays)}, labels)
    return ModelData(lm, facts, raw, arrays, row_names)


def _labels_as(ref: RawData, other: RawData, what: str) -> Any:
    """other's labels with ref's class indices: two image folders number their classes by
    their own subfolders, so a class missing from one would shift every index after it."""
    from dataclasses import replace

    mine, theirs = ref.labels.class_names, other.labels.class_names
    labels = other.labels
    if mine and theirs and list(mine) != list(theirs):
        unknown = [n for n in theirs if n not in mine]
        if unknown:
            raise InputError(
                f"{what}: {other.path} has classes {', '.join(map(str, unknown))} that "
                f"{ref.path} does not have ({', '.join(map(str, mine))}): both must name "
                "the same classes"
            )
        index = np.array([list(mine).index(n) for n in theirs], dtype=np.int64)
        labels = replace(labels, y=index[labels.y], class_names=list(mine))
    return labels


def data_arguments(path: str, spec: DataSpec, labels: str | None = None) -> str:
    """DATA as a command line takes it: the path and every flag that reads it, shell-quoted
    (DataSpec.to_args, shared with `diagnose`); `labels` stands for --labels."""
    from dataclasses import replace

    return replace(spec, labels=labels).to_args(str(path))


@dataclass
class Outputs:
    """The model's outputs on some rows: raw values, probabilities, predicted classes."""

    raw: np.ndarray  # (n, units) float64
    probs: np.ndarray  # (n, units)
    preds: np.ndarray  # (n,) int64
    head: str  # the activation used to turn raw outputs into probabilities


def predict_outputs(
    md: ModelData,
    indices: np.ndarray | None = None,
    *,
    batch_size: int | None = None,
    predictor: Any = None,
) -> Outputs:
    """Run the model on the rows `indices` (all rows when None), in batches."""
    from kerasdoctor.probe import (
        Predictor,
        default_batch_size,
        looks_like_probabilities,
        predicted_classes,
        probability_fn,
    )

    pred = predictor or Predictor(md.lm, md.facts, taps=False)
    n = md.raw.n_samples if indices is None else int(indices.size)
    bs = int(batch_size or default_batch_size(md.arrays))
    raws: list[np.ndarray] = []
    try:
        for s in range(0, n, bs):
            if indices is None:
                xs = [a[s : s + bs] for a in md.arrays]
            else:
                xs = [a[indices[s : s + bs]] for a in md.arrays]
            out = pred.run_batch(xs)[0]
            raws.append(np.asarray(out).reshape(out.shape[0], -1).astype(np.float64))
    except (ValueError, TypeError) as exc:  # the model refuses this data
        text = str(exc).strip().splitlines()
        raise InputError(
            f"MODEL: {md.lm.path} failed to run on {md.raw.path}: "
            f"{text[0] if text else type(exc).__name__}"
        ) from exc
    units = int(md.lm.output_shape[-1] or 1)
    raw = np.concatenate(raws) if raws else np.zeros((0, units))
    head = md.facts.head
    if head == "unknown":  # a SavedModel: judge from the values, as the probe does
        head = looks_like_probabilities(raw) or "linear"
    with np.errstate(all="ignore"):
        probs = probability_fn(head, raw.shape[1])(raw)
    return Outputs(raw, probs, predicted_classes(raw, probs), head)


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices, each class split in the same proportion.

    A class with two samples or more puts at least one in each part, so its recall can be
    measured before and after; a single sample stays in the training part.
    """
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_held = 0 if idx.size < 2 else int(min(idx.size - 1, max(1, round(idx.size * fraction))))
        held.append(idx[:n_held])
        train.append(idx[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


# The interval stated next to every balanced accuracy a fix measures.
INTERVAL_LEVEL = 0.95
INTERVAL_METHOD = (
    "Wilson score interval at the Kish effective sample size K^2 / sum(1/n_k) of the "
    "class-balanced mean"
)


def balanced_accuracy_interval(
    conf: np.ndarray, level: float = INTERVAL_LEVEL
) -> tuple[float, float, float] | None:
    """(low, high, effective n) of balanced accuracy on a confusion matrix; None without rows.

    Balanced accuracy is a weighted mean of 0/1 outcomes, each row of class k weighing
    1 / (K n_k) (K the classes present). Its variance at a common success rate p is
    p (1 - p) sum_k (1 / n_k) / K^2, that of a plain proportion over Kish's effective sample
    size n_eff = K^2 / sum_k (1 / n_k), so the Wilson score interval is taken at n_eff: for
    equal classes it is the textbook Wilson interval of accuracy. Wilson rather than the
    normal approximation because held-out parts are small and their recalls often exactly
    0 or 1, where the normal interval has zero width; the Wilson interval always contains
    the estimate and stays inside [0, 1].
    """
    from scipy.stats import norm

    conf = np.asarray(conf, dtype=np.float64)
    support = conf.sum(axis=1)
    present = support > 0
    if not present.any():
        return None
    k = int(present.sum())
    p = float(np.mean(np.diag(conf)[present] / support[present]))
    n = float(k * k / np.sum(1.0 / support[present]))
    z = float(norm.ppf(0.5 + level / 2))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half), n


def summarize(y: np.ndarray, pred: np.ndarray, names: Sequence[str]) -> Summary:
    """Accuracy, balanced accuracy (with its 95% interval), confusion matrix and per-class
    recall of some predictions."""
    from kerasdoctor.metrics import compute_metrics

    k = len(names)
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (y, np.clip(pred, 0, k - 1)), 1)
    m = compute_metrics(conf, names)
    ci = balanced_accuracy_interval(conf)
    return Summary(
        n_samples=int(y.shape[0]),
        accuracy=m.accuracy,
        balanced_accuracy=m.balanced_accuracy,
        balanced_accuracy_ci95=None if ci is None else (float(ci[0]), float(ci[1])),
        effective_n=None if ci is None else float(ci[2]),
        confusion_matrix=m.confusion_matrix,
        per_class=tuple(
            ClassRecall(row.index, row.name, row.support, row.predicted, row.recall)
            for row in m.per_class
        ),
    )


ProgressFn = Callable[[int, int], None]
