"""The decision threshold of a binary model that maximises balanced accuracy (or F1).

A model can rank the samples well (high ROC AUC) and still put almost everything on one side
of 0.5: on imbalanced data a calibrated P(positive) rarely exceeds 0.5 even for positives.
Moving the threshold changes no weight; it only moves the cut along the ranking.
"""

from __future__ import annotations

import numpy as np

from kerasdoctor.errors import InputError
from kerasdoctor.fix.common import ModelData, predict_outputs
from kerasdoctor.fix.results import CrossCheck, ThresholdReport, ThresholdSide

OBJECTIVES = ("balanced-accuracy", "f1")
DEFAULT_THRESHOLD = 0.5
# Below this ROC AUC the model separates the classes poorly ("acceptable discrimination"
# starts at 0.7 in Hosmer & Lemeshow's rule of thumb): any threshold then buys recall of one
# class with the other's, and the fix is in training, not in the cut.
POOR_AUC = 0.7


def check_binary_model(md: ModelData) -> None:
    """One sigmoid (or linear, from-logits) unit, or a two-unit softmax; anything else exits 2."""
    units = int(md.lm.output_shape[-1] or 1)
    head = md.facts.head
    if len(md.lm.output_shape) != 2 or units > 2:
        multi = (
            " (one sigmoid unit per label: a multi-label model? y multi-hot in an .npz, "
            "or --multi-label, gives a threshold per label)"
            if head == "sigmoid" and len(md.lm.output_shape) == 2
            else ""
        )
        raise InputError(
            f"--threshold needs a binary model (one sigmoid unit or a 2-unit softmax); "
            f"MODEL {md.lm.path} has output shape "
            f"{tuple(md.lm.output_shape)} ({units} units){multi}: use class weights or "
            "--retrain for a multi-class model"
        )
    if units == 1 and head == "softmax":
        raise InputError(
            f"MODEL {md.lm.path} has a softmax over a single unit: its output is always 1.0 and "
            "no threshold can separate the classes (see kerasdoctor explain single-unit-softmax)"
        )
    if units == 2 and head not in ("softmax", "linear", "unknown"):
        raise InputError(
            f"--threshold supports a 2-unit softmax; MODEL {md.lm.path} has a 2-unit '{head}' head"
        )


def binary_scores(md: ModelData) -> tuple[np.ndarray, str, str]:
    """P(class 1) for every sample, the head in words, and the activation used."""
    check_binary_model(md)
    units = int(md.lm.output_shape[-1] or 1)
    out = predict_outputs(md)
    if units == 2 and out.head not in ("softmax", "linear"):
        raise InputError(
            f"--threshold: MODEL {md.lm.path}'s two outputs do not sum to 1 (not a softmax)"
        )
    scores = out.probs[:, -1]
    desc = "one sigmoid unit" if units == 1 else "2-unit softmax"
    if out.head == "linear":
        desc = "one linear unit (logits)" if units == 1 else "2 linear units (logits)"
    return scores, desc, out.head


def _objective(tp: np.ndarray, fp: np.ndarray, pos: int, neg: int, objective: str) -> np.ndarray:
    tp = tp.astype(np.float64)
    fp = fp.astype(np.float64)
    if objective == "f1":
        fn = pos - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return 0.5 * (tp / pos + (neg - fp) / neg)


def sweep(y: np.ndarray, scores: np.ndarray, objective: str) -> tuple[float, float]:
    """(threshold, objective) maximising the objective for the rule `score > threshold`.

    Every distinct cut of the ranking is tried: the threshold is the midpoint between two
    neighbouring scores, so it does not sit on a sample. Among equally good cuts the one
    nearest to 0.5 wins (the smallest change to the model's behaviour).
    """
    pos = int((y == 1).sum())
    neg = int(y.shape[0] - pos)
    order = np.argsort(-scores, kind="stable")
    s = scores[order].astype(np.float64)
    yy = y[order]
    tp = np.cumsum(yy == 1)
    fp = np.cumsum(yy != 1)
    last = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # last index of each score run
    cut_tp = np.concatenate([[0], tp[last]])
    cut_fp = np.concatenate([[0], fp[last]])
    nxt = np.append(s[last[:-1] + 1], -np.inf)
    with np.errstate(invalid="ignore"):
        cut_t = np.concatenate([[s[0]], (s[last] + nxt) / 2])
    # predicting everything positive: just below the lowest score
    cut_t[-1] = float(np.nextafter(s[-1], -np.inf))
    value = _objective(cut_tp, cut_fp, pos, neg, objective)
    best = value.max()
    tied = np.flatnonzero(value >= best - 1e-12)
    j = tied[np.argmin(np.abs(cut_t[tied] - DEFAULT_THRESHOLD))]
    return float(cut_t[j]), float(value[j])


def _side(y: np.ndarray, scores: np.ndarray, t: float, objective: str) -> ThresholdSide:
    pred = (scores > t).astype(np.int64)
    conf = np.zeros((2, 2), np.int64)
    np.add.at(conf, (y, pred), 1)
    tn, fp, fn, tp = (int(v) for v in conf.ravel())
    pos, neg = tp + fn, tn + fp
    bal = 0.5 * (tp / pos + tn / neg)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return ThresholdSide(
        threshold=float(t),
        objective=float(bal if objective == "balanced-accuracy" else f1),
        balanced_accuracy=float(bal),
        f1=float(f1),
        accuracy=float((tp + tn) / (pos + neg)),
        confusion_matrix=((tn, fp), (fn, tp)),
        predicted_counts=(tn + fn, fp + tp),
        recall=(tn / neg if neg else None, tp / pos if pos else None),
    )


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    from scipy.stats import rankdata

    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def cross_check(y: np.ndarray, scores: np.ndarray, objective: str, seed: int) -> CrossCheck:
    """Choose the threshold on one half, measure it on the other (and vice versa).

    The sweep's own figure is optimistic: the threshold was chosen on the very samples it is
    scored on. With few positives the difference can be large, so both are shown.
    """
    from kerasdoctor.fix.common import stratified_split

    a, b = stratified_split(y, 0.5, seed)
    if (
        min(int((y[a] == 1).sum()), int((y[b] == 1).sum())) == 0
        or min(int((y[a] == 0).sum()), int((y[b] == 0).sum())) == 0
    ):
        return CrossCheck(None, (), note="too few samples per class")
    values, ts = [], []
    for fit, test in ((a, b), (b, a)):
        t, _ = sweep(y[fit], scores[fit], objective)
        ts.append(t)
        values.append(_side(y[test], scores[test], t, objective).objective)
    return CrossCheck(float(np.mean(values)), tuple(ts))


def logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return float(np.log(p / (1 - p)))


def find_threshold(
    md: ModelData, objective: str = "balanced-accuracy", seed: int = 0
) -> ThresholdReport:
    """The threshold report: before (0.5) and after (to_dict(): the JSON)."""
    if objective not in OBJECTIVES:
        raise InputError(f"--objective must be one of {', '.join(OBJECTIVES)}, got '{objective}'")
    check_binary_model(md)
    y = md.raw.labels.y
    if int(y.max()) > 1:
        raise InputError(
            f"--threshold is for binary labels; DATA {md.raw.path} holds {int(y.max()) + 1} classes"
        )
    if np.unique(y).size < 2:
        raise InputError(
            f"--threshold needs both classes in the labels; DATA {md.raw.path} holds only "
            f"class {int(y[0])}"
        )
    scores, desc, head = binary_scores(md)
    if not np.all(np.isfinite(scores)):
        bad = int((~np.isfinite(scores)).sum())
        raise InputError(
            f"MODEL {md.lm.path} outputs NaN/Inf for {bad} samples; no threshold applies "
            "(run kerasdoctor diagnose to see why)"
        )
    t, _ = sweep(y, scores, objective)
    before = _side(y, scores, DEFAULT_THRESHOLD, objective)
    after = _side(y, scores, t, objective)
    units = int(md.lm.output_shape[-1] or 1)
    column = 0 if units == 1 else 1
    if head == "linear" and units == 1:
        # the model outputs logits: P > t  <=>  logit > log(t / (1 - t))
        cut = logit(t)
        code = (
            f"# the model outputs logits: P(positive) > {t:.6g}  <=>  logit > {cut:.6g}\n"
            f"pred = (model.predict(x)[:, 0] > {cut:.6g}).astype('int64')\n"
        )
    elif head == "linear":
        # two logits: P(class 1) = sigmoid(z1 - z0), so P > t  <=>  z1 - z0 > log(t / (1 - t))
        cut = logit(t)
        code = (
            "z = model.predict(x)  # two logits\n"
            f"pred = (z[:, 1] - z[:, 0] > {cut:.6g}).astype('int64')\n"
        )
    else:
        code = f"pred = (model.predict(x)[:, {column}] > {t:.6g}).astype('int64')\n"
    import shlex

    from kerasdoctor.fix.common import names_for

    auc = roc_auc(y, scores)
    warning = None
    if auc < POOR_AUC:
        warning = (
            f"the model ranks the classes poorly (ROC AUC {auc:.2f} < {POOR_AUC}): a threshold "
            "only trades one class's recall for the other's; it needs retraining (kerasdoctor "
            f"diagnose {shlex.quote(md.lm.path)} {shlex.quote(md.raw.path)} tells why)"
        )
    neg, pos = (int(c) for c in np.bincount(y, minlength=2))
    return ThresholdReport(
        model=md.lm.path,
        data=md.raw.path,
        head=desc,
        score="P(class 1)",
        objective=objective,
        threshold=t,
        logit_threshold=logit(t) if head == "linear" else None,
        default_threshold=DEFAULT_THRESHOLD,
        roc_auc=auc,
        warning=warning,
        label_counts=(neg, pos),
        class_names=tuple(names_for(md.raw, 2)),
        before=before,
        after=after,
        cross_check=cross_check(y, scores, objective, seed),
        code=code,
        note="chosen on DATA itself: confirm it on data it was not chosen on "
        "(the split-half cross_check estimates how well it holds)",
    )
