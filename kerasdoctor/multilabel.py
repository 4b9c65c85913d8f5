"""Multi-label diagnosis (issue 16): `y` multi-hot (N, K), the model K sigmoid units.

One pass predicts every row; the findings come from per-label figures at the model's decision
rule (score > 0.5 per unit) and from one experiment: per-label thresholds chosen on one seeded
half of the rows and scored on the other half. The catalogue ids are the single-label ones
(docs/contract.md): prediction-collapse, missing-classes, decision-threshold, class-imbalance,
output-activation, loss-mismatch, quality-gate; chance-level and the model-level causes come
from task_causes. The report lists exactly the checks whose specs declare the multilabel task
(checks.for_task), assembled as a dense one is (task_report.assemble).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kerasdoctor.checks.base import MULTILABEL
from kerasdoctor.errors import InputError
from kerasdoctor.findings import Finding, Fix, Kind, Report, Severity
from kerasdoctor.metrics import names_for_classes

if TYPE_CHECKING:
    from kerasdoctor.experiments import ExperimentResult, ProbeResult
    from kerasdoctor.sections import ClassMetrics, LabelMetrics, MultiLabelMetrics

DECISION = 0.5  # the model's own rule: a label is predicted when its score is > 0.5
MIN_SUPPORT = 10  # positives a label needs before its recall / ranking is judged at all
MIN_CHANCE_ROWS = 20  # rows before chance-level is judged (the single-label check's min_samples)
# decision-threshold: a label ranks well when its ROC AUC is >= 0.75 AND the lower end of its
# Hanley-McNeil 95% interval is > 0.6. With 10-60 positives (typical of a rare tag) the AUC's
# standard error is 0.03-0.08, so a point estimate alone could be luck; 0.6 keeps only labels
# whose ranking is clearly better than chance, 0.75 only ones a threshold can really use.
AUC_GOOD, AUC_LOWER = 0.75, 0.6
STARVED_RECALL = 0.5  # the 0.5 cut finds fewer than half the positives
STARVED_RATE = 0.25  # "(nearly) never predicted": predicted rate <= 1/4 of the prevalence
RARE_PREVALENCE = 0.10  # class-imbalance context: labels on fewer than 10% of the rows
Z_ONE_SIDED = 2.326  # one-sided 99% (Wilson bound of the share of rows predicted empty)
COLLAPSE_EXCESS = 0.25  # a quarter of the labelled rows lose every label: a collapse
MIN_GAIN = 0.02  # a threshold experiment's gain must also clear this (besides 2 SE)
CATEGORICAL_LOSSES = (
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "categorical_focal_crossentropy",
    "kl_divergence",
)


# ------------------------------------------------------------------ detection and reading


def is_multi_hot(y: Any) -> bool:
    """`y` (N, K) with K >= 2, every value 0 or 1, and not every row summing to exactly 1."""
    from kerasdoctor.load import is_multi_hot as _is

    return _is(np.asarray(y))


def read_multilabel_npz(
    path: str | os.PathLike[str], x_key: str | None, y_key: str
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str] | None]:
    """The .npz's input arrays, its raw `y` and its class names: the checks of
    load.read_npz (path, special files, damaged members, no pickle) without decoding y."""
    import zipfile

    from kerasdoctor.load import _first_line, _npz_member_damage, refuse_special_file

    p = Path(path)
    if not p.exists():
        raise InputError(f"DATA: no such file: {p}")
    refuse_special_file(p, "DATA")
    if p.is_dir():
        raise InputError(f"DATA: {p} is a directory; expected an .npz file")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(p, allow_pickle=False) as npz:
            keys = list(npz.files)
            for k in keys:
                damage = _npz_member_damage(npz, k)
                if damage is not None:
                    if k in (y_key, x_key, "x"):
                        raise InputError(f"DATA: {p}: {damage}")
                    continue
                try:
                    arrays[k] = npz[k]
                except ValueError as exc:
                    raise InputError(
                        f"DATA: {p}: array '{k}' holds Python objects, which "
                        "kerasdoctor does not unpickle"
                    ) from exc
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise InputError(f"DATA: {p} is not a readable .npz archive ({_first_line(exc)})") from exc
    if y_key not in arrays:
        raise InputError(
            f"DATA: {p} has no '{y_key}' array for the labels "
            f"(found: {', '.join(keys) or 'nothing'})"
        )
    y = arrays.pop(y_key)
    names_arr = arrays.pop("class_names", None)
    names = [str(n) for n in names_arr.tolist()] if names_arr is not None else None
    arrays.pop("mask", None)
    if x_key is not None:
        if x_key not in arrays:
            raise InputError(f"DATA: {p} has no '{x_key}' array (found: {', '.join(keys)})")
        arrays = {"x": arrays[x_key]}
    return arrays, y, names


def check_multi_hot(y: Any, where: str) -> np.ndarray:
    """`y` as a float (N, K) 0/1 matrix, or an InputError that says why it is not one."""
    y = np.asarray(y)
    if y.ndim != 2 or y.shape[1] < 2:
        raise InputError(
            f"{where} has shape {y.shape}; multi-label targets are multi-hot (N, K) with K >= 2"
        )
    if y.dtype.kind not in "biuf":
        raise InputError(f"{where} has dtype {y.dtype}; multi-hot labels must be 0/1 numbers")
    if y.shape[0] == 0:
        raise InputError(f"{where} holds no samples")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise InputError(f"{where} has NaN/Inf labels")
    if not np.isin(y, (0, 1)).all():
        bad = np.argwhere(~np.isin(y, (0, 1)))[0]
        raise InputError(
            f"{where} is not multi-hot: value {y[tuple(bad)]!r} at row "
            f"{int(bad[0])}, label {int(bad[1])} (expected 0 or 1)"
        )
    out: np.ndarray = y.astype(np.int8)
    return out


# ------------------------------------------------------------------ entry points


def diagnose_npz(lm: Any, data_path: str | os.PathLike[str], opts: Any) -> Report:
    """`kerasdoctor diagnose MODEL DATA.npz` with a multi-hot `y`."""
    arrays, y, names = read_multilabel_npz(data_path, opts.x_key, opts.y_key)
    return diagnose_loaded(lm, str(data_path), arrays, y, names, opts)


def is_npz_path(path: str | os.PathLike[str]) -> bool:
    """DATA that kerasdoctor reads as an .npz (by suffix, or a zip's first bytes)."""
    from kerasdoctor.sources.interface import _kind

    p = Path(path)
    try:
        return p.exists() and _kind(p) == "npz"
    except InputError:
        return False


def diagnose_arrays(lm: Any, x: Any, y: Any, opts: Any) -> Report:
    """kerasdoctor.diagnose(model, x, y) with a multi-hot y (or multi_label=True)."""
    if isinstance(x, Mapping):
        arrays = {str(key): np.asarray(v) for key, v in x.items()}
    elif isinstance(x, (list, tuple)):
        arrays = {f"x{i}": np.asarray(v) for i, v in enumerate(x)}
    else:
        arrays = {"x": np.asarray(x)}
    return diagnose_loaded(lm, "<arrays>", arrays, y, None, opts)


def diagnose_loaded(
    lm: Any,
    path: str,
    arrays: Mapping[str, np.ndarray],
    y: Any,
    names: Sequence[str] | None,
    opts: Any,
) -> Report:
    """Bind the inputs, predict once, judge. `arrays` by key, as an .npz holds them."""
    import warnings

    from kerasdoctor.load import Labels, RawData, bind_inputs

    where = f"DATA: {path}: '{getattr(opts, 'y_key', 'y')}'" if path != "<arrays>" else "y"
    yb = check_multi_hot(y, where)
    n, k = yb.shape
    label_names = names_for_classes(names, opts.class_names, k, where, "labels")
    # bind_inputs checks row counts and shapes against the model, as the single-label path
    raw = RawData(path, dict(arrays), Labels(np.zeros(n, np.int64), "multi-hot", k, label_names))
    xs = bind_inputs(raw, lm)
    indices = _sample_indices(n, opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _diagnose(lm, path, xs, yb, label_names, indices, opts)


def _sample_indices(n: int, opts: Any) -> np.ndarray | None:
    """--sample as core._diagnose_quietly draws it (same rng, same seed)."""
    if opts.batch_size is not None and opts.batch_size <= 0:
        raise InputError(f"--batch-size must be positive, got {opts.batch_size}")
    from kerasdoctor.sampling import sample_indices

    return sample_indices(n, opts.sample, opts.seed)


def _predict(
    lm: Any,
    facts: Any,
    xs: list[Any],
    indices: np.ndarray | None,
    k: int,
    opts: Any,
    moments: list[Any] | None = None,
) -> np.ndarray:
    """Every row's raw outputs (float64); `moments` (rowstate.Moments per input) are fed the
    batches' inputs on the way."""
    from kerasdoctor.probe import Predictor, default_batch_size

    predictor = Predictor(lm, facts, taps=False)
    templates = [np.empty((0, *a.shape[1:]), a.dtype) for a in xs]
    batch = int(opts.batch_size or default_batch_size(templates))
    n = len(xs[0]) if indices is None else int(indices.shape[0])
    out = []
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        part = (
            [a[start:stop] for a in xs] if indices is None else [a[indices[start:stop]] for a in xs]
        )
        for m, a in zip(moments or [], part):
            m.update(a)
        out.append(predict_batch(lm, predictor, part, k))
        if opts.progress is not None:
            opts.progress(stop, n)
    return np.concatenate(out) if out else np.zeros((0, k))


def run_batch(lm: Any, predictor: Any, part: list[Any]) -> np.ndarray:
    """The model's first output on one batch; a model that cannot run on the data is one
    InputError line (the dense and multi-label passes share it)."""
    try:
        return np.asarray(predictor.run_batch(part)[0])
    except (ValueError, TypeError) as exc:
        text = str(exc).strip().splitlines()
        raise InputError(
            f"MODEL: {lm.path} failed to run on the data: {text[0] if text else type(exc).__name__}"
        ) from exc


def predict_batch(lm: Any, predictor: Any, part: list[Any], k: int) -> np.ndarray:
    """One batch's raw outputs (b, K) as float64."""
    raw = run_batch(lm, predictor, part)
    if raw.ndim != 2 or raw.shape[1] != k:
        shape = "(N, " + ", ".join(str(d) for d in raw.shape[1:]) + ")"
        raise InputError(
            f"MODEL: {lm.path} outputs {shape} but the multi-hot labels have "
            f"{k} columns; a multi-label model needs {k} output units (N, {k})"
        )
    out: np.ndarray = raw.astype(np.float64)
    return out


# ------------------------------------------------------------------ statistics


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, s))


def hanley_mcneil_lower(auc: float, n_pos: int, n_neg: int, z: float = 1.96) -> float:
    """Lower end of the AUC's normal interval with Hanley & McNeil's (1982) standard error."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / max(
        n_pos * n_neg, 1
    )
    return auc - z * math.sqrt(max(var, 0.0))


def wilson_lower(successes: int, n: int, z: float = Z_ONE_SIDED) -> float:
    if n == 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - margin) / (1 + z * z / n)


def _balanced(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(balanced accuracy, its standard error) of one label's 0/1 predictions."""
    pos, neg = y == 1, y == 0
    tpr = float(pred[pos].mean()) if pos.any() else float("nan")
    tnr = float(1 - pred[neg].mean()) if neg.any() else float("nan")
    se = 0.5 * math.sqrt(tpr * (1 - tpr) / max(pos.sum(), 1) + tnr * (1 - tnr) / max(neg.sum(), 1))
    return (tpr + tnr) / 2, se


def macro_balanced(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Mean over labels (with both values present) of (TPR + TNR) / 2, and its standard error."""
    vals, ses = [], []
    for j in range(y.shape[1]):
        if 0 < y[:, j].sum() < y.shape[0]:
            b, se = _balanced(y[:, j], pred[:, j])
            vals.append(b)
            ses.append(se)
    if not vals:
        return float("nan"), float("nan")
    return float(np.mean(vals)), float(math.sqrt(sum(s * s for s in ses)) / len(ses))


def youden_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """The score cut maximising Youden's J = TPR - FPR on roc_curve (predict `score >= t`).
    J is 2 x balanced accuracy - 1, so this is the threshold the experiment scores."""
    from sklearn.metrics import roc_curve

    if y.min() == y.max():
        return DECISION
    fpr, tpr, thr = roc_curve(y, s)
    best = int(np.argmax(tpr - fpr))
    return float(min(thr[best], 1.0))


def label_cut(y: np.ndarray, s: np.ndarray) -> float:
    """The cut t that maximises Youden's J (= 2 x balanced accuracy - 1) of the rule
    `score > t` on (y, s), the model's own strict rule, so that a cut moved into the output
    bias (sigmoid(z - logit t) > 0.5 exactly when sigmoid(z) > t) predicts the same rows.

    t lies midway between the lowest score predicted positive and the next lower score, so
    it sits on no row; among equally good cuts the one nearest 0.5 wins (the least change).
    DECISION when y holds one value only (no cut can be chosen)."""
    from sklearn.metrics import roc_curve

    if y.min() == y.max():
        return DECISION
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    # thr[i] (decreasing, distinct scores; thr[0] = inf) is the rule `s >= thr[i]`
    lower = np.append(thr[1:], -np.inf)
    with np.errstate(invalid="ignore"):
        cuts = np.where(np.isfinite(lower), (thr + lower) / 2, np.nextafter(thr, -np.inf))
    cuts[0] = thr[1] if thr.size > 1 else DECISION  # predict none: `s > max(s)`
    j = tpr - fpr
    tied = np.flatnonzero(j >= j.max() - 1e-12)
    return float(cuts[tied[np.argmin(np.abs(cuts[tied] - DECISION))]])


def _rates(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """One label's figures for 0/1 predictions: recall, precision, balanced accuracy."""
    pos = int(y.sum())
    npred = int(pred.sum())
    tp = int((pred & y).sum())
    neg = int(y.shape[0] - pos)
    tnr = (neg - (npred - tp)) / neg if neg else None
    recall = tp / pos if pos else None
    return {
        "support": pos,
        "predicted": npred,
        "recall": recall,
        "precision": tp / npred if npred else None,
        "balanced_accuracy": (recall + tnr) / 2 if recall is not None and tnr is not None else None,
    }


def validate_label_thresholds(
    y: np.ndarray,
    probs: np.ndarray,
    fit: np.ndarray,
    test: np.ndarray,
    labels: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Per label: the cut chosen on the `fit` rows (label_cut) and whether it beats the
    model's 0.5 on the `test` rows beyond noise. A label keeps 0.5 unless it does.

    The noise is that of the paired difference: the two rules differ only on the test rows
    whose score lies between the cuts, all moved one way, so the change in balanced accuracy
    is (share of positives flipped - share of negatives flipped) / 2 (or its negative), with
    binomial variance from each share. A cut counts ("validated") when its gain exceeds both
    two standard errors and MIN_GAIN."""
    n, k = y.shape
    out = []
    for j in range(k):
        yt = y[test, j].astype(bool)
        st = probs[test, j]
        base = st > DECISION
        row: dict[str, Any] = {
            "label": j,
            "threshold": DECISION,
            "threshold_fitted": None,
            "validated": False,
            "gain": None,
            "noise": None,
            "note": None,
            "before": _rates(yt, base),
        }
        row["after"] = row["before"]
        yf = y[fit, j]
        if labels is not None and j not in labels:
            row["note"] = "not tried"
        elif yf.min() == yf.max() or yt.min() == yt.max():
            row["note"] = (
                "no positives" if min(yf.max(), yt.max()) == 0 else "no negatives"
            ) + " in one half: no cut can be chosen or checked"
        else:
            t = label_cut(yf, probs[fit, j])
            cand = st > t
            tried = _rates(yt, cand)
            flip = cand != base
            fp_, fn_ = float(flip[yt].mean()), float(flip[~yt].mean())
            se = 0.5 * math.sqrt(fp_ * (1 - fp_) / yt.sum() + fn_ * (1 - fn_) / (~yt).sum())
            gain = float(tried["balanced_accuracy"] - row["before"]["balanced_accuracy"])
            noise = 2 * se
            ok = gain > max(noise, MIN_GAIN)
            row.update(
                {
                    "threshold_fitted": t,
                    "gain": gain,
                    "noise": noise,
                    "validated": ok,
                    "tried": tried,
                }
            )
            if ok:
                row["threshold"], row["after"] = t, tried
            else:
                row["note"] = (
                    f"the cut {t:.4g} chosen on one half moves its balanced "
                    f"accuracy on the other by {gain:+.3f}, not beyond noise "
                    f"(±{noise:.3f}) and {MIN_GAIN}: keeps {DECISION}"
                )
        out.append(row)
    return out


def label_summary(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Macro figures of multi-label 0/1 predictions: balanced accuracy (labels with both
    values present), recall and precision (a label never predicted has precision 0, as
    scikit-learn's zero_division=0), and the share of rows predicted with no label."""
    k = y.shape[1]
    ba, _ = macro_balanced(y, pred)
    rates = [_rates(y[:, j].astype(bool), pred[:, j].astype(bool)) for j in range(k)]
    recalls = [r["recall"] for r in rates if r["recall"] is not None]
    precisions = [r["precision"] or 0.0 for r in rates if r["support"]]
    return {
        "rows": int(y.shape[0]),
        "macro_balanced_accuracy": None if math.isnan(ba) else ba,
        "macro_recall": float(np.mean(recalls)) if recalls else None,
        "macro_precision": float(np.mean(precisions)) if precisions else None,
        "no_predicted_label": float((pred.sum(axis=1) == 0).mean()),
        "no_true_label": float((y.sum(axis=1) == 0).mean()),
    }


def fix_commands(
    model_path: str, data_path: str, opts: Any, cause: str, *, repair: bool, threshold: bool
) -> list[Fix]:
    """`kerasdoctor fix --repair ... --cause CAUSE` (only where the experiment validated the
    cure) and `kerasdoctor fix --threshold` (where thresholds are the cure), with every flag
    that read DATA, as checks.base.repair_fix writes them for single-label models."""
    import shlex

    from kerasdoctor.core import _shell_path, data_arguments

    model = "MODEL" if model_path.startswith("<") else _shell_path(model_path)
    args = data_arguments(data_path, opts)  # --ignore-label, --multi-label included
    stem = "model" if model_path.startswith("<") else Path(model_path.rstrip("/")).stem
    out = shlex.quote(f"{stem or 'model'}_repaired.keras")
    how = (
        "the log prior of the positions, validated on a held-out half, is subtracted from "
        "the output bias (logit adjustment), so the model's own argmax applies it"
        if cause == "class-imbalance"
        else "the cut validated on a held-out half is moved into the output bias (bias -= "
        "logit(threshold)), so the model's own 0.5 rule applies it"
    )
    fixes = []
    if repair:
        fixes.append(
            Fix(
                f"Repair it inside the model, without retraining: {how}",
                command=f"kerasdoctor fix --repair {model} {args} --cause {cause} --output {out}",
            )
        )
    if threshold:
        fixes.append(
            Fix(
                "See the thresholds, chosen on one seeded half of DATA and checked on the other",
                command=f"kerasdoctor fix --threshold {model} {args}",
            )
        )
    return fixes


def split_halves(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of the rows, seeded, stratified by each row's rarest positive label (rows
    without a label form their own stratum), so every label has positives in both."""
    rng = np.random.default_rng(seed)
    prevalence = y.mean(axis=0)
    order = np.argsort(prevalence, kind="stable")  # rarest label first
    key = np.full(y.shape[0], y.shape[1], dtype=np.int64)
    for j in order[::-1]:  # the rarest label present wins: written last
        key[y[:, j] == 1] = j
    a, b = [], []
    flip = 0
    for stratum in np.unique(key):
        rows = rng.permutation(np.flatnonzero(key == stratum))
        half = (len(rows) + flip) // 2
        flip ^= len(rows) % 2  # odd strata alternate which half gets the extra row
        a.append(rows[:half])
        b.append(rows[half:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def label_metrics(y: np.ndarray, probs: np.ndarray, names: Sequence[str]) -> MultiLabelMetrics:
    from kerasdoctor.sections import LabelMetrics, LabelSampleMetrics, MultiLabelMetrics

    n, k = y.shape
    pred = (probs > DECISION).astype(np.int8)
    per = []
    for j in range(k):
        pos = int(y[:, j].sum())
        npred = int(pred[:, j].sum())
        tp = int((pred[:, j] & y[:, j]).sum())
        auc = _auc(y[:, j], probs[:, j])
        per.append(
            LabelMetrics(
                index=j,
                name=names[j],
                support=pos,
                predicted=npred,
                prevalence=pos / n,
                predicted_rate=npred / n,
                recall=tp / pos if pos else None,
                precision=tp / npred if npred else None,
                auc=auc,
                auc_lower=hanley_mcneil_lower(auc, pos, n - pos) if auc is not None else None,
                max_score=float(probs[:, j].max()),
            )
        )
    correct = float((pred == y).mean())
    baseline = float(np.mean([max(r.prevalence, 1 - r.prevalence) for r in per]))
    ba, _ = macro_balanced(y, pred)
    no_true = float((y.sum(axis=1) == 0).mean())
    no_pred = float((pred.sum(axis=1) == 0).mean())
    labelled = y.sum(axis=1) > 0
    return MultiLabelMetrics(
        decision_rule=f"score > {DECISION}",
        # label-wise figures, so that the single-label renderers read them as they are
        accuracy=correct,  # share of (row, label) cells right (1 - Hamming loss)
        majority_baseline=baseline,  # predicting each label's majority value
        balanced_accuracy=None if math.isnan(ba) else ba,  # mean over labels
        majority_class=None,  # no confusion matrix either: labels are not exclusive
        confusion_matrix=(),
        subset_accuracy=float((pred == y).all(axis=1).mean()),
        per_class=tuple(per),
        per_sample=LabelSampleMetrics(
            no_true_label=no_true,
            no_predicted_label=no_pred,
            labelled_rows_predicted_empty=float((pred[labelled].sum(axis=1) == 0).mean())
            if labelled.any()
            else None,
            mean_true_labels=float(y.sum(axis=1).mean()),
            mean_predicted_labels=float(pred.sum(axis=1).mean()),
        ),
    )


# ------------------------------------------------------------------ the diagnosis


def _diagnose(
    lm: Any,
    path: str,
    xs: list[Any],
    y_all: np.ndarray,
    names: list[str],
    indices: np.ndarray | None,
    opts: Any,
) -> Report:
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.rowstate import moments_of

    facts = read_facts(lm)
    k = y_all.shape[1]
    moments = moments_of(xs)
    raw = _predict(lm, facts, xs, indices, k, opts, moments)
    rows = np.arange(y_all.shape[0]) if indices is None else indices
    return multilabel_report(
        lm,
        facts,
        path,
        raw,
        y_all,
        rows,
        xs,
        names,
        moments,
        opts,
        sampled_from=None if indices is None else int(y_all.shape[0]),
    )


def multilabel_report(
    lm: Any,
    facts: Any,
    path: str,
    raw: np.ndarray,
    y_all: Any,
    rows: np.ndarray,
    xs: Sequence[Any],
    names: list[str],
    moments: Sequence[Any],
    opts: Any,
    *,
    sampled_from: int | None = None,
    shards: int | None = None,
) -> Report:
    """The report from every diagnosed row's raw outputs (in the order of `rows`): the single
    run and the sharded (Beam) run both end here. `y_all` and `xs` are indexed by the ids in
    `rows`; the experiments read only their bounded sample (task_causes.sample_rows)."""
    from kerasdoctor import __version__
    from kerasdoctor.sections import DataSection, int_tuple
    from kerasdoctor.task_report import assemble, model_section

    k = int(y_all.shape[1])
    y = np.asarray(y_all[rows])
    notes = list(lm.notes)
    head = facts.head
    probs = raw
    finite = np.isfinite(raw).all(axis=1)
    if not finite.all():
        notes.append(f"{int((~finite).sum())} rows with NaN/Inf outputs were left out")
        probs, y = raw[finite], y[finite]
        if y.shape[0] == 0:
            raise InputError(f"MODEL: {lm.path} gives NaN/Inf for every row of {path}")
    if head not in ("sigmoid", "softmax") and (probs.min() < 0 or probs.max() > 1):
        probs = 1.0 / (1.0 + np.exp(-np.clip(probs, -80, 80)))
        notes.append(f"the {head} outputs were read as logits (sigmoid applied)")
    metrics = label_metrics(y, probs, names)
    findings = _findings(facts, y, probs, names, metrics, opts, paths=(lm.path, path))
    causes, trials = _model_causes(lm, facts, list(xs), y_all, rows, findings, opts, path)
    done = assemble(MULTILABEL, findings + causes, trials, opts)
    data_info = DataSection(
        path=path,
        n_samples=int(y.shape[0]),
        n_classes=k,
        class_names=tuple(names),
        label_counts=int_tuple(y.sum(axis=0)),
        label_encoding="multi-hot",
        inputs=tuple(m.info(spec.name, len(rows)) for spec, m in zip(lm.inputs, moments)),
        sampled_from=None if sampled_from is None else int(sampled_from),
        seed=None if sampled_from is None else opts.seed,
        shards=shards,
    )
    return Report(
        model=model_section(lm, facts, notes),
        data=data_info,
        metrics=metrics,
        findings=done.findings,
        chain=done.chain,
        ignored=dict(opts.ignore),
        version=__version__,
        experiments=done.experiments,
        outcomes=done.outcomes,
        fail_on=opts.fail_on,
    )


def _model_causes(
    lm: Any,
    facts: Any,
    xs: list[Any],
    y_all: np.ndarray,
    rows: np.ndarray,
    findings: Sequence[Finding],
    opts: Any,
    path: str | None = None,
) -> tuple[list[Finding], list[ExperimentResult | ProbeResult]]:
    """Input preparation, BatchNorm statistics, a one-unit softmax: the model-level causes,
    tried on a bounded sample of the rows and scored by macro balanced accuracy (task_causes);
    with DATA's `path`, a repairable finding offers `fix --repair` first."""
    from kerasdoctor.experiments import Task
    from kerasdoctor.task_causes import MultiLabelTask, found_causes, sample_rows

    def sample() -> tuple[list[np.ndarray], Task]:
        pick = rows[sample_rows(len(rows), int(y_all.shape[1]), opts.seed, dense=False)]
        task = MultiLabelTask(np.asarray(y_all[pick], np.float32), facts.head)
        return [np.asarray(a[pick]) for a in xs], task

    return found_causes(lm, facts, findings, opts, sample, dense=False, path=path)


def _names(rows: Sequence[ClassMetrics]) -> str:
    return ", ".join(str(r.name) for r in rows)


def _findings(
    facts: Any,
    y: np.ndarray,
    probs: np.ndarray,
    names: list[str],
    metrics: MultiLabelMetrics,
    opts: Any,
    paths: tuple[str, str] = ("MODEL", "DATA"),
) -> list[Finding]:
    out: list[Finding] = []
    per = metrics.per_class
    n, k = y.shape
    ps = metrics.per_sample
    # -- symptom: missing-classes (labels with support that the 0.5 rule never predicts)
    missing = [r for r in per if r.support >= MIN_SUPPORT and r.predicted == 0]
    if missing:
        out.append(
            Finding(
                "missing-classes",
                Kind.SYMPTOM,
                Severity.ERROR,
                f"{len(missing)} of {k} labels are never predicted",
                f"At score > {DECISION}, no row is predicted {_names(missing)}, although "
                + ", ".join(
                    f"{r.name} is on {r.support} rows (max score {r.max_score:.2f})"
                    for r in missing
                )
                + ".",
                {
                    "labels": [r.name for r in missing],
                    "support": [r.support for r in missing],
                    "max_score": [r.max_score for r in missing],
                },
            )
        )
    # -- symptom: prediction-collapse (rows predicted with no label at all, far beyond truth)
    empty_true, empty_pred = ps.no_true_label, ps.no_predicted_label
    n_empty_pred = int(round(empty_pred * n))
    lower = wilson_lower(n_empty_pred, n)
    # of the rows that truly carry a label, the share that lose every label beyond chance
    excess = (empty_pred - empty_true) / max(1 - empty_true, 1e-9)
    if lower > empty_true and excess >= COLLAPSE_EXCESS:
        out.append(
            Finding(
                "prediction-collapse",
                Kind.SYMPTOM,
                Severity.ERROR if excess >= 0.5 else Severity.WARNING,
                f"{empty_pred:.1%} of the rows are predicted with no label; {empty_true:.1%} "
                "have none",
                f"The model predicts no label at all for {empty_pred:.1%} of the rows (99% lower "
                f"bound {lower:.1%}), while only {empty_true:.1%} of them carry no label: "
                f"{ps.labelled_rows_predicted_empty:.1%} of the labelled rows get nothing.",
                {
                    "no_predicted_label": empty_pred,
                    "no_true_label": empty_true,
                    "no_predicted_label_lower": lower,
                    "labelled_rows_predicted_empty": ps.labelled_rows_predicted_empty,
                    "rows": n,
                },
            )
        )
    # -- symptom: chance-level (macro balanced accuracy no better than a label-blind guesser
    # with the model's predicted rates: per label, recall ~ q and specificity ~ 1 - q)
    from kerasdoctor.task_causes import chance_level

    pos = y.sum(axis=0).astype(np.float64)
    neg = n - pos
    both = (pos > 0) & (neg > 0)
    if int(both.sum()) >= 1 and n >= MIN_CHANCE_ROWS:
        q = np.array([r.predicted_rate for r in per], np.float64)[both]
        var = float(
            np.sum(q * (1 - q) * (1 / pos[both] + 1 / neg[both]) / 4) / int(both.sum()) ** 2
        )
        chance = chance_level(
            metrics.balanced_accuracy,
            0.5,
            var,
            "rows",
            "macro balanced accuracy",
            {"labels": int(both.sum()), "rows": n},
        )
        if chance is not None:
            out.append(chance)
    # -- quality gates (--min-recall per label, --min-balanced-accuracy macro)
    gates = dict(getattr(opts, "gates", {}) or {})
    failed = []
    if "min_recall" in gates:
        low = [r for r in per if r.recall is not None and r.recall < gates["min_recall"]]
        if low:
            failed.append(
                f"recall below {gates['min_recall']:g} for "
                + ", ".join(f"{r.name} ({r.recall:.2f})" for r in low)
            )
    ba = metrics.balanced_accuracy
    if "min_balanced_accuracy" in gates and ba is not None and ba < gates["min_balanced_accuracy"]:
        failed.append(f"macro balanced accuracy {ba:.3f} < {gates['min_balanced_accuracy']:g}")
    if failed:
        out.append(
            Finding(
                "quality-gate",
                Kind.SYMPTOM,
                Severity.ERROR,
                "a quality gate is not met",
                "; ".join(failed) + ".",
                {"gates": gates, "balanced_accuracy": ba},
            )
        )
    # -- causes: the head / loss
    multi = int((y.sum(axis=1) > 1).sum())
    loss = (facts.loss or "").lower()
    if facts.head == "softmax":
        row_sum = float(probs.sum(axis=1).mean())
        out.append(
            Finding(
                "output-activation",
                Kind.CAUSE,
                Severity.ERROR,
                "softmax head on multi-label targets: the labels compete",
                f"The output is a softmax over the {k} labels, so each row's scores sum to 1 "
                f"(mean {row_sum:.2f}): labels compete instead of being judged one by one, a "
                f"row cannot hold two labels above 0.5 ({multi} rows carry 2 or more), and a row "
                f"with no label still puts its mass on some label "
                f"({ps.no_predicted_label:.1%} of rows predicted empty vs "
                f"{ps.no_true_label:.1%} truly empty)"
                + (
                    f"; the loss is {facts.loss}, which rows without a label add nothing to"
                    if "categorical" in loss
                    else ""
                )
                + ".",
                {
                    "head": "softmax",
                    "loss": facts.loss,
                    "mean_row_score_sum": row_sum,
                    "rows_with_several_labels": multi,
                    "no_predicted_label": ps.no_predicted_label,
                    "no_true_label": ps.no_true_label,
                },
                (
                    Fix(
                        "Use one sigmoid unit per label and binary cross-entropy, then retrain.",
                        code=f'outputs = keras.layers.Dense({k}, activation="sigmoid")(features)\n'
                        'model.compile(optimizer="adam", loss="binary_crossentropy",\n'
                        "              metrics=[keras.metrics.AUC(multi_label=True)])",
                    ),
                ),
            )
        )
    elif any(name in loss for name in CATEGORICAL_LOSSES):
        out.append(
            Finding(
                "loss-mismatch",
                Kind.CAUSE,
                Severity.ERROR,
                f"{facts.loss} on multi-label targets",
                f"The loss {facts.loss} treats the {k} labels as one choice among {k}; multi-hot "
                "targets need a per-label loss (binary cross-entropy).",
                {"loss": facts.loss, "head": facts.head},
                (
                    Fix(
                        "Compile with binary cross-entropy and retrain.",
                        code='model.compile(optimizer="adam", loss="binary_crossentropy")',
                    ),
                ),
            )
        )
    # -- cause: decision-threshold (ranks well, the 0.5 cut starves the label)
    thr_finding = _decision_threshold(y, probs, per, opts, paths)
    if thr_finding is not None:
        out.append(thr_finding)
    # -- cause (context): class-imbalance, only when labels are dropped and the threshold
    # experiment showed their scores still rank (its text names that cure; without it the
    # labels may be dropped for another reason: saturated scores, unprepared inputs)
    dropped = set(thr_finding.evidence["labels"]) if thr_finding is not None else set()
    if thr_finding is not None:
        dropped |= {r.name for r in missing}
    rare = [r for r in per if r.name in dropped and r.prevalence < RARE_PREVALENCE]
    if rare:
        out.append(
            Finding(
                "class-imbalance",
                Kind.CAUSE,
                Severity.INFO,
                "the dropped labels are rare ("
                + ", ".join(f"{r.prevalence:.1%}" for r in rare)
                + ")",
                f"{_names(rare)} are on fewer than {RARE_PREVALENCE:.0%} of the rows: binary "
                "cross-entropy then pushes their scores below 0.5 even when they rank well. "
                "Keras's class_weight does not apply to multi-label outputs; the measured cure is "
                "the per-label threshold above.",
                {"labels": [r.name for r in rare], "prevalence": [r.prevalence for r in rare]},
            )
        )
    return out


def _decision_threshold(
    y: np.ndarray,
    probs: np.ndarray,
    per: Sequence[LabelMetrics],
    opts: Any,
    paths: tuple[str, str] = ("MODEL", "DATA"),
) -> Finding | None:
    n, k = y.shape
    flagged = [
        r
        for r in per
        if r.support >= MIN_SUPPORT
        and r.support < n
        and r.auc is not None
        and r.auc >= AUC_GOOD
        and r.auc_lower is not None
        and r.auc_lower > AUC_LOWER
        and (r.recall or 0.0) < STARVED_RECALL
    ]
    if not flagged:
        return None
    idx = [int(r.index) for r in flagged]
    # experiment: per-label cuts (label_cut: Youden's J for the model's rule `score > t`)
    # chosen on one seeded stratified half, scored (macro balanced accuracy over every label;
    # unflagged labels keep 0.5) on the other half. The same cuts and halves as
    # `kerasdoctor fix --threshold / --repair`, so the figures here are the ones they report.
    fit, test = split_halves(y, opts.seed)
    base = (probs > DECISION).astype(np.int8)
    rows = validate_label_thresholds(y, probs, fit, test, idx)
    thr_half = np.full(k, DECISION)
    for j in idx:
        if rows[j]["threshold_fitted"] is not None:
            thr_half[j] = rows[j]["threshold_fitted"]
    tuned = base.copy()
    for j in idx:
        tuned[:, j] = (probs[:, j] > thr_half[j]).astype(np.int8)
    before, se_b = macro_balanced(y[test], base[test])
    after, se_a = macro_balanced(y[test], tuned[test])
    gain = after - before
    noise = 2 * math.sqrt(se_a**2 + se_b**2)
    restores = gain > max(noise, MIN_GAIN)
    validated = [per[j].name for j in idx if rows[j]["validated"]]
    empty_after = float((tuned[test].sum(axis=1) == 0).mean())
    empty_before = float((base[test].sum(axis=1) == 0).mean())
    # the thresholds of the code snippet: chosen the same way on every row given
    thr_all = [DECISION] * k
    for j in idx:
        thr_all[j] = round(label_cut(y[:, j], probs[:, j]), 4)
    starved = [r for r in flagged if r.predicted_rate <= STARVED_RATE * r.prevalence]
    severity = Severity.ERROR if restores and starved else Severity.WARNING
    experiment = {
        "what": f"per-label thresholds (Youden J of `score > t`) chosen on one seeded stratified "
        f"half ({len(fit)} rows) for {len(idx)} labels, scored on the other half",
        "balanced_accuracy_before": before,
        "balanced_accuracy_after": after,
        "rows": int(len(test)),
        "gain": gain,
        "noise": noise,
        "restores": restores,
        "thresholds": [float(v) for v in thr_half],
        "no_predicted_label_before": empty_before,
        "no_predicted_label_after": empty_after,
        # per label, the cut's own paired gain on the held-out half against its noise: the
        # labels whose cut `fix --repair` would move into the model
        "validated_labels": validated,
        "label_gain": [rows[j]["gain"] for j in idx],
        "label_noise": [rows[j]["noise"] for j in idx],
    }
    detail = (
        f"{_names(flagged)} rank well (ROC AUC "
        + ", ".join(f"{r.auc:.2f}" for r in flagged)
        + f") but the {DECISION} cut predicts them on "
        + ", ".join(f"{r.predicted_rate:.1%}" for r in flagged)
        + " of the rows against a prevalence of "
        + ", ".join(f"{r.prevalence:.1%}" for r in flagged)
        + " (recall "
        + ", ".join(f"{(r.recall or 0):.2f}" for r in flagged)
        + "). "
        f"Per-label thresholds chosen on one half of the rows take the macro balanced accuracy "
        f"on the other half from {before:.3f} to {after:.3f} "
        + (f"(beyond noise, ±{noise:.3f})" if restores else f"(within noise, ±{noise:.3f})")
        + f", and the rows predicted with no label from {empty_before:.1%} to {empty_after:.1%}"
        + (
            f"; each label's own cut beats 0.5 beyond noise for {len(validated)} of "
            f"{len(idx)} ({', '.join(validated)})."
            if validated
            else "; no label's own cut beats 0.5 beyond noise on the held-out half."
        )
    )
    code = (
        "import numpy as np\n"
        f"# per-label thresholds (Youden J on these {n} rows); choose them on validation data\n"
        f"THRESHOLDS = np.array({thr_all!r})\n"
        "scores = model.predict(x)\n"
        "predicted = scores > THRESHOLDS  # (N, K) booleans, one column per label"
    )
    # the repair is offered only where the experiment validated the cure: the macro gain
    # beyond noise and at least one label's own cut beyond its noise (what it moves)
    commands = fix_commands(
        paths[0],
        paths[1],
        opts,
        "decision-threshold",
        repair=restores and bool(validated),
        threshold=True,
    )
    fixes = [f for f in commands if f.command and "--repair" in f.command]
    fixes.append(Fix("Predict each label with its own threshold instead of 0.5.", code=code))
    fixes += [f for f in commands if f.command and "--threshold" in f.command]
    return Finding(
        "decision-threshold",
        Kind.CAUSE,
        severity,
        f"the 0.5 cut starves {len(flagged)} of {k} labels that the scores rank well",
        detail,
        {
            "labels": [r.name for r in flagged],
            "auc": [r.auc for r in flagged],
            "auc_lower": [r.auc_lower for r in flagged],
            "prevalence": [r.prevalence for r in flagged],
            "predicted_rate": [r.predicted_rate for r in flagged],
            "recall": [r.recall for r in flagged],
            "thresholds": thr_all,
            "experiment": experiment,
        },
        tuple(fixes),
    )


# order of causes when several are above info: a head/loss defect decides the scores by
# itself, the threshold only reads them
