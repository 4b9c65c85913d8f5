"""DoctorCallback: the cheap diagnosis at the end of training epochs, to catch a collapse early.

Cost per checked epoch: one prediction pass over the validation data (the same single pass
`diagnose` makes, with the activation taps) and the cheap checks; on a sick epoch, the cause
checks among them add their small re-runs on the pass's bounded sample.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kerasdoctor._keras import keras
from kerasdoctor.findings import Finding, Report, Severity

# The quality gates (min_recall, min_balanced_accuracy) run as this check when one is set.
GATE_CHECK = "quality-gate"
# kd_collapsed: the predictions collapsed onto one class. A class going missing alone is
# counted by kd_missing_classes instead.
COLLAPSE_ID = "prediction-collapse"
# The logs keys the callback adds on every checked epoch.
LOG_KEYS = (
    "kd_balanced_accuracy",
    "kd_missing_classes",
    "kd_dominant_share",
    "kd_collapsed",
    "kd_unhealthy",
)
# The monitored quantity that restore_best_weights ranks epochs by, unless told otherwise.
DEFAULT_MONITOR = "kd_balanced_accuracy"
# Commands of the report's fixes name the data by path; the callback holds arrays, so a
# command that names these placeholders (core._shell_path of "<arrays>", "<in-memory model>")
# would not run and is left out of the advice.
_PLACEHOLDERS = ("ARRAYS", "IN-MEMORY MODEL")


def _stderr(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _base() -> type:
    out: type = keras().callbacks.Callback
    return out


class DoctorCallback(_base()):  # type: ignore[misc]
    """Run kerasdoctor's prediction checks on validation data at the end of epochs.

    Parameters
    ----------
    validation_data: ``(x, y)``; ``x`` an array, or a list/dict of arrays for several inputs.
        ``y`` in any encoding ``diagnose`` takes: class indices or one-hot, multi-hot
        ``(N, K)`` for a multi-label model, ``(N, H, W)`` masks or ``(N, T)`` tags for a
        dense one (whose output is ``(N, H, W, K)`` / ``(N, T, K)``). A dense model may take
        ``(x, y, mask)``: ``mask`` ``(N, H, W)`` / ``(N, T)``, nonzero where a position
        counts (padding and void positions 0; a Keras sample_weight of that shape works).
    every: check every N-th epoch (1 = each epoch).
    on_collapse: what to do on an unhealthy checked epoch: ``"warn"`` logs the findings and
        the advice; ``"stop"`` also stops training once ``patience`` checked epochs in a row
        were unhealthy (and, with ``restore_best_weights``, puts the best weights back).
    patience: unhealthy checked epochs in a row before stopping.
    class_names: names of the classes, in index order, for the messages.
    log: where messages go (default: standard error).
    batch_size: batch size of the prediction pass.
    fail_on: the severity that makes a checked epoch unhealthy: ``"error"`` (default: what
        makes ``kerasdoctor diagnose`` exit 1), ``"warning"``, ``"info"`` or ``"never"``
        (log the sick epochs, never stop). The same vocabulary as the CLI, the config and
        ``assert_healthy``.
    min_recall, min_balanced_accuracy: quality gates, as ``--min-recall`` and
        ``--min-balanced-accuracy``: a checked epoch below the bar has an error-level
        ``quality-gate`` finding, so it is unhealthy (pair them with ``start_from_epoch``:
        no model meets a release bar in its first epochs).
    start_from_epoch: epochs to wait before unhealthy epochs count towards ``patience``
        (checks and logs run from the first epoch), as in ``keras.callbacks.EarlyStopping``.
    restore_best_weights: when the callback stops training, set the weights of the best
        checked epoch it found healthy, by ``monitor`` (default on). When no checked epoch
        was healthy, the last weights stay (said in the log). Training stopped by anything
        else keeps its last weights. With ``on_collapse="stop"`` it holds a copy of the best
        weights in host memory, as EarlyStopping does.
    monitor: the logs key that ranks epochs for ``restore_best_weights``. The default,
        ``"kd_balanced_accuracy"``, is the balanced accuracy this callback measures on its
        validation data; ``"val_loss"``, ``"val_accuracy"``... use what ``fit`` logs.
    mode: ``"max"``, ``"min"`` or ``"auto"`` (min for a name with "loss", max for one with
        "acc", "auc", "precision", "recall" or "f1").
    train_labels: the training labels ``y`` (any encoding ``diagnose`` accepts). When the
        diagnosis blames class imbalance, the advised ``class_weight`` dict is computed from
        them; without them, from the validation labels the callback holds (the message says
        which). A dense or multi-label model is advised by its diagnosis's own fix
        (per-position sample weights, per-label thresholds...), without these labels.
    ignore_label: dense labels only: positions whose label is this value do not count
        (``--ignore-label``).

    Adds to ``logs`` on each checked epoch (so they reach History and TensorBoard):

    - ``kd_balanced_accuracy``: mean per-class recall on the validation data (over the
      counted positions for a dense model, the mean over labels for a multi-label one).
    - ``kd_missing_classes``: number of classes present in the validation labels that the
      model never predicts.
    - ``kd_dominant_share``: share of the predictions that go to the most-predicted class.
    - ``kd_collapsed``: 1 when the predictions collapse onto one class (the
      ``prediction-collapse`` finding), else 0. One class going missing alone is not a
      collapse: ``kd_missing_classes`` counts it.
    - ``kd_unhealthy``: 1 when the epoch has a finding at or above ``fail_on`` (a collapse,
      a missing class with 5 or more samples, NaN weights, a gate missed...), else 0; these
      are the epochs that count towards ``patience``.

    Attributes after ``fit``: ``reports`` (epoch -> Report), ``stopped_epoch``,
    ``best_epoch`` and ``best`` (by ``monitor``), ``restored_epoch``, ``class_weight``
    (the last advised dict, class index -> weight) and ``class_weight_source``.

    >>> model.fit(x, y, epochs=20, callbacks=[DoctorCallback((x_val, y_val),
    ...           on_collapse="stop", patience=2, train_labels=y)])  # doctest: +SKIP
    """

    def __init__(
        self,
        validation_data: tuple[Any, Any],
        every: int = 1,
        on_collapse: str = "warn",
        patience: int = 2,
        class_names: Sequence[str] | None = None,
        log: Callable[[str], None] = _stderr,
        batch_size: int | None = None,
        *,
        fail_on: str = "error",
        min_recall: float | None = None,
        min_balanced_accuracy: float | None = None,
        start_from_epoch: int = 0,
        restore_best_weights: bool = True,
        monitor: str = DEFAULT_MONITOR,
        mode: str = "auto",
        train_labels: Any = None,
        ignore_label: int | None = None,
    ) -> None:
        super().__init__()
        from kerasdoctor.load import DenseLabels, MultiHotLabels, decode_labels
        from kerasdoctor.policy import FAIL_ON

        if on_collapse not in ("warn", "stop"):
            raise ValueError("on_collapse must be 'warn' or 'stop'")
        if every < 1 or patience < 1:
            raise ValueError("every and patience must be >= 1")
        if start_from_epoch < 0:
            raise ValueError("start_from_epoch must be >= 0")
        if fail_on not in FAIL_ON:
            raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}")
        self.gates: dict[str, float] = {}
        for name, value in (
            ("min_recall", min_recall),
            ("min_balanced_accuracy", min_balanced_accuracy),
        ):
            if value is not None:
                if not 0.0 <= float(value) <= 1.0:
                    raise ValueError(f"{name} must be between 0 and 1, got {value}")
                self.gates[name] = float(value)
        data = tuple(validation_data)
        if len(data) not in (2, 3):
            raise ValueError("validation_data must be (x, y), or (x, y, mask) for a dense model")
        self.x, self.y = data[0], data[1]
        self.mask = data[2] if len(data) == 3 else None
        self.ignore_label = ignore_label
        self.every = every
        self.on_collapse = on_collapse
        self.patience = patience
        self.class_names = class_names
        self.log = log
        self.batch_size = batch_size
        self.fail_on = fail_on
        self.start_from_epoch = start_from_epoch
        self.restore_best_weights = restore_best_weights
        self.monitor = monitor
        self.mode = _mode(monitor, mode)
        names = list(class_names) if class_names is not None else None
        # decoded now, so a bad encoding fails before training starts, not at epoch 1; masks,
        # tags and multi-hot rows are told apart with the model's output (on_train_begin)
        self._val_y: np.ndarray | None = None
        self._not_single: Exception | None = None
        try:
            self._val_y = decode_labels(np.asarray(self.y), names, where="validation y").y
        except (DenseLabels, MultiHotLabels) as exc:
            self._not_single = exc
        self._train_y = None
        if train_labels is not None:
            try:
                self._train_y = decode_labels(
                    np.asarray(train_labels), names, where="train_labels"
                ).y
            except (DenseLabels, MultiHotLabels):
                if self._not_single is None:
                    raise
        # "single-label", "dense" or "multilabel": set by on_train_begin from the model
        self.task: str | None = None
        self._mask: np.ndarray | None = None
        self.reports: dict[int, Report] = {}
        self.seconds: list[float] = []  # wall time of each check, for the cost figure
        self._reset()

    def _reset(self) -> None:
        self.unhealthy_epochs = 0  # unhealthy checked epochs in a row (counted for patience)
        self.stopped_epoch: int | None = None
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_weights: list[Any] | None = None
        self.restored_epoch: int | None = None
        self.class_weight: dict[int, float] | None = None
        self.class_weight_source: str | None = None
        self._crashed: set[str] = set()
        self._warned_monitor = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()
        self.reports = {}
        self.seconds = []
        self.task = self._task()

    def _task(self) -> str:
        """What the validation labels are for this model, checked before the first epoch."""
        from kerasdoctor.dense import check_labels, labels_fit
        from kerasdoctor.multilabel import is_multi_hot

        y = np.asarray(self.y)
        out = getattr(self.model, "output_shape", None)
        out = tuple(out) if isinstance(out, tuple) else None  # one output; lists: several
        dense = (
            out is not None
            and len(out) >= 3
            and (labels_fit(y, out) or (self._not_single is not None and not is_multi_hot(y)))
        )
        if dense:
            assert out is not None
            check_labels(y, out, "validation y")  # labels of the wrong shape: say which
            if self.mask is not None:
                self._mask = np.asarray(self.mask)
                if self._mask.dtype != bool:
                    self._mask = self._mask != 0
            return "dense"
        if self.mask is not None:
            raise ValueError(
                "validation_data (x, y, mask): the mask is for a dense model "
                "(output (N, H, W, K) or (N, T, K)) and its (N, H, W) / (N, T) "
                "labels; give (x, y) here"
            )
        if self.ignore_label is not None:
            raise ValueError("ignore_label is for a dense model's labels")
        if self._not_single is not None:
            if is_multi_hot(y):
                return "multilabel"
            raise self._not_single
        return "single-label"

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if (epoch + 1) % self.every:
            return
        if self.task is None:  # on_epoch_end called without on_train_begin (by hand)
            self.task = self._task()
        start = time.perf_counter()
        report = self._diagnose()
        self.seconds.append(time.perf_counter() - start)
        self.reports[epoch] = report
        for err in report.errors:  # a crashed check is said once, never taken as a verdict
            if err.check_id not in self._crashed:
                self._crashed.add(err.check_id)
                self.log(f"kerasdoctor: check {err.check_id} crashed: {err.message}")
        figures = epoch_figures(report, self.fail_on)
        if logs is not None:
            logs.update(figures)
        unhealthy = bool(figures["kd_unhealthy"])
        if unhealthy or report.verdict == "sick":
            self.log(self.message(epoch, report))
        if not unhealthy:
            self.unhealthy_epochs = 0
            self._track_best(epoch, {**(logs or {}), **figures})
            return
        if epoch < self.start_from_epoch:
            return
        self.unhealthy_epochs += 1
        if self.on_collapse == "stop" and self.unhealthy_epochs >= self.patience:
            self.model.stop_training = True
            self.stopped_epoch = epoch
            msg = (
                f"kerasdoctor: stopping training after {self.unhealthy_epochs} unhealthy "
                f"epoch(s) in a row (patience {self.patience})"
            )
            if self.restore_best_weights:
                msg += "; " + self._restore(epoch, {**(logs or {}), **figures})
            self.log(msg)

    def _diagnose(self) -> Report:
        """The cheap diagnosis of this epoch's model on the validation data."""
        from kerasdoctor.checks import every_epoch
        from kerasdoctor.core import diagnose_arrays

        cheap = every_epoch(self.task or "single-label")  # the task is read before epoch 1
        only = cheap | {GATE_CHECK} if self.gates else cheap
        if self.task != "dense":
            return diagnose_arrays(
                self.model,
                self.x,
                self.y,
                only=only,
                gates=self.gates,
                class_names=self.class_names,
                batch_size=self.batch_size,
            )
        from kerasdoctor.core import Options
        from kerasdoctor.dense import diagnose_arrays as diagnose_dense
        from kerasdoctor.load import from_keras_model

        opts = Options(
            only=only,
            gates=self.gates,
            class_names=self.class_names,
            batch_size=self.batch_size,
            ignore_label=self.ignore_label,
        )
        # no sample masks: the callback keeps a report per checked epoch
        return diagnose_dense(
            from_keras_model(self.model), self.x, self.y, opts, mask=self._mask, samples=False
        )

    def _track_best(self, epoch: int, logs: dict[str, Any]) -> None:
        value = logs.get(self.monitor)
        if value is None:
            if not self._warned_monitor:
                self._warned_monitor = True
                self.log(
                    f"kerasdoctor: monitor {self.monitor!r} is not in the logs (they "
                    f"have {', '.join(sorted(logs)) or 'nothing'}); no best epoch is kept"
                )
            return
        value = float(value)
        if math.isnan(value):
            return
        better = self.best is None or (
            value > self.best if self.mode == "max" else value < self.best
        )
        if better:
            self.best, self.best_epoch = value, epoch
            # a copy is only worth its memory when the callback may put it back
            if self.restore_best_weights and self.on_collapse == "stop":
                self.best_weights = self.model.get_weights()

    def _restore(self, epoch: int, logs: dict[str, Any]) -> str:
        now = logs.get(self.monitor)
        now_text = f"{float(now):.4g}" if now is not None else "n/a"
        if self.best_weights is None or self.best_epoch is None:
            return (
                "no checked epoch was healthy, so the weights of this epoch stay "
                f"({self.monitor} {now_text})"
            )
        self.model.set_weights(self.best_weights)
        self.restored_epoch = self.best_epoch
        return (
            f"restored the weights of epoch {self.best_epoch + 1}, the best healthy one "
            f"by {self.monitor} ({self.best:.4g}; epoch {epoch + 1}: {now_text})"
        )

    def message(self, epoch: int, report: Report) -> str:
        """The log message of a sick epoch: its symptoms, the cause, runnable advice."""
        lines = [describe(epoch, report, self.fail_on)]
        root = report.root_cause
        if root is not None and root.id == "class-imbalance" and self.task == "single-label":
            lines += self._class_weight_advice(report)
        elif root is not None:
            lines += fix_lines(root)
        return "\n".join(lines)

    def _class_weight_advice(self, report: Report) -> list[str]:
        from kerasdoctor.class_weights import class_weights, python_line

        if self._train_y is not None:
            y, source = self._train_y, "train_labels"
            where = f"the training labels (train_labels, {y.shape[0]} samples)"
        else:
            assert self._val_y is not None  # single-label: decoded in __init__
            y, source = self._val_y, "validation_labels"
            where = (
                f"the validation labels ({y.shape[0]} samples; pass "
                "train_labels=y_train to weight by the training labels)"
            )
        from kerasdoctor.metrics import class_count

        n_classes = class_count(int(report.data.n_classes), labels_max=int(y.max()))
        result = class_weights(y, n_classes)
        self.class_weight = {int(k): float(v) for k, v in result.class_weight.items()}
        self.class_weight_source = source
        return [
            f"  fix: train with class weights, computed from {where}:",
            "    " + python_line(result),
            "    model.fit(..., class_weight=class_weight)",
        ]


def _mode(monitor: str, mode: str) -> str:
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ValueError("mode must be 'auto', 'min' or 'max'")
    name = monitor.lower()
    if "loss" in name:
        return "min"
    if any(k in name for k in ("acc", "auc", "precision", "recall", "f1")):
        return "max"
    raise ValueError(
        f"cannot tell whether monitor {monitor!r} should go up or down; "
        "pass mode='max' or mode='min'"
    )


def _unhealthy(report: Report, fail_on: str) -> bool:
    from kerasdoctor.policy import failing

    return bool(failing(report, fail_on))


def epoch_figures(report: Report, fail_on: str = "error") -> dict[str, float]:
    """The numbers the callback adds to `logs` (see LOG_KEYS and the class docstring)."""
    per_class = report.metrics.per_class
    missing = sum(1 for c in per_class if c.missing)
    n = max(1, sum(c.predicted for c in per_class))
    dominant = max(c.predicted for c in per_class) / n
    collapsed = report.finding(COLLAPSE_ID) is not None
    return {
        "kd_balanced_accuracy": float(report.metrics.balanced_accuracy or 0.0),
        "kd_missing_classes": float(missing),
        "kd_dominant_share": float(dominant),
        "kd_collapsed": 1.0 if collapsed else 0.0,
        "kd_unhealthy": 1.0 if _unhealthy(report, fail_on) else 0.0,
    }


def describe(epoch: int, report: Report, fail_on: str = "error") -> str:
    """One log line: the symptoms at or above fail_on, and the most likely cause."""
    # the symptoms that made the epoch unhealthy, and always the error-level ones
    floor = min(Severity(fail_on).rank if fail_on != "never" else 99, Severity.ERROR.rank)
    parts = [f"kerasdoctor: epoch {epoch + 1}:"]
    for f in report.symptoms:
        if f.severity.rank >= floor:
            parts.append(f"{f.id}: {f.title};")
    root = report.root_cause
    if root is not None:
        parts.append(f"most likely cause: {root.id}: {root.title}")
    else:
        parts.append(
            "no cause found by the cheap checks (kerasdoctor.diagnose(model, "
            "x_val, y_val) runs them all)"
        )
    return " ".join(parts)


def fix_lines(root: Finding) -> list[str]:
    """The root cause's first fix as the callback can give it: the sentence, the code to paste,
    and the command when it runs as printed (no placeholder for the in-memory data)."""
    if not root.fixes:
        return []
    fix = root.fixes[0]
    lines = [f"  fix: {fix.summary}"]
    if fix.code:
        lines += ["    " + line for line in fix.code.splitlines()]
    if fix.command and not any(p in fix.command for p in _PLACEHOLDERS):
        lines.append(f"    $ {fix.command}")
    return lines
