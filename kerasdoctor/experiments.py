"""The experiment service: the only code that re-runs the model after the single pass.

Every experiment runs on a bounded sample and returns a typed ExperimentResult (what was
tried, balanced accuracy before and after, rows, seconds) or a recorded failure with its
reason; nothing is swallowed. One engine (Service) times every experiment against one
budget, caches it by key, records a failure or a skip for time, and logs it for the report;
one rule (restores) says whether a cure gives the trained model back. Two services stand on
it: Experiments, on the class-stratified sample of a single-label pass, scored by balanced
accuracy over rows, whose cause checks ask through Context.experiments and never touch Keras
themselves; and TaskExperiments, on the bounded sample of a dense or multi-label diagnosis,
scored by the task's own rule (a Task: balanced accuracy over positions, macro balanced
accuracy over labels), which task_causes asks for its model-level causes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from kerasdoctor.evidence import Evidence
    from kerasdoctor.predictor import Predictor

# Training-batch size for batch statistics: what a typical fit() step normalises over.
BN_BATCH = 256
# Raw-input probes on wide inputs (images) work on at most this many principal components:
# enough for a linear probe to find a class signal, cheap on ~2000 rows.
PROBE_MAX_DIMS = 64
# Rows the label-free PCA of a wide input is fitted on (8x the components kept).
PCA_FIT_ROWS = 512
# Images wider than this many values are average-pooled before the PCA: its 64 leading
# components are smooth patterns that a 2x2 pooling keeps, at a quarter of the cost.
PROBE_MAX_PIXELS = 4096
# Seconds all experiments of one diagnosis may take together: a safety valve for very large
# models, not a tuning knob (an experiment skipped for time makes the report depend on the
# machine's speed, so the default is far above what the bounded sample needs).
DEFAULT_BUDGET_S = 300.0
# Input cures are screened on a stratified subset first and re-run on the whole sample only
# when they look promising. A cure restores the model (a gain of 0.1 or more, usually far
# more); on 512 rows the sampling noise of a gain is ~0.03 for 10 classes, so a real cure
# shows at least half its gain there, and a transform that gains less than SCREEN_GAIN is
# not re-run.
SCREEN_ROWS = 512
SCREEN_GAIN = 0.05
# One-sided z of the bounds used across experiments: 95%.
Z_95 = 1.645
# Input bytes of one batch when a dense or multi-label sample is re-run (TaskExperiments).
TASK_BATCH_BYTES = 32 * 2**20


@dataclass(frozen=True)
class ExperimentResult:
    """One experiment: a cure tried on the sample, or a measurement taken on it."""

    key: str
    what: str
    before: float  # balanced accuracy of the model as it is, on the rows scored
    after: float | None  # balanced accuracy with the cure applied (None: failed/skipped)
    rows: int
    seconds: float = 0.0
    validated: str | None = None  # how a cure fitted on the data was kept honest
    predicted_counts: tuple[int, ...] = ()
    recall_after: tuple[float, ...] = ()
    error: str | None = None  # why it failed or was skipped
    code: str | None = None  # an input cure's transform, as code with X for the array

    @property
    def ok(self) -> bool:
        return self.error is None and self.after is not None

    @property
    def gain(self) -> float:
        return float(self.after - self.before) if self.ok and self.after is not None else 0.0

    def to_dict(self, timing: bool = False) -> dict[str, Any]:
        """The contract's evidence.experiment object (plus key and validation). Seconds only
        with timing=True (the report's experiment log): a finding's evidence is a function of
        the model and the data, so two runs of the same diagnosis give the same evidence."""
        out: dict[str, Any] = {
            "what": self.what,
            "balanced_accuracy_before": self.before,
            "balanced_accuracy_after": self.after,
            "rows": self.rows,
            "key": self.key,
        }
        if timing:
            out["seconds"] = round(self.seconds, 3)
        if self.validated:
            out["validated"] = self.validated
        if self.predicted_counts:
            out["predicted_counts_after"] = list(self.predicted_counts)
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class ProbeResult:
    """A class-balanced linear probe, cross-validated on the sample: is the signal there?"""

    key: str
    what: str
    balanced_accuracy: float | None
    recall: tuple[float, ...] = ()  # per class (NaN where the class is absent)
    chance: float = float("nan")
    bound: float = float("nan")  # the 95% margin above chance that counts as signal
    rows: int = 0
    dims: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.balanced_accuracy is not None

    @property
    def at_chance(self) -> bool:
        """No better than chance within the bound (only meaningful when ok)."""
        return self.ok and float(self.balanced_accuracy or 0.0) <= self.chance + self.bound

    def to_dict(self, timing: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "what": self.what,
            "balanced_accuracy": self.balanced_accuracy,
            "chance": self.chance,
            "signal_bar": self.chance + self.bound,
            "rows": self.rows,
            "dims": self.dims,
            "key": self.key,
        }
        if timing:
            out["seconds"] = round(self.seconds, 3)
        if self.recall:
            out["recall"] = [None if not np.isfinite(r) else float(r) for r in self.recall]
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class HeadTap:
    """The output layer's inputs (penultimate features) and pre-activations on the sample."""

    features: np.ndarray | None  # (S, F), None when the output layer is not a Dense
    preacts: np.ndarray  # (S, K)
    activation: str  # the head's activation, applied to preacts


# ------------------------------------------------------------------ pure statistics


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Mean recall over the classes present in y."""
    support = np.bincount(y, minlength=k)[:k]
    hits = np.bincount(y[pred == y], minlength=k)[:k]
    present = support > 0
    if not present.any():
        return float("nan")
    return float((hits[present] / support[present]).mean())


def recalls(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    support = np.bincount(y, minlength=k)[:k]
    hits = np.bincount(y[pred == y], minlength=k)[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / np.maximum(support, 1), np.nan)


def noise_bound(support: np.ndarray) -> float:
    """The largest standard error of a difference of two balanced accuracies on these class
    sizes: sqrt(2) x 0.5 sqrt(sum 1/n_k) / K (every recall at 0.5, the binomial worst case)."""
    s = support[support > 0]
    if s.size == 0:
        return float("nan")
    return float(np.sqrt(2.0) * 0.5 * np.sqrt(np.sum(1.0 / s)) / s.size)


def chance_margin(
    support: np.ndarray, predicted_share: np.ndarray | None = None, z: float = Z_95
) -> float:
    """How far above chance (1/K) balanced accuracy must be to beat it at one-sided 95%.

    Under chance the predictions are independent of the labels: class k's recall is a
    binomial proportion with success rate q_k (the share of predictions given to k), so the
    balanced accuracy has mean 1/K and variance sum q_k (1 - q_k) / n_k / K^2. Without the
    shares, q_k = 1/2 gives the largest variance.
    """
    present = support > 0
    s = support[present].astype(np.float64)
    kp = s.size
    if kp == 0:
        return float("nan")
    q = np.full(kp, 0.5) if predicted_share is None else np.asarray(predicted_share)[present]
    return float(z * np.sqrt(np.sum(q * (1 - q) / s)) / kp)


def split_halves(y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two seeded, stratified halves of the rows (indices): fit on one, score on the other."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        half = idx.size // 2
        a.append(idx[:half])
        b.append(idx[half:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def restores(
    r: ExperimentResult,
    min_gain: float,
    min_error_removed: float,
    noise_bar: float | None = None,
) -> bool:
    """The one rule for a cure: it restores the model when it gains at least min_gain (and
    at least `noise_bar`, the sampling noise a gain must clear, where the caller measures
    one) and removes at least min_error_removed of the balanced error: a cure gives back the
    trained model, a perturbation only nudges it."""
    if not r.ok or r.after is None:
        return False
    gain = r.after - r.before
    bar = min_gain if noise_bar is None else max(min_gain, noise_bar)
    removed = gain / (1.0 - r.before) if r.before < 1.0 else 0.0
    return gain >= bar and removed >= min_error_removed


class Task(Protocol):
    """How a dense or multi-label task scores raw model outputs (TaskExperiments' strategy):
    additive tallies per batch, one figure at the end."""

    @property
    def what(self) -> str:
        """'balanced accuracy over positions', 'macro balanced accuracy'."""

    def tally(self, rows: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Additive counts for these sample rows' raw outputs (rows index the sample)."""

    def score(self, total: np.ndarray) -> float:
        """The task's balanced accuracy from summed tallies."""


# ------------------------------------------------------------------ the service


class Service:
    """The engine under every experiment: one time budget, one cache by key, one log.

    An experiment is a function that gives its ExperimentResult; the engine times it against
    the budget, records an exception as a failed result with its reason (and, once the budget
    is spent, every later experiment as skipped for time), and logs each result once for the
    report. Subclasses say what the sample is, how the model scores on it as it is
    (`before`) and how a cure is judged (`restores`, the one rule with or without a noise
    term)."""

    budget_s: float
    spent_s: float
    _cache: dict[str, Any]
    log: list[ExperimentResult | ProbeResult]

    @property
    def before(self) -> float:
        raise NotImplementedError

    @property
    def rows(self) -> int:
        raise NotImplementedError

    def _timed(
        self,
        key: str,
        what: str,
        fn: Callable[[], ExperimentResult],
        code: str | None = None,
    ) -> ExperimentResult:
        if key in self._cache:
            cached: ExperimentResult = self._cache[key]
            return cached
        if self.spent_s >= self.budget_s:
            res = self._failed(key, what, f"skipped: the {self.budget_s:g} s budget is spent", code)
        else:
            t0 = time.perf_counter()
            try:
                res = fn()
            except Exception as exc:  # recorded, never swallowed: the report shows it
                res = self._failed(key, what, f"{type(exc).__name__}: {exc}".strip()[:300], code)
            dt = time.perf_counter() - t0
            self.spent_s += dt
            res = ExperimentResult(**{**res.__dict__, "seconds": dt})
        self._cache[key] = res
        self.log.append(res)
        return res

    def _failed(self, key: str, what: str, why: str, code: str | None = None) -> ExperimentResult:
        return ExperimentResult(key, what, self.before, None, self.rows, error=why, code=code)

    def record(self, result: ExperimentResult) -> ExperimentResult:
        """Log a cure a check computed from the pass's own outputs (no re-run: a threshold
        on the scores of every row), so the report lists it with the others."""
        if result.key not in self._cache:
            self._cache[result.key] = result
            self.log.append(result)
        return result

    def results(self) -> list[ExperimentResult | ProbeResult]:
        """Every experiment run, in order (for the report)."""
        return list(self.log)


@dataclass
class Experiments(Service):
    """Runs every re-run of the model on a single-label pass's bounded sample, with typed,
    cached results scored by balanced accuracy over rows."""

    predictor: Predictor | None
    evidence: Evidence
    seed: int = 0
    budget_s: float = DEFAULT_BUDGET_S
    spent_s: float = 0.0
    _cache: dict[str, Any] = field(default_factory=dict)
    log: list[ExperimentResult | ProbeResult] = field(default_factory=list)

    # -- the sample

    @property
    def xs(self) -> list[np.ndarray]:
        return list(self.evidence.sample_inputs)

    @property
    def y(self) -> np.ndarray:
        ev = self.evidence
        out: np.ndarray = np.asarray(ev.y_true)[ev.sample_index]
        return out

    @property
    def k(self) -> int:
        return int(self.evidence.n_classes)

    @property
    def rows(self) -> int:
        return int(self.evidence.sample_index.size)

    @property
    def base_pred(self) -> np.ndarray:
        ev = self.evidence
        out: np.ndarray = np.asarray(ev.y_pred)[ev.sample_index]
        return out

    @property
    def support(self) -> np.ndarray:
        return np.bincount(self.y, minlength=self.k)[: self.k]

    @property
    def before(self) -> float:
        return balanced_accuracy(self.y, self.base_pred, self.k)

    @property
    def noise(self) -> float:
        return noise_bound(self.support)

    @property
    def available(self) -> bool:
        """Whether the sample can judge anything: rows of at least two classes."""
        return self.rows > 0 and int((self.support > 0).sum()) >= 2

    def restores(
        self,
        r: ExperimentResult,
        min_gain: float = 0.10,
        noise_z: float = 3.0,
        min_error_removed: float = 0.5,
    ) -> bool:
        """The one rule (restores), with the row noise: a cure must also gain noise_z x the
        sampling noise of a difference of balanced accuracies on these class sizes, which
        on a few hundred rows of a rare class can exceed min_gain."""
        # the noise of the rows the result was scored on: a half (split-half validation) or
        # a screen has proportionally fewer rows per class, so sqrt(rows / r.rows) more noise
        scale = float(np.sqrt(self.rows / r.rows)) if 0 < r.rows < self.rows else 1.0
        return restores(r, min_gain, min_error_removed, noise_z * self.noise * scale)

    def scored(
        self,
        key: str,
        what: str,
        pred: np.ndarray,
        *,
        rows: np.ndarray | None = None,
        validated: str | None = None,
    ) -> ExperimentResult:
        """Record a cure computed without re-running the model (a prior correction, a
        permutation, a threshold): its predictions `pred` on `rows` of the sample."""

        def compute() -> ExperimentResult:
            y = self.y if rows is None else self.y[rows]
            base = self.base_pred if rows is None else self.base_pred[rows]
            p = np.asarray(pred, np.int64)
            return ExperimentResult(
                key,
                what,
                balanced_accuracy(y, base, self.k),
                balanced_accuracy(y, p, self.k),
                int(y.size),
                validated=validated,
                predicted_counts=tuple(np.bincount(p, minlength=self.k)[: self.k].tolist()),
                recall_after=tuple(recalls(y, p, self.k).tolist()),
            )

        return self._timed(key, what, compute)

    # -- re-runs of the model

    def _predict(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        if self.predictor is None:
            raise RuntimeError("no model to re-run")
        _, pred = self.predictor.predict(list(arrays), self.evidence.output.head_used)
        return pred

    def inputs(
        self, key: str, what: str, transform: Callable[[list[np.ndarray]], list[np.ndarray]]
    ) -> ExperimentResult:
        """The model on transformed sample inputs (a preprocessing cure)."""

        def compute() -> ExperimentResult:
            screen = self._screen_rows()
            if screen is not None:
                with np.errstate(all="ignore"):
                    arrays = transform([x[screen] for x in self.xs])
                pred = self._predict(arrays)
                y, base = self.y[screen], self.base_pred[screen]
                before = balanced_accuracy(y, base, self.k)
                after = balanced_accuracy(y, pred, self.k)
                if not after - before >= SCREEN_GAIN:
                    return ExperimentResult(
                        key,
                        what,
                        before,
                        after,
                        int(screen.size),
                        validated=f"screened on {screen.size} stratified rows",
                        predicted_counts=tuple(
                            np.bincount(pred, minlength=self.k)[: self.k].tolist()
                        ),
                        recall_after=tuple(recalls(y, pred, self.k).tolist()),
                    )
            with np.errstate(all="ignore"):
                arrays = transform(self.xs)
            pred = self._predict(arrays)
            return self._result(key, what, pred)

        return self._timed(key, what, compute)

    def _screen_rows(self) -> np.ndarray | None:
        """A seeded stratified subset of SCREEN_ROWS rows, or None when the sample is small."""
        if self.rows <= 2 * SCREEN_ROWS:
            return None
        if "screen" not in self._cache:
            rng = np.random.default_rng(self.seed + 1)
            share = SCREEN_ROWS / self.rows
            keep = []
            for c in np.unique(self.y):
                idx = np.flatnonzero(self.y == c)
                take = max(1, int(round(idx.size * share)))
                keep.append(rng.choice(idx, size=min(take, idx.size), replace=False))
            self._cache["screen"] = np.sort(np.concatenate(keep))
        out: np.ndarray = self._cache["screen"]
        return out

    def _result(
        self, key: str, what: str, pred: np.ndarray, validated: str | None = None
    ) -> ExperimentResult:
        return ExperimentResult(
            key,
            what,
            self.before,
            balanced_accuracy(self.y, pred, self.k),
            self.rows,
            validated=validated,
            predicted_counts=tuple(np.bincount(pred, minlength=self.k)[: self.k].tolist()),
            recall_after=tuple(recalls(self.y, pred, self.k).tolist()),
        )

    def bn_training_mode(self) -> ExperimentResult:
        """BatchNorm normalising with batch statistics (training mode), on a copy."""
        what = f"BatchNorm in training mode (batch statistics, batches of {BN_BATCH})"
        return self._timed("bn-training-mode", what, lambda: self._bn_run(False, what))

    def bn_reestimated(self) -> ExperimentResult:
        """Moving statistics re-estimated from the sample (AdaBN), then inference, on a copy."""
        what = "re-estimating BatchNorm statistics on these rows"
        return self._timed("bn-reestimated", what, lambda: self._bn_run(True, what))

    def _bn_run(self, reestimate: bool, what: str) -> ExperimentResult:
        from kerasdoctor.predictor_graph import batchnorm_run

        if self.predictor is None or self.predictor.lm.keras_model is None:
            return self._failed("bn", what, "the model has no Keras layers to re-run")
        pred = batchnorm_run(
            self.predictor, self.xs, reestimate=reestimate, seed=self.seed, batch=BN_BATCH
        )
        return self._result(
            "bn-reestimated" if reestimate else "bn-training-mode",
            what,
            pred,
            validated="label-free: statistics only" if reestimate else None,
        )

    def head(self) -> HeadTap | str:
        """The penultimate features and the output pre-activations, or why not."""
        if "head" not in self._cache:
            from kerasdoctor.predictor_graph import head_tap

            t0 = time.perf_counter()
            try:
                self._cache["head"] = (
                    head_tap(self.predictor, self.xs) if self.predictor else "no model"
                )
            except Exception as exc:
                self._cache["head"] = f"{type(exc).__name__}: {exc}"[:300]
            self.spent_s += time.perf_counter() - t0
        res: HeadTap | str = self._cache["head"]
        return res

    def logits(self) -> np.ndarray:
        """(S, K) scores whose argmax is the model's prediction and whose differences are
        log-odds: the output pre-activations of a softmax/linear head, else log-probabilities
        (the same up to a per-row constant under softmax); binary one-unit heads as [0, z]."""
        if "logits" not in self._cache:
            tap = self.head()
            k = self.k
            if (
                not isinstance(tap, str)
                and tap.activation in ("softmax", "linear")
                and tap.preacts.shape[1] == k
            ):
                z = np.asarray(tap.preacts, np.float64)
            elif (
                not isinstance(tap, str)
                and tap.activation == "sigmoid"
                and tap.preacts.shape[1] == 1
                and k == 2
            ):
                z = np.concatenate([np.zeros_like(tap.preacts), tap.preacts], axis=1)
            else:
                p = self.evidence.sample_probs
                if p is None:
                    raise RuntimeError("the sample's probabilities were not kept")
                p = np.asarray(p, np.float64)
                if p.shape[1] == 1:
                    p = np.concatenate([1 - p, p], axis=1)
                z = np.log(np.clip(p, 1e-12, 1.0))
            self._cache["logits"] = z.astype(np.float64)
        out: np.ndarray = self._cache["logits"]
        return out

    def logit_adjustment(self) -> ExperimentResult:
        """Logit adjustment (Menon et al., ICLR 2021): subtract the log label prior from the
        logits. The prior is counted on one seeded half of the sample and the result scored
        on the other, so nothing is fitted to the rows scored."""
        key = "prior-logit-adjustment"
        what = "subtracting the log label prior from the logits (logit adjustment)"

        def compute() -> ExperimentResult:
            z = self.logits()
            a, b = split_halves(self.y, self.seed)
            counts = np.bincount(self.y[a], minlength=self.k)[: self.k].astype(np.float64)
            prior = (counts + 0.5) / (counts.sum() + 0.5 * self.k)  # no log 0 for a class
            pred = np.argmax(z[b] - np.log(prior), axis=1).astype(np.int64)
            y, base = self.y[b], self.base_pred[b]
            return ExperimentResult(
                key,
                what,
                balanced_accuracy(y, base, self.k),
                balanced_accuracy(y, pred, self.k),
                int(b.size),
                validated="prior counted on one seeded half, scored on the other",
                predicted_counts=tuple(np.bincount(pred, minlength=self.k)[: self.k].tolist()),
                recall_after=tuple(recalls(y, pred, self.k).tolist()),
            )

        return self._timed(key, what, compute)

    # -- linear probes

    def feature_probe(self) -> ProbeResult:
        """A class-balanced linear probe on the model's penultimate features."""
        key, what = "probe-features", "linear probe on the model's penultimate features"
        if key not in self._cache:
            tap = self.head()
            if isinstance(tap, str) or tap.features is None:
                why = tap if isinstance(tap, str) else "the output layer is not a Dense layer"
                self._cache[key] = ProbeResult(key, what, None, error=why)
            else:
                self._cache[key] = self._probe(key, what, tap.features)
            self.log.append(self._cache[key])
        res: ProbeResult = self._cache[key]
        return res

    def input_probe(self) -> ProbeResult:
        """A class-balanced linear probe on the raw inputs (flattened, standardised, PCA)."""
        key, what = "probe-inputs", "linear probe on the raw inputs"
        if key not in self._cache:
            parts, pooled = [], []
            for x in self.xs:
                a = np.asarray(x)
                if a.dtype.kind not in "biuf":
                    continue
                if a.ndim == 4:  # images: colour and layout survive pooling, not PCA
                    pooled.append(pooled_image_features(a))
                    a = downsampled(a, PROBE_MAX_PIXELS)
                parts.append(a.reshape(a.shape[0], -1).astype(np.float32))
            if not parts:
                self._cache[key] = ProbeResult(key, what, None, error="no numeric input")
            else:
                extra = np.concatenate(pooled, axis=1) if pooled else None
                self._cache[key] = self._probe(key, what, np.concatenate(parts, axis=1), extra)
            self.log.append(self._cache[key])
        res: ProbeResult = self._cache[key]
        return res

    def features_keep_signal(self, probe_gap: float, noise_z: float) -> dict[str, Any] | None:
        """Do the model's penultimate features still carry what the raw inputs carry?

        They lost it when the inputs carry it (the input probe beats chance, or could not
        run) and the feature probe is at chance or falls more than max(probe_gap, noise_z x
        the noise of a difference) below the input probe. None when the features cannot be
        probed."""
        feats, inputs = self.feature_probe(), self.input_probe()
        if not feats.ok:
            return None
        fb = float(feats.balanced_accuracy or 0.0)
        ib = float(inputs.balanced_accuracy or 0.0) if inputs.ok else None
        bar = max(probe_gap, noise_z * self.noise)
        # the features can only have lost a signal the inputs carry: when the input probe
        # is at chance too, there is nothing to lose (that is no-signal's finding)
        inputs_carry = not (inputs.ok and inputs.at_chance)
        lost = inputs_carry and (feats.at_chance or (ib is not None and ib - fb > bar))
        return {
            "feature_probe": fb,
            "input_probe": ib,
            "gap_bar": bar,
            "inputs_carry_signal": inputs_carry,
            "features_fail": bool(lost),
        }

    def _probe(
        self, key: str, what: str, feats: np.ndarray, extra: np.ndarray | None = None
    ) -> ProbeResult:
        t0 = time.perf_counter()
        y, k = self.y, self.k
        support = np.bincount(y, minlength=k)[:k]
        present = support > 0
        chance = 1.0 / max(int(present.sum()), 1)
        try:
            if self.spent_s >= self.budget_s:
                raise RuntimeError(f"skipped: the {self.budget_s:g} s budget is spent")
            pred, dims = cross_validated_probe(feats, y, seed=self.seed, extra=extra)
            bal = balanced_accuracy(y, pred, k)
            # the probe is at chance when its predictions could come from label-blind guesses
            share = np.bincount(pred, minlength=k)[:k] / max(pred.size, 1)
            bound = chance_margin(support, share)
            res = ProbeResult(
                key,
                what,
                bal,
                tuple(recalls(y, pred, k).tolist()),
                chance,
                bound,
                int(y.size),
                dims,
            )
        except Exception as exc:
            res = ProbeResult(
                key,
                what,
                None,
                chance=chance,
                rows=int(y.size),
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
        dt = time.perf_counter() - t0
        self.spent_s += dt
        return ProbeResult(**{**res.__dict__, "seconds": dt})


class TaskExperiments(Service):
    """Runs every re-run of a dense or multi-label model on its bounded sample, scored by the
    task's rule (`task`, a Task) over the raw outputs, in batches that bound memory."""

    def __init__(
        self,
        lm: Any,
        facts: Any,
        xs: list[np.ndarray],
        task: Task,
        *,
        seed: int = 0,
        budget_s: float = DEFAULT_BUDGET_S,
        predictor: Predictor | None = None,
    ) -> None:
        """`predictor`: the model behind its adapter, built from lm and facts (no probe
        taps) when not given."""
        if predictor is None:
            from kerasdoctor.predictor import Predictor

            predictor = Predictor(lm, facts, taps=False)
        self.lm, self.facts, self.xs, self.task, self.seed = lm, facts, xs, task, seed
        self.predictor = predictor
        self.n = int(xs[0].shape[0])
        row_bytes = sum(int(np.prod(x.shape[1:], dtype=np.int64)) * 4 for x in xs)
        self.batch = max(1, min(64, TASK_BATCH_BYTES // max(row_bytes, 1)))
        self.budget_s, self.spent_s = budget_s, 0.0
        self._cache: dict[str, Any] = {}
        self.log: list[ExperimentResult | ProbeResult] = []
        # the model as it is: what every cure is measured against (not an experiment, so
        # outside the budget; a model that cannot run on its own sample raises)
        self._before = self.score(self._forward)

    @property
    def before(self) -> float:
        return self._before

    @property
    def rows(self) -> int:
        return self.n

    def restores(self, r: ExperimentResult, min_gain: float, min_error_removed: float) -> bool:
        """The one rule (restores) without the row-noise term: the sample holds >= 16
        samples of many positions each, or hundreds of rows, where min_gain (0.10) is far
        above the sampling noise of a balanced accuracy."""
        return restores(r, min_gain, min_error_removed)

    def _forward(self, part: list[np.ndarray]) -> Any:
        return self.predictor.run_batch(part)[0]

    def score(
        self,
        forward: Callable[[list[np.ndarray]], Any],
        transform: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
    ) -> float:
        """The task's figure of `forward` (raw outputs of a batch of inputs) on the sample,
        its inputs transformed first when a `transform` is given."""
        total = None
        for s in range(0, self.n, self.batch):
            rows = np.arange(s, min(self.n, s + self.batch))
            part = [np.asarray(x[rows]) for x in self.xs]
            if transform is not None:
                with np.errstate(all="ignore"):
                    part = transform(part)
            raw = np.asarray(forward(part))
            t = self.task.tally(rows, raw)
            total = t if total is None else total + t
        assert total is not None
        return self.task.score(total)

    def scored(
        self, key: str, what: str, run: Callable[[], float], code: str | None = None
    ) -> ExperimentResult:
        """An experiment whose `run` gives the task's figure with its cure applied."""

        def compute() -> ExperimentResult:
            return ExperimentResult(key, what, self.before, float(run()), self.rows, code=code)

        return self._timed(key, what, compute, code)

    def inputs(
        self,
        key: str,
        what: str,
        code: str,
        transform: Callable[[list[np.ndarray]], list[np.ndarray]],
    ) -> ExperimentResult:
        """The model on transformed sample inputs (a preprocessing cure, `code` with X for
        the array)."""
        return self.scored(key, what, lambda: self.score(self._forward, transform), code)

    def rerun(
        self, key: str, what: str, forward: Callable[[list[np.ndarray]], Any]
    ) -> ExperimentResult:
        """A modified copy of the model (`forward`: raw outputs of a batch) on the sample."""
        return self.scored(key, what, lambda: self.score(forward))

    def bn_reestimated(self) -> ExperimentResult:
        """Moving statistics re-estimated from the sample (AdaBN), then inference, on a copy."""
        what = "re-estimating BatchNorm statistics on these rows"

        def run() -> float:
            from kerasdoctor.predictor_graph import batchnorm_run

            raw = batchnorm_run(
                self.predictor,
                self.xs,
                reestimate=True,
                seed=self.seed,
                batch=max(self.batch, 16),
                outputs=True,
            )
            shape = tuple(self.lm.output_shape[1:])
            total = None
            for s in range(0, self.n, self.batch):
                rows = np.arange(s, min(self.n, s + self.batch))
                t = self.task.tally(rows, raw[rows].reshape((len(rows), *shape)))
                total = t if total is None else total + t
            assert total is not None
            return self.task.score(total)

        return self.scored("bn-reestimated", what, run)


def downsampled(a: np.ndarray, max_values: int) -> np.ndarray:
    """(N, H, W, C) average-pooled by the smallest integer factor that brings H x W x C to
    at most max_values (the trailing rows/columns that do not fill a block are dropped)."""
    n, h, w, c = a.shape
    f = 1
    while (h // f) * (w // f) * c > max_values and min(h // f, w // f) > 1:
        f += 1
    if f == 1:
        return a
    hh, ww = (h // f) * f, (w // f) * f
    x = np.asarray(a[:, :hh, :ww], np.float32)
    out: np.ndarray = x.reshape(n, hh // f, f, ww // f, f, c).mean(axis=(2, 4))
    return out


def pooled_image_features(a: np.ndarray, grid: int = 4) -> np.ndarray:
    """(N, H, W, C) -> per channel, the mean over each cell of a grid x grid layout and the
    standard deviation over the image: colour, brightness and coarse layout, which a
    projection onto the leading principal components of raw pixels can miss."""
    x = np.asarray(a, np.float32)
    n, h, w, c = x.shape
    hs = np.array_split(np.arange(h), min(grid, h))
    ws = np.array_split(np.arange(w), min(grid, w))
    cells = [x[:, r][:, :, cidx].mean(axis=(1, 2)) for r in hs for cidx in ws]  # (N, C) each
    return np.concatenate([*cells, x.std(axis=(1, 2))], axis=1).reshape(n, -1)


def cross_validated_probe(
    feats: np.ndarray,
    y: np.ndarray,
    seed: int = 0,
    max_dims: int = PROBE_MAX_DIMS,
    extra: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Out-of-fold predictions of a class-balanced linear classifier (stratified k-fold).

    Features are standardised; wide ones are reduced to their first max_dims principal
    components (label-free, fitted once). `extra` columns (pooled image summaries) join
    after the reduction, only standardised.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def standardised(m: np.ndarray) -> np.ndarray:
        m = np.asarray(m, np.float32)
        m = np.where(np.isfinite(m), m, np.float32(0.0))
        sd = m.std(axis=0)
        keep = sd > 0
        out: np.ndarray = (m[:, keep] - m[:, keep].mean(axis=0)) / sd[keep]
        return out

    x = standardised(feats)
    if x.shape[1] > max_dims:
        # label-free: the principal components see no label, so fitting them once (rather
        # than per fold) leaks nothing into the scored folds; the leading max_dims directions
        # of a few hundred rows are as good as those of all of them, at a fraction the cost
        fit_rows = np.random.default_rng(seed).permutation(x.shape[0])[:PCA_FIT_ROWS]
        pca = PCA(
            n_components=min(max_dims, fit_rows.size), svd_solver="randomized", random_state=seed
        ).fit(x[np.sort(fit_rows)])
        x = pca.transform(x)
    if extra is not None:
        x = np.concatenate([x, standardised(extra)], axis=1)
    dims = int(x.shape[1])
    if dims == 0:  # nothing varies: the probe can only guess
        return np.full(y.shape, int(np.bincount(y).argmax())), 0
    counts = np.bincount(y)
    folds = int(min(5, counts[counts > 0].min()))
    if folds < 2:
        raise ValueError("a class has a single row: too few to cross-validate a probe")
    # a class-balanced ridge classifier: a linear probe in closed form (one small solve per
    # fold), where a logistic regression on labels that carry nothing iterates for seconds
    pipe = make_pipeline(StandardScaler(), RidgeClassifier(alpha=1.0, class_weight="balanced"))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    pred = cross_val_predict(pipe, x, y, cv=cv)
    return np.asarray(pred, np.int64), int(dims)
