"""Model-level causes of dense and multi-label diagnoses, found by experiment (issue 16).

A segmenter, a tagger or a multi-label model fails for the same model-level reasons as an
image classifier: its inputs are prepared differently from training (raw 0-255 pixels fed to
a model trained on x / 255, BGR for RGB), its BatchNorm moving statistics do not fit the data,
a softmax sits on one output unit. The single-label checks find these by re-running the model
on the bounded sample and scoring balanced accuracy over rows; here the same experiments run
on a bounded sample of these models through the same experiment service
(experiments.TaskExperiments: one budget, typed ExperimentResults, failures recorded with
their reason, one experiment log) and are scored with the task's own rule, which the caller
gives as a `Task`: balanced accuracy over positions for a dense model, macro balanced accuracy
over labels for a multi-label one.

The experiments and the bar a cure must clear are the single-label checks' own: the candidate
input transforms of preprocessing-mismatch (chosen from the data's range and the model's own
preprocessing layers), re-estimated BatchNorm statistics (AdaBN) on a copy of the model, and a
sigmoid in place of a one-unit softmax. A cure "restores" the model when it gains at least the
spec's min_gain of balanced accuracy and removes at least min_error_removed of the balanced
error (a perturbation nudges a model; a cure gives back the trained one): experiments.restores,
without the single-label row-noise term (TaskExperiments.restores says why). The experiments run
only when the predictions show a symptom, so a healthy model costs nothing and stays quiet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kerasdoctor.checks import batchnorm_statistics, preprocessing_mismatch, single_unit_softmax
from kerasdoctor.checks import chance_level as chance_level_check
from kerasdoctor.experiments import ExperimentResult, ProbeResult, Task, TaskExperiments
from kerasdoctor.findings import Finding, Fix, Kind, Severity

# Rows of the bounded sample: enough samples that a restored model shows (a cure moves
# balanced accuracy by 0.1 or more; over >= 16 images of thousands of positions each, or
# hundreds of rows, the sampling noise of that figure is a few hundredths).
DENSE_ROWS = 64
ROWS = 2048
MIN_ROWS = 16
# Bound on the raw outputs of the sample held at once (float32): 512x512x21 masks keep ~23.
OUTPUT_BYTES = 256 * 2**20


def sample_rows(n: int, per_row_out: int, seed: int, dense: bool) -> np.ndarray:
    """A seeded sample of rows whose outputs fit OUTPUT_BYTES, in file order."""
    cap = DENSE_ROWS if dense else ROWS
    cap = max(MIN_ROWS, min(cap, OUTPUT_BYTES // max(4 * per_row_out, 1)))
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed + 7).choice(n, size=cap, replace=False))


def model_causes(
    lm: Any,
    facts: Any,
    xs: list[np.ndarray],
    task: Task,
    *,
    symptoms: Sequence[str],
    seed: int,
    budget_s: float = 120.0,
    dense: bool = True,
    paths: tuple[str, str] | None = None,
    opts: Any = None,
) -> tuple[list[Finding], list[ExperimentResult | ProbeResult]]:
    """Cause findings whose cure restores the model on the sample, and every experiment run
    (the service's log, for the report's experiment log). Nothing runs without a symptom or
    on too small a sample.

    With `paths` (MODEL, DATA) and the diagnosis's `opts`, a finding whose model
    `fix --repair` can edit offers that command first (fix.task_repair.repairable)."""
    if not symptoms or int(xs[0].shape[0]) < MIN_ROWS:
        return [], []
    run = TaskExperiments(lm, facts, xs, task, seed=seed, budget_s=budget_s)
    out: list[Finding] = []
    for step in STEPS.values():
        f = step(run, facts, symptoms, seed, dense)
        if f is not None:
            out.append(_with_repair(f, lm, facts, paths, opts))
    ids = {f.id for f in out}
    if preprocessing_mismatch.SPEC.id in ids and batchnorm_statistics.SPEC.id in ids:
        # Re-estimated statistics also absorb a shift or scale of the inputs (the first
        # BatchNorm re-normalises them): the upstream cause is the data's preparation.
        out = [
            f
            if f.id != batchnorm_statistics.SPEC.id
            else Finding(
                f.id,
                f.kind,
                Severity.INFO,
                f.title,
                f.detail + " Preparing the inputs as for training restores the model too: the "
                "re-estimated statistics absorb the inputs' wrong scale, so the preparation is "
                "the cause to fix, not the statistics.",
                f.evidence,
                (),
            )
            for f in out
        ]
    return out, run.results()


# What `fix --repair` does for each cause (the first fix of a repairable finding)
REPAIR_HOW = {  # what `fix --repair` does for each cause of STEPS
    preprocessing_mismatch.SPEC.id: "the restoring transform is prepended to the model as fixed "
    "standard layers (Rescaling, Normalization or a 1x1 Conv2D), so it takes the data as it "
    "is; kept only if a held-out half of DATA is restored",
    batchnorm_statistics.SPEC.id: "the BatchNorm moving statistics are re-estimated from one half "
    "of DATA (no weight trained) and kept only if the other half is restored",
    single_unit_softmax.SPEC.id: "the one-unit softmax becomes a sigmoid on the same logit; kept "
    "only if a held-out half of DATA is restored",
}


def _with_repair(
    f: Finding, lm: Any, facts: Any, paths: tuple[str, str] | None, opts: Any
) -> Finding:
    """`f` with `kerasdoctor fix --repair MODEL DATA --cause ID --output STEM_repaired.keras`
    (the flags that read DATA included: multilabel.fix_commands) as its first fix, when the
    command can edit this model for this cause."""
    from kerasdoctor.fix.task_repair import repairable

    if paths is None or opts is None or not f.fixes:
        return f
    if not repairable(lm, facts, f.id, dict(f.evidence)):
        return f
    from kerasdoctor.multilabel import fix_commands

    command = fix_commands(paths[0], paths[1], opts, f.id, repair=True, threshold=False)[0].command
    fix = Fix(
        f"Repair it inside the model, without retraining: {REPAIR_HOW[f.id]}.", command=command
    )
    return Finding(f.id, f.kind, f.severity, f.title, f.detail, f.evidence, (fix, *f.fixes))


# ------------------------------------------------------------------ preprocessing-mismatch


def _judged_inputs(lm: Any, facts: Any, xs: list[np.ndarray]) -> list[Any]:
    """The single-label check's JudgedInput for every value input (not token ids), with
    statistics from the sample."""
    from kerasdoctor.checks._data import INDEX_LAYERS, JudgedInput
    from kerasdoctor.evidence import InputStats, Moments

    out = []
    for i, (spec, x) in enumerate(zip(lm.inputs, xs)):
        a = np.asarray(x)
        if a.dtype.kind not in "biuf":
            continue
        if any(c in INDEX_LAYERS for c in facts.input_consumers.get(spec.name, ())):
            continue
        m = Moments.empty(1 if a.ndim == 1 else int(a.shape[-1]))
        m.update_batch(a)
        if m.count.sum() == 0:
            continue
        integral = bool(np.all(np.mod(a[np.isfinite(a)], 1) == 0)) if a.dtype.kind == "f" else True
        st = InputStats(
            spec.name, tuple(int(d) for d in a.shape[1:]), str(a.dtype), m, integral=integral
        )
        out.append(JudgedInput(i, st, facts.input_normalizers.get(spec.name)))
    return out


def _preprocessing(
    run: TaskExperiments, facts: Any, symptoms: Sequence[str], seed: int, dense: bool
) -> Finding | None:
    pm = preprocessing_mismatch
    spec = pm.SPEC
    min_gain = spec.thresholds["min_gain"].value
    removed = spec.thresholds["min_error_removed"].value
    best: ExperimentResult | None = None
    best_of = ("", "")  # (input, transform) of the best trial
    for ji in _judged_inputs(run.lm, facts, run.xs):
        for name, code, fn in pm._transforms(ji):

            def apply(
                part: list[np.ndarray],
                i: int = ji.index,
                f: Callable[[np.ndarray], np.ndarray] = fn,
            ) -> list[np.ndarray]:
                out = list(part)
                out[i] = f(np.asarray(part[i], np.float64)).astype(np.float32)
                return out

            t = run.inputs(
                f"preprocess:{ji.name}:{name}",
                f"inputs '{ji.name}' transformed as {code.replace('X', 'x')}",
                code,
                apply,
            )
            if t.after is not None and (best is None or t.gain > best.gain):
                best, best_of = t, (ji.name, name)
    if best is None or not run.restores(best, min_gain, removed):
        return None
    assert best.after is not None and best.code is not None
    name, transform = best_of
    code = best.code.replace("X", "x")
    return Finding(
        spec.id,
        spec.kind,
        Severity.ERROR,
        f"the inputs are not prepared as the model expects: {code} takes the "
        f"{run.task.what} from {best.before:.0%} to {best.after:.0%}",
        f"Run on {best.rows} sampled rows with input '{name}' transformed as {code}, the "
        f"model's {run.task.what} goes from {best.before:.3f} to {best.after:.3f}: the weights "
        "are fine, the data reaching them is not prepared the way the training data was "
        f"(the symptoms {', '.join(sorted(symptoms))} follow from it).",
        {
            "input": name,
            "transform": code,
            "experiment": best.to_dict(),
            "symptoms": sorted(symptoms),
            # as the single-label check's evidence: what fix --repair prepends
            "restoring_transform": {"input": name, "transform": transform, "code": code},
        },
        (
            Fix(
                "Prepare the data exactly as for training before predicting (or put the step "
                "inside the model, e.g. a keras.layers.Rescaling layer, so it cannot be "
                "forgotten).",
                code=f"import numpy as np\nx = {code}  # as measured above\n"
                "pred = model.predict(x)",
            ),
        ),
    )


# ------------------------------------------------------------------ batchnorm-statistics


def _batchnorm(
    run: TaskExperiments, facts: Any, symptoms: Sequence[str], seed: int, dense: bool
) -> Finding | None:
    if not facts.batchnorms or run.lm.keras_model is None:
        return None
    spec = batchnorm_statistics.SPEC
    min_gain = spec.thresholds["confirm_gain"].value
    removed = spec.thresholds["min_error_removed"].value
    t = run.bn_reestimated()
    if not run.restores(t, min_gain, removed):
        return None
    assert t.after is not None
    what = t.what
    names = [b.name for b in facts.batchnorms]
    momentum = sorted({b.momentum for b in facts.batchnorms})
    return Finding(
        spec.id,
        spec.kind,
        Severity.ERROR,
        f"BatchNorm moving statistics do not fit the data: {what}, {run.task.what} "
        f"{t.before:.0%} -> {t.after:.0%}",
        f"The model has {len(names)} BatchNormalization layer(s) (momentum "
        f"{', '.join(f'{m:g}' for m in momentum)}). Re-estimating their moving mean and "
        f"variance from {t.rows} sampled rows (a running average over shuffled batches, on a "
        f"copy of the model) takes the {run.task.what} from {t.before:.3f} to {t.after:.3f}: "
        "the weights are fine, the statistics the layers normalise with at inference are not "
        "(too few training steps for the momentum, or data that differs from training).",
        {
            "layers": names,
            "momentum": momentum,
            "experiment": t.to_dict(),
            "symptoms": sorted(symptoms),
        },
        (
            Fix(
                "Re-estimate the moving statistics on training data (no weight changes), or "
                "train with momentum=0.9 on the BatchNormalization layers, or for more steps.",
                code="import keras\n"
                "bns = [l for l in model._flatten_layers() "
                "if isinstance(l, keras.layers.BatchNormalization)]\n"
                "for i, xb in enumerate(batches_of_x_train, start=1):  # ~100 batches\n"
                "    for bn in bns:\n"
                "        bn.momentum = (i - 1) / i  # a running average\n"
                "    model(xb, training=True)  # updates the statistics only\n"
                'model.save("model_bn_fixed.keras")',
            ),
        ),
    )


# ------------------------------------------------------------------ single-unit-softmax


def _output_layer(model: Any, index: int) -> Any:
    from kerasdoctor.keras_graph import output_layer

    layer = output_layer(model, index if len(model.outputs) > 1 else 0)
    return layer if layer is not None else model.layers[-1]


def _single_unit_softmax(
    run: TaskExperiments, facts: Any, symptoms: Sequence[str], seed: int, dense: bool
) -> Finding | None:
    """A softmax over one unit outputs 1.0 everywhere: every position is foreground (or every
    label on). The sigmoid of the same logit is what a one-unit binary head means."""
    from kerasdoctor.predictor_graph import copy_model

    shape = tuple(run.lm.output_shape)
    if facts.head != "softmax" or shape[-1] != 1 or run.lm.keras_model is None:
        return None
    copy = copy_model(run.lm.keras_model)
    layer = _output_layer(copy, run.lm.output_index)
    act = getattr(layer, "activation", None)
    if act is None or getattr(act, "__name__", "") != "softmax":
        return None
    from kerasdoctor._keras import keras

    layer.activation = keras().activations.sigmoid
    index = run.lm.output_index

    def forward(part: list[np.ndarray]) -> Any:
        cast = run.predictor.cast(part)
        out = copy(cast if len(cast) > 1 else cast[0], training=False)
        return out[index] if isinstance(out, (list, tuple)) else out

    t = run.rerun(
        "sigmoid-rescue", "the one-unit softmax replaced by a sigmoid on the same logit", forward
    )
    if t.after is None:
        return None
    rescued = t.after - t.before >= 0.10
    spec = single_unit_softmax.SPEC
    return Finding(
        spec.id,
        spec.kind,
        Severity.ERROR,
        f"softmax over 1 output unit: every score is 1.0, every "
        f"{'position' if dense else 'row'} is predicted positive",
        f"The output layer '{layer.name}' applies softmax over a single unit, which normalises "
        "it to 1.0 whatever the input, so the 0.5 rule calls everything the positive class. "
        + (
            f"A sigmoid on the same logit takes the {run.task.what} on {t.rows} sampled rows "
            f"from {t.before:.3f} to {t.after:.3f}: the logit did learn."
            if rescued
            else f"A sigmoid on the same logit does not help ({t.before:.3f} -> {t.after:.3f}): "
            "the logit carries no usable signal either; retrain with a sigmoid."
        ),
        {"layer": layer.name, "experiment": t.to_dict(), "rescued": rescued},
        (
            Fix(
                "Use a sigmoid on the one unit (binary cross-entropy), or softmax over 2 units "
                "with sparse categorical cross-entropy.",
                code=(
                    'outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(features)'
                    if dense
                    else 'outputs = keras.layers.Dense(1, activation="sigmoid")(features)'
                )
                + '\nmodel.compile(optimizer="adam", loss="binary_crossentropy")',
            ),
        ),
    )


# ------------------------------------------------------------------ the steps

# What model_causes can add to a dense or multi-label report, by the id of the spec that
# declares it for those tasks: one experiment each, in this order.
STEPS: dict[str, Callable[[TaskExperiments, Any, Sequence[str], int, bool], Finding | None]] = {
    preprocessing_mismatch.SPEC.id: _preprocessing,
    batchnorm_statistics.SPEC.id: _batchnorm,
    single_unit_softmax.SPEC.id: _single_unit_softmax,
}
CAUSES = tuple(STEPS)


def found_causes(
    lm: Any,
    facts: Any,
    findings: Sequence[Finding],
    opts: Any,
    sample: Callable[[], tuple[list[np.ndarray], Task]],
    *,
    dense: bool,
    path: str | None = None,
) -> tuple[list[Finding], list[ExperimentResult | ProbeResult]]:
    """model_causes for a dense or multi-label diagnosis whose own checks gave `findings`:
    the symptoms above info (the quality gate aside) are what a cure must explain; nothing
    runs without one, or when every step is ignored or outside `only`. `sample()` gives the
    bounded sample's inputs and its Task (drawn only when something runs). With DATA's
    `path`, a repairable finding offers `fix --repair` first."""
    from kerasdoctor.task_report import skipped

    symptoms = [
        f.id
        for f in findings
        if f.kind is Kind.SYMPTOM and f.severity is not Severity.INFO and f.id != "quality-gate"
    ]
    skip = skipped(opts, CAUSES)
    if not symptoms or set(CAUSES) <= skip:
        return [], []
    xs, task = sample()
    found, trials = model_causes(
        lm,
        facts,
        xs,
        task,
        symptoms=symptoms,
        seed=opts.seed,
        dense=dense,
        paths=None if path is None else (lm.path, path),
        opts=opts,
    )
    return [f for f in found if f.id not in skip], trials


# ------------------------------------------------------------------ the tasks


@dataclass(frozen=True)
class DenseTask:
    """Balanced accuracy over the counted positions of the sampled samples."""

    labels: np.ndarray  # (n, ...) class indices of the sample
    counted: np.ndarray  # (n, ...) bool
    k: int
    k_out: int
    head: str
    what: str = "balanced accuracy over positions"

    def tally(self, rows: np.ndarray, raw: np.ndarray) -> np.ndarray:
        from kerasdoctor.dense import _probs

        p = _probs(np.asarray(raw), self.head, self.k_out)
        pred = (p[..., 1] > 0.5).astype(np.int64) if self.k_out == 1 else p.argmax(-1)
        keep = self.counted[rows] & np.isfinite(p).all(axis=-1)
        y = self.labels[rows][keep]
        return np.bincount(y * self.k + pred[keep], minlength=self.k * self.k).astype(np.int64)

    def score(self, total: np.ndarray) -> float:
        cm = total.reshape(self.k, self.k)
        support = cm.sum(axis=1)
        seen = support > 0
        return float(np.mean(np.diag(cm)[seen] / support[seen])) if seen.any() else 0.0


@dataclass(frozen=True)
class MultiLabelTask:
    """Macro balanced accuracy over the labels at score > 0.5."""

    labels: np.ndarray  # (n, K) multi-hot of the sample
    head: str
    what: str = "macro balanced accuracy"

    def tally(self, rows: np.ndarray, raw: np.ndarray) -> np.ndarray:
        s = np.asarray(raw, np.float64).reshape(len(rows), -1)
        if self.head not in ("sigmoid", "softmax") and (s.min() < 0 or s.max() > 1):
            s = 1.0 / (1.0 + np.exp(-np.clip(s, -80, 80)))
        pred = s > 0.5
        y = self.labels[rows] > 0.5
        return np.stack(
            [(y & pred).sum(0), (y & ~pred).sum(0), (~y & ~pred).sum(0), (~y & pred).sum(0)], axis=1
        ).astype(np.int64)

    def score(self, total: np.ndarray) -> float:
        tp, fn, tn, fp = (total[:, i].astype(np.float64) for i in range(4))
        ok = (tp + fn > 0) & (tn + fp > 0)
        if not ok.any():
            return 0.0
        return float(np.mean((tp[ok] / (tp[ok] + fn[ok]) + tn[ok] / (tn[ok] + fp[ok])) / 2))


# ------------------------------------------------------------------ chance-level


def chance_level(
    balanced: float | None,
    chance: float,
    variance: float,
    units: str,
    what: str,
    extra: dict[str, Any],
) -> Finding | None:
    """The chance-level symptom of a dense or multi-label model: its balanced accuracy no
    better than a guesser that ignores the input and hands out the model's prediction shares
    (the single-label check's z, one-sided 95%; `variance` is that guesser's variance, over
    samples for a dense model since positions inside a sample are not independent)."""
    spec = chance_level_check.SPEC
    if balanced is None or not np.isfinite(variance):
        return None
    margin = spec.thresholds["z"].value * float(np.sqrt(max(variance, 0.0)))
    bar = chance + margin
    if balanced > bar:
        return None
    return Finding(
        spec.id,
        spec.kind,
        Severity.ERROR,
        f"{what[0].upper()}{what[1:]} {balanced:.1%} is no better than chance ({chance:.1%})",
        f"The {what} is {balanced:.1%}; a guesser that ignores the input and hands out the "
        f"model's prediction shares reaches up to {bar:.1%} (95% bound over the {units}). The "
        "predictions carry no measurable information about the labels.",
        {"balanced_accuracy": balanced, "chance": chance, "bound": bar, "margin": margin, **extra},
    )
